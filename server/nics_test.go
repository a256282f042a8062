package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/testneed"
	"github.com/overboot/overboot/mkimage/initramfs"
)

// TestDriverSegmentScript: a machine whose NIC driver the base initramfs
// lacks gets a second initrd, its driver segment; one whose driver is in
// the base, or that reports no NIC, gets the base alone.
func TestDriverSegmentScript(t *testing.T) {
	rel := testneed.Glob(t, "/lib/modules/*/kernel/drivers/net/ethernet/realtek/8139cp.ko*", "linux-image-amd64")
	release := strings.Split(rel[0], "/")[3]
	conf := "[profile nic]\nkernel = $DIR/kernel\ninitramfs = $DIR/base.img\nroot = $DIR/root\n[machine 52:54:00:0b:00:09]\nprofile = nic\n"
	f := newFixPre(t, conf, func(data string) {
		agent := filepath.Join(t.TempDir(), "agent")
		os.WriteFile(agent, []byte("agent"), 0o755)
		out, err := os.Create(filepath.Join(filepath.Dir(data), "base.img"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if _, err := initramfs.Build(context.Background(), out, initramfs.Options{Agent: agent, KernelRelease: release, Modules: []string{"e1000e"}, Compression: "gzip"}); err != nil {
			t.Fatal(err)
		}
	})
	script := func(query string) string {
		t.Helper()
		r := f.get("/ipxe?mac=52-54-00-0b-00-09" + query)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", query, r.StatusCode)
		}
		return body(t, r)
	}
	s := script("&pcivendor=10ec&pcidevice=8139")
	seg := find(t, `initrd --name overboot-initrd1 http://10\.0\.2\.100/blobs/sha256/([0-9a-f]{64}) `, s)
	if !strings.Contains(s, "initrd=overboot-initrd0 initrd=overboot-initrd1 ") {
		t.Errorf("the kernel line does not name both initrds:\n%s", s)
	}
	if r := f.get("/blobs/sha256/" + seg); r.StatusCode != http.StatusOK {
		t.Errorf("segment blob: %d", r.StatusCode)
	}
	if !strings.Contains(f.logs.String(), "driver segment built") || !strings.Contains(f.logs.String(), "segment=8139cp+8139too") {
		t.Errorf("log:\n%s", f.logs.String())
	}
	for _, q := range []string{"&pcivendor=8086&pcidevice=10d3", "&pcivendor=&pcidevice="} {
		if s := script(q); strings.Contains(s, "overboot-initrd1") {
			t.Errorf("%s: a second initrd:\n%s", q, s)
		}
	}
	// The default profile's initramfs is no cpio: the machine boots
	// with it alone, and the server says why.
	r := f.get("/ipxe?mac=52-54-00-0b-00-0a&pcivendor=10ec&pcidevice=8139")
	if s := body(t, r); r.StatusCode != http.StatusOK || strings.Contains(s, "overboot-initrd1") {
		t.Errorf("unreadable base: %d\n%s", r.StatusCode, s)
	}
	if !strings.Contains(f.logs.String(), "no driver segment: the machine boots with the base initramfs alone") {
		t.Errorf("log:\n%s", f.logs.String())
	}
}
