package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/server/api"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
)

// diskMoveCmd is `disk move ID --to SERVER`: it finds the disk's home in
// the store (disk ls, server ls, through the server it talks to) and asks
// the home to move it, with the same admin token (tokens are in the
// store, good on every server): the home copies the disk to the other
// server itself (server/disks, Move).
func diskMoveCmd(f *clientFlags, sio stdio) *cobra.Command {
	var to string
	c := &cobra.Command{
		Use:   "move ID --to SERVER",
		Short: "move a disk to another server's data directory (refused while a machine uses it): copy, verify, switch its home, delete the old copy",
		Args:  exactArgs(1, "a disk ID (overboot disk ls)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id < 1 {
				return usagef(cmd, "disk ID %q: want a positive number (overboot disk ls)", args[0])
			}
			if !config.ValidServerName(to) {
				return usagef(cmd, "--to %q: want a server name (overboot server ls)", to)
			}
			cl, err := f.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var ks []state.Disk
			if err := cl.do(ctx, http.MethodGet, "/disks", nil, &ks); err != nil {
				return fmt.Errorf("disk move %d: %w", id, err)
			}
			i := slices.IndexFunc(ks, func(k state.Disk) bool { return k.ID == id })
			if i < 0 {
				return fmt.Errorf("disk move %d: no such disk (overboot disk ls)", id)
			}
			k := ks[i]
			if k.Home == "" {
				return fmt.Errorf("disk move %d: it has no home server yet (the server whose data directory holds %s adopts it when it starts)", id, k.Path)
			}
			if k.Home == to {
				return fmt.Errorf("disk move %d: it lives on %s already", id, to)
			}
			var ss []api.ServerRow
			if err := cl.do(ctx, http.MethodGet, "/servers", nil, &ss); err != nil {
				return fmt.Errorf("disk move %d: %w", id, err)
			}
			j := slices.IndexFunc(ss, func(s api.ServerRow) bool { return s.Name == k.Home })
			if j < 0 || len(ss[j].URLs) == 0 {
				return fmt.Errorf("disk move %d: its home %s is not registered (overboot server ls)", id, k.Home)
			}
			home := ss[j]
			if !home.Up {
				return fmt.Errorf("disk move %d: its home %s is down (last heartbeat %s): start it first", id, k.Home, ago(home.Heartbeat))
			}
			// The home moves it: ask it, unless this is it already. The
			// copy takes as long as the disk's size over the servers'
			// network: no time limit but the command's own.
			hc := &client{server: cl.server, from: cl.from, token: cl.token, http: &http.Client{}}
			if !slices.Contains(home.URLs, cl.server) {
				hc.server, hc.from = strings.TrimSuffix(home.URLs[0], "/"), "server "+k.Home+"'s URL in the store; or give --server"
			}
			var moved state.Disk
			if err := hc.do(ctx, http.MethodPost, fmt.Sprintf("/disks/%d/move", id), api.MoveRequest{To: to}, &moved); err != nil {
				return fmt.Errorf("disk move %d to %s: %w", id, to, err)
			}
			return f.print(sio, moved, func(w io.Writer) {
				fmt.Fprintf(w, "disk %d moved from %s to %s (%s)\n", id, k.Home, moved.Home, moved.Path)
			})
		},
	}
	c.Flags().StringVar(&to, "to", "", "the `server` to move it to (overboot server ls)")
	c.MarkFlagRequired("to")
	f.addOutput(c)
	return c
}
