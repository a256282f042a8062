package attest

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-attestation/attest"
	"github.com/overboot/overboot/boot"
)

// Served is what the server served one boot: the digests of the blobs
// GRUB loads (content-addressed: a blob's digest is the SHA-256 GRUB
// measures) and the kernel command line as GRUB measures it.
type Served struct {
	Kernel  boot.Digest   `json:"kernel"`
	Initrds []boot.Digest `json:"initrds"`
	Cmdline string        `json:"cmdline"`
	// Loaders are the Authenticode SHA-256 hashes (hex) of the boot
	// loaders served, shim then GRUB: what the firmware measures into
	// PCR 4 when it starts each. KernelPE is the kernel's, which PCR 4
	// holds too when the kernel is started by LoadImage. Empty (a boot
	// served by an older server): PCR 4 is not checked by content.
	Loaders  []string `json:"loaders,omitempty"`
	KernelPE string   `json:"kernel_pe,omitempty"`
}

// Baseline is the firmware PCRs (FirmwarePCRs, SHA-256 bank) of a
// machine's first attested boot since its TPM was approved, by index,
// in hex.
type Baseline map[int]string

// FirmwarePCRs are the PCRs that must not change between boots: the
// firmware (0), option ROMs (2) and the Secure Boot policy (7). The boot
// loaders' PCR (4) is checked against what the server serves instead
// (checkLoaders), so a shim or GRUB update needs no new baseline.
var FirmwarePCRs = []int{0, 2, 7}

// QuotedPCRs are the SHA-256 PCRs the evidence must quote: the firmware
// PCRs and GRUB's (8: commands and command line; 9: files).
var QuotedPCRs = []int{0, 2, 4, 7, 8, 9}

// PCR names for the errors.
var pcrNames = map[int]string{0: "firmware", 2: "option ROMs", 4: "boot loaders", 7: "Secure Boot policy"}

// The refusals, one per check, in the order Verify makes them.
var (
	ErrProof       = errors.New("the proof does not match: the AK is not in the TPM the challenge was made for, or the evidence is replayed")
	ErrQuote       = errors.New("the quote does not verify")
	ErrPCRsMissing = errors.New("the quote lacks PCRs it must cover")
	ErrEventLog    = errors.New("the event log does not replay to the quoted PCRs")
	ErrSecureBoot  = errors.New("the Secure Boot state cannot be read from the event log")
	ErrSecureOff   = errors.New("Secure Boot is off")
	ErrKernel      = errors.New("the kernel GRUB loaded is not the one served")
	ErrInitrd      = errors.New("an initrd served was not loaded by GRUB")
	ErrCmdline     = errors.New("the command line was changed")
	ErrExtraFile   = errors.New("GRUB loaded a file that was not served")
	ErrFirmware    = errors.New("changed since enrolment")
	ErrLoader      = errors.New("the firmware started an EFI application the server did not serve")
	ErrLoaderGone  = errors.New("a boot loader the server served is not among PCR 4's measurements")
)

// Input is what Verify checks.
type Input struct {
	Secret   []byte // the credential's secret (the session's)
	Nonce    []byte // the challenge's nonce
	AK       []byte // the AK's TPMT_PUBLIC, as the challenge checked it
	Evidence boot.AttestEvidence
	Served   Served
	Baseline Baseline // nil: none recorded yet (the first boot since approval)
}

