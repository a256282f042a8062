package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/dhcp"
	"github.com/overboot/overboot/server/ra"
	"github.com/overboot/overboot/vmtest"
)

// The Secure Boot section (issue 19's figures): the same image booted by
// plain UEFI (the firmware's PXE, then iPXE, Secure Boot off), by Secure
// Boot (shim, GRUB, Debian's signed kernel) and by Secure Boot with TPM
// attestation (enroll = tpm), on one QEMU command line: q35 with SMM,
// Debian's OVMF built with Secure Boot, a swtpm TPM and the firmware's
// own network stack for every machine; only the variable store (no keys:
// Secure Boot off; Microsoft's keys: on) and the profile differ. Over
// overboot's full DHCP, TFTP and HTTP in a network namespace, as a real
// LAN. Each machine boots once first, not counted (the TPM machine's
// first boot pins its EK and records its firmware baseline: its
// enrolment), then in interleaved rounds. Time to root: QEMU's start to
// the agent's "switching root"; and the agent's attest phase as it
// reported it.

// sbMachine is one of the section's machines.
type sbMachine struct {
	Label, MAC, Profile string
	Vars                string // the variable store it copies once
	// QuietRA: the server answers IPv6 router solicitations (quiet-ra)
	// while this machine boots, and only then.
	QuietRA bool
}

var sbMachines = []sbMachine{
	{"plain UEFI (iPXE)", "52:54:00:5c:00:01", "plain", vmtest.OVMFVars, false},
	{"plain UEFI (iPXE), quiet-ra", "52:54:00:5c:00:04", "plain", vmtest.OVMFVars, true},
	{"Secure Boot", "52:54:00:5c:00:02", "sb", vmtest.OVMFVarsMS, false},
	{"Secure Boot + TPM attestation", "52:54:00:5c:00:03", "tpm", vmtest.OVMFVarsMS, false},
}

func secbootSection() Section {
	return Section{Name: "secboot", Run: runSecboot}
}

// benchTB is what vmtest's namespace helpers need of a test: its
// failures become the section's error (a panic recovered by runSecboot).
type benchTB struct {
	mu       sync.Mutex
	cleanups []func()
}

type benchFatal struct{ err error }

func (b *benchTB) Helper() {}
func (b *benchTB) Fatalf(format string, args ...any) {
	panic(benchFatal{fmt.Errorf(format, args...)})
}
func (b *benchTB) Cleanup(f func()) {
	b.mu.Lock()
	b.cleanups = append(b.cleanups, f)
	b.mu.Unlock()
}

