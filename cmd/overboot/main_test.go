package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
)

// cliStderr runs the command line as cli does, and returns its stderr too.
func cliStderr(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut strings.Builder
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// cli runs the command line against an in-process server whose data
// directory is data, and returns stdout.
func cli(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut strings.Builder
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), err
}

// testServer runs an in-process server over a new data directory, with
// one profile (default: approve, upper on iSCSI) whose artifacts are files
// in dir, points $OVERBOOT_SERVER at it and clears the token variables.
func testServer(t *testing.T) (s *server.Server, data, dir string) {
	t.Helper()
	data = t.TempDir()
	dir = t.TempDir()
	for name, body := range map[string]string{"kernel": "K", "initramfs": "I", "root": "hsqs-1"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	cfg, err := config.Parse("t.conf", strings.NewReader("[server]\ndata = "+data+"\n[profile default]\nkernel = "+dir+"/kernel\ninitramfs = "+dir+"/initramfs\nroot = "+dir+"/root\nupper = iscsi\nenroll = approve\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err = server.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	t.Setenv("OVERBOOT_SERVER", hs.URL)
	t.Setenv("OVERBOOT_TOKEN", "")
	t.Setenv("OVERBOOT_TOKEN_FILE", "")
	return s, data, dir
}

// adminToken makes an admin token in data and puts it in $OVERBOOT_TOKEN.
func adminToken(t *testing.T, data string) {
	t.Helper()
	tok, err := cli(t, "", "token", "create", "admin", "--data", data)
	if err != nil || !strings.HasPrefix(tok, "obt_") {
		t.Fatalf("token create: %q %v", tok, err)
	}
	t.Setenv("OVERBOOT_TOKEN", strings.TrimSpace(tok))
}

// askToBoot is a machine asking the server for its script from addr.
func askToBoot(s *server.Server, mac, addr string) {
	req := httptest.NewRequest(http.MethodGet, "/ipxe?mac="+mac, nil)
	req.RemoteAddr = addr + ":1000"
	s.Handler().ServeHTTP(httptest.NewRecorder(), req)
}

// TestAdminCommands drives the admin commands against a real server: the
// first token from the data directory, users, machines, images, backup.
func TestAdminCommands(t *testing.T) {
	s, data, dir := testServer(t)
	if _, err := cli(t, "", "machine", "ls"); err == nil || !strings.Contains(err.Error(), "no admin token") {
		t.Fatalf("without a token: %v", err)
	}
	adminToken(t, data)
	if _, err := cli(t, "correct horse\n", "user", "add", "alice", "--password-stdin"); err != nil {
		t.Fatalf("user add: %v", err)
	}
	if _, err := cli(t, "short\n", "user", "add", "bob", "--password-stdin"); !errors.As(err, new(usageError)) {
		t.Errorf("a short password: %v", err)
	}
	if out, err := cli(t, "", "user", "ls"); err != nil || !strings.Contains(out, "alice") || strings.Contains(out, "bob") {
		t.Errorf("user ls: %q %v", out, err)
	}
	// A machine asks to boot: pending; approve it from the command line.
	askToBoot(s, "52-54-00-00-00-01", "192.0.2.1")
	if out, err := cli(t, "", "machine", "ls"); err != nil || !strings.Contains(out, "52:54:00:00:00:01") || !strings.Contains(out, "pending") {
		t.Errorf("machine ls: %q %v", out, err)
	}
	// A second address asks too: approving must name one.
	askToBoot(s, "52-54-00-00-00-01", "192.0.2.66")
	if out, err := cli(t, "", "machine", "show", "52:54:00:00:00:01"); err != nil || !strings.Contains(out, "192.0.2.66") || !strings.Contains(out, "waits for approval") {
		t.Errorf("machine show: %q %v", out, err)
	}
	if _, err := cli(t, "", "machine", "approve", "52-54-00-00-00-01"); err == nil || !strings.Contains(err.Error(), "2 requests match; say which") || !strings.Contains(err.Error(), "from 192.0.2.66") {
		t.Errorf("approve of one of two: %v", err)
	}
	if out, err := cli(t, "", "machine", "approve", "52-54-00-00-00-01", "--address", "192.0.2.1"); err != nil || !strings.Contains(out, "approved for profile default at 192.0.2.1") {
		t.Errorf("approve: %q %v", out, err)
	}
	// A token file is written 0600, never over another file.
	tokFile := filepath.Join(dir, "read.token")
	if _, err := cli(t, "", "token", "create", "viewer", "--scope", "read", "--out", tokFile); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(tokFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v %v", fi, err)
	}
	if _, err := cli(t, "", "token", "create", "viewer2", "--out", tokFile); err == nil {
		t.Errorf("token create overwrote a file")
	}
	if _, err := cli(t, "", "token", "create", "x", "--scope", "root"); err == nil || !strings.Contains(err.Error(), "want read, operate or admin") {
		t.Errorf("bad scope: %v", err)
	}
	// A read token reads and may not act.
	t.Setenv("OVERBOOT_TOKEN_FILE", tokFile)
	if _, err := cli(t, "", "machine", "ls"); err != nil {
		t.Errorf("read token: machine ls: %v", err)
	}
	if _, err := cli(t, "", "machine", "rotate", "52:54:00:00:00:01"); err == nil || !strings.Contains(err.Error(), "needs a token of scope operate") {
		t.Errorf("read token rotated: %v", err)
	}
	if _, err := cli(t, "", "backup", filepath.Join(dir, "b.db")); err == nil || !strings.Contains(err.Error(), "scope admin") {
		t.Errorf("read token took a backup: %v", err)
	}
	t.Setenv("OVERBOOT_TOKEN_FILE", "")
	if _, err := cli(t, "", "machine", "approve", "52:54:00:00:00:99"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("approve unknown: %v", err)
	}
	if _, err := cli(t, "", "machine", "explode", "x"); err == nil {
		t.Errorf("unknown action accepted")
	}
	if out, err := cli(t, "", "machine", "explain", "52:54:00:00:00:01"); err != nil || !strings.Contains(out, "profile default because default at t.conf:3") || !strings.Contains(out, "enroll = approve") {
		t.Errorf("explain: %q %v", out, err)
	}
	// Publish a file as an image name; its history has it. A file that
	// is not what it is published as is refused, with the server's why.
	if _, err := cli(t, "", "image", "publish", "bookworm", filepath.Join(dir, "kernel"), "--kind", "root"); err == nil || !strings.Contains(err.Error(), "is text, not a root (squashfs)") {
		t.Errorf("publish a text file as a root: %v", err)
	}
	img := filepath.Join(dir, "v2.sqfs")
	sq := make([]byte, 4096) // a squashfs superblock: block size 128 KiB, version 4, 4096 bytes used
	copy(sq, "hsqs")
	binary.LittleEndian.PutUint32(sq[12:], 128<<10)
	binary.LittleEndian.PutUint16(sq[22:], 17)
	binary.LittleEndian.PutUint16(sq[28:], 4)
	binary.LittleEndian.PutUint64(sq[40:], 4096)
	os.WriteFile(img, sq, 0o644)
	if out, err := cli(t, "", "image", "publish", "bookworm", img); err != nil || !strings.Contains(out, "bookworm version 1") || !strings.Contains(out, "root") {
		t.Errorf("publish: %q %v", out, err)
	}
	if out, err := cli(t, "", "image", "history", "bookworm", "--output", "json"); err != nil || !strings.Contains(out, `"version": 1`) {
		t.Errorf("history: %q %v", out, err)
	}
	// --json, deprecated, still says JSON.
	if out, err := cli(t, "", "image", "history", "bookworm", "--json"); err != nil || !strings.Contains(out, `"version": 1`) {
		t.Errorf("history --json: %q %v", out, err)
	}
	dst := filepath.Join(t.TempDir(), "backup.db")
	if _, err := cli(t, "", "backup", dst); err != nil {
		t.Fatalf("backup: %v", err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v %v", fi, err)
	}
	if _, err := cli(t, "", "backup", dst); err == nil {
		t.Errorf("backup overwrote a file")
	}
}

// TestUsageErrors: a bad command line, whichever command, is a usage
// error (exit status 2) whose message names the command once: main puts
// "overboot: " before it.
func TestUsageErrors(t *testing.T) {
	t.Setenv("OVERBOOT_SERVER", "")
	t.Setenv("OVERBOOT_TOKEN", "")
	t.Setenv("OVERBOOT_TOKEN_FILE", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "which command?"},
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"machin"}, `unknown command "machin" (did you mean machine?)`},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"machine"}, "machine: which command?"},
		{[]string{"machine", "explode", "x"}, `machine: unknown command "explode"`},
		{[]string{"machine", "approve"}, "machine approve: want a MAC"},
		{[]string{"machine", "show", "not-a-mac"}, "machine show: "},
		{[]string{"machine", "ls", "--bogus"}, "machine ls: unknown flag: --bogus"},
		{[]string{"machine", "ls", "-o"}, "machine ls: flag needs an argument"},
		{[]string{"machine", "ls", "-o", "xml"}, `machine ls: --output "xml": want text or json`},
		{[]string{"boot", "ls", "--limit", "many"}, "boot ls: invalid argument"},
		{[]string{"user", "add"}, "user add: want a user name"},
		{[]string{"image", "publish", "x"}, "image publish: want a name and a FILE or sha256:HEX"},
		{[]string{"token", "create", "x", "--scope", "root"}, "token create: --scope"},
		{[]string{"serve", "extra"}, "serve: want no arguments"},
		{[]string{"serve", "--drain", "soon"}, "serve: invalid argument"},
		{[]string{"serve", "-listen", ":80"}, "serve: -listen: long flags take two dashes: --listen"},
		{[]string{"mkimage"}, "mkimage: which command?"},
		{[]string{"mkimage", "root"}, "mkimage root: want exactly one SOURCE"},
		{[]string{"inspect", "--nope"}, "inspect: unknown flag: --nope"},
		{[]string{"completion", "tcsh"}, `completion: unknown command "tcsh"`},
		{[]string{"help", "nope"}, `help: unknown command "nope"`},
		{[]string{"version", "x"}, "version: want no arguments"},
		{[]string{"machine", "ls"}, "no admin token"},
	} {
		_, err := cli(t, "", tc.args...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) || strings.HasPrefix(err.Error(), "overboot") {
			t.Errorf("%q: %v (exit %d), want exit 2 and %q", tc.args, err, exitCode(err), tc.want)
		}
	}
	if out, err := cli(t, "", "--help"); err != nil || !strings.Contains(out, "machine") || !strings.Contains(out, "token") {
		t.Errorf("--help: %q %v", out, err)
	}
	if out, err := cli(t, "", "help", "machine", "ls"); err != nil || !strings.Contains(out, "--output") {
		t.Errorf("help machine ls: %q %v", out, err)
	}
}

