package nginxtest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestConfigModes: the passed mode sends the client's Range upstream and
// keys the cache on it; the sliced mode asks for slices and keys on them;
// both list every upstream and keep every path under the directory.
func TestConfigModes(t *testing.T) {
	passed := Config("/T", 8080, false, Options{Upstreams: []string{"127.0.0.1:1", "127.0.0.1:2"}})
	whole := Config("/T", 8080, false, Options{Upstreams: []string{"127.0.0.1:1"}, WholeFirst: true})
	sliced := Config("/T", 8080, true, Options{Upstreams: []string{"127.0.0.1:1"}, Slice: "1m", Connections: 4096, Backlog: 4096})
	for _, c := range []struct {
		name, conf string
		has, not   []string
	}{
		{"passed", passed, []string{"server 127.0.0.1:1;", "server 127.0.0.1:2;", "proxy_cache_key $uri$http_range;", "proxy_set_header Range $http_range;", "listen 127.0.0.1:8080;", "worker_connections 256;"}, []string{"slice ", "user "}},
		{"whole first", whole, []string{"proxy_cache_key $uri;", "proxy_cache_min_uses 2;", `proxy_set_header Range "";`}, []string{"slice ", "$http_range;", "$slice_range"}},
		{"sliced", sliced, []string{"slice 1m;", "proxy_cache_key $uri$slice_range;", "proxy_set_header Range $slice_range;", "user root root;", "worker_connections 4096;", "worker_rlimit_nofile 8256;", "listen 127.0.0.1:8080 backlog=4096;"}, []string{"$http_range;"}},
	} {
		for _, s := range c.has {
			if !strings.Contains(c.conf, s) {
				t.Errorf("%s: no %q", c.name, s)
			}
		}
		for _, s := range c.not {
			if strings.Contains(c.conf, s) {
				t.Errorf("%s: has %q", c.name, s)
			}
		}
		for _, line := range strings.Split(c.conf, "\n") {
			f := strings.Fields(line)
			if len(f) > 1 && strings.HasSuffix(f[0], "_path") && !strings.HasPrefix(f[1], "/T/") || len(f) > 1 && (f[0] == "pid" || f[0] == "error_log" || f[0] == "access_log") && !strings.HasPrefix(f[1], "/T/") {
				t.Errorf("%s: outside the directory: %s", c.name, line)
			}
		}
	}
}

// TestStartStop: nginx starts in front of an upstream, caches what it
// marks immutable (MISS then HIT in the log), and is gone with its
// directory when the test ends.
func TestStartStop(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Header().Set("ETag", `"x"`)
		io.WriteString(w, "blob "+r.URL.Path)
	}))
	defer up.Close()
	var n *Nginx
	t.Run("run", func(t *testing.T) {
		n = Start(t, Options{Upstreams: []string{strings.TrimPrefix(up.URL, "http://")}})
		for range 2 {
			r, err := http.Get(n.URL + "/blobs/sha256/00")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if string(b) != "blob /blobs/sha256/00" {
				t.Fatalf("%d %q", r.StatusCode, b)
			}
		}
		log, err := n.WaitLog(2)
		if err != nil {
			t.Fatal(err)
		}
		if len(log) != 2 || log[0].Cache != "MISS" || log[1].Cache != "HIT" || log[1].Upstream != "-" {
			t.Errorf("log: %v", log)
		}
		// The MISS came from the upstream: its body and headers.
		if len(log) == 2 && (log[0].UpstreamBytes <= int64(len("blob /blobs/sha256/00")) || log[1].UpstreamBytes != 0) {
			t.Errorf("bytes from the upstream: %d for the MISS, %d for the HIT", log[0].UpstreamBytes, log[1].UpstreamBytes)
		}
	})
	if n == nil {
		return
	}
	if _, err := os.Stat(n.Dir); !os.IsNotExist(err) {
		t.Errorf("%s left: %v", n.Dir, err)
	}
	if n.cmd.ProcessState == nil {
		t.Errorf("nginx (pid %d) was not waited for", n.cmd.Process.Pid)
	}
}

