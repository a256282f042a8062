package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/peers"
)

// lazyImage is a padded "squashfs" (its magic, then a pattern) of n
// blocks of 4 KiB: enough for a dm-verity tree and for Sniff.
func lazyImage(n int, seed byte) []byte {
	img := make([]byte, n*4096)
	for i := range img {
		img[i] = byte(i*7/4096) + seed
	}
	copy(img, "hsqs")
	return img
}

// TestImmutableHeaders: what a URL names by digest (the kernel and the
// initramfs of the script, the root image, the dm-verity tree) is served
// with Cache-Control public, a year, immutable and a strong ETag (the
// digest); If-None-Match answers 304 with no body; Range is honoured with
// an If-Range of that ETag and ignored with another. The iPXE binaries
// (/boot/FILE), named by a name that can change, are not marked.
func TestImmutableHeaders(t *testing.T) {
	img := lazyImage(16, 0)
	f := newFixPre(t, "[profile lazy]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/lazyroot\nlower-mode = lazy\n[machine 52:54:00:12:34:57]\nprofile = lazy\n", func(data string) {
		os.WriteFile(filepath.Join(filepath.Dir(data), "lazyroot"), img, 0o644)
	})
	script := f.script("52-54-00-12-34-57", "192.0.2.10")
	kernel := find(t, `kernel --name overboot-kernel http://10\.0\.2\.100(/blobs/sha256/[0-9a-f]{64}) `, script)
	initrd := find(t, `initrd --name overboot-initrd0 http://10\.0\.2\.100(/blobs/sha256/[0-9a-f]{64}) `, script)
	_, doc := f.doc(find(t, `overboot\.doc=http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, script), "")
	if doc.Lower.HTTP == nil || doc.Lower.HTTP.Verity == nil {
		t.Fatalf("document: %+v", doc.Lower)
	}
	h := doc.Lower.HTTP
	strip := func(u string) string { return u[len("http://10.0.2.100"):] }
	for _, c := range []struct {
		name, path string
		etag       boot.Digest
		body       []byte
	}{
		{"kernel", kernel, f.arts().Kernel.Digest, []byte(f.files["kernel"])},
		{"initramfs", initrd, f.arts().Initramfs.Digest, []byte(f.files["initramfs"])},
		{"root", strip(h.URL), h.Digest, img},
		{"tree", strip(h.Verity.HashURL), h.Verity.HashDigest, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			etag := `"` + c.etag.String() + `"`
			r := f.get(c.path)
			b, _ := io.ReadAll(r.Body)
			if r.StatusCode != 200 || (c.body != nil && !bytes.Equal(b, c.body)) {
				t.Fatalf("GET %s: %d, %d bytes", c.path, r.StatusCode, len(b))
			}
			if got := r.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
				t.Errorf("Cache-Control %q", got)
			}
			if got := r.Header.Get("ETag"); got != etag {
				t.Errorf("ETag %q, want %q", got, etag)
			}
			r = f.get(c.path, "If-None-Match", etag)
			if rb := body(t, r); r.StatusCode != http.StatusNotModified || rb != "" || r.Header.Get("ETag") != etag {
				t.Errorf("If-None-Match: %d %q %v", r.StatusCode, rb, r.Header)
			}
			r = f.get(c.path, "If-None-Match", `"sha256:other"`)
			if body(t, r); r.StatusCode != 200 {
				t.Errorf("If-None-Match of another: %d", r.StatusCode)
			}
			r = f.get(c.path, "Range", "bytes=2-4", "If-Range", etag)
			if rb := body(t, r); r.StatusCode != http.StatusPartialContent || rb != string(b[2:5]) {
				t.Errorf("Range with If-Range: %d %q", r.StatusCode, rb)
			}
			r = f.get(c.path, "Range", "bytes=2-4", "If-Range", `"sha256:other"`)
			if rb := body(t, r); r.StatusCode != 200 || rb != string(b) {
				t.Errorf("Range with another If-Range: %d, %d bytes", r.StatusCode, len(rb))
			}
			r = f.do(http.MethodHead, c.path, "", nil)
			if r.StatusCode != 200 || r.Header.Get("ETag") != etag || r.Header.Get("Cache-Control") == "" {
				t.Errorf("HEAD: %d %v", r.StatusCode, r.Header)
			}
		})
	}
	// The iPXE binaries: a name, not a digest.
	data := filepath.Join(f.dir, "data", TFTPDir)
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "ipxe.efi"), []byte("EFI"), 0o644)
	r := f.get("/boot/ipxe.efi")
	if b := body(t, r); r.StatusCode != 200 || b != "EFI" || r.Header.Get("Cache-Control") != "" || r.Header.Get("ETag") != "" {
		t.Errorf("/boot/ipxe.efi: %d %q %v", r.StatusCode, b, r.Header)
	}
}

// newConfFix opens a server on the configuration text (whole, $DIR the
// test's directory, $DATA a fresh data directory in it).
func newConfFix(t *testing.T, text string) *fix {
	t.Helper()
	dir := t.TempDir()
	text = strings.ReplaceAll(strings.ReplaceAll(text, "$DATA", filepath.Join(dir, "data")), "$DIR", dir)
	return openFix(t, dir, text)
}

// counted serves h on loopback and counts the requests for blobs and
// trees it gets, and how many of them were a peer's fetch.
type counted struct {
	URL          string
	blobs, peers atomic.Int64
}

func serveCounted(t *testing.T, ln net.Listener, h http.Handler) *counted {
	t.Helper()
	c := &counted{URL: "http://" + ln.Addr().String()}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, BlobPrefix) || strings.HasPrefix(r.URL.Path, TreePrefix) {
			c.blobs.Add(1)
			if r.Header.Get(peers.Header) != "" {
				c.peers.Add(1)
			}
		}
		h.ServeHTTP(w, r)
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	return c
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestImageFromPeer: an image published at A (its blob and tree only at
// A) boots from B, whose profile names it by digest and whose peers list
// A: B starts without it, fetches it at the first request, keeps it, and
// serves the same bytes, the same dm-verity tree (same ETag) and a
// document with the same root hash as A.
func TestImageFromPeer(t *testing.T) {
	img := lazyImage(64, 3)
	a := newFixPre(t, "[profile lazy]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/lazyroot\nlower-mode = lazy\n[machine 52:54:00:12:34:58]\nprofile = lazy\n", func(data string) {
		os.WriteFile(filepath.Join(filepath.Dir(data), "lazyroot"), img, 0o644)
	})
	srvA := serveCounted(t, listen(t), a.h)
	set := a.s.sets.Load()
	arts, err := set.Resolve(context.Background(), set.Profile("lazy"))
	if err != nil {
		t.Fatal(err)
	}
	b := newConfFix(t, "[server]\ndata = $DATA\npeers = "+srvA.URL+"\n[profile default]\nkernel = "+arts.Kernel.Digest.String()+"\ninitramfs = "+arts.Initramfs.Digest.String()+"\nroot = "+arts.Root.Digest.String()+"\nlower-mode = lazy\n")
	if _, err := b.s.blobs.OpenBlob(arts.Root.Digest); err == nil {
		t.Fatal("B has the image before it is asked")
	}
	blobPath, treePath := BlobPrefix+arts.Root.Digest.Hex(), TreePrefix+arts.Root.Digest.Hex()

	r := b.get(blobPath)
	if got, _ := io.ReadAll(r.Body); r.StatusCode != 200 || !bytes.Equal(got, img) || r.Header.Get("ETag") != `"`+arts.Root.Digest.String()+`"` {
		t.Fatalf("B: GET %s: %d, %d bytes, %v\n%s", blobPath, r.StatusCode, len(got), r.Header, b.logs)
	}
	if kept, err := os.ReadFile(b.s.blobs.BlobPath(arts.Root.Digest)); err != nil || !bytes.Equal(kept, img) {
		t.Fatalf("B did not keep the image: %v", err)
	}
	if n := srvA.peers.Load(); n != 1 {
		t.Errorf("A served %d peer fetches, want 1", n)
	}
	b.get(blobPath)
	if n := srvA.blobs.Load(); n != 1 {
		t.Errorf("A was asked %d times, want 1 (B keeps what it fetched)", n)
	}

	ra := a.get(treePath) // A has not made it yet either: made on GET
	treeA, _ := io.ReadAll(ra.Body)
	rb := b.get(treePath)
	treeB, _ := io.ReadAll(rb.Body)
	if ra.StatusCode != 200 || rb.StatusCode != 200 || len(treeA) == 0 || !bytes.Equal(treeA, treeB) || ra.Header.Get("ETag") != rb.Header.Get("ETag") {
		t.Fatalf("trees: A %d (%d bytes, %s), B %d (%d bytes, %s)", ra.StatusCode, len(treeA), ra.Header.Get("ETag"), rb.StatusCode, len(treeB), rb.Header.Get("ETag"))
	}

	// A machine boots at B: the kernel and the initramfs come from A too.
	script := b.script("52-54-00-12-34-58", "192.0.2.11")
	_, docB := b.doc(find(t, `overboot\.doc=http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, script), "192.0.2.11")
	_, docA := a.doc(find(t, `overboot\.doc=http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, a.script("52-54-00-12-34-58", "192.0.2.11")), "192.0.2.11")
	if docB.Lower.HTTP == nil || docB.Lower.HTTP.Verity == nil || docA.Lower.HTTP == nil || docA.Lower.HTTP.Verity == nil {
		t.Fatalf("documents: A %+v, B %+v\n%s", docA.Lower, docB.Lower, b.logs)
	}
	if va, vb := docA.Lower.HTTP.Verity, docB.Lower.HTTP.Verity; va.RootHash != vb.RootHash || va.HashDigest != vb.HashDigest || docA.Lower.HTTP.Size != docB.Lower.HTTP.Size {
		t.Errorf("documents differ: A %+v, B %+v", va, vb)
	}
	for _, u := range []string{find(t, `kernel --name overboot-kernel http://10\.0\.2\.100(/blobs/sha256/[0-9a-f]{64}) `, script), find(t, `initrd --name overboot-initrd0 http://10\.0\.2\.100(/blobs/sha256/[0-9a-f]{64}) `, script)} {
		d, _ := boot.ParseDigest("sha256:" + strings.TrimPrefix(u, BlobPrefix))
		if _, err := os.Stat(b.s.blobs.BlobPath(d)); err != nil {
			t.Errorf("B lacks %s after the script: %v", u, err)
		}
	}
}

// TestPeerLies: a peer that sends other bytes than the digest asked for
// is refused and named in the log; the next peer's bytes are kept; with
// only liars, the request fails (502) and nothing is kept.
func TestPeerLies(t *testing.T) {
	a := newFix(t, "")
	srvA := serveCounted(t, listen(t), a.h)
	root := a.arts().Root.Digest
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lie := []byte(strings.ToLower(a.files["root"]))
		w.Header().Set("Content-Length", strconv.Itoa(len(lie)))
		w.Write(lie)
	}))
	t.Cleanup(liar.Close)

	b := newConfFix(t, "[server]\ndata = $DATA\npeers = "+liar.URL+" "+srvA.URL+"\n")
	r := b.get(BlobPrefix + root.Hex())
	if got := body(t, r); r.StatusCode != 200 || got != a.files["root"] {
		t.Fatalf("B: %d %q", r.StatusCode, got)
	}
	if !strings.Contains(b.logs.String(), "not what its digest says") || !strings.Contains(b.logs.String(), "peer="+liar.URL) {
		t.Errorf("the liar is not named:\n%s", b.logs)
	}

	c := newConfFix(t, "[server]\ndata = $DATA\norigin = "+liar.URL+"\n")
	r = c.get(BlobPrefix + root.Hex())
	if got := body(t, r); r.StatusCode != http.StatusBadGateway || strings.Contains(got, "root") {
		t.Errorf("liars only: %d %q", r.StatusCode, got)
	}
	if _, err := c.s.blobs.OpenBlob(root); err == nil {
		t.Error("the liar's bytes were kept")
	}
	if r := c.get(TreePrefix + root.Hex()); r.StatusCode != http.StatusBadGateway {
		t.Errorf("tree, liars only: %d", r.StatusCode)
	}
}