// TestServerFromConfig: without --server and $OVERBOOT_SERVER, the admin
// commands find the server in its configuration (--config FILE, else
// /etc/overboot.conf if it exists): its url, else its listen address.
func TestServerFromConfig(t *testing.T) {
	s, data, dir := testServer(t)
	adminToken(t, data)
	askToBoot(s, "52-54-00-00-00-01", "192.0.2.1")
	hsURL := os.Getenv("OVERBOOT_SERVER")
	listen := strings.TrimPrefix(hsURL, "http://")
	_, port, _ := net.SplitHostPort(listen)
	t.Setenv("OVERBOOT_SERVER", "")
	saved, savedPkg := defaultConfig, packageConfig
	defer func() { defaultConfig, packageConfig = saved, savedPkg }()
	defaultConfig, packageConfig = filepath.Join(dir, "absent.conf"), filepath.Join(dir, "absent-too.conf")

	conf := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	for _, tc := range []struct{ name, conf string }{
		{"listen", "[server]\nlisten = " + listen + "\n"},
		{"unspecified listen", "[server]\nlisten = 0.0.0.0:" + port + "\n"},
		{"url over listen", "[server]\nlisten = 127.0.0.1:1\nurl = " + hsURL + "\n"},
	} {
		p := conf("c.conf", tc.conf)
		if out, err := cli(t, "", "machine", "ls", "--config", p); err != nil || !strings.Contains(out, "52:54:00:00:00:01") {
			t.Errorf("%s: %q %v", tc.name, out, err)
		}
	}
	// The default file, when it exists.
	defaultConfig = conf("default.conf", "[server]\nlisten = "+listen+"\n")
	if out, err := cli(t, "", "machine", "ls"); err != nil || !strings.Contains(out, "52:54:00:00:00:01") {
		t.Errorf("%s: %q %v", defaultConfig, out, err)
	}
	// --server and $OVERBOOT_SERVER come first; the error says where the
	// address came from.
	if _, err := cli(t, "", "machine", "ls", "--server", "http://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "is overboot serve running at http://127.0.0.1:1 (--server)?") {
		t.Errorf("--server: %v", err)
	}
	t.Setenv("OVERBOOT_SERVER", "http://127.0.0.1:1")
	if _, err := cli(t, "", "machine", "ls", "--config", defaultConfig); err == nil || !strings.Contains(err.Error(), "($OVERBOOT_SERVER)") {
		t.Errorf("$OVERBOOT_SERVER: %v", err)
	}
	t.Setenv("OVERBOOT_SERVER", "")
	if _, err := cli(t, "", "machine", "ls", "--config", conf("down.conf", "[server]\nlisten = 127.0.0.1:1\n")); err == nil || !strings.Contains(err.Error(), "http://127.0.0.1:1 (listen in "+dir+"/down.conf)") {
		t.Errorf("listen of a server that is not there: %v", err)
	}
	// A file that does not parse: its FILE:LINE.
	bad := conf("bad.conf", "[server]\nlisten = x\n")
	if _, err := cli(t, "", "machine", "ls", "--config", bad); err == nil || !strings.Contains(err.Error(), bad+":2: listen") {
		t.Errorf("bad config: %v", err)
	}
	// No file at all: the default address.
	defaultConfig = filepath.Join(dir, "absent.conf")
	if _, err := cli(t, "", "machine", "ls"); err == nil || !strings.Contains(err.Error(), DefaultServer+" (the default)") {
		t.Errorf("no config: %v", err)
	}
}

