package vmtest

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/overboot/overboot/internal/testneed"
)

// A site's own kernel signing key (docs/network.md, "Signing your own
// kernels"). The "own db key" route: the site's certificate is added to
// the firmware's db beside Microsoft's (so Debian's Microsoft-signed shim
// still runs), the site signs its kernel with sbsign, and shim, which
// trusts db as well as Debian's CA, lets GRUB boot it. The MOK route:
// the certificate in shim's MokList instead, db as shipped. The site key
// here is OVMF's snakeoil key (package ovmf, /usr/share/ovmf/PkKek-1-snakeoil.*).
//
// Debian's OVMF_VARS_4M.snakeoil.fd enrols the snakeoil certificate
// alone in PK, KEK and db (no Microsoft CA; TestOwnKeyVars checks it):
// under it Debian's Microsoft-signed shim cannot run, so the tests start
// from OVMF_VARS_4M.ms.fd and add the snakeoil certificate to its db
// (addDBCert), as virt-fw-vars --add-db does (virt-firmware is not in
// Debian 12), or put it in MokList (putVar).

const (
	snakeoilKey  = "/usr/share/ovmf/PkKek-1-snakeoil.key" // PKCS#8, encrypted
	snakeoilCert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
	snakeoilPass = "snakeoil" // README.Debian of package ovmf
)

// signTools are the command-line tools a site signs with.
type signTools struct{ openssl, sbsign, sbattach, sbverify string }

// needSigning needs sbsigntool, openssl and OVMF's snakeoil key.
func needSigning(t *testing.T) signTools {
	t.Helper()
	st := signTools{"/usr/bin/openssl", "/usr/bin/sbsign", "/usr/bin/sbattach", "/usr/bin/sbverify"}
	testneed.File(t, st.openssl, "openssl")
	for _, p := range []string{st.sbsign, st.sbattach, st.sbverify} {
		testneed.File(t, p, "sbsigntool")
	}
	testneed.File(t, snakeoilKey, "ovmf")
	testneed.File(t, snakeoilCert, "ovmf")
	return st
}

func (st signTools) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unsigned writes a copy of kernel without its signatures.
func (st signTools) unsigned(t *testing.T, kernel, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	if err := copyFile(kernel, out, 0o644); err != nil {
		t.Fatal(err)
	}
	st.run(t, st.sbattach, "--remove", out)
	if l := st.run(t, st.sbverify, "--list", out); !strings.Contains(l, "No signature table present") {
		t.Fatalf("%s still signed:\n%s", out, l)
	}
	return out
}

// sign writes kernel signed by key and cert alone, as a site does:
// Debian's signature removed (sbattach --remove), the site's added
// (sbsign), checked to be the only one (sbverify --list, --cert).
func (st signTools) sign(t *testing.T, kernel, key, cert, name string) string {
	t.Helper()
	bare := st.unsigned(t, kernel, name+".unsigned")
	out := filepath.Join(t.TempDir(), name)
	st.run(t, st.sbsign, "--key", key, "--cert", cert, "--output", out, bare)
	l := st.run(t, st.sbverify, "--list", out)
	sigs := 0
	for _, line := range strings.Split(l, "\n") {
		if strings.HasPrefix(line, "signature ") {
			sigs++
		}
	}
	if sigs != 1 || strings.Contains(l, "Debian") {
		t.Fatalf("%s: want one signature, the site's:\n%s", out, l)
	}
	st.run(t, st.sbverify, "--cert", cert, out)
	return out
}

// snakeoil decrypts OVMF's snakeoil key for sbsign (which would ask for
// the passphrase on a terminal) into the test's temp dir.
func (st signTools) snakeoil(t *testing.T) (key, cert string) {
	t.Helper()
	key = filepath.Join(t.TempDir(), "snakeoil.key")
	st.run(t, st.openssl, "pkey", "-in", snakeoilKey, "-passin", "pass:"+snakeoilPass, "-out", key)
	return key, snakeoilCert
}

// freshKey makes a key and self-signed certificate enrolled nowhere.
func (st signTools) freshKey(t *testing.T) (key, cert string) {
	t.Helper()
	dir := t.TempDir()
	key, cert = filepath.Join(dir, "fresh.key"), filepath.Join(dir, "fresh.pem")
	st.run(t, st.openssl, "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
		"-subj", "/CN=overboot test key enrolled nowhere", "-keyout", key, "-out", cert)
	return key, cert
}

