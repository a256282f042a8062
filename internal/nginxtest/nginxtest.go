package nginxtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/testneed"
)

// Options says what nginx fronts and how.
type Options struct {
	// Upstreams are the servers' host:port, in one upstream block
	// (round robin, the next one tried on an error or a 502-504).
	Upstreams []string
	// Slice, when set (e.g. "1m"), caches Range requests by slices of
	// that size (nginx's slice module); else a Range is passed to the
	// upstream and the answer cached under a key that includes it.
	Slice string
	// WholeFirst (with Slice empty) makes nginx answer the first
	// request for an object, the one that finds it not cached, with the
	// upstream's whole object and 200, even to a Range request: nginx
	// never passes a Range on (proxy_set_header Range ""), and it caches
	// an object only from its second request on (proxy_cache_min_uses
	// 2), so the first answer is not cached and nginx passes it on as it
	// came. From the second request on, ranges are served from the
	// object as it is cached (206: a MISS that fills the cache, then
	// HITs). This is a cache that cannot answer a range before it holds
	// the object: what a lazy root must retry (issue 18, 5a). (nginx
	// answers a cacheable miss by range from the upstream's stream: a
	// 200 to a Range request needs an answer it does not cache.)
	WholeFirst bool
	// Connections is each worker's worker_connections (0: 256). A
	// proxied request holds two, the client's and the upstream's.
	Connections int
	// Backlog is the listening socket's accept queue (0: nginx's
	// default, 511 on Linux). Many machines connecting at once overflow
	// a short one: the kernel drops their SYNs and they try again after
	// 1 s, 3 s, 7 s...
	Backlog int
}

// Config is the nginx configuration for opt, with every path under dir
// and the server listening on 127.0.0.1:port. asRoot adds "user root;"
// (the workers otherwise switch to nobody, who cannot write dir).
func Config(dir string, port int, asRoot bool, opt Options) string {
	var b strings.Builder
	if asRoot {
		b.WriteString("user root root;\n")
	}
	conns := opt.Connections
	if conns <= 0 {
		conns = 256
	}
	fmt.Fprintf(&b, `worker_processes 1;
worker_rlimit_nofile %[2]d;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections %[3]d; }

http {
    # One tab-separated line per request; $upstream_cache_status is
    # MISS, HIT, EXPIRED, ... ("-" for what is not cached).
    log_format cache '$request_method	$uri	$status	$upstream_cache_status	$http_range	$body_bytes_sent	$upstream_addr	$upstream_bytes_received';
    access_log %[1]s/access.log cache;

    client_body_temp_path %[1]s/tmp/client;
    proxy_temp_path       %[1]s/tmp/proxy;
    fastcgi_temp_path     %[1]s/tmp/fastcgi;
    uwsgi_temp_path       %[1]s/tmp/uwsgi;
    scgi_temp_path        %[1]s/tmp/scgi;

    # The cache: blobs and trees never change under their URL, so
    # they may stay as long as there is room.
    proxy_cache_path %[1]s/cache levels=1:2 keys_zone=overboot:10m max_size=10g inactive=30d use_temp_path=off;

    upstream overboot {
`, dir, 2*conns+64, conns)
	for _, u := range opt.Upstreams {
		fmt.Fprintf(&b, "        server %s;\n", u)
	}
	backlog := ""
	if opt.Backlog > 0 {
		backlog = fmt.Sprintf(" backlog=%d", opt.Backlog)
	}
	fmt.Fprintf(&b, `        keepalive 16;
    }

    server {
        listen 127.0.0.1:%d%s;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        # Scripts and documents name the host the machine asked.
        proxy_set_header Host $http_host;
        proxy_next_upstream error timeout http_502 http_503 http_504;

        # Named by digest: immutable, cached.
        location ~ ^/(blobs|verity)/sha256/ {
            proxy_pass http://overboot;
            proxy_cache overboot;
            proxy_cache_lock on;
            proxy_cache_valid 200 206 365d;
            add_header X-Cache-Status $upstream_cache_status;
`, port, backlog)
	switch {
	case opt.WholeFirst:
		b.WriteString(`            # Whole objects only, cached from their second request on:
            # the first is answered with the upstream's whole 200.
            proxy_cache_key $uri;
            proxy_cache_min_uses 2;
            proxy_set_header Range "";
            proxy_set_header If-Range "";
`)
	case opt.Slice != "":
		fmt.Fprintf(&b, `            # Sliced: nginx asks for aligned slices and caches each.
            slice %s;
            proxy_cache_key $uri$slice_range;
            proxy_set_header Range $slice_range;
`, opt.Slice)
	default:
		b.WriteString(`            # Passed: the range goes to the upstream, and its 206 is
            # cached under a key that includes it.
            proxy_cache_key $uri$http_range;
            proxy_set_header Range $http_range;
            proxy_set_header If-Range $http_if_range;
`)
	}
	b.WriteString(`        }

        # Scripts, documents, reports, the API: never cached.
        location / {
            proxy_pass http://overboot;
            proxy_buffering off;
        }
    }
}
`)
	return b.String()
}

// Nginx is a running nginx.
type Nginx struct {
	URL  string // http://127.0.0.1:PORT
	Dir  string // its prefix: nginx.conf, logs, cache
	bin  string
	port int
	opt  Options
	cmd  *exec.Cmd
	done chan error
}

