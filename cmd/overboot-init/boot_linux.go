package main

import (
	"context"
	"fmt"
	"os"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent"
	"github.com/overboot/overboot/initagent/fetch"
)

// bootMachine runs the agent as PID 1 and never returns.
func bootMachine() {
	console := os.Stdout
	// https URLs (the document, reports, a lower-tls image) are checked
	// against the initramfs's site CA alone.
	if err := fetch.TrustSiteCA("/" + boot.InitramfsSiteCA); err != nil {
		fmt.Fprintf(console, "overboot: %v: https URLs will be refused\n", err)
	}
	// One HTTP client for the document, the image and the reports: one
	// connection to the server serves them all.
	client := fetch.NewHTTPClient()
	a := &initagent.Agent{Console: console, Uptime: initagent.Uptime, Reports: initagent.HTTPReports{Client: client}}
	a.Exec = &initagent.LinuxExecutor{
		Console:  console,
		Progress: func(p initagent.Phase, line string) { a.Progressf(p, "%s", line) },
		Client:   client,
	}
	cmdline := readCmdline()
	err := a.Boot(context.Background(), cmdline)
	// Boot returns only on failure (on success init has replaced us),
	// having reported it: now the failure policy.
	initagent.Apply(initagent.Decide(cmdline, err), console)
}

// readCmdline reads the kernel command line, mounting /proc first.
func readCmdline() string {
	_ = initagent.MountProc()
	b, _ := os.ReadFile("/proc/cmdline")
	return string(b)
}