// The UEFI authenticated variable store in an OVMF_VARS file (edk2's
// VariableFormat.h): after the firmware volume header, a store header
// (gEfiAuthenticatedVariableGuid, size, format, state) and the variables,
// each 4-byte aligned: a 60-byte AUTHENTICATED_VARIABLE_HEADER, the
// name (UTF-16LE, NUL-terminated) and the data.
const (
	varStartID   = 0x55aa
	varAdded     = 0x3f // VAR_ADDED: the live copy
	varDeleted   = 0xfd // VAR_DELETED, and-ed into State
	varHeaderLen = 60
	// Attributes of a variable.
	efiNonVolatile = 0x1
	efiBootService = 0x2
	storeHdrLen    = 28
)

var (
	authVarStoreGUID = efiGUID("aaf32c78-947b-439a-a180-2e144ec37792")
	imageSecDBGUID   = efiGUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f") // db, dbx
	shimLockGUID     = efiGUID("605dab50-e046-4300-abb6-3dd810dd8b23") // MokList
	certX509GUID     = efiGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
	// ownerGUID owns the test's db entry (EFI_SIGNATURE_DATA.SignatureOwner):
	// any GUID; this one is the test's.
	ownerGUID = efiGUID("0be7b0a1-5e1f-4c2b-9d3a-6f7665726b74")
)

// efiGUID is s in EFI's byte order (the first three fields little-endian).
func efiGUID(s string) [16]byte {
	h, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(h) != 16 {
		panic("bad GUID " + s)
	}
	var g [16]byte
	copy(g[:], h)
	g[0], g[1], g[2], g[3] = h[3], h[2], h[1], h[0]
	g[4], g[5] = h[5], h[4]
	g[6], g[7] = h[7], h[6]
	return g
}

// efiVar is one variable record of a store.
type efiVar struct {
	off   int // of its header in the file
	state byte
	attrs uint32
	name  string
	guid  [16]byte
	data  []byte
	end   int // of the record, unaligned
}

