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
