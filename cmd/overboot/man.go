package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// genManCmd is the hidden "overboot gen-man DIR" that `make man` runs: a
// man page (section 1) per command, from the command tree itself.
func genManCmd(sio stdio) *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "write a man page per command into DIR (make man)",
		Hidden: true,
		Args:   exactArgs(1, "a DIR to write the pages into"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			date := manDate()
			hdr := &doc.GenManHeader{Section: "1", Source: "overboot " + moduleVersion(), Manual: "overboot manual", Date: &date}
			if err := doc.GenManTree(root, hdr, args[0]); err != nil {
				return fmt.Errorf("gen-man: %w", err)
			}
			fmt.Fprintf(sio.out, "man pages in %s\n", args[0])
			return nil
		},
	}
}

// manDate is the pages' date: $SOURCE_DATE_EPOCH (reproducible builds),
// else the commit's time, else now.
func manDate() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					return t
				}
			}
		}
	}
	return time.Now()
}