// efiVars walks the variable store of an OVMF_VARS image: the records and
// where the free space starts.
func efiVars(b []byte) (vars []efiVar, free, storeEnd int, err error) {
	if len(b) < 0x48 || string(b[0x28:0x2c]) != "_FVH" {
		return nil, 0, 0, errors.New("not a firmware volume (no _FVH)")
	}
	store := int(binary.LittleEndian.Uint16(b[0x30:]))
	if store+storeHdrLen > len(b) || !bytes.Equal(b[store:store+16], authVarStoreGUID[:]) {
		return nil, 0, 0, errors.New("no authenticated variable store after the volume header")
	}
	storeEnd = store + int(binary.LittleEndian.Uint32(b[store+16:]))
	if storeEnd > len(b) {
		return nil, 0, 0, fmt.Errorf("variable store of %d bytes overruns the file", storeEnd-store)
	}
	p := align4(store + storeHdrLen)
	for p+varHeaderLen <= storeEnd && binary.LittleEndian.Uint16(b[p:]) == varStartID {
		ns := int(binary.LittleEndian.Uint32(b[p+36:]))
		ds := int(binary.LittleEndian.Uint32(b[p+40:]))
		end := p + varHeaderLen + ns + ds
		if ns%2 != 0 || end > storeEnd {
			return nil, 0, 0, fmt.Errorf("variable at %#x: name %d, data %d bytes: corrupt", p, ns, ds)
		}
		u := make([]uint16, ns/2)
		for i := range u {
			u[i] = binary.LittleEndian.Uint16(b[p+varHeaderLen+2*i:])
		}
		v := efiVar{off: p, state: b[p+2], attrs: binary.LittleEndian.Uint32(b[p+4:]), name: strings.TrimRight(string(utf16.Decode(u)), "\x00"), data: b[p+varHeaderLen+ns : end], end: end}
		copy(v.guid[:], b[p+44:p+60])
		vars = append(vars, v)
		p = align4(end)
	}
	return vars, p, storeEnd, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// live returns the live record of name/guid among vars.
func live(vars []efiVar, name string, guid [16]byte) (efiVar, int) {
	var found efiVar
	n := 0
	for _, v := range vars {
		if v.state == varAdded && v.name == name && v.guid == guid {
			found = v
			n++
		}
	}
	return found, n
}

// certList is an EFI_SIGNATURE_LIST of one X.509 certificate (DER).
func certList(der []byte, owner [16]byte) []byte {
	var l bytes.Buffer
	l.Write(certX509GUID[:])
	binary.Write(&l, binary.LittleEndian, [3]uint32{uint32(28 + 16 + len(der)), 0, uint32(16 + len(der))})
	l.Write(owner[:])
	l.Write(der)
	return l.Bytes()
}

// putVar sets variable name/guid in the OVMF_VARS image b, as the
// firmware itself updates a variable: its live record (if any) marked
// deleted, a new one appended in the free space, with the old record's
// attributes and timestamp, or else attrs and no timestamp.
func putVar(b []byte, name string, guid [16]byte, attrs uint32, data []byte) ([]byte, error) {
	b = bytes.Clone(b)
	vars, free, storeEnd, err := efiVars(b)
	if err != nil {
		return nil, err
	}
	old, n := live(vars, name, guid)
	if n > 1 {
		return nil, fmt.Errorf("%d live %s variables", n, name)
	}
	var rec []byte
	if n == 1 {
		nameSize := int(binary.LittleEndian.Uint32(b[old.off+36:]))
		rec = append(rec, b[old.off:old.off+varHeaderLen+nameSize]...)
	} else {
		u := utf16.Encode([]rune(name + "\x00"))
		rec = make([]byte, varHeaderLen, varHeaderLen+2*len(u))
		binary.LittleEndian.PutUint16(rec, varStartID)
		binary.LittleEndian.PutUint32(rec[4:], attrs)
		binary.LittleEndian.PutUint32(rec[36:], uint32(2*len(u)))
		copy(rec[44:], guid[:])
		for _, c := range u {
			rec = binary.LittleEndian.AppendUint16(rec, c)
		}
	}
	rec[2] = varAdded
	binary.LittleEndian.PutUint32(rec[40:], uint32(len(data)))
	rec = append(rec, data...)
	if free+len(rec) > storeEnd {
		return nil, fmt.Errorf("no room for %s (%d bytes) in the variable store", name, len(data))
	}
	for _, c := range b[free : free+len(rec)] {
		if c != 0xff {
			return nil, fmt.Errorf("the store's free space at %#x is not erased", free)
		}
	}
	copy(b[free:], rec)
	if n == 1 {
		b[old.off+2] &= varDeleted
	}
	return b, nil
}

// addDBCert adds the DER certificate der to the db of the OVMF_VARS
// image b: db's signature lists and one more.
func addDBCert(b, der []byte, owner [16]byte) ([]byte, error) {
	vars, _, _, err := efiVars(b)
	if err != nil {
		return nil, err
	}
	db, n := live(vars, "db", imageSecDBGUID)
	if n != 1 {
		return nil, fmt.Errorf("%d live db variables, want 1", n)
	}
	return putVar(b, "db", imageSecDBGUID, 0, append(bytes.Clone(db.data), certList(der, owner)...))
}

// dbCerts returns the X.509 certificates of a db's signature lists.
func dbCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for len(data) > 0 {
		if len(data) < 28 {
			return nil, errors.New("short signature list")
		}
		size := int(binary.LittleEndian.Uint32(data[16:]))
		hdr := int(binary.LittleEndian.Uint32(data[20:]))
		sig := int(binary.LittleEndian.Uint32(data[24:]))
		if size < 28+hdr || size > len(data) || sig <= 16 {
			return nil, fmt.Errorf("signature list of %d bytes: corrupt", size)
		}
		if bytes.Equal(data[:16], certX509GUID[:]) {
			for p := 28 + hdr; p+sig <= size; p += sig {
				c, err := x509.ParseCertificate(data[p+16 : p+sig])
				if err != nil {
					return nil, err
				}
				certs = append(certs, c)
			}
		}
		data = data[size:]
	}
	return certs, nil
}