// TestOutputJSON: every list and show command prints valid JSON with
// --output json (and -o json): a list an array, [] when empty, a zero time
// left out; an unknown format is a usage error before anything is done.
func TestOutputJSON(t *testing.T) {
	s, data, _ := testServer(t)
	adminToken(t, data)
	askToBoot(s, "52-54-00-00-00-01", "192.0.2.1")
	arrays := [][]string{
		{"machine", "ls"}, {"user", "ls"}, {"image", "ls"}, {"disk", "ls"}, {"boot", "ls"}, {"token", "ls"},
		{"boot", "ls", "--mac", "52:54:00:00:00:01", "--limit", "5"},
	}
	for _, args := range arrays {
		for _, flag := range [][]string{{"--output", "json"}, {"-o", "json"}, {"--output=json"}} {
			out, err := cli(t, "", append(append([]string{}, args...), flag...)...)
			var v []map[string]any
			if err != nil || json.Unmarshal([]byte(out), &v) != nil || v == nil {
				t.Errorf("%v %v: not a JSON array: %v\n%s", args, flag, err, out)
			}
		}
	}
	if out, err := cli(t, "", "user", "ls", "-o", "json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("an empty list: %q %v", out, err)
	}
	if _, err := cli(t, "", "token", "create", "unused", "--scope", "read"); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "", "token", "ls", "-o", "json")
	var toks []map[string]any
	json.Unmarshal([]byte(out), &toks)
	for _, tok := range toks {
		_, used := tok["used"]
		if _, created := tok["created"]; !created || used != (tok["name"] == "admin") {
			t.Errorf("token ls: a zero time is left out, a set one kept: %v", tok)
		}
	}
	if err != nil || len(toks) != 2 || strings.Contains(out, "0001-01-01") {
		t.Errorf("token ls: %q %v", out, err)
	}
	for _, args := range [][]string{{"machine", "show", "52:54:00:00:00:01"}, {"machine", "explain", "52:54:00:00:00:01"}} {
		out, err := cli(t, "", append(args, "-o", "json")...)
		var v map[string]any
		if err != nil || json.Unmarshal([]byte(out), &v) != nil || v["mac"] != "52:54:00:00:00:01" {
			t.Errorf("%v: not a JSON object: %v\n%s", args, err, out)
		}
	}
	// text is the default, and the table says the same.
	if out, err := cli(t, "", "machine", "ls", "--output", "text"); err != nil || !strings.HasPrefix(out, "MAC ") || !strings.Contains(out, "pending") {
		t.Errorf("machine ls --output text: %q %v", out, err)
	}
	// An unknown format approves nothing.
	_, err = cli(t, "", "machine", "approve", "52:54:00:00:00:01", "-o", "yaml")
	if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), `machine approve: --output "yaml": want text or json`) {
		t.Errorf("-o yaml: %v", err)
	}
	if out, _ := cli(t, "", "machine", "ls"); !strings.Contains(out, "pending") {
		t.Errorf("approved with an unknown --output:\n%s", out)
	}
	if out, err := cli(t, "", "machine", "approve", "52:54:00:00:00:01", "-o", "json"); err != nil || !strings.Contains(out, `"profile": "default"`) {
		t.Errorf("approve -o json: %q %v", out, err)
	}
}