// close runs the cleanups, last first.
func (b *benchTB) close() {
	b.mu.Lock()
	fs := b.cleanups
	b.cleanups = nil
	b.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func runSecboot(ctx context.Context, env *Env) (rs []Result, err error) {
	for _, f := range []string{vmtest.OVMFCodeSecure, vmtest.OVMFVarsMS, vmtest.OVMFVars, config.DefaultShim, config.DefaultGRUBNet} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("secboot: %w (make deps installs ovmf, shim-signed, grub-efi-amd64-signed)", err)
		}
	}
	tb := &benchTB{}
	defer tb.close()
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(benchFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("secboot: %w", f.err)
		}
	}()
	a, err := vmtest.Build(ctx, filepath.Join(env.WorkDir, "boot"), vmtest.BuildOptions{})
	if err != nil {
		return nil, err
	}
	work := filepath.Join(env.WorkDir, "secboot")
	os.RemoveAll(work) // a new store: the TPM machine enrols in this run
	logs := filepath.Join(work, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	ns := vmtest.NewNetNS(tb)
	var conf strings.Builder
	fmt.Fprintf(&conf, "[server]\nurl = http://%s\ndhcp = %s\ndhcp-range = 192.0.2.50-192.0.2.59\ndhcp-router = %s\n\n", ns.Addr, ns.Bridge, ns.Addr)
	for _, p := range []struct{ name, extra string }{
		{"plain", ""},
		{"sb", "secure-boot = yes\n"},
		{"tpm", "secure-boot = yes\nenroll = tpm\ntpm-first-use = yes\n"},
	} {
		fmt.Fprintf(&conf, "[profile %s]\nkernel = %s\ninitramfs = %s\nroot = %s\ncmdline = console=ttyS0 panic=-1\nonfail = poweroff\nonfail-delay = 1s\n%s\n", p.name, a.Kernel, a.Initramfs, a.Root, p.extra)
	}
	for _, m := range sbMachines {
		fmt.Fprintf(&conf, "[machine %s]\nprofile = %s\n\n", m.MAC, m.Profile)
	}
	cfg, err := config.Parse("secboot.conf", strings.NewReader(conf.String()))
	if err != nil {
		return nil, err
	}
	cfg.Data = filepath.Join(work, "data")
	serverLog, err := os.Create(filepath.Join(logs, "server.log"))
	if err != nil {
		return nil, err
	}
	defer serverLog.Close()
	s, err := server.Open(ctx, cfg, slog.New(slog.NewTextHandler(serverLog, nil)))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	stop, err := serveLAN(ctx, tb, ns, s)
	if err != nil {
		return nil, err
	}
	defer stop()

	type vmState struct{ vars, tpm, tap string }
	states := map[string]vmState{}
	for _, m := range sbMachines {
		dir := filepath.Join(work, strings.ReplaceAll(m.MAC, ":", ""))
		st := vmState{vars: filepath.Join(dir, "vars.fd"), tpm: filepath.Join(dir, "tpm"), tap: ns.Tap(tb)}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := copyFile(m.Vars, st.vars, 0o644); err != nil {
			return nil, err
		}
		states[m.MAC] = st
	}
	// boot boots m once: QEMU start to the agent's "switching root", and
	// the attest phase its agent reported (0: none).
	boot := func(m sbMachine, name string) (root, attest time.Duration, err error) {
		st := states[m.MAC]
		logPath := filepath.Join(logs, name+".log")
		f, err := os.Create(logPath)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		vctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if m.QuietRA {
			var rc *ra.Conn
			if err := ns.Do(func() (err error) { rc, err = ra.Listen(vctx, ns.Bridge); return err }); err != nil {
				return 0, 0, err
			}
			served := make(chan struct{})
			go func() { defer close(served); ra.Serve(vctx, rc, nil) }()
			defer func() { cancel(); <-served; rc.Close() }()
		}
		vm, err := vmtest.Start(vctx, vmtest.Options{PXE: true, Tap: st.tap, NetNS: ns.Name, MAC: m.MAC, UEFIVars: st.vars, SecureBoot: true, NoNICROM: true, TPMState: st.tpm}, f)
		if err != nil {
			return 0, 0, err
		}
		l, i, err := vm.ExpectAny(5*time.Minute, markerSwitch, "overboot: BOOT FAILED", "Kernel panic", "Security Violation")
		cancel()
		vm.Wait(time.Minute)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w (console %s)", m.Label, err, logPath)
		}
		if i != 0 {
			return 0, 0, fmt.Errorf("%s: %s (console %s)", m.Label, l.Text, logPath)
		}
		bs, err := s.DB().Boots(ctx, m.MAC, 1)
		if err != nil || len(bs) == 0 {
			return l.At, 0, fmt.Errorf("%s: its boot is not recorded: %v", m.Label, err)
		}
		evs, err := s.DB().BootEvents(ctx, bs[0].ID)
		if err != nil {
			return l.At, 0, err
		}
		for _, e := range evs {
			if e.Source == "agent" && e.Phase == boot.PhaseAttest && e.Outcome == boot.OutcomeOK {
				attest = time.Duration(e.Seconds * float64(time.Second))
			}
		}
		if m.Profile == "tpm" && attest == 0 {
			return l.At, 0, fmt.Errorf("%s: no attest phase reported (console %s)", m.Label, logPath)
		}
		return l.At, attest, nil
	}
	for _, m := range sbMachines {
		if _, _, err := boot(m, "first-"+m.Profile); err != nil {
			return nil, fmt.Errorf("first boot (not counted): %w", err)
		}
	}
	times := map[string][]time.Duration{}
	var attests []time.Duration
	for round := 1; round <= rounds(); round++ {
		for _, m := range sbMachines {
			root, at, err := boot(m, fmt.Sprintf("%s-%d", m.Profile, round))
			if err != nil {
				return nil, fmt.Errorf("round %d: %w", round, err)
			}
			times[m.Label] = append(times[m.Label], root)
			if m.Profile == "tpm" {
				attests = append(attests, at)
			}
			fmt.Fprintf(env.Out, "secboot round %d: %-30s switch_root at %6.2f s", round, m.Label, root.Seconds())
			if at > 0 {
				fmt.Fprintf(env.Out, " (attest phase %.2f s)", at.Seconds())
			}
			fmt.Fprintln(env.Out)
		}
	}
	med := func(ds []time.Duration) float64 { return median(slices.Clone(ds)).Seconds() }
	plain, plainRA, sb, tpm := med(times[sbMachines[0].Label]), med(times[sbMachines[1].Label]), med(times[sbMachines[2].Label]), med(times[sbMachines[3].Label])
	note := fmt.Sprintf("median of %d; one QEMU line (q35 SMM, OVMF secboot, swtpm, 1 vCPU, TCG); consoles in %s", rounds(), logs)
	return []Result{
		{Section: "secboot", Metric: "plain UEFI, quiet-ra: QEMU start to switch_root, s", Ours: plainRA, Ref: plain, RefName: "plain UEFI", Better: "lower", Goal: "report", Note: "the server answers IPv6 router solicitations: iPXE stops waiting for IPv6; " + note},
		{Section: "secboot", Metric: "Secure Boot: QEMU start to switch_root, s", Ours: sb, Ref: plain, RefName: "plain UEFI", Better: "lower", Goal: "report", Note: note},
		{Section: "secboot", Metric: "SB + TPM attestation: to switch_root, s", Ours: tpm, Ref: sb, RefName: "Secure Boot", Better: "lower", Goal: "+<= 0.5 s", Note: fmt.Sprintf("difference %+.2f s; %s", tpm-sb, note)},
		{Section: "secboot", Metric: "attest phase as the agent reported it, s", Ours: med(attests), RefName: "-", Better: "lower", Goal: "<= 0.5 s", Note: "TPM (swtpm): new AK, activation, quote; two round trips; the server's checks"},
	}, nil
}

