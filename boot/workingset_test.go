package boot

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestChunkRangesText(t *testing.T) {
	for _, tc := range []struct {
		text string
		want ChunkRanges
	}{
		{"", nil},
		{"0", ChunkRanges{{0, 0}}},
		{"0-3,17,40-45", ChunkRanges{{0, 3}, {17, 17}, {40, 45}}},
		{"5,7", ChunkRanges{{5, 5}, {7, 7}}},
	} {
		var got ChunkRanges
		if err := got.UnmarshalText([]byte(tc.text)); err != nil {
			t.Errorf("%q: %v", tc.text, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.text, diff)
		}
		if b, err := got.MarshalText(); err != nil || string(b) != tc.text {
			t.Errorf("%q: marshalled as %q, %v", tc.text, b, err)
		}
	}
	for _, bad := range []string{"3-1", "1,1", "1,2", "0-3,2-5", "3,1", "-1", "01", "1-", ",", "1,", " 1", "a", "1-1", "99999999999999999999", "+1"} {
		var got ChunkRanges
		if err := got.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q: accepted as %v", bad, got)
		}
	}
}

func TestRangesOf(t *testing.T) {
	got := RangesOf([]int64{0, 1, 2, 2, 3, 7, 9, 10})
	if diff := cmp.Diff(ChunkRanges{{0, 3}, {7, 7}, {9, 10}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got.Count() != 7 || !cmp.Equal(got.Chunks(), []int64{0, 1, 2, 3, 7, 9, 10}) {
		t.Errorf("count %d, chunks %v", got.Count(), got.Chunks())
	}
}

func TestWorkingSetCheck(t *testing.T) {
	const cs = 256 << 10
	ok := WorkingSet{ChunkSize: cs, Image: ChunkRanges{{0, 3}, {9, 9}}, Tree: ChunkRanges{{0, 0}}}
	if err := ok.Check(10*cs, 4096); err != nil {
		t.Fatalf("a good set: %v", err)
	}
	// 10 chunks and a bit: chunk 10 is the last, partial.
	if err := (WorkingSet{ChunkSize: cs, Image: ChunkRanges{{10, 10}}}).Check(10*cs+4096, 0); err != nil {
		t.Errorf("the last, partial chunk: %v", err)
	}
	for name, tc := range map[string]struct {
		w    WorkingSet
		want string
	}{
		"past the image":  {WorkingSet{ChunkSize: cs, Image: ChunkRanges{{10, 10}}}, "image: chunk 10 is past the end"},
		"past the tree":   {WorkingSet{ChunkSize: cs, Tree: ChunkRanges{{0, 1}}}, "tree: chunk 1 is past the end"},
		"chunk size":      {WorkingSet{ChunkSize: 3000}, "chunk_size: 3000"},
		"no chunk size":   {WorkingSet{}, "chunk_size: 0"},
		"huge chunk size": {WorkingSet{ChunkSize: 1 << 30}, "chunk_size"},
		"too many":        {WorkingSet{ChunkSize: 4096, Image: ChunkRanges{{0, MaxWorkingSetChunks}}}, "2049 chunks: at most 2048"},
		"out of order":    {WorkingSet{ChunkSize: cs, Image: ChunkRanges{{5, 5}, {1, 1}}}, "image: range 1 after 5"},
	} {
		err := tc.w.Check(10*cs, 4096)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// TestWorkingSetDocument: a lazy document with a working set round
// trips; one without stays as it was; a set in ram mode, or past the
// image, is refused naming the field.
func TestWorkingSetDocument(t *testing.T) {
	src := func(ws string) string {
		return `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `","size":8192,"mode":"lazy",` + lazyVerity + ws + `}},"upper":{"tmpfs":{}}}`
	}
	d, err := ParseDocument(strings.NewReader(src(`,"working_set":{"chunk_size":4096,"image":"0-1","tree":"1"}`)))
	if err != nil {
		t.Fatal(err)
	}
	want := &WorkingSet{ChunkSize: 4096, Image: ChunkRanges{{0, 1}}, Tree: ChunkRanges{{1, 1}}}
	if diff := cmp.Diff(want, d.Lower.HTTP.WorkingSet); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	b, err := d.Marshal()
	if err != nil || !bytes.Contains(b, []byte(`"working_set":{"chunk_size":4096,"image":"0-1","tree":"1"}`)) {
		t.Errorf("marshalled as %s, %v", b, err)
	}
	d, err = ParseDocument(strings.NewReader(src("")))
	if err != nil || d.Lower.HTTP.WorkingSet != nil {
		t.Errorf("without a working set: %+v, %v", d.Lower.HTTP.WorkingSet, err)
	}
	if b, _ := d.Marshal(); bytes.Contains(b, []byte("working_set")) {
		t.Errorf("a document without a set names it: %s", b)
	}
	for name, tc := range map[string]struct{ doc, want string }{
		"past the image": {src(`,"working_set":{"chunk_size":4096,"image":"2"}`), "lower.http.working_set: image: chunk 2 is past the end"},
		"bad ranges":     {src(`,"working_set":{"chunk_size":4096,"image":"2-1"}`), "2-1"},
		"ram mode": {`{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `","size":8192,"working_set":{"chunk_size":4096}}},"upper":{"tmpfs":{}}}`,
			"lower.http.working_set: only in mode lazy or fill"},
	} {
		if _, err := ParseDocument(strings.NewReader(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestParseWorkingSetReport(t *testing.T) {
	good := WorkingSetReport{Image: testDigest, Seconds: 60, Set: WorkingSet{ChunkSize: 256 << 10, Image: ChunkRanges{{0, 3}, {40, 41}}, Tree: ChunkRanges{{0, 0}}}}
	b, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseWorkingSetReport(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(good, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"unknown field": {`{"image":"` + string(testDigest) + `","seconds":1,"working_set":{"chunk_size":4096},"x":1}`, `unknown field "x"`},
		"bad digest":    {`{"image":"md5:00","seconds":1,"working_set":{"chunk_size":4096}}`, `digest "md5:00"`},
		"seconds":       {`{"image":"` + string(testDigest) + `","seconds":-1,"working_set":{"chunk_size":4096}}`, "seconds: -1"},
		"chunk size":    {`{"image":"` + string(testDigest) + `","seconds":1,"working_set":{"chunk_size":100}}`, "working_set: chunk_size: 100"},
		"ranges":        {`{"image":"` + string(testDigest) + `","seconds":1,"working_set":{"chunk_size":4096,"image":"1,0"}}`, "range 0 after 1"},
		"trailing":      {`{"image":"` + string(testDigest) + `","seconds":1,"working_set":{"chunk_size":4096}} {}`, "trailing data"},
		"too large":     {strings.Repeat(" ", MaxWorkingSetReportSize+1), "larger than"},
	} {
		if _, err := ParseWorkingSetReport(strings.NewReader(tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func FuzzParseWorkingSetReport(f *testing.F) {
	f.Add(`{"image":"` + string(testDigest) + `","seconds":60,"working_set":{"chunk_size":262144,"image":"0-3,17","tree":"0"}}`)
	f.Add(`{"image":"x","seconds":1,"working_set":{"chunk_size":4096,"image":"3-1"}}`)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseWorkingSetReport(strings.NewReader(s))
		if err != nil {
			return
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatalf("a parsed report does not marshal: %v", err)
		}
		again, err := ParseWorkingSetReport(bytes.NewReader(b))
		if err != nil || !cmp.Equal(r, again) {
			t.Fatalf("round trip: %+v, %v", again, err)
		}
		var raw map[string]any
		if json.Unmarshal(b, &raw) != nil {
			t.Fatalf("not JSON: %s", b)
		}
	})
}
