package server

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/blobstore"
)

func TestCheckRanges(t *testing.T) {
	const size = 4096
	many := func(n int, el func(i int) string) string {
		var b strings.Builder
		b.WriteString("bytes=")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(el(i))
		}
		return b.String()
	}
	for _, c := range []struct {
		name, h string
		refuse  string // part of the reason; "" to serve
	}{
		{"one", "bytes=0-99", ""},
		{"resume", "bytes=1000-", ""},
		{"suffix", "bytes=-100", ""},
		{"past the end", "bytes=5000-6000", ""}, // ServeContent answers 416 itself
		{"two ascending", "bytes=0-9, 100-199", ""},
		{"two overlapping", "bytes=0-99,50-149", ""},
		{"two descending", "bytes=100-199,0-9", ""},
		{"three ascending", "bytes=0-9,100-199,4000-", ""},
		{"three adjacent", "bytes=0-9,10-19,20-29", ""},
		{"three with a suffix last", "bytes=0-9,100-199,-10", ""},
		{"sixteen ascending", many(16, func(i int) string { return fmt.Sprintf("%d-%d", i*100, i*100+9) }), ""},
		{"empty elements skipped", "bytes=0-9,,, ,100-199", ""},
		{"three overlapping", "bytes=0-99,50-149,200-299", "overlap"},
		{"three descending", "bytes=200-299,100-199,0-9", "ascending"},
		{"same twice", "bytes=0-9,0-9,100-109", "overlap"},
		{"suffix overlaps", "bytes=0-9,4000-4095,-10", "overlap"},
		{"open then more", "bytes=0-9,100-,200-299", "overlap"},
		{"seventeen ascending", many(17, func(i int) string { return fmt.Sprintf("%d-%d", i*100, i*100+9) }), "17 ranges"},
		{"70000 small", many(70000, func(i int) string { return "0-0" }), "70000 ranges"},
		{"70000 empty", many(70000, func(i int) string { return "-0" }), "70000 ranges"},
		{"three empty", "bytes=-0,-0,-0", "overlap"},
		{"70000 with plus signs", many(70000, func(i int) string { return "+0-+0" }), "70000 ranges"},
		{"70000 spread", many(70000, func(i int) string { return fmt.Sprintf("%d-%d", i%size, i%size) }), "70000 ranges"},
		{"past the end counted", many(20, func(i int) string { return fmt.Sprintf("%d-", size+i) }), "20 ranges"},
		// Malformed: left to ServeContent.
		{"no unit", "0-9,0-9,0-9", ""},
		{"other unit", "items=0-9,0-9,0-9", ""},
		{"no dash", "bytes=0-9,5,0-9,0-9", ""},
		{"backwards", "bytes=0-9,9-0,0-9,0-9", ""},
		{"negative suffix", "bytes=0-9,--5,0-9", ""},
		{"not a number", "bytes=0-9,a-b,0-9", ""},
	} {
		err := checkRanges(c.h, size)
		switch {
		case c.refuse == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.refuse != "" && err == nil:
			t.Errorf("%s: served, want refused (%s)", c.name, c.refuse)
		case c.refuse != "" && !strings.Contains(err.Error(), c.refuse):
			t.Errorf("%s: %v, want %q in it", c.name, err, c.refuse)
		}
	}
}

func TestIfRangeMayMatch(t *testing.T) {
	etag := `"sha256:abc"`
	mod := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		method, ir string
		want       bool
	}{
		{"GET", "", true},
		{"GET", etag, true},
		{"GET", " " + etag + " ", true},
		{"HEAD", etag, true},
		{"GET", `"other"`, false},
		{"GET", `W/"sha256:abc"`, false},
		{"GET", mod.Format(http.TimeFormat), true},
		{"GET", mod.Add(time.Hour).Format(http.TimeFormat), false},
		{"GET", "not a date", true}, // unsure: checked
		{"POST", `"other"`, true},   // If-Range counts for GET and HEAD only
	} {
		r := httptest.NewRequest(c.method, "/", nil)
		if c.ir != "" {
			r.Header.Set("If-Range", c.ir)
		}
		if got := ifRangeMayMatch(r, etag, mod); got != c.want {
			t.Errorf("%s If-Range %q: %v, want %v", c.method, c.ir, got, c.want)
		}
	}
}

// TestRangesBounded: whatever the Range header, what the check lets
// through to http.ServeContent is answered with a body of at most the
// content and a part header per range.
func TestRangesBounded(t *testing.T) {
	const size = 4096
	content := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	mod := time.Unix(1700000000, 0)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuseRanges(w, r, size, `"e"`, mod) {
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", mod, bytes.NewReader(content))
	})
	rng := rand.New(rand.NewPCG(1, 2))
	num := func(n int64) string {
		switch rng.IntN(8) {
		case 0:
			return "+" + fmt.Sprint(n)
		case 1:
			return " " + fmt.Sprint(n) + " "
		}
		return fmt.Sprint(n)
	}
	for i := 0; i < 2000; i++ {
		var els []string
		for range 1 + rng.IntN(200) {
			switch rng.IntN(8) {
			case 0:
				els = append(els, num(size-rng.Int64N(8))+"-")
			case 1:
				els = append(els, "-"+num(rng.Int64N(4)))
			case 2:
				els = append(els, "")
			default:
				a := rng.Int64N(size + 8)
				els = append(els, num(a)+"-"+num(a+rng.Int64N(4)))
			}
		}
		hdr := "bytes=" + strings.Join(els, ",")
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Range", hdr)
		h.ServeHTTP(rec, req)
		if n := rec.Body.Len(); n > size+maxRanges*200 {
			t.Fatalf("Range %.200q (%d ranges): %d, %d bytes for %d of content", hdr, len(els), rec.Code, n, size)
		}
	}
}

