// Command overboot-demo is `make demo`: it builds the agent, the initramfs
// and a small test root, starts the overboot server on 127.0.0.1, and
// PXE-boots one QEMU machine from it, showing the console as it boots:
// iPXE, the kernel, each phase of the agent, and the root's own init.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/vmtest"
)

func main() {
	work := flag.String("work", "build/demo", "work `directory` for the artifacts and the server's store")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *work, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "overboot-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, work string, out io.Writer) error {
	fmt.Fprintln(out, "== building the agent, the initramfs and a test root")
	a, err := vmtest.Build(ctx, work, vmtest.BuildOptions{PadBytes: 16 << 20, Log: out})
	if err != nil {
		return err
	}
	conf := fmt.Sprintf(`# the demo's configuration: one default profile
[profile default]
kernel = %s
initramfs = %s
root = %s
onfail = poweroff
onfail-delay = 5s
cmdline = console=ttyS0 quiet panic=-1
`, a.Kernel, a.Initramfs, a.Root)
	cfg, err := config.Parse("demo.conf", strings.NewReader(conf))
	if err != nil {
		return err
	}
	cfg.Data = filepath.Join(work, "store")
	srv, err := server.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go srv.Serve(sctx, ln)
	addr := ln.Addr().String()
	fmt.Fprintf(out, "\n== server on http://%s; config:\n%s\n", addr, conf)

	tftp := filepath.Join(work, "tftp")
	if err := os.MkdirAll(tftp, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tftp, "boot.ipxe"), []byte("#!ipxe\nchain http://"+vmtest.GuestServer+"/boot.ipxe || exit 1\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "== PXE-booting a QEMU machine (TCG; iPXE from the NIC ROM gets boot.ipxe by TFTP, then everything over HTTP)\n")
	fmt.Fprintf(out, "   the guest reaches the server as http://%s (QEMU user networking, restricted to this forward)\n\n", vmtest.GuestServer)
	vm, err := vmtest.Start(ctx, vmtest.Options{
		PXE: true, TFTPDir: tftp, BootFile: "boot.ipxe", MAC: "52:54:00:de:00:01",
		Forwards: []vmtest.Forward{{GuestPort: 80, HostAddr: addr}},
		Relay:    a.Relay,
	}, out)
	if err != nil {
		return err
	}
	defer vm.Kill()
	_, i, err := vm.ExpectAny(5*time.Minute, vmtest.MarkerPass, vmtest.MarkerFail, "overboot: BOOT FAILED")
	if err != nil {
		return err
	}
	vm.Wait(time.Minute)
	fmt.Fprintln(out, "\n== what the server saw: its own steps and the agent's phase reports (overboot boot show, /status)")
	if bs, err := srv.DB().Boots(ctx, "52:54:00:de:00:01", 1); err == nil && len(bs) == 1 {
		ev, _ := srv.DB().BootEvents(ctx, bs[0].ID)
		for _, e := range ev {
			fmt.Fprintf(out, "   %s  %-6s %-12s %-8s %s\n", e.At.Format("15:04:05.000"), e.Source, e.Phase, e.Outcome, e.Message)
		}
	}
	if i != 0 {
		return fmt.Errorf("the machine did not boot: see the console above")
	}
	fmt.Fprintln(out, "\n== the machine booted into an overlay of the image (read-only squashfs) and RAM, checked it, and powered off")
	return nil
}
