package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/overboot/overboot/internal/blobstore"
)

func httpSection() Section {
	return Section{Name: "http", Run: runHTTP}
}

const (
	httpFileSize = 200 << 20
	httpClients  = 32
	httpRounds   = 3
)

// runHTTP serves the same 200 MB file from `overboot serve` (a separate
// process) and from nginx, and downloads it 32 times at once from each,
// alternating, three rounds.
func runHTTP(ctx context.Context, env *Env) ([]Result, error) {
	dir := filepath.Join(env.WorkDir, "http")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "image")
	if fileSize(file) != httpFileSize {
		f, err := os.Create(file)
		if err != nil {
			return nil, err
		}
		if _, err := io.CopyN(f, rand.Reader, httpFileSize); err != nil {
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	}
	st, err := blobstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		return nil, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	d, _, err := st.Ingest(f)
	f.Close()
	if err != nil {
		return nil, err
	}

	obPort, ngPort := freePort(), freePort()
	ob := exec.CommandContext(ctx, filepath.Join(env.BuildDir, "overboot"), "serve", "--listen", "127.0.0.1:"+obPort, "--data", st.Dir())
	ob.Stderr = os.Stderr
	if err := ob.Start(); err != nil {
		return nil, err
	}
	defer func() { ob.Process.Kill(); ob.Wait() }()

	prefix := filepath.Join(dir, "nginx")
	os.MkdirAll(prefix, 0o755)
	conf := fmt.Sprintf(`user root;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
	server { listen 127.0.0.1:%[2]s; root %[3]s; location / { } }
}
`, prefix, ngPort, dir)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	ng := exec.CommandContext(ctx, "nginx", "-c", confPath, "-p", prefix, "-g", "daemon off;")
	ng.Stderr = os.Stderr
	if err := ng.Start(); err != nil {
		return nil, fmt.Errorf("nginx (apt-get install nginx): %w", err)
	}
	defer func() { ng.Process.Kill(); ng.Wait() }()

	obURL := "http://127.0.0.1:" + obPort + "/blobs/sha256/" + d.Hex()
	ngURL := "http://127.0.0.1:" + ngPort + "/image"
	for _, u := range []string{obURL, ngURL} {
		if err := waitHTTP(ctx, u); err != nil {
			return nil, err
		}
	}
	var obRates, ngRates []float64
	for i := range httpRounds {
		r, err := parallelGet(ctx, obURL)
		if err != nil {
			return nil, fmt.Errorf("overboot: %w", err)
		}
		obRates = append(obRates, r)
		n, err := parallelGet(ctx, ngURL)
		if err != nil {
			return nil, fmt.Errorf("nginx: %w", err)
		}
		ngRates = append(ngRates, n)
		fmt.Fprintf(env.Out, "round %d: overboot %.0f MB/s, nginx %.0f MB/s (%d x %d MB)\n", i+1, r, n, httpClients, httpFileSize>>20)
	}
	rss := peakRSS(ob.Process.Pid)
	sort.Float64s(obRates)
	sort.Float64s(ngRates)
	return []Result{
		{Section: "http", Metric: fmt.Sprintf("%d concurrent 200 MB GETs, MB/s (median)", httpClients), Ours: obRates[1], Ref: ngRates[1], RefName: "nginx", Better: "higher", Goal: ">= 0.9x"},
		{Section: "http", Metric: "server peak RSS, MB", Ours: rss, Ref: 100, RefName: "(limit)", Better: "lower", Goal: "< 100 MB", Note: "VmHWM of overboot serve"},
	}, nil
}

func parallelGet(ctx context.Context, url string) (float64, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: httpClients, DisableCompression: true, ReadBufferSize: 256 << 10}}
	var wg sync.WaitGroup
	errs := make([]error, httpClients)
	var total int64
	var mu sync.Mutex
	t0 := time.Now()
	for i := range httpClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			buf := make([]byte, 256<<10)
			var n int64
			for {
				m, err := resp.Body.Read(buf)
				n += int64(m)
				if err == io.EOF {
					break
				}
				if err != nil {
					errs[i] = err
					return
				}
			}
			if n != httpFileSize {
				errs[i] = fmt.Errorf("got %d bytes", n)
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return float64(total) / 1e6 / time.Since(t0).Seconds(), nil
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "0"
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func waitHTTP(ctx context.Context, url string) error {
	for i := 0; i < 100; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer", url)
}

// peakRSS reads VmHWM of a process, in MB.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