// TestPeerLoop: two servers that list each other, asked for a blob
// neither has: the one asked fetches from the other once, marked; the
// other answers from its own store (404) without asking back.
func TestPeerLoop(t *testing.T) {
	lnX, lnY := listen(t), listen(t)
	urlX, urlY := "http://"+lnX.Addr().String(), "http://"+lnY.Addr().String()
	x := newConfFix(t, "[server]\ndata = $DATA\npeers = "+urlY+"\n")
	y := newConfFix(t, "[server]\ndata = $DATA\npeers = "+urlX+"\n")
	srvX, srvY := serveCounted(t, lnX, x.h), serveCounted(t, lnY, y.h)
	missing := BlobPrefix + strings.Repeat("ab", 32)
	resp, err := http.Get(srvX.URL + missing)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("status %d, want 404", resp.StatusCode)
	}
	if x, y, yp := srvX.blobs.Load(), srvY.blobs.Load(), srvY.peers.Load(); x != 1 || y != 1 || yp != 1 {
		t.Errorf("requests: X %d (want 1: the client's), Y %d, of which peer fetches %d (want 1, 1)", x, y, yp)
	}
	if r := y.get(missing, peers.Header, peers.HeaderValue); r.StatusCode != 404 || srvX.blobs.Load() != 1 {
		t.Errorf("a peer fetch at Y: %d, X asked %d times", r.StatusCode, srvX.blobs.Load())
	}
}