// Verify checks the evidence, in order: the proof of the credential's
// activation, the quotes' signatures and nonce, the event log replayed
// against the quoted PCRs, Secure Boot on, what GRUB measured against
// what was served, the firmware PCRs against the baseline. Its error
// wraps the Err of the first check that failed. On success it returns
// this boot's firmware PCRs (the baseline to record when there was none).
func Verify(in Input) (Baseline, error) {
	if !boot.CheckAttestProof(in.Secret, in.Nonce, in.Evidence.Proof) {
		return nil, ErrProof
	}
	ak, err := attest.ParseAKPublic(in.AK)
	if err != nil {
		return nil, fmt.Errorf("%w: the AK: %v", ErrQuote, err)
	}
	var pcrs, pcrs256 []attest.PCR
	seen := map[[2]int]bool{}
	for _, p := range in.Evidence.PCRs {
		h := crypto.SHA256
		if p.Alg == "sha1" {
			h = crypto.SHA1
		}
		if len(p.Digest) != h.Size() {
			return nil, fmt.Errorf("%w: PCR %d (%s) of %d bytes", ErrQuote, p.Index, p.Alg, len(p.Digest))
		}
		if seen[[2]int{p.Index, int(h)}] {
			return nil, fmt.Errorf("%w: PCR %d (%s) given twice", ErrQuote, p.Index, p.Alg)
		}
		seen[[2]int{p.Index, int(h)}] = true
		pcrs = append(pcrs, attest.PCR{Index: p.Index, Digest: p.Digest, DigestAlg: h})
	}
	quotes := make([]attest.Quote, len(in.Evidence.Quotes))
	for i, q := range in.Evidence.Quotes {
		quotes[i] = attest.Quote{Quote: q.Quote, Signature: q.Signature}
	}
	if err := ak.VerifyAll(quotes, pcrs, in.Nonce); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrQuote, err)
	}
	for _, p := range pcrs {
		if p.DigestAlg == crypto.SHA256 {
			pcrs256 = append(pcrs256, p)
		}
	}
	var missing []string
	for _, i := range QuotedPCRs {
		if !slices.ContainsFunc(pcrs256, func(p attest.PCR) bool { return p.Index == i }) {
			missing = append(missing, fmt.Sprint(i))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: sha256 PCRs %s", ErrPCRsMissing, strings.Join(missing, ", "))
	}
	el, err := attest.ParseEventLog(in.Evidence.EventLog)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEventLog, err)
	}
	events, err := el.Verify(pcrs256)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEventLog, err)
	}
	sb, err := attest.ParseSecurebootState(events)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSecureBoot, err)
	}
	if !sb.Enabled {
		return nil, ErrSecureOff
	}
	if err := checkLoaders(events, in.Served); err != nil {
		return nil, err
	}
	if err := checkGRUB(events, in.Served); err != nil {
		return nil, err
	}
	now := Baseline{}
	for _, p := range pcrs256 {
		if slices.Contains(FirmwarePCRs, p.Index) {
			now[p.Index] = hex.EncodeToString(p.Digest)
		}
	}
	if in.Baseline != nil {
		for _, i := range FirmwarePCRs {
			if in.Baseline[i] != now[i] {
				return nil, fmt.Errorf("PCR %d (%s) %w", i, pcrNames[i], ErrFirmware)
			}
		}
	}
	return now, nil
}

// EV_IPL, the type of GRUB's events; EV_EFI_BOOT_SERVICES_APPLICATION,
// the firmware's measurement of an EFI application it starts.
const (
	evIPL        = 0x0d
	evEFIBootApp = 0x80000003
)

// checkLoaders checks PCR 4's EFI applications against what the server
// serves: each one shim, GRUB (or the kernel, when it was started by
// LoadImage), and shim and GRUB both there. Another application (an
// older signed GRUB, another boot loader) is refused, however it is
// signed.
func checkLoaders(events []attest.Event, served Served) error {
	if len(served.Loaders) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, e := range events {
		if e.Index != 4 || uint32(e.Type) != evEFIBootApp {
			continue
		}
		d := hex.EncodeToString(e.Digest)
		if !slices.Contains(served.Loaders, d) && d != served.KernelPE {
			return fmt.Errorf("%w: Authenticode sha256:%s", ErrLoader, d)
		}
		seen[d] = true
	}
	for _, l := range served.Loaders {
		if !seen[l] {
			return fmt.Errorf("%w: Authenticode sha256:%s", ErrLoaderGone, l)
		}
	}
	return nil
}

const cmdlinePrefix = "kernel_cmdline: "

