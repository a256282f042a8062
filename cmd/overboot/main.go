// Command overboot is the overboot server, its image tool and its admin
// client.
//
//	overboot serve      run the server (HTTP, iSCSI)
//	overboot mkimage    build root images and initramfs images into a data directory
//	overboot inspect    list the contents of an initramfs
//	overboot machine    machines: list, show, approve, reset, rotate, delete
//	overboot user       users who log in at a boot menu
//	overboot image      image names: publish, list, history, rollback
//	overboot disk       private disks
//	overboot boot       boots and their events
//	overboot token      admin API tokens
//	overboot gc         remove blobs nothing refers to
//	overboot backup     a consistent copy of the state store
//	overboot store      copy the state store between SQLite and PostgreSQL
//	overboot completion shell completion scripts
//	overboot version    the version and the commit it was built from
//
// The admin commands talk to a running server's API (/api/v1) with a
// bearer token; `overboot token create --data DIR` makes the first one.
// main only wires: each command parses its flags and calls a function
// that returns an error. The command tree is cobra's, flags are pflag's
// (--flag, and -x for the few that have a short form). A bad command line
// is a usageError (exit status 2), anything else exits 1; errors name the
// command without the program's name, which main puts first.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "overboot:", err)
		os.Exit(exitCode(err))
	}
}

// usageError marks errors caused by a bad command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// io is what a command reads and writes.
type stdio struct {
	in          io.Reader
	out, errOut io.Writer
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	root := newRoot(stdio{stdin, stdout, stderr})
	root.SetArgs(args)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return flagError(c, args, err)
	})
	return root.ExecuteContext(ctx)
}

func newRoot(sio stdio) *cobra.Command {
	root := &cobra.Command{
		Use:   "overboot",
		Short: "diskless network boot: server, images and administration",
		Long: `overboot boots diskless machines over the network into a shared read-only
squashfs image with a writable layer in RAM or on a private iSCSI disk.

The admin commands (machine, user, image, disk, boot, token, gc, backup)
talk to a running server's API with an admin token. The server is at
--server URL, else $OVERBOOT_SERVER, else where the server's configuration
says (--config FILE, default /etc/overboot.conf when it exists: its url,
else http:// and its listen address), else http://127.0.0.1:8080. The token
is in --token-file FILE (or $OVERBOOT_TOKEN_FILE naming the file; or
$OVERBOOT_TOKEN holding the token itself). 'overboot token create NAME --data DIR --out FILE' makes the first
token from the server's data directory, in a file only you can read.

A bad command line (an unknown command or flag, missing arguments) exits
with status 2, any other failure with status 1.`,
		Version:       moduleVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("overboot {{.Version}}\n")
	// Before the completion command is made: it keeps the writer it sees.
	root.SetOut(sio.out)
	root.SetErr(sio.errOut)
	root.SetIn(sio.in)
	root.AddCommand(
		serveCmd(sio), mkimageCmd(sio), inspectCmd(sio),
		machineCmd(sio), userCmd(sio), imageCmd(sio), diskCmd(sio), serverCmd(sio), bootCmd(sio), tokenCmd(sio), gcCmd(sio), backupCmd(sio), storeCmd(sio), tlsCmd(sio),
		versionCmd(sio), genManCmd(sio),
	)
	root.SetHelpCommand(helpCmd())
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	if cc, _, err := root.Find([]string{"completion"}); err == nil && cc.Name() == "completion" {
		cc.Short = "print a shell completion script: bash, zsh, fish or powershell"
		cc.Long = `Prints the script that lets the shell complete overboot's commands and
flags ('overboot completion SHELL --help' says how to load it).

MAC addresses (machine show, approve, ...; boot ls --mac), user names (user
passwd, reset, del) and image names (image history, publish, rollback) are
completed from the server's API, with the admin commands' --server and
--token-file (or $OVERBOOT_SERVER, $OVERBOOT_TOKEN_FILE, $OVERBOOT_TOKEN).
Without a token, or without an answer within 3 seconds, nothing is
suggested and nothing is printed.`
	}
	groups(root)
	return root
}

// groups makes every command that only holds subcommands (the root
// included) a usage error when run without one or with an unknown one:
// cobra would print help and exit 0, or fail with a plain error.
func groups(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = runGroup
	}
	for _, sc := range c.Commands() {
		groups(sc)
	}
}

func runGroup(c *cobra.Command, args []string) error {
	fmt.Fprint(c.ErrOrStderr(), c.UsageString())
	if len(args) == 0 {
		return usagef(c, "which command?")
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += " (did you mean " + strings.Join(s, " or ") + "?)"
	}
	return usagef(c, "%s", msg)
}

// cmdPath is c's path without the program's name ("machine ls"), for
// error messages: main puts "overboot: " before them.
func cmdPath(c *cobra.Command) string {
	if !c.HasParent() {
		return ""
	}
	return strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
}

// usagef is a usage error prefixed with c's path.
func usagef(c *cobra.Command, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if p := cmdPath(c); p != "" {
		msg = p + ": " + msg
	}
	return usageError{msg}
}

// flagError is a usage error for a flag that does not parse. A long flag
// written with one dash (-config, as serve, mkimage and inspect took them
// before) gets a hint: pflag reads it as short flags.
func flagError(c *cobra.Command, args []string, err error) error {
	for _, a := range args {
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if f := c.Flags().Lookup(name); f != nil && len(name) > 1 {
			return usagef(c, "%s: long flags take two dashes: --%s", a, name)
		}
	}
	return usagef(c, "%v", err)
}

// helpCmd is "overboot help [COMMAND...]": cobra's, except that an
// unknown command is a usage error (cobra's says so and exits 0).
func helpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "help about any command",
		Long:  "Help prints the help of any command: overboot help [command].",
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				fmt.Fprint(c.ErrOrStderr(), c.Root().UsageString())
				return usagef(c, "unknown command %q", strings.Join(args, " "))
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, sc := range cmd.Commands() {
				if sc.IsAvailableCommand() && strings.HasPrefix(sc.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(sc.Name(), sc.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
	}
}