// TestCompletion: the completion scripts, and MACs, user names and image
// names completed from the server's API with a token; without a token or
// a server, no suggestions and no error.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "# bash completion V2 for overboot", "zsh": "#compdef overboot", "fish": "complete -c overboot", "powershell": "Register-ArgumentCompleter"} {
		if out, err := cli(t, "", "completion", shell); err != nil || !strings.Contains(out, want) {
			t.Errorf("completion %s: %v\n%.200s", shell, err, out)
		}
	}
	s, data, _ := testServer(t)
	// No token yet: nothing suggested, nothing said.
	for _, args := range [][]string{{"machine", "show", ""}, {"user", "passwd", ""}, {"image", "history", ""}} {
		out, errOut, err := cliStderr(t, "", append([]string{cobra.ShellCompRequestCmd}, args...)...)
		if err != nil || strings.TrimSpace(out) != ":4" || strings.Contains(strings.ToLower(errOut), "error") || strings.Contains(errOut, "token") {
			t.Errorf("%v without a token: %q %q %v", args, out, errOut, err)
		}
	}
	adminToken(t, data)
	askToBoot(s, "52-54-00-00-00-01", "192.0.2.1")
	askToBoot(s, "52-54-00-00-00-02", "192.0.2.2")
	if _, err := cli(t, "correct horse\n", "user", "add", "alice", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().PublishImage(context.Background(), state.Image{Name: "bookworm", Digest: "sha256:" + strings.Repeat("ab", 32), Size: 4096, Kind: "root"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args      []string
		want, not string
	}{
		{[]string{"machine", "show", ""}, "52:54:00:00:00:01\tdefault, pending, 192.0.2.1", ""},
		{[]string{"machine", "approve", "52:54:00:00:00:0"}, "52:54:00:00:00:02\t", "alice"},
		{[]string{"machine", "approve", "52:54:00:00:00:02"}, "52:54:00:00:00:02\t", "52:54:00:00:00:01"},
		{[]string{"boot", "ls", "--mac", ""}, "52:54:00:00:00:01", ""},
		{[]string{"user", "passwd", ""}, "alice", "52:54"},
		{[]string{"user", "del", "al"}, "alice", ""},
		{[]string{"image", "history", ""}, "bookworm\troot, version 1", ""},
		{[]string{"image", "rollback", "b"}, "bookworm", ""},
		{[]string{"image", "publish", "bookworm", ""}, ":0", "bookworm"}, // FILE: the shell's own completion
		{[]string{"machine", "ls", "-o", ""}, "json", ""},
	} {
		out, err := cli(t, "", append([]string{cobra.ShellCompRequestCmd}, tc.args...)...)
		if err != nil || !strings.Contains(out, tc.want) || (tc.not != "" && strings.Contains(out, tc.not)) {
			t.Errorf("%q: %v\n%s", tc.args, err, out)
		}
	}
	// A server that does not answer: no suggestions, no error.
	t.Setenv("OVERBOOT_SERVER", "http://127.0.0.1:1")
	out, errOut, err := cliStderr(t, "", cobra.ShellCompRequestCmd, "machine", "show", "")
	if err != nil || strings.TrimSpace(out) != ":4" || strings.Contains(strings.ToLower(errOut), "error") {
		t.Errorf("no server: %q %q %v", out, errOut, err)
	}
}

// TestManPages: gen-man (make man) writes a page per command, from the
// command tree; man renders overboot-serve.1 with its flags.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	if _, err := cli(t, "", "gen-man", dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "overboot-serve.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`.TH "OVERBOOT-SERVE" "1"`, `\fB--config\fP`, `\fB--check-config\fP`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("overboot-serve.1 lacks %q", want)
		}
	}
	for _, page := range []string{"overboot.1", "overboot-mkimage-root.1", "overboot-machine-ls.1", "overboot-completion-bash.1", "overboot-version.1"} {
		if _, err := os.Stat(filepath.Join(dir, page)); err != nil {
			t.Errorf("no %s: %v", page, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "overboot-gen-man.1")); err == nil {
		t.Error("the hidden gen-man has a page")
	}
	if _, err := exec.LookPath("man"); err != nil {
		t.Fatalf("man (package man-db) is needed to render the page: %v", err)
	}
	out, err := exec.Command("man", "-l", filepath.Join(dir, "overboot-serve.1")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--config") || !strings.Contains(string(out), "overboot serve") {
		t.Errorf("man -l overboot-serve.1: %v\n%s", err, out)
	}
}
