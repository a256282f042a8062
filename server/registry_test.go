package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
)

// TestPeersFromRegistry: two servers share one store; B names no peers,
// so it fetches a blob it lacks from the servers registered and up (A),
// and starts although its profile's image is only at A. Once A stopped,
// B knows no source for it.
func TestPeersFromRegistry(t *testing.T) {
	img := lazyImage(16, 5)
	a := newFixPre(t, "[profile lazy]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/lazyroot\n", func(data string) {
		os.WriteFile(filepath.Join(filepath.Dir(data), "lazyroot"), img, 0o644)
	})
	ln := listen(t)
	srvA := serveCounted(t, ln, a.h)
	ctx, stopA := context.WithCancel(context.Background())
	defer stopA()
	beat, err := a.s.Register(ctx, Announcement{HTTP: ln.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	beatDone := make(chan error, 1)
	go func() { beatDone <- beat() }()
	set := a.s.sets.Load()
	arts, err := set.Resolve(context.Background(), set.Profile("lazy"))
	if err != nil {
		t.Fatal(err)
	}

	dataB := t.TempDir()
	cfg, err := config.Parse("b.conf", strings.NewReader("[server]\nname = b\ndata = "+dataB+"\n[profile default]\nkernel = "+arts.Kernel.Digest.String()+
		"\ninitramfs = "+arts.Initramfs.Digest.String()+"\nroot = "+arts.Root.Digest.String()+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	blobsB, err := blobstore.Open(dataB)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(context.Background(), cfg, blobsB, a.s.db, nil)
	if err != nil {
		t.Fatalf("B does not start on an image only its registered peer has: %v", err)
	}
	defer b.disks.Close()
	if got := b.fetch.Sources(); len(got) != 1 || got[0] != srvA.URL {
		t.Fatalf("B's sources %v, want [%s] (A from the registry)", got, srvA.URL)
	}
	req := httptest.NewRequest(http.MethodGet, BlobPrefix+arts.Root.Digest.Hex(), nil)
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, req)
	if got, _ := io.ReadAll(rec.Result().Body); rec.Code != 200 || !bytes.Equal(got, img) {
		t.Fatalf("B: %d, %d bytes", rec.Code, len(got))
	}
	if n := srvA.peers.Load(); n == 0 {
		t.Error("A served no peer fetch")
	}
	stopA()
	<-beatDone
	if got := b.sources(context.Background(), cfg); len(got) != 0 {
		t.Errorf("sources after A stopped: %v", got)
	}
}

// TestMirrorsFromRegistry: without [server] mirrors, scripts and
// documents list each artifact here, then at the other servers
// registered and up that machines can reach (a server registered at a
// loopback address is left out); with [server] cache, the cache comes
// first and this server after it.
func TestMirrorsFromRegistry(t *testing.T) {
	for _, tc := range []struct {
		name, cache, first string
		rest               []string
	}{
		{"registry", "", "http://10.0.2.100", []string{"http://192.0.2.1:8080"}},
		{"cache", "http://192.0.2.99:3128", "http://192.0.2.99:3128", []string{"http://10.0.2.100", "http://192.0.2.1:8080"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFix(t, "")
			cfg := *f.s.cfg.Load() // [server] cache, as config.Parse reads it (TestParseMirrors)
			cfg.Cache = tc.cache
			f.s.cfg.Store(&cfg)
			ctx := context.Background()
			for _, o := range []state.ServerInfo{
				{Name: "a", Instance: "x", URLs: []string{"http://192.0.2.1:8080"}},
				{Name: "local", Instance: "y", URLs: []string{"http://127.0.0.1:8080"}},
			} {
				if err := f.s.db.Register(ctx, o); err != nil {
					t.Fatal(err)
				}
			}
			f.s.readOthers(ctx, f.s.cfg.Load())
			script := f.script("52-54-00-00-00-07", "192.0.2.11")
			k := f.arts().Kernel.Digest.Hex()
			if !strings.Contains(script, "kernel --name overboot-kernel "+tc.first+BlobPrefix+k) {
				t.Errorf("the kernel is not read first at %s:\n%s", tc.first, script)
			}
			for _, m := range tc.rest {
				if !strings.Contains(script, m+BlobPrefix+k) {
					t.Errorf("no fallback to %s:\n%s", m, script)
				}
			}
			if strings.Contains(script, "127.0.0.1") {
				t.Errorf("a loopback server is offered to machines:\n%s", script)
			}
			_, d := f.doc(find(t, `overboot\.doc=http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, script), "192.0.2.11")
			h := d.Lower.HTTP
			if h == nil || !strings.HasPrefix(h.URL, tc.first+BlobPrefix) || len(h.Mirrors) != len(tc.rest) {
				t.Fatalf("document's lower: %+v", h)
			}
			for i, m := range tc.rest {
				if !strings.HasPrefix(h.Mirrors[i], m+BlobPrefix) {
					t.Errorf("mirror %d: %s, want at %s", i, h.Mirrors[i], m)
				}
			}
		})
	}
}
