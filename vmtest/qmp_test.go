package vmtest

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestKeyChords(t *testing.T) {
	got, err := KeyChords("aZ9 !\t\n&Q:%?_\"|")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"a"}, {"shift", "z"}, {"9"}, {"spc"}, {"shift", "1"}, {"tab"}, {"ret"},
		{"shift", "7"}, {"shift", "q"}, {"shift", "semicolon"}, {"shift", "5"}, {"shift", "slash"},
		{"shift", "minus"}, {"shift", "apostrophe"}, {"shift", "backslash"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("KeyChords (-want +got):\n%s", d)
	}
	// Every printable ASCII character has a key; nothing else does.
	for c := rune(0x20); c < 0x7f; c++ {
		if _, err := KeyChord(c); err != nil {
			t.Errorf("%q: %v", c, err)
		}
	}
	for _, s := range []string{"é", "\x00", "a\rb", "\x7f"} {
		if _, err := KeyChords(s); err == nil {
			t.Errorf("KeyChords(%q): no error", s)
		}
	}
}

func TestQMPCommand(t *testing.T) {
	args, err := sendKeyArgs([]string{"shift", "a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		execute string
		args    any
		want    string
	}{
		{"qmp_capabilities", nil, `{"execute":"qmp_capabilities"}`},
		{"send-key", args, `{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"shift"},{"type":"qcode","data":"a"}]}}`},
		{"screendump", struct {
			Filename string `json:"filename"`
		}{"/tmp/s.ppm"}, `{"execute":"screendump","arguments":{"filename":"/tmp/s.ppm"}}`},
	} {
		b, err := qmpCommand(tc.execute, tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b); got != tc.want+"\n" {
			t.Errorf("%s: got %s want %s", tc.execute, got, tc.want)
		}
	}
	for _, chord := range [][]string{nil, {"shift", ""}} {
		if _, err := sendKeyArgs(chord); err == nil {
			t.Errorf("sendKeyArgs(%q): no error", chord)
		}
	}
}

// fakeQMP plays QEMU's side of a QMP session on a unix socket: the
// greeting, then for each command it receives, the lines of answer
// returns (events first, if any). It records the commands.
func fakeQMP(t *testing.T, answer func(cmd map[string]any) []string) (path string, got chan map[string]any) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	got = make(chan map[string]any, 100)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}` + "\r\n"))
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var cmd map[string]any
			if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
				t.Errorf("the client sent %q: %v", sc.Text(), err)
				return
			}
			got <- cmd
			for _, l := range answer(cmd) {
				c.Write([]byte(l + "\r\n"))
			}
		}
	}()
	return path, got
}

func TestQMPSession(t *testing.T) {
	path, got := fakeQMP(t, func(cmd map[string]any) []string {
		switch cmd["execute"] {
		case "send-key":
			// An event may come before the reply.
			return []string{`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "NIC_RX_FILTER_CHANGED", "data": {}}`, `{"return": {}}`}
		case "screendump":
			return []string{`{"error": {"class": "GenericError", "desc": "no screen"}}`}
		}
		return []string{`{"return": {}}`}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Type("Hi"); err != nil {
		t.Fatal(err)
	}
	err = q.Screendump("/x.ppm")
	if err == nil || !strings.Contains(err.Error(), "GenericError: no screen") {
		t.Errorf("screendump: err = %v, want QEMU's error", err)
	}
	if err := q.Type("ü"); err == nil {
		t.Errorf("typing ü: no error")
	}
	var cmds []string
	for len(got) > 0 {
		b, _ := json.Marshal(<-got)
		cmds = append(cmds, string(b))
	}
	want := []string{
		`{"execute":"qmp_capabilities"}`,
		`{"arguments":{"keys":[{"data":"shift","type":"qcode"},{"data":"h","type":"qcode"}]},"execute":"send-key"}`,
		`{"arguments":{"keys":[{"data":"i","type":"qcode"}]},"execute":"send-key"}`,
		`{"arguments":{"filename":"/x.ppm"},"execute":"screendump"}`,
	}
	if d := cmp.Diff(want, cmds); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"NIC_RX_FILTER_CHANGED", "NIC_RX_FILTER_CHANGED"}, q.Events()); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
}

func TestDialQMPNoSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := DialQMP(ctx, filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Fatal("DialQMP to no socket: no error")
	}
}
