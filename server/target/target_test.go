package target

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/testneed"
)

const (
	testIQN  = "iqn.2026-11.org.overboot:test"
	testUser = "machine1"
	testPass = "secret-of-sixteen"
)

// startTarget serves a read-only LUN of random data and a writable one.
func startTarget(t *testing.T) (string, []byte, string) {
	t.Helper()
	_, addr, data, ro := startTargetServer(t, nil)
	return addr, data, ro
}

// startTargetServer is startTarget that also returns the server; setup,
// when not nil, runs before Serve (to set limits, a logger).
func startTargetServer(t *testing.T, setup func(*Target)) (*Target, string, []byte, string) {
	t.Helper()
	dir := t.TempDir()
	data := make([]byte, 4<<20)
	rand.Read(data)
	ro := filepath.Join(dir, "ro.img")
	if err := os.WriteFile(ro, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rob, err := OpenFile(ro, true)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := CreateSparse(filepath.Join(dir, "rw.img"), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	s := New(nil)
	if err := s.AddTarget(TargetConfig{IQN: testIQN, LUNs: []Backing{rob, rw}, CHAP: CHAP{User: testUser, Secret: testPass}, Exclusive: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTarget(TargetConfig{IQN: testIQN + "-other", LUNs: []Backing{rob}, CHAP: CHAP{User: "machine2", Secret: "another-secret-16"}}); err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, ln.Addr().String(), data, ro
}

// needTool is testneed.Tool: libiscsi-bin's tools.
func needTool(t *testing.T, name string) string {
	t.Helper()
	return testneed.Tool(t, name)
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(needTool(t, name), args...).CombinedOutput()
	return string(out), err
}

func TestAddTargetValidation(t *testing.T) {
	s := New(nil)
	b := &FileBacking{size: 512}
	for _, tc := range []TargetConfig{
		{IQN: "bogus", LUNs: []Backing{b}, CHAP: CHAP{User: "u", Secret: "twelve-bytes-x"}},
		{IQN: testIQN, CHAP: CHAP{User: "u", Secret: "twelve-bytes-x"}},
		{IQN: testIQN, LUNs: []Backing{b}},
		{IQN: testIQN, LUNs: []Backing{b}, CHAP: CHAP{User: "u", Secret: "short"}},
		{IQN: testIQN, LUNs: []Backing{b}, CHAP: CHAP{User: "u", Secret: "twelve-bytes-x"}, MutualCHAP: &CHAP{User: "t", Secret: "twelve-bytes-x"}},
	} {
		if err := s.AddTarget(tc); err == nil {
			t.Errorf("%+v accepted", tc)
		}
	}
}

func TestLibiscsiDiscovery(t *testing.T) {
	addr, _, _ := startTarget(t)
	out, err := run(t, "iscsi-ls", "-s", "iscsi://"+testUser+"%"+testPass+"@"+addr+"/")
	if err != nil {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}
	if !strings.Contains(out, testIQN) || strings.Contains(out, testIQN+"-other") {
		t.Errorf("discovery shows the wrong targets:\n%s", out)
	}
	if !strings.Contains(out, "Lun:0") || !strings.Contains(out, "Lun:1") {
		t.Errorf("iscsi-ls -s lists no LUNs:\n%s", out)
	}
	for _, bad := range []string{"iscsi://" + testUser + "%wrong-secret-xx@" + addr + "/", "iscsi://" + addr + "/"} {
		if out, err := run(t, "iscsi-ls", bad); err == nil {
			t.Errorf("%s: accepted:\n%s", bad, out)
		}
	}
}

func TestLibiscsiReadAndInquiry(t *testing.T) {
	addr, _, _ := startTarget(t)
	url := "iscsi://" + testUser + "%" + testPass + "@" + addr + "/" + testIQN + "/0"
	out, err := run(t, "iscsi-inq", url)
	if err != nil || !strings.Contains(out, "OVERBOOT") {
		t.Fatalf("iscsi-inq: %v\n%s", err, out)
	}
	out, err = run(t, "iscsi-readcapacity16", url)
	if err != nil || !strings.Contains(out, "Total size:4194304") {
		t.Fatalf("iscsi-readcapacity16: %v\n%s", err, out)
	}
	out, err = run(t, "iscsi-inq", "iscsi://machine2%another-secret-16@"+addr+"/"+testIQN+"/0")
	if err == nil {
		t.Errorf("another machine's CHAP logged in:\n%s", out)
	}
	_ = bytes.Equal
}
