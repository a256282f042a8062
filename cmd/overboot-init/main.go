// Command overboot-init is the overboot agent: the /init of the initramfs.
// As PID 1 it boots the machine (package initagent); started by the agent
// as "@overboot-keeper" it keeps the root alive: it serves a lazy root and
// logs failed iSCSI connections in again (initagent/keeper). Anywhere else
// it only prints the boot plan a command line would produce:
//
//	overboot-init -dry-run -cmdline 'overboot.lower=http://... overboot.digest=sha256:...'
//	overboot-init -dry-run -cmdline 'overboot.doc=http://...' -doc document.json
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent"
	"github.com/overboot/overboot/initagent/fetch"
	"github.com/overboot/overboot/initagent/keeper"
	"github.com/overboot/overboot/initagent/rescue"
)

func main() {
	// Libraries that log through the standard logger (u-root's iscsinl
	// prints every PDU length) would clutter the console between the
	// agent's own phase lines; the agent reports everything itself.
	log.SetOutput(io.Discard)
	if filepath.Base(os.Args[0]) == rescue.Name {
		// /bin/sh, a link to this binary: the rescue shell.
		os.Exit(rescue.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, isTerminal(os.Stdin)))
	}
	if keeper.IsKeeper() {
		// The agent's child keeping the root alive; it outlives the agent.
		// Started before switch_root: the initramfs's site CA is still
		// at hand (a bad one the agent has already reported).
		_ = fetch.TrustSiteCA("/" + boot.InitramfsSiteCA)
		if err := keeper.Main(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getpid() == 1 {
		bootMachine() // never returns
	}
	if err := dryRun(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "overboot-init:", err)
		os.Exit(2)
	}
}

func dryRun(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("overboot-init", flag.ContinueOnError)
	fs.SetOutput(out)
	dry := fs.Bool("dry-run", false, "print the boot plan and exit (the only thing to do when not PID 1)")
	cmdline := fs.String("cmdline", "", "kernel command line to plan for (default: this machine's /proc/cmdline)")
	docFile := fs.String("doc", "", "boot document (JSON) to plan with, for an overboot.doc= command line")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: overboot-init -dry-run [-cmdline STRING] [-doc FILE]")
		fmt.Fprintln(out, "\noverboot-init is the /init of an overboot initramfs and boots the machine when it")
		fmt.Fprintln(out, "runs as PID 1. Elsewhere it prints the plan a kernel command line would produce.")
		fmt.Fprintln(out)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if !*dry {
		fs.Usage()
		return fmt.Errorf("not PID 1: nothing to boot; use -dry-run to print the plan")
	}
	if *cmdline == "" {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return err
		}
		*cmdline = string(b)
	}
	p, err := boot.Parse(*cmdline)
	if err != nil {
		return fmt.Errorf("kernel command line:\n%v", err)
	}
	var doc *boot.Document
	if (p.Doc != "" || p.Attest != "") && *docFile != "" {
		f, err := os.Open(*docFile)
		if err != nil {
			return err
		}
		defer f.Close()
		d, err := boot.ParseDocument(f)
		if err != nil {
			return fmt.Errorf("%s: %w", *docFile, err)
		}
		doc = &d
	}
	// The same plan the boot runs (initagent.Agent.Boot).
	steps, err := initagent.Plan(p, doc)
	if err != nil {
		return err
	}
	fmt.Fprint(out, initagent.FormatPlan(steps))
	if initagent.NeedsDocument(steps) {
		fmt.Fprintln(out, "# then the steps the boot document decides (give -doc FILE to see them)")
		if p.Report != "" {
			fmt.Fprintf(out, "# phase reports go to %s, unless the boot document names another report URL\n", fetch.RedactURL(p.Report))
		}
		return nil
	}
	if doc == nil {
		d := p.Document()
		doc = &d
	}
	printReports(out, p.ReportURL(*doc))
	return nil
}

// printReports says where the phase reports go, as the boot's console would.
func printReports(out io.Writer, url string) {
	if url != "" {
		fmt.Fprintf(out, "# phase reports go to %s\n", fetch.RedactURL(url))
	}
}
