package server

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/server/dhcp"
	"github.com/overboot/overboot/server/tftp"
)

// fakePE is a minimal PE32+ image (headers only), with a certificate
// table when signed: what signedPE looks at, nothing more.
func fakePE(t *testing.T, signed bool) []byte {
	t.Helper()
	var b bytes.Buffer
	dos := make([]byte, 0x40)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], 0x40)
	b.Write(dos)
	b.WriteString("PE\x00\x00")
	oh := pe.OptionalHeader64{Magic: 0x20b, NumberOfRvaAndSizes: 16, SectionAlignment: 0x1000, FileAlignment: 0x200, SizeOfHeaders: 0x200}
	if signed {
		oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY] = pe.DataDirectory{VirtualAddress: 0x400, Size: 0x100}
	}
	fh := pe.FileHeader{Machine: pe.IMAGE_FILE_MACHINE_AMD64, SizeOfOptionalHeader: uint16(binary.Size(oh))}
	if err := binary.Write(&b, binary.LittleEndian, fh); err != nil {
		t.Fatal(err)
	}
	if err := binary.Write(&b, binary.LittleEndian, oh); err != nil {
		t.Fatal(err)
	}
	// The headers, then what stands for the image up to 0x400, then the
	// certificate table (0x100 bytes) when signed: a file whose
	// Authenticode hash can be taken.
	img := make([]byte, 0x400)
	copy(img, b.Bytes())
	copy(img[0x200:], "the image's code and data")
	if signed {
		img = append(img, make([]byte, 0x100)...)
	}
	return img
}

func TestSignedPE(t *testing.T) {
	if err := signedPE(bytes.NewReader(fakePE(t, true))); err != nil {
		t.Errorf("a signed image: %v", err)
	}
	for name, img := range map[string][]byte{"unsigned": fakePE(t, false), "not PE": []byte("KERNEL"), "empty": nil} {
		if err := signedPE(bytes.NewReader(img)); !errors.Is(err, ErrUnsigned) {
			t.Errorf("%s: %v, want ErrUnsigned", name, err)
		}
	}
	// Debian's kernel, when this machine has one: signed.
	if ks, _ := filepath.Glob("/boot/vmlinuz-*"); len(ks) > 0 {
		f, err := os.Open(ks[0])
		if err == nil {
			defer f.Close()
			if err := signedPE(f); err != nil {
				t.Errorf("%s: %v", ks[0], err)
			}
		}
	}
}