// siteVars is a machine's variable store: Microsoft's keys as shipped
// (OVMF_VARS_4M.ms.fd), plus the site's certificate (PEM) in db.
func siteVars(t *testing.T, certPEM string) string {
	t.Helper()
	return shippedVarsWith(t, certPEM, "OVMF_VARS.site.fd", func(b, der []byte) ([]byte, error) {
		return addDBCert(b, der, ownerGUID)
	})
}

// mokVars is a machine's variable store as shipped, plus the site's
// certificate in shim's MokList, as MokManager leaves it after a
// mokutil --import: a boot-services-only non-volatile variable (shim
// trusts no MokList a running system could write).
func mokVars(t *testing.T, certPEM string) string {
	t.Helper()
	return shippedVarsWith(t, certPEM, "OVMF_VARS.mok.fd", func(b, der []byte) ([]byte, error) {
		return putVar(b, "MokList", shimLockGUID, efiNonVolatile|efiBootService, certList(der, ownerGUID))
	})
}

// shippedVarsWith writes a copy of OVMFVarsMS changed by add, given the
// DER of the certificate in certPEM.
func shippedVarsWith(t *testing.T, certPEM, name string, add func(b, der []byte) ([]byte, error)) string {
	t.Helper()
	testneed.File(t, OVMFVarsMS, "ovmf")
	b, err := os.ReadFile(OVMFVarsMS)
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.ReadFile(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(p)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", certPEM)
	}
	out, err := add(b, blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", OVMFVarsMS, err)
	}
	vars := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(vars, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return vars
}

// TestOwnKeyVars: the site's variable store has one live db, holding
// Microsoft's two CAs as shipped and the snakeoil certificate, and every
// other live variable (PK, KEK, dbx, SecureBootEnable, ...) as shipped;
// the MOK store has db as shipped and a MokList of the snakeoil
// certificate, boot services only. And Debian's snakeoil store is what the comment above says: snakeoil
// alone in PK, KEK and db.
func TestOwnKeyVars(t *testing.T) {
	t.Parallel()
	vars := siteVars(t, snakeoilCert)
	orig, err := os.ReadFile(OVMFVarsMS)
	if err != nil {
		t.Fatal(err)
	}
	site, err := os.ReadFile(vars)
	if err != nil {
		t.Fatal(err)
	}
	if len(site) != len(orig) {
		t.Fatalf("the store grew from %d to %d bytes", len(orig), len(site))
	}
	ov, _, _, err := efiVars(orig)
	if err != nil {
		t.Fatal(err)
	}
	sv, _, _, err := efiVars(site)
	if err != nil {
		t.Fatal(err)
	}
	db, n := live(sv, "db", imageSecDBGUID)
	if n != 1 {
		t.Fatalf("%d live db variables", n)
	}
	certs, err := dbCerts(db.data)
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, c := range certs {
		subjects = append(subjects, c.Subject.String())
	}
	if len(certs) != 3 || !strings.Contains(subjects[0], "Microsoft Windows Production PCA 2011") ||
		!strings.Contains(subjects[1], "Microsoft Corporation UEFI CA 2011") || !strings.Contains(subjects[2], "O=SnakeOil") {
		t.Errorf("db: %q, want Microsoft's two CAs and SnakeOil", subjects)
	}
	for _, v := range ov {
		if v.state != varAdded || v.name == "db" && v.guid == imageSecDBGUID {
			continue
		}
		if w, n := live(sv, v.name, v.guid); n != 1 || !bytes.Equal(w.data, v.data) {
			t.Errorf("%s: changed (%d live copies)", v.name, n)
		}
	}

	// The MOK store: db as shipped, a MokList (boot services only) with
	// the SnakeOil certificate.
	mb, err := os.ReadFile(mokVars(t, snakeoilCert))
	if err != nil {
		t.Fatal(err)
	}
	mv, _, _, err := efiVars(mb)
	if err != nil {
		t.Fatal(err)
	}
	odb, _ := live(ov, "db", imageSecDBGUID)
	if mdb, n := live(mv, "db", imageSecDBGUID); n != 1 || !bytes.Equal(mdb.data, odb.data) {
		t.Errorf("MOK store: db changed")
	}
	mok, n := live(mv, "MokList", shimLockGUID)
	certs, err = dbCerts(mok.data)
	if n != 1 || mok.attrs != efiNonVolatile|efiBootService || err != nil || len(certs) != 1 || !strings.Contains(certs[0].Subject.String(), "O=SnakeOil") {
		t.Errorf("MokList: %d live, attributes %#x, %v, %d certificates", n, mok.attrs, err, len(certs))
	}

	const snakeoilVars = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
	testneed.File(t, snakeoilVars, "ovmf")
	b, err := os.ReadFile(snakeoilVars)
	if err != nil {
		t.Fatal(err)
	}
	kv, _, _, err := efiVars(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		name string
		guid [16]byte
	}{{"PK", efiGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")}, {"KEK", efiGUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")}, {"db", imageSecDBGUID}} {
		v, n := live(kv, k.name, k.guid)
		certs, err := dbCerts(v.data)
		if n != 1 || err != nil || len(certs) != 1 || certs[0].Subject.String() != "O=SnakeOil,L=Fort Collins,ST=Colorado,C=US" {
			t.Errorf("snakeoil store %s: %d live, %v, %d certificates", k.name, n, err, len(certs))
		}
	}
}

