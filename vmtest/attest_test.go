package vmtest

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-attestation/attest"
	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
)

// attestTimeout bounds one Secure Boot boot with a TPM under TCG: a
// backstop, not a measure.
const attestTimeout = 6 * time.Minute

// attestProfile is a tpm profile of the shared artifacts; extra adds
// its own lines.
func attestProfile(a *Artifacts, extra string) string {
	return fmt.Sprintf("[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\nsecure-boot = yes\nenroll = tpm\n%s",
		a.Kernel, a.Initramfs, a.Root, extra)
}

// tpmDir is a TPM state directory for one machine, kept across its
// boots: short, as swtpm's unix socket path must be.
func tpmDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "obtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "tpm")
}

// varsCopy is a copy of an OVMF variable store for one machine.
func varsCopy(t *testing.T, src string) string {
	t.Helper()
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	if err := copyFile(src, vars, 0o644); err != nil {
		t.Fatal(err)
	}
	return vars
}

// attestLines are the server's log lines about attestation.
func attestLines(logs string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "attest") || strings.Contains(l, "TPM") {
			out = append(out, l)
		}
	}
	return out
}

// tpmOf is the store's TPM enrolment of mac.
func tpmOf(t *testing.T, s *server.Server, mac string) state.TPM {
	t.Helper()
	tp, err := s.DB().TPMOf(context.Background(), mac)
	if err != nil {
		t.Fatalf("TPM of %s: %v", mac, err)
	}
	return tp
}