// serveLAN serves s's HTTP (port 80), TFTP and full DHCP on ns's bridge
// until the returned stop is called.
func serveLAN(ctx context.Context, tb *benchTB, ns *vmtest.NetNS, s *server.Server) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	var httpLn net.Listener
	var c67 net.PacketConn
	if err := ns.Do(func() (err error) {
		if httpLn, err = net.Listen("tcp", ns.Addr+":80"); err != nil {
			return err
		}
		c67, err = dhcp.ListenInterface(ctx, ns.Bridge, 67)
		return err
	}); err != nil {
		cancel()
		return nil, err
	}
	tftpPC := ns.ListenPacket(tb, ns.Addr+":69")
	dial := func(l, r *net.UDPAddr) (c *net.UDPConn, err error) {
		err = ns.Do(func() error { c, err = net.DialUDP("udp", l, r); return err })
		return c, err
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); s.Serve(ctx, httpLn) }()
	go func() { defer wg.Done(); s.ServeTFTP(ctx, tftpPC, dial) }()
	go func() {
		defer wg.Done()
		s.ServeDHCP(ctx, c67, netip.MustParseAddr(ns.Addr), netip.MustParsePrefix(ns.Addr+"/24"))
	}()
	return func() {
		cancel()
		wg.Wait()
		httpLn.Close()
		c67.Close()
	}, nil
}
