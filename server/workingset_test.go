package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/boot"
)

// TestWorkingSetReport: a lazy boot's keeper reports its working set on
// the boot's report URL once; a report naming another image, chunks past
// the image or its tree, or malformed, is a 400 that stores nothing; the
// next boot of the image gets the set in its document.
func TestWorkingSetReport(t *testing.T) {
	img := make([]byte, 64*4096) // 64 chunks of 4 KiB; its tree is 2
	for i := range img {
		img[i] = byte(i * 7 / 4096)
	}
	f := newFixPre(t, "[profile lazy]\nkernel = $DIR/kernel\ninitramfs = $DIR/initramfs\nroot = $DIR/lazyroot\nlower-mode = lazy\n[machine 52:54:00:12:34:57]\nprofile = lazy\n", func(data string) {
		os.WriteFile(filepath.Join(filepath.Dir(data), "lazyroot"), img, 0o644)
	})
	bootDoc := func() boot.Document {
		t.Helper()
		script := f.script("52-54-00-12-34-57", "192.0.2.10")
		_, doc := f.doc(find(t, `overboot\.doc=http://10\.0\.2\.100(/doc/[0-9a-f]{64})`, script), "")
		if doc.Lower.HTTP == nil || doc.Lower.HTTP.Verity == nil {
			t.Fatalf("not a lazy document: %+v", doc)
		}
		return doc
	}
	doc := bootDoc()
	if ws := doc.Lower.HTTP.WorkingSet; ws != nil {
		t.Errorf("the first boot got a working set: %+v", ws)
	}
	rep := regexp.MustCompile(`http://10\.0\.2\.100(/report/[0-9a-f]{64})`).FindStringSubmatch(doc.Report)
	if rep == nil {
		t.Fatalf("report URL %q", doc.Report)
	}
	post := func(body string) (int, string) {
		r := f.do(http.MethodPost, rep[1]+boot.WorkingSetPath, "198.51.100.7", strings.NewReader(body))
		return r.StatusCode, body
	}
	digest := string(doc.Lower.HTTP.Digest)
	report := func(image, set string) string {
		return `{"image":"` + image + `","seconds":60,"working_set":` + set + `}`
	}
	for name, tc := range map[string]struct {
		body, want string
	}{
		"past the image": {report(digest, `{"chunk_size":4096,"image":"0-3,64"}`), "image: chunk 64 is past the end"},
		"past the tree":  {report(digest, `{"chunk_size":4096,"tree":"0-2"}`), "tree: chunk 2 is past the end"},
		"another image":  {report("sha256:"+strings.Repeat("1", 64), `{"chunk_size":4096,"image":"0"}`), "this boot was given " + digest},
		"chunk size":     {report(digest, `{"chunk_size":1000,"image":"0"}`), "chunk_size: 1000"},
		"too many":       {report(digest, `{"chunk_size":4096,"image":"0-5000"}`), "at most 2048"},
		"out of order":   {report(digest, `{"chunk_size":4096,"image":"5,1"}`), "range 1 after 5"},
		"not JSON":       {`{`, "working set report"},
	} {
		r := f.do(http.MethodPost, rep[1]+boot.WorkingSetPath, "198.51.100.7", strings.NewReader(tc.body))
		if b := body(t, r); r.StatusCode != http.StatusBadRequest || !strings.Contains(b, tc.want) {
			t.Errorf("%s: %d %q, want 400 and %q", name, r.StatusCode, b, tc.want)
		}
	}
	if _, n, err := f.s.db.WorkingSet(context.Background(), digest); err != nil || n != 0 {
		t.Fatalf("bad reports stored %d sets (%v)", n, err)
	}
	if c, _ := post(report(digest, `{"chunk_size":4096,"image":"0-3,40-41,63","tree":"0-1"}`)); c != http.StatusNoContent {
		t.Fatalf("a good report: %d", c)
	}
	if c, _ := post(report(digest, `{"chunk_size":4096,"image":"9"}`)); c != http.StatusConflict {
		t.Errorf("a second report of the boot: %d, want 409", c)
	}
	if c := f.do(http.MethodPost, "/report/"+strings.Repeat("a", 64)+boot.WorkingSetPath, "", strings.NewReader(report(digest, `{"chunk_size":4096}`))).StatusCode; c != http.StatusNotFound {
		t.Errorf("a report for no boot: %d", c)
	}

	doc = bootDoc()
	want := &boot.WorkingSet{ChunkSize: 4096, Image: boot.RangesOf([]int64{0, 1, 2, 3, 40, 41, 63}), Tree: boot.RangesOf([]int64{0, 1})}
	if diff := cmp.Diff(want, doc.Lower.HTTP.WorkingSet); diff != "" {
		t.Errorf("the next boot's working set (-want +got):\n%s", diff)
	}
}