// lastBoot is the newest boot of mac and its events.
func lastBoot(t *testing.T, s *server.Server, mac string) (state.Boot, []state.BootEvent) {
	t.Helper()
	ctx := context.Background()
	bs, err := s.DB().Boots(ctx, mac, 1)
	if err != nil || len(bs) != 1 {
		t.Fatalf("boots of %s: %v %v", mac, bs, err)
	}
	ev, err := s.DB().BootEvents(ctx, bs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	return bs[0], ev
}

// expectAttested waits for the root's verdict and checks the secret
// parts of the sealed document reached it: the host name the server's
// configuration gives, the machine-id it keeps for the machine, and a
// host key of the machine's own, 0600.
func expectAttested(t *testing.T, s *server.Server, vm *VM, mac, hostname string) {
	t.Helper()
	l, i, err := vm.ExpectAny(attestTimeout, MarkerPass, MarkerFail, "overboot: BOOT FAILED")
	if err != nil || i != 0 {
		t.Fatalf("no root reached: %v %s\n%s", err, l.Text, vm.Tail(40))
	}
	if _, err := vm.Wait(time.Minute); err != nil {
		t.Fatalf("after %s: %v", MarkerPass, err)
	}
	m, err := s.DB().Machine(context.Background(), mac)
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(MarkerID + ` host=` + regexp.QuoteMeta(hostname) + ` machine-id=` + regexp.QuoteMeta(m.MachineID) + ` key=[0-9a-f]{16} mode=600`)
	found := false
	for _, l := range vm.Lines() {
		found = found || want.MatchString(l.Text)
		if strings.Contains(l.Text, "attest:") || strings.Contains(l.Text, "efi: SMBIOS") || strings.Contains(l.Text, "Secure boot enabled") {
			t.Logf("console %s", l)
		}
		if strings.Contains(l.Text, "PRIVATE KEY") {
			t.Errorf("a private key on the console")
		}
	}
	if m.MachineID == "" || !found {
		t.Errorf("the root lacks the identity of the sealed document (want %s)", want)
	}
	if b, _ := lastBoot(t, s, mac); b.Phase != "switch_root" {
		t.Errorf("boot record: %+v, want switch_root", b)
	}
}

// expectRefused waits for the agent to give up and checks why: the
// server's reason on the console, in its log and in the boot's events;
// no document, no root, and the machine's TPM enrolment as before.
func expectRefused(t *testing.T, s *server.Server, logs *lockedLog, vm *VM, mac, reason string, before state.TPM) {
	t.Helper()
	expectNoDocument(t, s, vm, mac, reason, before)
	logged := false
	for _, l := range attestLines(logs.String()) {
		if strings.Contains(l, `msg="attestation refused"`) && strings.Contains(l, reason) {
			logged = true
			t.Logf("server: %s", l)
		}
	}
	if !logged {
		t.Errorf("the server log has no refusal with %q:\n%s", reason, strings.Join(attestLines(logs.String()), "\n"))
	}
	b, ev := lastBoot(t, s, mac)
	evented := false
	for _, e := range ev {
		if e.Source == "server" && e.Phase == boot.PhaseAttest && e.Outcome == "failed" && strings.Contains(e.Message, reason) {
			evented = true
			t.Logf("boot %d event: %s %s %s: %s", b.ID, e.Source, e.Phase, e.Outcome, e.Message)
		}
	}
	if !evented {
		t.Errorf("boot %d has no server attest failure with %q: %+v", b.ID, reason, ev)
	}
}

// expectNoDocument waits for the agent to give up at its attest phase
// with reason on the console, and checks no document reached it, the
// boot never reached its root and the machine's TPM enrolment is as
// before.
func expectNoDocument(t *testing.T, s *server.Server, vm *VM, mac, reason string, before state.TPM) {
	t.Helper()
	l, i, err := vm.ExpectAny(attestTimeout, "overboot: BOOT FAILED", MarkerPass, MarkerID)
	if err != nil {
		t.Fatalf("no verdict: %v\n%s", err, vm.Tail(40))
	}
	if i != 0 {
		t.Fatalf("the machine got its document: %s\n%s", l.Text, vm.Tail(40))
	}
	vm.Wait(time.Minute)
	shown := false
	for _, l := range vm.Lines() {
		if strings.HasPrefix(l.Text, "overboot:") && strings.Contains(l.Text, reason) {
			shown = true
			t.Logf("console %s", l)
		}
	}
	if !shown || !vm.Contains("BOOT FAILED in phase attest") {
		t.Errorf("the console shows no attest failure with %q:\n%s", reason, vm.Tail(30))
	}
	if t.Failed() {
		// The chain as the firmware, shim, GRUB and the kernel told it.
		for _, l := range vm.Lines() {
			for _, w := range []string{"efi:", "EFI stub", "ecure boot", "ecureBoot", "shim", "GRUB", "tpm", "TPM", "insecure", "booting", "loading"} {
				if strings.Contains(l.Text, w) {
					t.Logf("console %s", l)
					break
				}
			}
		}
	}
	if vm.Contains(MarkerID) || vm.Contains("document: ok") {
		t.Errorf("the document reached the machine")
	}
	if b, _ := lastBoot(t, s, mac); b.Phase == "switch_root" {
		t.Errorf("boot record %+v: switch_root", b)
	}
	after := tpmOf(t, s, mac)
	if after.EK != before.EK || after.Baseline != before.Baseline || after.Pending != "" {
		t.Errorf("the TPM enrolment changed: before EK %s baseline %q, after EK %s baseline %q pending %q", before.EK, before.Baseline, after.EK, after.Baseline, after.Pending)
	}
}

// grubEvents decodes the PCR 8 and 9 events of an AttestEvidence's
// event log (SHA-256 bank), as GRUB measured them.
func grubEvents(evidence []byte) []string {
	var ev boot.AttestEvidence
	if err := json.Unmarshal(evidence, &ev); err != nil {
		return []string{"evidence: " + err.Error()}
	}
	el, err := attest.ParseEventLog(ev.EventLog)
	if err != nil {
		return []string{"event log: " + err.Error()}
	}
	var out []string
	for _, e := range el.Events(attest.HashSHA256) {
		if e.Index != 8 && e.Index != 9 {
			continue
		}
		d := strings.TrimRight(string(e.Data), "\x00")
		if len(d) > 160 {
			d = d[:160] + "..."
		}
		out = append(out, fmt.Sprintf("PCR %d %s sha256:%s %q", e.Index, e.Type, hex.EncodeToString(e.Digest)[:16], d))
	}
	var pcrs []attest.PCR
	for _, p := range ev.PCRs {
		if p.Alg == "sha256" {
			pcrs = append(pcrs, attest.PCR{Index: p.Index, Digest: p.Digest, DigestAlg: crypto.SHA256})
		}
	}
	if _, err := el.Verify(pcrs); err != nil {
		out = append(out, "replay: "+err.Error())
	}
	return out
}

// TestLANAttested: enroll = tpm end to end with the real server, and
// the attacks it must refuse with nothing handed out, the reason in the
// server's log, the boot's events and on the console, the machine's
// enrolment (EK, baseline) unchanged.
//
// On a namespace LAN where overboot is the DHCP and TFTP server, a
// Secure Boot machine with a TPM (swtpm) boots shim -> GRUB -> signed
// kernel: its first boot waits for the approval of its EK (the console
// shows the fingerprint), is approved, attested and reaches the root
// with its identity (the secret part of the document); its second boot
// is attested against the firmware baseline the first recorded. Then
// the same MAC with another TPM is refused; the same machine with
// Secure Boot off gets no document (below, secure-boot-off-grub).
//
// Through QEMU's user network (its DHCP and TFTP serving the test's
// files), a second machine (tpm-first-use) is attested once honestly
// through the very harness the attacks use; then an attacker on the
// path serves a changed initramfs, then one more initrd after the
// served one, then a changed command line; the
// machine boots with Secure Boot off (by the kernel's EFI stub, so its
// event log reaches the server); and the honest boot's evidence is
// replayed to a new challenge. The last line counts the attacks
// refused.
func TestLANAttested(t *testing.T) {
	a := needVM(t)
	testneed.Tool(t, "swtpm")
	needSecureBoot(t)
	var tried, refused atomic.Int32
	// An attack counts when it ran (-run may leave it out) and is
	// refused when its subtest passed.
	attack := func(t *testing.T, name string, f func(t *testing.T)) {
		t.Helper()
		ran := false
		if t.Run(name, func(t *testing.T) { ran = true; tried.Add(1); f(t) }) && ran {
			refused.Add(1)
		}
	}
	t.Run("group", func(t *testing.T) {
		t.Run("lan", func(t *testing.T) {
			t.Parallel()
			lanAttested(t, a, attack)
		})
		t.Run("slirp", func(t *testing.T) {
			t.Parallel()
			slirpAttested(t, a, attack)
		})
	})
	t.Logf("attacks refused: %d of %d", refused.Load(), tried.Load())
}

func lanAttested(t *testing.T, a *Artifacts, attack func(*testing.T, string, func(*testing.T))) {
	const mac, host = "52:54:00:5c:00:01", "lab-tpm"
	ns := NewNetNS(t)
	conf := fmt.Sprintf("[server]\nurl = http://192.0.2.1\ndhcp = br0\ndhcp-range = 192.0.2.50-192.0.2.59\ndhcp-router = 192.0.2.1\n\n%s\n[machine %s]\nhostname = %s\n",
		attestProfile(a, ""), mac, host)
	s, logs, _ := fullDHCPServer(t, ns, conf, filepath.Join(t.TempDir(), "data"))
	defer func() {
		t.Logf("server, attestation:\n%s", strings.Join(attestLines(logs.String()), "\n"))
	}()
	tpm := tpmDir(t)
	vars := varsCopy(t, OVMFVarsMS)
	machine := func(vars, tpm string) Options {
		return Options{PXE: true, Tap: ns.Tap(t), NetNS: ns.Name, MAC: mac, UEFIVars: vars, SecureBoot: true, NoNICROM: true, TPMState: tpm}
	}
	ok := t.Run("enrol", func(t *testing.T) {
		vm := startVM(t, machine(vars, tpm))
		l, err := vm.Expect("awaits approval", attestTimeout)
		if err != nil {
			t.Fatalf("the agent did not wait for approval: %v\n%s", err, vm.Tail(40))
		}
		t.Logf("console %s", l)
		m := regexp.MustCompile(`EK (sha256:[0-9a-f]{64})`).FindStringSubmatch(l.Text)
		if m == nil {
			t.Fatalf("no EK fingerprint on the console: %s", l.Text)
		}
		if p := tpmOf(t, s, mac); p.Pending != m[1] || p.EK != "" {
			t.Fatalf("store: %+v, want %s pending", p, m[1])
		}
		p, err := s.DB().ApproveTPM(context.Background(), mac, m[1]) // the EK the console showed, as overboot machine approve --ek
		if err != nil || p.EK != m[1] {
			t.Fatalf("approve: %+v %v", p, err)
		}
		expectAttested(t, s, vm, mac, host)
		if p := tpmOf(t, s, mac); p.EK != m[1] || p.Baseline == "" {
			t.Errorf("after the first attested boot: %+v, want EK %s and a baseline", p, m[1])
		}
	})
	if !ok {
		return
	}
	enrolled := tpmOf(t, s, mac)
	if !t.Run("reboot", func(t *testing.T) {
		expectAttested(t, s, startVM(t, machine(vars, tpm)), mac, host)
		if p := tpmOf(t, s, mac); p.EK != enrolled.EK || p.Baseline != enrolled.Baseline {
			t.Errorf("the enrolment changed: %+v, was %+v", p, enrolled)
		}
	}) {
		return
	}
	// Secure Boot off on the LAN: shim (insecure mode) and Debian's GRUB
	// boot the kernel, but GRUB then starts it without its EFI stub (the
	// kernel's efi: line names neither the RNG seed nor the TPMEventLog
	// the stub installs), so the kernel has no event log and the agent
	// has no evidence to send: no
	// document, the server never sees evidence. Not counted as an attack
	// refused (the agent stops itself; an attacker's would not): the
	// secure-boot-off attack of the user-network machine below boots
	// the kernel's stub and reaches the server's check.
	t.Run("secure-boot-off-grub", func(t *testing.T) {
		vm := startVM(t, machine(varsCopy(t, OVMFVars), tpm))
		expectNoDocument(t, s, vm, mac, "read the firmware's TPM event log", enrolled)
		for _, l := range vm.Lines() {
			if strings.Contains(l.Text, "efi: SMBIOS") {
				t.Logf("console %s", l)
				if strings.Contains(l.Text, "TPMEventLog") {
					t.Errorf("the kernel has an event log, yet the agent read none")
				}
			}
		}
		if !vm.Contains("Secure boot disabled") {
			t.Errorf("the kernel does not say Secure Boot is off")
		}
	})
	attack(t, "copied-mac", func(t *testing.T) {
		vm := startVM(t, machine(varsCopy(t, OVMFVarsMS), tpmDir(t)))
		expectRefused(t, s, logs, vm, mac, "is enrolled with TPM EK "+enrolled.EK, enrolled)
		if p := tpmOf(t, s, mac); p.Refused == "" || p.Refused == enrolled.EK {
			t.Errorf("the other EK is not recorded as refused: %+v", p)
		}
	})
}

// attestRecorder sits between the machines and the server and keeps
// what they POST to the attestation URLs (the last of each).
type attestRecorder struct {
	h http.Handler

	mu              sync.Mutex
	start, evidence []byte
}

func (r *attestRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodPost && strings.HasPrefix(req.URL.Path, "/attest/") {
		body, err := io.ReadAll(io.LimitReader(req.Body, boot.MaxAttestSize+1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		r.mu.Lock()
		if strings.HasPrefix(req.URL.Path, "/attest/evidence/") {
			r.evidence = body
		} else {
			r.start = body
		}
		r.mu.Unlock()
	}
	r.h.ServeHTTP(w, req)
}

func (r *attestRecorder) bodies() (start, evidence []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.start, r.evidence
}

// slirpBed is a machine on QEMU's user network: its DHCP names the
// shim, its TFTP serves a directory the test fills as a machine's
// network path would (the server's shim and GRUB, the GRUB config the
// server renders for the machine, the blobs it names), and 10.0.2.100
// is the server on 127.0.0.1, so the test, from 127.0.0.1 too, asks the
// server what GRUB would.
type slirpBed struct {
	s    *server.Server
	logs *lockedLog
	rec  *attestRecorder
	addr string // the server's HTTP, 127.0.0.1:PORT
	data string
	shim string // the server's shim and GRUB (its configuration's)
	grub string
	mac  string
	vars string
	tpm  string
}

// grubConfig is the server's GRUB config for the machine, as GRUB asks
// it (a new boot, a new attest token).
func (b *slirpBed) grubConfig(t *testing.T) string {
	t.Helper()
	return string(b.get(t, "/grub?mac="+b.mac+"&buildarch=x86_64&platform=efi"))
}

func (b *slirpBed) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + b.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", path, resp.Status, err)
	}
	return body
}

var blobRE = regexp.MustCompile(`/blobs/sha256/([0-9a-f]{64})`)

// boot fills a TFTP directory with cfg and what it names (change may
// alter the directory after) and boots the machine from it.
func (b *slirpBed) boot(t *testing.T, cfg string, change func(dir string)) *VM {
	t.Helper()
	dir := t.TempDir()
	// What the server's TFTP serves as shimx64.efi and grubx64.efi.
	for f, src := range map[string]string{server.ShimFile: b.shim, server.GRUBFile: b.grub} {
		if err := copyFile(src, filepath.Join(dir, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "grub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "grub", "grub.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range blobRE.FindAllStringSubmatch(cfg, -1) {
		if err := os.WriteFile(filepath.Join(blobs, m[1]), b.get(t, server.BlobPrefix+m[1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if change != nil {
		change(dir)
	}
	return startVM(t, Options{PXE: true, TFTPDir: dir, BootFile: server.ShimFile, MAC: b.mac, UEFIVars: b.vars, SecureBoot: true, NoNICROM: true, TPMState: b.tpm,
		Forwards: []Forward{{GuestPort: 80, HostAddr: b.addr}}})
}

// evilCPIO is a newc cpio archive of one file, as an attacker would
// append to an initramfs (or give GRUB as one more).
func evilCPIO(t *testing.T) []byte {
	t.Helper()
	extra := t.TempDir()
	if err := os.WriteFile(filepath.Join(extra, "evil"), []byte("#!/bin/sh\necho owned\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-o", "-H", "newc", "--quiet")
	cmd.Dir, cmd.Stdin = extra, strings.NewReader("evil\n")
	arch, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio: %v", err)
	}
	return arch
}

// initrdRE is the initrd line of a GRUB config (package server/grub).
var initrdRE = regexp.MustCompile(`(?m)^(\s*if initrd .*); then$`)

// linuxRE is the kernel's line of a GRUB config (package server/grub).
var linuxRE = regexp.MustCompile(`(?m)^(\s*if linux \S+ .*); then$`)

// attestArg is the overboot.attest URL of a GRUB config.
var attestArg = regexp.MustCompile(`overboot\.attest=([^\s']+)`)

func slirpAttested(t *testing.T, a *Artifacts, attack func(*testing.T, string, func(*testing.T))) {
	const mac, host = "52:54:00:5c:00:02", "lab-tpm-path"
	data := filepath.Join(t.TempDir(), "data")
	conf := fmt.Sprintf("[server]\nurl = http://%s\n\n%s\n[machine %s]\nhostname = %s\n", GuestServer, attestProfile(a, "tpm-first-use = yes\n"), mac, host)
	cfg, err := config.Parse("slirp.conf", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Data = data
	logs := &lockedLog{}
	s, err := server.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rec := &attestRecorder{h: s.Handler()}
	b := &slirpBed{s: s, logs: logs, rec: rec, addr: serveHTTP(t, rec), data: data, shim: cfg.Shim, grub: cfg.GRUBNet, mac: mac, vars: varsCopy(t, OVMFVarsMS), tpm: tpmDir(t)}
	defer func() {
		t.Logf("server, attestation:\n%s", strings.Join(attestLines(logs.String()), "\n"))
	}()

	var honestStart, honest []byte
	if !t.Run("honest", func(t *testing.T) {
		vm := b.boot(t, b.grubConfig(t), nil)
		expectAttested(t, s, vm, mac, host)
		honestStart, honest = rec.bodies()
		for _, e := range grubEvents(honest) {
			t.Logf("event %s", e)
		}
		if p := tpmOf(t, s, mac); p.EK == "" || p.Baseline == "" {
			t.Errorf("no TPM pinned at first use, or no baseline: %+v", p)
		}
	}) {
		return
	}
	enrolled := tpmOf(t, s, mac)
	showEvents := func(t *testing.T) {
		if t.Failed() {
			_, ev := rec.bodies()
			t.Logf("PCR 8/9 events of the last evidence:\n%s", strings.Join(grubEvents(ev), "\n"))
		}
	}
	attack(t, "changed-initramfs", func(t *testing.T) {
		defer showEvents(t)
		cfg := b.grubConfig(t)
		vm := b.boot(t, cfg, func(dir string) {
			// The initramfs is the config's second blob (after the
			// kernel): append a cpio archive of one file to it.
			m := blobRE.FindAllStringSubmatch(cfg, -1)
			if len(m) < 2 {
				t.Fatalf("no initrd in the config:\n%s", cfg)
			}
			arch := evilCPIO(t)
			f, err := os.OpenFile(filepath.Join(dir, "blobs", "sha256", m[1][1]), os.O_APPEND|os.O_WRONLY, 0)
			if err == nil {
				_, err = f.Write(arch)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				t.Fatal(err)
			}
		})
		expectRefused(t, s, logs, vm, mac, "an initrd served was not loaded by GRUB", enrolled)
	})
	attack(t, "extra-initrd", func(t *testing.T) {
		defer showEvents(t)
		// The served initramfs untouched, one more archive after it.
		cfg := b.grubConfig(t)
		if !initrdRE.MatchString(cfg) {
			t.Fatalf("no initrd line in the config:\n%s", cfg)
		}
		vm := b.boot(t, initrdRE.ReplaceAllString(cfg, "$1 /evil.cpio; then"), func(dir string) {
			if err := os.WriteFile(filepath.Join(dir, "evil.cpio"), evilCPIO(t), 0o644); err != nil {
				t.Fatal(err)
			}
		})
		expectRefused(t, s, logs, vm, mac, "GRUB loaded a file that was not served", enrolled)
	})
	attack(t, "changed-cmdline", func(t *testing.T) {
		defer showEvents(t)
		cfg := b.grubConfig(t)
		if !linuxRE.MatchString(cfg) {
			t.Fatalf("no linux line in the config:\n%s", cfg)
		}
		vm := b.boot(t, linuxRE.ReplaceAllString(cfg, "$1 init=/bin/sh; then"), nil)
		expectRefused(t, s, logs, vm, mac, "the command line was changed", enrolled)
	})
	attack(t, "secure-boot-off", func(t *testing.T) {
		defer showEvents(t)
		// Secure Boot off, the attacker boots what the server would have
		// GRUB boot (its kernel, initramfs and command line, a fresh
		// token) by a loader that runs the kernel's EFI stub, which hands
		// the kernel the firmware's event log: QEMU's direct kernel boot.
		m := linuxRE.FindStringSubmatch(b.grubConfig(t))
		if m == nil {
			t.Fatal("no linux line in the config")
		}
		var args []string
		for _, w := range regexp.MustCompile(`'([^']*)'`).FindAllStringSubmatch(m[1], -1)[1:] {
			args = append(args, w[1])
		}
		vm := startVM(t, Options{Kernel: a.Kernel, Initrd: a.Initramfs, Append: strings.Join(args, " "), MAC: mac,
			UEFIVars: varsCopy(t, OVMFVars), SecureBoot: true, TPMState: b.tpm, Forwards: []Forward{{GuestPort: 80, HostAddr: b.addr}}})
		expectRefused(t, s, logs, vm, mac, "Secure Boot is off", enrolled)
		for _, l := range vm.Lines() {
			if strings.Contains(l.Text, "Secure boot disabled") || strings.Contains(l.Text, "efi: SMBIOS") {
				t.Logf("console %s", l)
			}
		}
	})
	attack(t, "replayed-evidence", func(t *testing.T) {
		start := honestStart
		if start == nil || honest == nil {
			t.Fatal("nothing recorded of the honest boot")
		}
		m := attestArg.FindStringSubmatch(b.grubConfig(t))
		if m == nil {
			t.Fatal("no overboot.attest in the config")
		}
		post := func(u string, body []byte) (int, []byte) {
			p, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Post("http://"+b.addr+p.Path, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, out
		}
		code, out := post(m[1], start)
		var ch boot.AttestChallenge
		if code != http.StatusOK || json.Unmarshal(out, &ch) != nil || ch.Evidence == "" {
			t.Fatalf("the recorded start: HTTP %d %s", code, out)
		}
		t.Logf("a new challenge, nonce %x (the honest boot quoted over another)", ch.Nonce[:8])
		code, out = post(ch.Evidence, honest)
		var sealed boot.AttestSealed
		if code != http.StatusForbidden || json.Unmarshal(out, &sealed) == nil {
			t.Errorf("the replayed evidence: HTTP %d %s, want 403", code, out)
		}
		const reason = "the proof does not match"
		if !strings.Contains(string(out), reason) {
			t.Errorf("the refusal %q does not name the proof", out)
		}
		t.Logf("refused: HTTP %d %s", code, strings.TrimSpace(string(out)))
		logged := false
		for _, l := range attestLines(logs.String()) {
			logged = logged || strings.Contains(l, `msg="attestation refused"`) && strings.Contains(l, reason)
		}
		if !logged {
			t.Errorf("the server log has no refusal naming the proof")
		}
		_, ev := lastBoot(t, s, mac)
		found := false
		for _, e := range ev {
			found = found || e.Phase == boot.PhaseAttest && e.Outcome == "failed" && strings.Contains(e.Message, reason)
		}
		if !found {
			t.Errorf("no attest failure in the boot's events: %+v", ev)
		}
		if p := tpmOf(t, s, mac); p.EK != enrolled.EK || p.Baseline != enrolled.Baseline {
			t.Errorf("the enrolment changed: %+v, was %+v", p, enrolled)
		}
	})
}