// Start starts nginx for opt; it is stopped and its directory removed
// when t ends.
func Start(t testing.TB, opt Options) *Nginx {
	t.Helper()
	testneed.Tool(t, "nginx")
	n, err := Run(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// Run starts nginx for opt outside of a test (a benchmark's); the caller
// ends it with Stop. Its error names what failed, nginx's own output
// included.
func Run(opt Options) (*Nginx, error) {
	if opt.WholeFirst && opt.Slice != "" {
		return nil, errors.New("nginxtest: WholeFirst and Slice are two ways to cache ranges: choose one")
	}
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return nil, fmt.Errorf("nginx: %w (apt-get install nginx; make deps does)", err)
		}
		bin = "/usr/sbin/nginx"
	}
	dir, err := os.MkdirTemp("", "nginxtest-")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"tmp", "cache"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	// A free port: nginx cannot say which port 0 got. Another process
	// may take it meanwhile: then nginx fails to bind, and we try again.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		n, err := start(bin, dir, port, opt)
		if err == nil {
			return n, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func start(bin, dir string, port int, opt Options) (*Nginx, error) {
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(Config(dir, port, os.Geteuid() == 0, opt)), 0o600); err != nil {
		return nil, err
	}
	// -e: the error log before the configuration is read (else the
	// compiled-in /var/log/nginx/error.log); daemon off: this process is
	// the master, stopped by a signal.
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group: a stop that has to kill kills the workers
	// too (killed alone, the master leaves them holding the output pipe,
	// and Wait would wait for them). WaitDelay bounds that wait anyway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	n := &Nginx{URL: "http://127.0.0.1:" + strconv.Itoa(port), Dir: dir, bin: bin, port: port, opt: opt, cmd: cmd, done: make(chan error, 1)}
	go func() { n.done <- cmd.Wait() }()
	// Ready when it accepts; failed when it exits first.
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case err := <-n.done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return nil, fmt.Errorf("nginx exited at start (%v): %s%s", err, out.String(), log)
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return n, nil
		}
		if time.Now().After(deadline) {
			n.stop()
			return nil, errors.New("nginx did not listen within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart stops nginx (see stop) and starts it again on the same port
// with the same configuration; cold deletes its cache first, as a new
// cache host or a lost disk would have it. The access log goes on (the
// lines after the restart follow the earlier ones). Clients see their
// connections closed, and refused until nginx listens again.
func (n *Nginx) Restart(cold bool) error {
	n.stop()
	if cold {
		cache := filepath.Join(n.Dir, "cache")
		if err := os.RemoveAll(cache); err != nil {
			return err
		}
		if err := os.Mkdir(cache, 0o700); err != nil {
			return err
		}
	}
	// The port is nginx's again at once (nginx listens with
	// SO_REUSEADDR); another process taking it meanwhile fails here.
	m, err := start(n.bin, n.Dir, n.port, n.opt)
	if err != nil {
		return fmt.Errorf("restart nginx on port %d: %w", n.port, err)
	}
	n.cmd, n.done = m.cmd, m.done
	return nil
}

// Stop ends nginx (see stop) and removes its directory.
func (n *Nginx) Stop() {
	n.stop()
	os.RemoveAll(n.Dir)
}

// stop ends nginx: SIGTERM to the master (a fast shutdown, as nginx -s
// stop sends), SIGKILL to its whole process group (master and workers)
// if it has not exited after 10 s. Stopping a stopped nginx does nothing.
func (n *Nginx) stop() {
	n.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-n.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		err = <-n.done
	}
	n.done <- err // for the next stop
}

// Entry is one line of the access log.
type Entry struct {
	Method, URI string
	Status      int
	Cache       string // $upstream_cache_status: MISS, HIT, ...; "-" when not cached
	Range       string // the client's Range header; "-" for none
	Bytes       int64  // body bytes sent
	Upstream    string // the upstream(s) asked; "-" for none
	// UpstreamBytes is what nginx received from the upstreams for the
	// request, headers included (0 for none).
	UpstreamBytes int64
}

func (e Entry) String() string {
	return fmt.Sprintf("%s %s %d %s range=%s bytes=%d upstream=%s", e.Method, e.URI, e.Status, e.Cache, e.Range, e.Bytes, e.Upstream)
}

// WaitLog reads the access log once it has at least lines lines: nginx
// writes a request's line after the last byte is sent, so a client may
// have its answer before the line is there. It gives up after 30 s.
func (n *Nginx) WaitLog(lines int) ([]Entry, error) {
	for deadline := time.Now().Add(30 * time.Second); ; {
		log, err := n.Log()
		if err != nil || len(log) >= lines {
			return log, err
		}
		if time.Now().After(deadline) {
			return log, fmt.Errorf("nginx's access log has %d lines after 30s, want %d", len(log), lines)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Log reads the access log as it is now (see WaitLog).
func (n *Nginx) Log() ([]Entry, error) {
	f, err := os.Open(filepath.Join(n.Dir, "access.log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) != 8 {
			return nil, fmt.Errorf("access log line %q: want 8 tab-separated fields", sc.Text())
		}
		status, err1 := strconv.Atoi(fs[2])
		nb, err2 := strconv.ParseInt(fs[5], 10, 64)
		up, err3 := upstreamBytes(fs[7])
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("access log line %q: bad status or size", sc.Text())
		}
		out = append(out, Entry{Method: fs[0], URI: fs[1], Status: status, Cache: fs[3], Range: fs[4], Bytes: nb, Upstream: fs[6], UpstreamBytes: up})
	}
	return out, sc.Err()
}

// upstreamBytes reads $upstream_bytes_received: "-" for no upstream, or
// one count per upstream asked, separated by ", " (or " : " across an
// internal redirect).
func upstreamBytes(v string) (int64, error) {
	if v == "-" {
		return 0, nil
	}
	var sum int64
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ':' || r == ' ' }) {
		if f == "-" {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// ErrorLog is nginx's error log, for a failing test's message.
func (n *Nginx) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "error.log"))
	return string(b)
}
