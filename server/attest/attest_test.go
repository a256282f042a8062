package attest

import (
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-attestation/attest"
	"github.com/overboot/overboot/boot"
)

func TestGRUBCmdline(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		// The form of go-attestation's testdata (ubuntu_2104_shielded_vm):
		// "kernel_cmdline: /boot/vmlinuz-5.11.0-1006-gcp root=PARTUUID=... ro console=ttyS0 panic=-1".
		{[]string{"/boot/vmlinuz", "root=PARTUUID=x", "ro", "console=ttyS0"}, "/boot/vmlinuz root=PARTUUID=x ro console=ttyS0"},
		{[]string{"/k", "a b"}, `/k "a b"`},
		{[]string{"/k", `q"uo'te\`}, `/k q\"uo\'te\\`},
		{[]string{"/k", `\x41`}, `/k \x41`},
	} {
		if got := GRUBCmdline(tc.argv); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.argv, got, tc.want)
		}
	}
}

func digest(b []byte) boot.Digest {
	h := sha256.Sum256(b)
	d, _ := boot.ParseDigest("sha256:" + strings.ToLower(hexOf(h[:])))
	return d
}

func hexOf(b []byte) string {
	const x = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(x[c>>4])
		s.WriteByte(x[c&15])
	}
	return s.String()
}

// grubEvents are GRUB's events for a kernel, initrds and a command line,
// as GRUB 2.06 logs them.
func grubEvents(kernel []byte, initrds [][]byte, cmdline string) []attest.Event {
	file := func(name string, b []byte) attest.Event {
		h := sha256.Sum256(b)
		return attest.Event{Index: 9, Type: evIPL, Data: append([]byte(name), 0), Digest: h[:]}
	}
	str := func(prefix, s string) attest.Event {
		h := sha256.Sum256([]byte(s))
		return attest.Event{Index: 8, Type: evIPL, Data: append([]byte(prefix+s), 0), Digest: h[:]}
	}
	ev := []attest.Event{str("grub_cmd: ", "linux /k "+cmdline), file("/k", kernel), str("kernel_cmdline: ", cmdline)}
	for _, b := range initrds {
		ev = append(ev, file("/i", b))
	}
	return ev
}

func TestCheckGRUB(t *testing.T) {
	k, i, d := []byte("kernel"), []byte("initramfs"), []byte("driver")
	served := Served{Kernel: digest(k), Initrds: []boot.Digest{digest(i), digest(d)}, Cmdline: "/k overboot.attest=http://x/attest/t"}
	if err := checkGRUB(grubEvents(k, [][]byte{i, d}, served.Cmdline), served); err != nil {
		t.Fatalf("what was served: %v", err)
	}
	// What GRUB read before the kernel (its configs) is not what boots.
	cfg := sha256.Sum256([]byte("grub.cfg"))
	before := append([]attest.Event{{Index: 9, Type: evIPL, Data: []byte("/grub.cfg\x00"), Digest: cfg[:]}}, grubEvents(k, [][]byte{i, d}, served.Cmdline)...)
	if err := checkGRUB(before, served); err != nil {
		t.Errorf("a config read before the kernel: %v", err)
	}
	for _, tc := range []struct {
		name string
		ev   []attest.Event
		want error
	}{
		{"another kernel", grubEvents([]byte("kernel2"), [][]byte{i, d}, served.Cmdline), ErrKernel},
		{"changed initramfs", grubEvents(k, [][]byte{[]byte("initramfs2"), d}, served.Cmdline), ErrInitrd},
		{"no driver segment", grubEvents(k, [][]byte{i}, served.Cmdline), ErrInitrd},
		{"changed command line", grubEvents(k, [][]byte{i, d}, served.Cmdline+" init=/bin/sh"), ErrCmdline},
		{"no command line", slices.Delete(grubEvents(k, [][]byte{i, d}, served.Cmdline), 2, 3), ErrCmdline},
		{"an extra initrd", grubEvents(k, [][]byte{i, d, []byte("evil")}, served.Cmdline), ErrExtraFile},
		{"another kernel after the served one", append(grubEvents(k, [][]byte{i, d}, served.Cmdline), grubEvents([]byte("kernel2"), nil, served.Cmdline)...), ErrExtraFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkGRUB(tc.ev, served); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	// The log's text is not what the TPM measured: the digest wins.
	ev := grubEvents(k, [][]byte{i, d}, "/k other")
	ev[2].Data = append([]byte("kernel_cmdline: "+served.Cmdline), 0)
	if err := checkGRUB(ev, served); !errors.Is(err, ErrCmdline) || !strings.Contains(err.Error(), "not what PCR 8 measured") {
		t.Errorf("forged event data: %v", err)
	}
}

func TestVerifyOrder(t *testing.T) {
	// The proof is checked first: without the secret nothing else is looked at.
	secret := []byte("0123456789abcdef0123456789abcdef")
	nonce := []byte("nonce")
	_, err := Verify(Input{Secret: secret, Nonce: nonce, Evidence: boot.AttestEvidence{Proof: []byte("wrong")}})
	if !errors.Is(err, ErrProof) {
		t.Errorf("wrong proof: %v", err)
	}
	proof, _ := boot.AttestProof(secret, nonce)
	_, err = Verify(Input{Secret: secret, Nonce: nonce, AK: []byte("junk"), Evidence: boot.AttestEvidence{Proof: proof}})
	if !errors.Is(err, ErrQuote) {
		t.Errorf("right proof, bad AK: %v", err)
	}
}