// TestSecureBootGRUB: a secure-boot profile's machine gets the shim from
// DHCP; GRUB's bootstrap asks /grub with GRUB's variables; /grub answers
// a GRUB config loading the signed kernel and the initramfs over HTTP
// with the same command line as iPXE's (the document's URL, no secret),
// and refuses an unsigned kernel, saying why; /ipxe still answers iPXE.
func TestSecureBootGRUB(t *testing.T) {
	f := newFixServer(t, "url = http://10.0.2.100\n", `[profile sb]
kernel = $DIR/signed
initramfs = $DIR/initramfs
root = $DIR/root
cmdline = console=ttyS0
secure-boot = yes
[profile unsigned]
kernel = $DIR/unsigned
initramfs = $DIR/initramfs
root = $DIR/root
secure-boot = yes
[machine 52:54:00:00:00:5b]
profile = sb
[machine 52:54:00:00:00:5c]
profile = unsigned
`, func(data string) {
		for name, signed := range map[string]bool{"signed": true, "unsigned": false} {
			if err := os.WriteFile(filepath.Join(filepath.Dir(data), name), fakePE(t, signed), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
	for mac, want := range map[string]bool{"52:54:00:00:00:5b": true, "52:54:00:00:00:5c": true, "52:54:00:00:00:01": false} {
		hw, _ := net.ParseMAC(mac)
		if got := f.s.secureBoot(dhcp.Request{MAC: hw, Arch: dhcp.ArchEFI64}); got != want {
			t.Errorf("secureBoot(%s) = %v, want %v", mac, got, want)
		}
	}

	cfg := *f.s.cfg.Load() // a copy: the server's own keeps its url
	cfg.URL = "http://192.0.2.1"
	pol := f.s.policy(&cfg)
	for mac, want := range map[string]dhcp.Answer{
		"52:54:00:00:00:5b": {File: "shimx64.efi"},
		"52:54:00:00:00:01": {File: "ipxe.efi"},
	} {
		hw, _ := net.ParseMAC(mac)
		got, _ := pol.Boot(context.Background(), dhcp.Request{MAC: hw, Arch: dhcp.ArchEFI64})
		if got.File != want.File {
			t.Errorf("PXE %s: %+v, want %s", mac, got, want.File)
		}
		got, _ = pol.Boot(context.Background(), dhcp.Request{MAC: hw, Arch: dhcp.ArchEFI64HTTP, VendorClass: "HTTPClient:Arch:00016:UNDI:003001"})
		if wantURL := "http://192.0.2.1/boot/" + want.File; got.URL != wantURL {
			t.Errorf("HTTP Boot %s: %+v, want %s", mac, got, wantURL)
		}
	}

	// Shim over HTTP Boot asks /boot//grubx64.efi, and follows no
	// redirect.
	os.MkdirAll(filepath.Join(f.dir, "data", TFTPDir), 0o755)
	os.WriteFile(filepath.Join(f.dir, "data", TFTPDir, GRUBFile), []byte("signed GRUB"), 0o644)
	for _, p := range []string{"/boot//grubx64.efi", "/boot/grubx64.efi"} {
		if r := f.do(http.MethodGet, p, "", nil); r.StatusCode != 200 || body(t, r) != "signed GRUB" {
			t.Errorf("GET %s: %d", p, r.StatusCode)
		}
	}

	r := f.do(http.MethodGet, "/grub/grub.cfg", "", nil)
	boot := body(t, r)
	if r.StatusCode != 200 || !strings.Contains(boot, `configfile '/grub'"?mac=${net_default_mac}&buildarch=${grub_cpu}&platform=${grub_platform}"`) {
		t.Errorf("/grub/grub.cfg: %d\n%s", r.StatusCode, boot)
	}

	// As GRUB fills in the bootstrap's query.
	r = f.do(http.MethodGet, "/grub?mac=52:54:00:00:00:5b&buildarch=x86_64&platform=efi", "", nil)
	cfgText := body(t, r)
	if r.StatusCode != 200 || strings.Contains(cfgText, "#!ipxe") {
		t.Fatalf("/grub: %d\n%s", r.StatusCode, cfgText)
	}
	kernel := find(t, `if linux '/blobs/sha256/([0-9a-f]{64})' 'console=ttyS0' 'overboot\.doc=http://10\.0\.2\.100/doc/[0-9a-f]{64}'`, cfgText)
	find(t, `(if initrd '/blobs/sha256/[0-9a-f]{64}'; then)`, cfgText)
	if got := body(t, f.do(http.MethodGet, "/blobs/sha256/"+kernel, "", nil)); got != string(fakePE(t, true)) {
		t.Errorf("the config's kernel is not the profile's signed kernel")
	}
	for _, secret := range []string{"password", "secret", "chap"} {
		if strings.Contains(strings.ToLower(cfgText), secret) {
			t.Errorf("%q in the GRUB config:\n%s", secret, cfgText)
		}
	}

	r = f.do(http.MethodGet, "/grub?mac=52:54:00:00:00:5c&buildarch=x86_64&platform=efi", "", nil)
	cfgText = body(t, r)
	if !strings.Contains(cfgText, "echo 'overboot: profile unsigned: the kernel is not signed: it carries no signature") || !strings.HasSuffix(cfgText, "exit\n") || strings.Contains(cfgText, "linux ") {
		t.Errorf("an unsigned kernel on the Secure Boot path: %d\n%s", r.StatusCode, cfgText)
	}
	if !strings.Contains(f.logs.String(), "an unsigned kernel on the Secure Boot path") {
		t.Errorf("the refusal was not logged:\n%s", f.logs.String())
	}

	// Over TFTP, as GRUB reads it: the same config, the client's address
	// standing for the HTTP one; the blob it names; DATA/tftp's files
	// left to the root.
	tf, n, err := f.s.tftpFiles(context.Background(), "/grub?mac=52:54:00:00:00:5b&buildarch=x86_64&platform=efi", netip.MustParseAddr("192.0.2.10"))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n)
	tf.ReadAt(got, 0)
	tf.Close()
	kernel = find(t, `if linux '/blobs/sha256/([0-9a-f]{64})' 'console=ttyS0' 'overboot\.doc=http://10\.0\.2\.100/doc/[0-9a-f]{64}'`, string(got))
	tf, n, err = f.s.tftpFiles(context.Background(), "/blobs/sha256/"+kernel, netip.MustParseAddr("192.0.2.10"))
	if err != nil || n != int64(len(fakePE(t, true))) {
		t.Fatalf("TFTP blob: %d bytes, %v", n, err)
	}
	tf.Close()
	for _, name := range []string{"/grub/grub.cfg", "shimx64.efi", "/blobsx"} {
		if _, _, err := f.s.tftpFiles(context.Background(), name, netip.MustParseAddr("192.0.2.10")); !errors.Is(err, tftp.ErrNotMine) {
			t.Errorf("TFTP %s: %v, want the root's", name, err)
		}
	}

	if s := f.script("52-54-00-00-00-5b", ""); !strings.HasPrefix(s, "#!ipxe\n") {
		t.Errorf("/ipxe answered GRUB's language:\n%s", s)
	}
	// A bad query is a refusal in GRUB's language, not iPXE's.
	if cfg := body(t, f.do(http.MethodGet, "/grub?mac=zz", "", nil)); !strings.HasPrefix(cfg, "echo 'overboot: query parameter mac") {
		t.Errorf("a bad query: %s", cfg)
	}
}
