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
//
// The admin commands talk to a running server's API (/api/v1) with a
// bearer token; `overboot token create --data DIR` makes the first one.
// main only wires: each command parses its flags and calls a function
// that returns an error. The command tree is cobra's; serve, mkimage and
// inspect keep their own flag sets (-flag and --flag both work there).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(stdin)
	return root.ExecuteContext(ctx)
}

func newRoot(sio stdio) *cobra.Command {
	root := &cobra.Command{
		Use:   "overboot",
		Short: "diskless network boot: server, images and administration",
		Long: `overboot boots diskless machines over the network into a shared read-only
squashfs image with a writable layer in RAM or on a private iSCSI disk.

The admin commands (machine, user, image, disk, boot, token, gc, backup)
talk to a running server's API with an admin token: --server URL (or
$OVERBOOT_SERVER; default http://127.0.0.1:8080) and --token-file FILE (or
$OVERBOOT_TOKEN_FILE naming the file; or $OVERBOOT_TOKEN holding the token
itself). 'overboot token create NAME --data DIR --out FILE' makes the first
token from the server's data directory, in a file only you can read.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{c.CommandPath() + ": " + err.Error()}
	})
	root.AddCommand(
		flagCommand(sio, "serve", "run the server: iPXE scripts, artifacts, the iSCSI target, the admin API", runServe),
		flagCommand(sio, "mkimage", "build a root image or an initramfs into a data directory", runMkimage),
		flagCommand(sio, "inspect", "list the contents of an initramfs (several segments, any compression)", runInspect),
		machineCmd(sio), userCmd(sio), imageCmd(sio), diskCmd(sio), bootCmd(sio), tokenCmd(sio), gcCmd(sio), backupCmd(sio),
	)
	return root
}

// flagCommand wraps a command that parses its own flags with package flag.
func flagCommand(sio stdio, name, short string, fn func(ctx context.Context, args []string, stdout, stderr io.Writer) error) *cobra.Command {
	return &cobra.Command{
		Use:                name,
		Short:              short,
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			return fn(c.Context(), args, sio.out, sio.errOut)
		},
	}
}

// parseFlags parses args with fs, allowing flags after positional
// arguments ("mkimage root DIR -o FILE"), and returns the positionals.
// "--" ends flag parsing.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