// ownKeyLAN boots a Secure Boot machine (vars) by PXE on a namespace LAN
// where overboot is the DHCP server and the default profile is a
// secure-boot one whose kernel is the file kernel, as TestLANSecureBoot
// does. It returns the machine, the server's log and the kernel blob's
// TFTP name.
func ownKeyLAN(t *testing.T, a *Artifacts, kernel, vars, mac string) (*VM, *lockedLog, string) {
	t.Helper()
	k, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	blob := fmt.Sprintf("/blobs/sha256/%x", sha256.Sum256(k))
	ns := NewNetNS(t)
	conf := fmt.Sprintf("[server]\nurl = http://192.0.2.1\ndhcp = br0\ndhcp-range = 192.0.2.50-192.0.2.59\ndhcp-router = 192.0.2.1\n\n[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nonfail = poweroff\nonfail-delay = 1s\ncmdline = console=ttyS0 panic=-1\nsecure-boot = yes\n",
		kernel, a.Initramfs, a.Root)
	_, logs, _ := fullDHCPServer(t, ns, conf, filepath.Join(t.TempDir(), "data"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	vm := startVM(t, Options{PXE: true, Tap: ns.Tap(t), NetNS: ns.Name, MAC: mac, UEFIVars: vars, SecureBoot: true, NoNICROM: true})
	return vm, logs, blob
}

// expectSiteBoot checks a boot of the site-signed kernel blob: the
// root reached, Secure Boot on and the kernel locked down, GRUB fetched
// that kernel, and the kernel found the site's certificate where the
// test put it (source: the "integrity: Loading X.509 certificate:" line
// before the SnakeOil one, UEFI:db or UEFI:MokListRT).
func expectSiteBoot(t *testing.T, vm *VM, logs *lockedLog, blob, source string) {
	t.Helper()
	expectPass(t, vm)
	for _, want := range []string{"Secure boot enabled", "Kernel is locked down from EFI Secure Boot"} {
		if !vm.Contains(want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if log := logs.String(); !strings.Contains(log, `msg="tftp transfer" file=`+blob) {
		t.Errorf("GRUB did not fetch the site-signed kernel %s:\n%s", blob, log)
	}
	from := ""
	for _, l := range vm.Lines() {
		if _, src, ok := strings.Cut(l.Text, "integrity: Loading X.509 certificate: "); ok {
			from = strings.TrimSpace(src)
		}
		if strings.Contains(l.Text, "integrity: Loaded X.509 cert 'SnakeOil") {
			if !strings.HasPrefix(from, source) {
				t.Errorf("the kernel found the site's certificate in %q, want %s", from, source)
			}
			return
		}
	}
	t.Errorf("the kernel loaded no SnakeOil certificate from %s", source)
}

// TestOwnKeyDB: Debian's kernel re-signed with the site's key alone
// (the snakeoil key; Debian's signature removed) boots through Debian's
// shim and GRUB to the root with Secure Boot on and the kernel locked
// down, on a machine whose db holds the site's certificate beside
// Microsoft's.
func TestOwnKeyDB(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	needSecureBoot(t)
	st := needSigning(t)
	key, cert := st.snakeoil(t)
	kernel := st.sign(t, a.Kernel, key, cert, "vmlinuz.site")
	vm, logs, blob := ownKeyLAN(t, a, kernel, siteVars(t, cert), "52:54:00:5b:00:11")
	expectSiteBoot(t, vm, logs, blob, "UEFI:db")
}

// TestOwnKeyMOK: the same site-signed kernel on a machine as shipped
// (Microsoft's keys, nothing of the site's in db) whose shim MokList
// holds the site's certificate, as a mokutil --import confirmed in
// MokManager leaves it: shim trusts it, and the kernel boots to the
// root with Secure Boot on. The enrolment itself (mokutil, MokManager's
// screens) is not run here.
func TestOwnKeyMOK(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	needSecureBoot(t)
	st := needSigning(t)
	key, cert := st.snakeoil(t)
	kernel := st.sign(t, a.Kernel, key, cert, "vmlinuz.site")
	vm, logs, blob := ownKeyLAN(t, a, kernel, mokVars(t, cert), "52:54:00:5b:00:15")
	expectSiteBoot(t, vm, logs, blob, "UEFI:MokListRT")
}

// TestOwnKeyUnenrolled: the same chain, a kernel whose key the machine
// does not trust: signed by a key enrolled nowhere, and (the control of
// TestOwnKeyDB) the site-signed kernel on a machine as shipped, without
// the site's certificate in db. The server serves it (it checks only
// that a signature is there: who signed is the firmware's and shim's
// business), and shim, asked by GRUB, refuses it: GRUB says so and the
// kernel never starts.
func TestOwnKeyUnenrolled(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	shipped := needSecureBoot(t)
	st := needSigning(t)
	siteKey, siteCert := st.snakeoil(t)
	freshKey, freshCert := st.freshKey(t)
	for _, c := range []struct {
		name, kernel, vars, mac string
	}{
		{"key enrolled nowhere", st.sign(t, a.Kernel, freshKey, freshCert, "vmlinuz.unenrolled"), siteVars(t, siteCert), "52:54:00:5b:00:12"},
		{"site key, db as shipped", st.sign(t, a.Kernel, siteKey, siteCert, "vmlinuz.site"), shipped, "52:54:00:5b:00:14"},
	} {
		t.Run(c.name, func(t *testing.T) {
			vm, logs, blob := ownKeyLAN(t, a, c.kernel, c.vars, c.mac)
			line, i, err := vm.ExpectAny(bootTimeout, "bad shim signature", "Linux version", MarkerPass, "boot failed after")
			if err != nil {
				t.Fatalf("GRUB said nothing of the kernel: %v", err)
			}
			if i != 0 {
				t.Fatalf("the kernel was not refused: %s", line.Text)
			}
			t.Logf("GRUB: %s", strings.TrimSpace(line.Text))
			vm.Kill()
			if vm.Contains("Linux version") || vm.Contains("EFI stub") {
				t.Errorf("the kernel ran")
			}
			if log := logs.String(); !strings.Contains(log, `msg="tftp transfer" file=`+blob) {
				t.Errorf("the server did not serve the kernel %s:\n%s", blob, log)
			}
		})
	}
}

// TestOwnKeyUnsigned: the same machine and chain, the kernel unsigned
// (Debian's signature removed). The server refuses it before the
// machine downloads it: GRUB shows the refusal and the kernel blob is
// never asked for.
func TestOwnKeyUnsigned(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	needSecureBoot(t)
	st := needSigning(t)
	kernel := st.unsigned(t, a.Kernel, "vmlinuz.unsigned")
	_, cert := st.snakeoil(t)
	vm, logs, blob := ownKeyLAN(t, a, kernel, siteVars(t, cert), "52:54:00:5b:00:13")
	const refusal = "overboot: profile default: the kernel is not signed: it carries no signature"
	line, i, err := vm.ExpectAny(bootTimeout, refusal, "Linux version", MarkerPass)
	if err != nil {
		t.Fatalf("GRUB showed no refusal: %v", err)
	}
	if i != 0 {
		t.Fatalf("an unsigned kernel: %s", line.Text)
	}
	vm.Kill()
	log := logs.String()
	if strings.Contains(log, blob) {
		t.Errorf("the unsigned kernel %s was served:\n%s", blob, log)
	}
	if !strings.Contains(log, "an unsigned kernel on the Secure Boot path") {
		t.Errorf("the refusal is not in the server log:\n%s", log)
	}
}
