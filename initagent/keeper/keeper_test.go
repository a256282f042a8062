package keeper

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/initagent/initiator"
	"github.com/overboot/overboot/internal/nbd"
)

// TestMain runs the keeper when Start runs this test binary as it.
func TestMain(m *testing.M) {
	if IsKeeper() {
		kmsgPath = ""
		if err := Main(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestKeeperPipes: the keeper started for a lazy root answers "ready"
// once it reaches the image, takes more sessions over its control pipe
// until the agent lets go of it (an error comes back to the agent, here
// that the kernel's iSCSI interface is missing), and serves the image on
// the NBD socket all along.
func TestKeeperPipes(t *testing.T) {
	img := bytes.Repeat([]byte("overboot"), 1<<17) // 1 MiB
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "root.squashfs", time.Time{}, bytes.NewReader(img))
	}))
	defer srv.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	kernel := os.NewFile(uintptr(fds[0]), "kernel")
	defer kernel.Close()
	sock := os.NewFile(uintptr(fds[1]), "keeper")

	if _, err := Start(Config{Image: &Image{URL: srv.URL, Size: int64(len(img)), Name: "test"}}, nil); err == nil {
		t.Errorf("an image without its socket was accepted")
	}
	k, err := Start(Config{Image: &Image{URL: srv.URL, Size: int64(len(img)), Name: "test"}}, sock)
	sock.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Kill()
	if err := k.Watch(nil); err != nil {
		t.Errorf("no sessions: %v", err)
	}
	if _, err := os.Stat("/sys/class/iscsi_transport/tcp"); err != nil {
		err := k.Watch([]initiator.Session{{SID: 1, Portal: "127.0.0.1:1"}})
		if err == nil || !strings.Contains(err.Error(), "iscsi_tcp") {
			t.Errorf("a session without the kernel's iSCSI: %v", err)
		}
	}
	k.Release()
	if err := k.Watch(nil); err == nil {
		t.Errorf("a released keeper took sessions")
	}

	req, _ := nbd.Request{Type: nbd.CmdRead, Handle: 7, Offset: 4096, Length: 4096}.MarshalBinary()
	kernel.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := kernel.Write(req); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, nbd.ReplyHeaderLen)
	if _, err := io.ReadFull(kernel, hdr); err != nil {
		t.Fatal(err)
	}
	r, err := nbd.ParseReply(hdr)
	if err != nil || r.Error != 0 || r.Handle != 7 {
		t.Fatalf("reply %+v %v", r, err)
	}
	data := make([]byte, 4096)
	if _, err := io.ReadFull(kernel, data); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, img[4096:8192]) {
		t.Errorf("the keeper served other bytes")
	}
}
