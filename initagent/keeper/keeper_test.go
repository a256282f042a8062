package keeper

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/nbd"
)

// TestMain lets the test binary be the keeper: Start runs /proc/self/exe
// as "@overboot-keeper", which is this binary.
func TestMain(m *testing.M) {
	if IsKeeper() {
		if err := Main(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestKeeperServesTheImage: the keeper, a process of its own, reaches the
// server, says it is ready, and answers NBD reads (as the kernel sends
// them) with the image's bytes; a disconnect ends it.
func TestKeeperServesTheImage(t *testing.T) {
	img := make([]byte, 1<<20)
	rand.Read(img)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(img))
	}))
	defer srv.Close()
	kernel, agent, err := nbd.Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer kernel.Close()
	af, err := agent.(interface{ File() (*os.File, error) }).File()
	agent.Close()
	if err != nil {
		t.Fatal(err)
	}
	proc, err := Start(Config{URL: srv.URL + "/img?token=secret", Size: int64(len(img)), Name: "sha256:test", Stderr: true}, af)
	af.Close()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *os.ProcessState, 1)
	go func() { st, _ := proc.Wait(); done <- st }()
	for i, off := range []int64{0, 4096, 123 << 12, int64(len(img)) - 8192} {
		req := nbd.Request{Type: nbd.CmdRead, Handle: uint64(i + 1), Offset: uint64(off), Length: 8192}
		b, _ := req.MarshalBinary()
		if _, err := kernel.Write(b); err != nil {
			t.Fatal(err)
		}
		hdr := make([]byte, nbd.ReplyHeaderLen)
		if _, err := io.ReadFull(kernel, hdr); err != nil {
			t.Fatal(err)
		}
		rep, err := nbd.ParseReply(hdr)
		if err != nil || rep.Error != 0 || rep.Handle != uint64(i+1) {
			t.Fatalf("reply %+v %v", rep, err)
		}
		data := make([]byte, 8192)
		if _, err := io.ReadFull(kernel, data); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, img[off:off+8192]) {
			t.Fatalf("read at %d: wrong bytes", off)
		}
	}
	b, _ := nbd.Request{Type: nbd.CmdDisc, Handle: 99}.MarshalBinary()
	kernel.Write(b)
	select {
	case st := <-done:
		if !st.Success() {
			t.Errorf("keeper exited %v after a disconnect", st)
		}
	case <-time.After(10 * time.Second):
		proc.Kill()
		t.Fatal("the keeper did not exit after a disconnect")
	}
}

// TestKeeperStartFails: a keeper that cannot reach the image says why,
// and Start returns that, without the URL's query.
func TestKeeperStartFails(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	kernel, agent, err := nbd.Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer kernel.Close()
	af, _ := agent.(interface{ File() (*os.File, error) }).File()
	agent.Close()
	_, err = Start(Config{URL: srv.URL + "/img?token=secret", Size: 4096, Name: "sha256:test", Stderr: true}, af)
	af.Close()
	if err == nil || !strings.Contains(err.Error(), "could not start") || strings.Contains(err.Error(), "secret") {
		t.Errorf("Start: %v", err)
	}
}