// TestUpstreamBytes: $upstream_bytes_received as nginx writes it, one
// count per upstream asked.
func TestUpstreamBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"-", 0, false},
		{"1234", 1234, false},
		{"0, 1234", 1234, false},
		{"10, 20 : 30", 60, false},
		{"x", 0, true},
	} {
		got, err := upstreamBytes(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("upstreamBytes(%q) = %d, %v; want %d (error %v)", c.in, got, err, c.want, c.bad)
		}
	}
}

// rangeUpstream serves body at every path with Go's ServeContent (Range,
// Accept-Ranges, a strong ETag), marked immutable as overboot marks
// blobs, and counts the requests that carried a Range.
func rangeUpstream(t *testing.T, body string) (*httptest.Server, *atomic.Int64) {
	var ranged atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
		}
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Header().Set("ETag", `"x"`)
		http.ServeContent(w, r, "", time.Unix(1e9, 0), strings.NewReader(body))
	}))
	t.Cleanup(up.Close)
	return up, &ranged
}

// getRange asks url for rng and returns the status and body.
func getRange(t *testing.T, url, rng string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Range", rng)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return r.StatusCode, string(b)
}

// TestWholeFirst: with WholeFirst, the first Range request for an object
// gets 200 and the whole object (a MISS nginx does not cache), the second
// 206 and the range (a MISS that fills the cache), the third 206 from the
// cache (HIT); the upstream never sees a Range.
func TestWholeFirst(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", 4096)
	up, ranged := rangeUpstream(t, body)
	n := Start(t, Options{Upstreams: []string{strings.TrimPrefix(up.URL, "http://")}, WholeFirst: true})
	var got []string
	for i := range 3 {
		code, b := getRange(t, n.URL+"/blobs/sha256/00", "bytes=100-199")
		want, wantBody := http.StatusPartialContent, body[100:200]
		if i == 0 {
			want, wantBody = http.StatusOK, body
		}
		if code != want || b != wantBody {
			t.Errorf("request %d: %d with %d bytes, want %d with %d", i+1, code, len(b), want, len(wantBody))
		}
	}
	log, err := n.WaitLog(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range log {
		got = append(got, fmt.Sprintf("%d %s", e.Status, e.Cache))
	}
	if strings.Join(got, ", ") != "200 MISS, 206 MISS, 206 HIT" {
		t.Errorf("access log: %v, want 200 MISS, 206 MISS, 206 HIT", got)
	}
	if ranged.Load() != 0 {
		t.Errorf("the upstream saw %d Range requests, want none", ranged.Load())
	}
}

// TestRestartCold: a cold restart keeps the port and the access log and
// empties the cache: the object cached before is a MISS again, then a
// HIT.
func TestRestartCold(t *testing.T) {
	up, _ := rangeUpstream(t, "blob")
	n := Start(t, Options{Upstreams: []string{strings.TrimPrefix(up.URL, "http://")}})
	url := n.URL
	get := func() {
		if code, b := getRange(t, n.URL+"/blobs/sha256/00", "bytes=0-3"); code != http.StatusPartialContent || b != "blob" {
			t.Fatalf("%d %q", code, b)
		}
	}
	get()
	get()
	if err := n.Restart(true); err != nil {
		t.Fatal(err)
	}
	if n.URL != url {
		t.Errorf("URL %s after the restart, was %s", n.URL, url)
	}
	get()
	get()
	log, err := n.WaitLog(4)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range log {
		got = append(got, e.Cache)
	}
	if strings.Join(got, " ") != "MISS HIT MISS HIT" {
		t.Errorf("cache status %v, want MISS HIT MISS HIT", got)
	}
	n.Stop()
	n.Stop() // a second stop returns at once
}
