package main

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/server/api"
	"github.com/overboot/overboot/server/config"
)

func serverCmd(sio stdio) *cobra.Command {
	var f clientFlags
	c := group("server", "the servers sharing the state store: where they are, whether they beat")
	f.add(c)
	c.AddCommand(getCmd(&f, sio, &cobra.Command{Use: "ls", Short: "list the servers that registered in the store (up: a heartbeat in the last 30 seconds)", Args: exactArgs(0, "no arguments")},
		fixedPath("/servers"), func(w io.Writer, ss []api.ServerRow) {
			table(w, "NAME\tSTATE\tURLS\tISCSI\tVERSION\tHEARTBEAT\tSTARTED", func(tw *tabwriter.Writer) {
				for _, s := range ss {
					st := "up"
					switch {
					case !s.Up && !s.Stopped.IsZero():
						st = "stopped"
					case !s.Up:
						st = "down (silent " + time.Since(s.Heartbeat).Round(time.Second).String() + ")"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, st, strings.Join(s.URLs, " "), cmp.Or(s.Portal, "-"), cmp.Or(s.Version, "-"), ago(s.Heartbeat), ago(s.Started))
				}
			})
		}))
	c.AddCommand(&cobra.Command{
		Use: "forget NAME", Short: "remove a stopped or silent server from the list (a running one is refused)", Args: exactArgs(1, "a server name (overboot server ls)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !config.ValidServerName(args[0]) {
				return usagef(cmd, "server name %q: want 1 to 63 letters, digits, '.', '-' or '_'", args[0])
			}
			cl, err := f.client()
			if err != nil {
				return err
			}
			if err := cl.do(cmd.Context(), http.MethodDelete, "/servers/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return fmt.Errorf("server forget %s: %w", args[0], err)
			}
			fmt.Fprintf(sio.out, "server %s forgotten\n", args[0])
			return nil
		},
	})
	return c
}