// TestBlobRanges: through the blob and tree handlers, a Range header of
// many ranges, or of more than 2 out of order, is answered 416 with a
// short reason; one range and a few ascending ones are served as before.
func TestBlobRanges(t *testing.T) {
	content := make([]byte, 8*4096)
	for i := range content {
		content[i] = byte(i * 13 / 7)
	}
	var path string
	f := newFixPre(t, "[profile lazy]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/lazyroot\nlower-mode = lazy\n[machine 52:54:00:12:34:58]\nprofile = lazy\n", func(data string) {
		os.WriteFile(filepath.Join(filepath.Dir(data), "lazyroot"), content, 0o644)
		blobs, err := blobstore.Open(data)
		if err != nil {
			t.Fatal(err)
		}
		d, _, err := blobs.Ingest(bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		path = BlobPrefix + d.Hex()
	})
	etag := f.get(path).Header.Get("ETag")
	// 70000 empty ranges: ServeContent's guard (ranges adding up to more
	// than the content) lets them through, one part header each.
	many := "bytes=" + strings.TrimSuffix(strings.Repeat("-0,", 70000), ",")

	r := f.get(path, "Range", many)
	b := body(t, r)
	if r.StatusCode != http.StatusRequestedRangeNotSatisfiable || len(b) > 200 || !strings.Contains(b, "70000 ranges") ||
		r.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(content)) || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("70000 ranges: %d %v %.200q (%d bytes)", r.StatusCode, r.Header, b, len(b))
	}
	if r.Header.Get("Cache-Control") != "" || r.Header.Get("ETag") != "" {
		t.Errorf("a refusal is marked cacheable: %v", r.Header)
	}
	r = f.get(path, "Range", "bytes="+strings.TrimSuffix(strings.Repeat("0-0,", 70000), ","))
	if b := body(t, r); r.StatusCode != http.StatusRequestedRangeNotSatisfiable || len(b) > 200 {
		t.Errorf("70000 one-byte ranges: %d, %d bytes", r.StatusCode, len(b))
	}
	r = f.get(path, "Range", many, "If-Range", etag)
	if body(t, r); r.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("70000 ranges, If-Range matching: %d", r.StatusCode)
	}
	// An If-Range that does not match makes the server send the whole
	// content, Range or not.
	r = f.get(path, "Range", many, "If-Range", `"other"`)
	if b := body(t, r); r.StatusCode != 200 || b != string(content) {
		t.Errorf("70000 ranges, If-Range not matching: %d, %d bytes", r.StatusCode, len(b))
	}

	r = f.get(path, "Range", "bytes=0-99,50-149,200-299")
	if b := body(t, r); r.StatusCode != http.StatusRequestedRangeNotSatisfiable || !strings.Contains(b, "overlap") {
		t.Errorf("3 overlapping: %d %.200q", r.StatusCode, b)
	}

	r = f.get(path, "Range", "bytes=10-19, 100-109, 30000-")
	parts := multipartBody(t, r)
	if r.StatusCode != http.StatusPartialContent || len(parts) != 3 ||
		parts[0] != string(content[10:20]) || parts[1] != string(content[100:110]) || parts[2] != string(content[30000:]) {
		t.Errorf("3 ascending: %d, parts %d", r.StatusCode, len(parts))
	}

	r = f.get(path, "Range", "bytes=4096-8191", "If-Range", etag)
	if b := body(t, r); r.StatusCode != http.StatusPartialContent || b != string(content[4096:8192]) ||
		r.Header.Get("Content-Range") != fmt.Sprintf("bytes 4096-8191/%d", len(content)) {
		t.Errorf("1 range: %d %v, %d bytes", r.StatusCode, r.Header, len(b))
	}
	r = f.get(path, "Range", "bytes=-5")
	if b := body(t, r); r.StatusCode != http.StatusPartialContent || b != string(content[len(content)-5:]) {
		t.Errorf("a suffix: %d, %d bytes", r.StatusCode, len(b))
	}
	r = f.get(path, "Range", "bytes=oops")
	if body(t, r); r.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("malformed: %d", r.StatusCode)
	}

	// The tree handler checks the same way.
	script := f.script("52-54-00-12-34-58", "192.0.2.10")
	_, doc := f.doc(find(t, `overboot\.doc=http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, script), "")
	if doc.Lower.HTTP == nil || doc.Lower.HTTP.Verity == nil {
		t.Fatalf("lower: %+v", doc.Lower)
	}
	tree := strings.TrimPrefix(doc.Lower.HTTP.Verity.HashURL, "http://10.0.2.100")
	r = f.get(tree, "Range", many)
	if b := body(t, r); r.StatusCode != http.StatusRequestedRangeNotSatisfiable || len(b) > 200 {
		t.Errorf("tree, 70000 ranges: %d, %d bytes", r.StatusCode, len(b))
	}
	r = f.get(tree, "Range", "bytes=0-0,1-1,2-2")
	if parts := multipartBody(t, r); r.StatusCode != http.StatusPartialContent || len(parts) != 3 {
		t.Errorf("tree, 3 ascending: %d, parts %d", r.StatusCode, len(parts))
	}
}

// multipartBody reads a multipart/byteranges response's parts.
func multipartBody(t *testing.T, r *http.Response) []string {
	t.Helper()
	defer r.Body.Close()
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return nil
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, string(b))
	}
}
