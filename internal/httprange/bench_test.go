package httprange

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkSequential reads a 256 MiB image served over loopback from
// start to end, in 128 KiB reads (an NBD request's usual size), and, in the
// same iteration, downloads it with one plain GET for comparison. It
// reports both rates and their ratio (target: >= 0.8).
func BenchmarkSequential(b *testing.B) {
	const size = 256 << 20
	data := randomImage(b, size)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"sha256:bench"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true, ReadBufferSize: readBufferSize}}
	defer client.CloseIdleConnections()

	var plain, ranged time.Duration
	buf := make([]byte, 128<<10)
	for b.Loop() {
		t0 := time.Now()
		resp, err := client.Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		// A large buffer, and a writer without ReadFrom so that it is
		// used (io.Discard's ReadFrom reads 8 KiB at a time).
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, resp.Body, make([]byte, 256<<10))
		resp.Body.Close()
		if err != nil || n != size {
			b.Fatalf("plain GET: %d bytes, %v", n, err)
		}
		plain += time.Since(t0)

		t0 = time.Now()
		r, err := Open(b.Context(), client, srv.URL, Options{})
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := r.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		ranged += time.Since(t0)
		if testing.Verbose() {
			b.Logf("%v", r.Stats())
		}
		r.Close()
	}
	mbps := func(d time.Duration) float64 { return float64(size) * float64(b.N) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(ranged), "httprange-MB/s")
	b.ReportMetric(mbps(plain), "plain-MB/s")
	b.ReportMetric(mbps(ranged)/mbps(plain), "ratio")
	b.ReportMetric(0, "ns/op")
}
