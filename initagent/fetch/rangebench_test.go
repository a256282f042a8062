package fetch

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkRangeSequential reads a 256 MiB image served over loopback from
// start to end, in 128 KiB reads (an NBD request's usual size), and, in the
// same iteration, downloads it with one plain GET twice: io.Copy to
// io.Discard (which reads 8 KiB at a time), and io.CopyBuffer with a 256
// KiB buffer, the fastest a Go client goes. It reports the three rates and
// the RangeReader's ratio to each (target: >= 0.8).
func BenchmarkRangeSequential(b *testing.B) {
	const size = 256 << 20
	data := randomImage(b, size)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"sha256:bench"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true, ReadBufferSize: readBufferSize}}
	defer client.CloseIdleConnections()

	get := func(copy func(io.Reader) (int64, error)) time.Duration {
		t0 := time.Now()
		resp, err := client.Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		n, err := copy(resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			b.Fatalf("plain GET: %d bytes, %v", n, err)
		}
		return time.Since(t0)
	}
	big := make([]byte, 256<<10)
	var plain, plainBuf, ranged time.Duration
	buf := make([]byte, 128<<10)
	for b.Loop() {
		plain += get(func(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) })
		// A writer without ReadFrom, so that the buffer is used.
		plainBuf += get(func(r io.Reader) (int64, error) { return io.CopyBuffer(struct{ io.Writer }{io.Discard}, r, big) })

		t0 := time.Now()
		r, err := OpenRange(b.Context(), client, srv.URL, RangeOptions{})
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
	b.ReportMetric(mbps(ranged), "range-MB/s")
	b.ReportMetric(mbps(plain), "copy-MB/s")
	b.ReportMetric(mbps(plainBuf), "copybuf-MB/s")
	b.ReportMetric(mbps(ranged)/mbps(plain), "ratio-copy")
	b.ReportMetric(mbps(ranged)/mbps(plainBuf), "ratio-copybuf")
	b.ReportMetric(0, "ns/op")
}