// checkGRUB checks GRUB's verified events (PCR 8 and 9) against served:
// the kernel and each initrd among the files GRUB read, and, from the
// served kernel's first reading on, nothing else (an extra initrd, an
// image chainloaded: what runs would not be what was served; what GRUB
// read before the kernel, its configs, is overridden by the linux
// command); every kernel_cmdline the served one. A served file missing
// is named before an unserved one (a changed initrd is both).
func checkGRUB(events []attest.Event, served Served) error {
	files := map[string]bool{}
	allowed := map[string]bool{served.Kernel.Hex(): true}
	for _, d := range served.Initrds {
		allowed[d.Hex()] = true
	}
	var cmdlines []string
	var unserved error
	// The kernel GRUB boots is the file its last linux command read:
	// the last file before the last kernel_cmdline, which that command
	// measures after the kernel. Every file after it is an initrd (a
	// later linux command would measure its own command line).
	lastCmdline := -1
	for i, e := range events {
		if uint32(e.Type) != evIPL {
			continue
		}
		switch e.Index {
		case 9:
			d := hex.EncodeToString(e.Digest)
			if files[served.Kernel.Hex()] && !allowed[d] && unserved == nil {
				unserved = fmt.Errorf("%w: %q (sha256:%s) after the kernel", ErrExtraFile, bytes.TrimSuffix(e.Data, []byte{0}), d)
			}
			files[d] = true
		case 8:
			rest, ok := bytes.CutPrefix(e.Data, []byte(cmdlinePrefix))
			if !ok {
				continue
			}
			rest = bytes.TrimSuffix(rest, []byte{0})
			// The data is the log's word; the digest is the TPM's.
			if h := sha256.Sum256(rest); !bytes.Equal(h[:], e.Digest) {
				return fmt.Errorf("%w: the event log's kernel_cmdline %q is not what PCR 8 measured", ErrCmdline, redactTokens(string(rest)))
			}
			cmdlines = append(cmdlines, string(rest))
			lastCmdline = i
		}
	}
	if !files[served.Kernel.Hex()] {
		return fmt.Errorf("%w: %s is not among PCR 9's measurements", ErrKernel, served.Kernel)
	}
	for _, d := range served.Initrds {
		if !files[d.Hex()] {
			return fmt.Errorf("%w: %s is not among PCR 9's measurements", ErrInitrd, d)
		}
	}
	if unserved != nil {
		return unserved
	}
	if err := checkCmdlines(cmdlines, served.Cmdline); err != nil {
		return err
	}
	return checkBooted(events, lastCmdline, served)
}

// checkCmdlines checks that GRUB measured a kernel command line, and
// only the served one.
func checkCmdlines(cmdlines []string, served string) error {
	if len(cmdlines) == 0 {
		return fmt.Errorf("%w: no kernel_cmdline measured in PCR 8", ErrCmdline)
	}
	for _, c := range cmdlines {
		if c != served {
			return fmt.Errorf("%w: %q, served %q", ErrCmdline, redactTokens(c), redactTokens(served))
		}
	}
	return nil
}

// checkBooted checks that what GRUB booted is what was served, not only
// among what it read: the last file before the last kernel_cmdline
// (events[last]) is the kernel, and each file after it a served initrd
// (an extra initrd, another kernel loaded and then the served one
// again, a config read after the kernel: refused).
func checkBooted(events []attest.Event, last int, served Served) error {
	file := func(e attest.Event) bool { return e.Index == 9 && uint32(e.Type) == evIPL }
	name := func(e attest.Event) string { return strings.TrimRight(string(e.Data), "\x00") }
	kernel := -1
	for i := last - 1; i >= 0; i-- {
		if file(events[i]) {
			kernel = i
			break
		}
	}
	if kernel < 0 || hex.EncodeToString(events[kernel].Digest) != served.Kernel.Hex() {
		got := "no file"
		if kernel >= 0 {
			got = fmt.Sprintf("sha256:%x (%q)", events[kernel].Digest, name(events[kernel]))
		}
		return fmt.Errorf("%w: GRUB booted %s, served %s", ErrKernel, got, served.Kernel)
	}
	for _, e := range events[last+1:] {
		if file(e) && !slices.ContainsFunc(served.Initrds, func(d boot.Digest) bool { return d.Hex() == hex.EncodeToString(e.Digest) }) {
			return fmt.Errorf("%w: sha256:%x (%q) after the kernel", ErrExtraFile, e.Digest, name(e))
		}
	}
	return nil
}

// tokenInURL is a single-use token at the end of a URL path on a
// command line (overboot.attest=.../attest/TOKEN and the like).
var tokenInURL = regexp.MustCompile(`/[0-9a-f]{64}\b`)

// redactTokens hides the tokens of cmdline: a refusal's reason goes to
// the log and the status page, which show no token, spent or not.
func redactTokens(cmdline string) string {
	return tokenInURL.ReplaceAllString(cmdline, "/…")
}

// GRUBCmdline is the kernel command line GRUB measures for a linux
// command of argv (the kernel's file name first), as GRUB 2.06's
// grub_create_loader_cmdline writes it: arguments joined by single
// spaces, one with a space in double quotes, \ ' and " escaped with a
// backslash (a \xHH escape is kept as it is).
func GRUBCmdline(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		space := strings.Contains(a, " ")
		if space {
			b.WriteByte('"')
		}
		for j := 0; j < len(a); j++ {
			c := a[j]
			if c == '\\' && j+3 < len(a) && a[j+1] == 'x' && isHex(a[j+2]) && isHex(a[j+3]) {
				b.WriteString(a[j : j+4])
				j += 3
				continue
			}
			if c == '\\' || c == '\'' || c == '"' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		if space {
			b.WriteByte('"')
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
