package boot

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMirrorsDocument: a document with mirrors of the image and of its
// tree survives the round trip, lists them after the first URL, and one
// without them writes no mirrors field (what an agent older than the
// field reads, and refuses as unknown when present).
func TestMirrorsDocument(t *testing.T) {
	d := Document{Version: 1,
		Lower: Source{HTTP: &HTTPSource{URL: "http://a/blobs/sha256/x", Mirrors: []string{"http://b/blobs/sha256/x", "https://cache:8443/o/blobs/sha256/x"},
			Digest: testDigest, Size: 8192, Mode: LowerLazy,
			Verity: &Verity{HashURL: "http://a/verity/sha256/x", HashMirrors: []string{"http://b/verity/sha256/x"}, HashSize: 8192, RootHash: strings.Repeat("ab", 32)}}},
		Upper: Upper{Tmpfs: &TmpfsUpper{}},
	}
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseDocument(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"http://a/blobs/sha256/x", "http://b/blobs/sha256/x", "https://cache:8443/o/blobs/sha256/x"}, got.Lower.HTTP.URLs()); diff != "" {
		t.Errorf("URLs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"http://a/verity/sha256/x", "http://b/verity/sha256/x"}, got.Lower.HTTP.Verity.HashURLs()); diff != "" {
		t.Errorf("HashURLs (-want +got):\n%s", diff)
	}

	d.Lower.HTTP.Mirrors, d.Lower.HTTP.Verity.HashMirrors = nil, nil
	b, err = d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("mirrors")) {
		t.Errorf("a document without mirrors names them: %s", b)
	}
	// An old document (no mirrors field) is still read.
	if _, err := ParseDocument(bytes.NewReader(b)); err != nil {
		t.Errorf("old form: %v", err)
	}
}

func TestMirrorsRefused(t *testing.T) {
	many := make([]string, MaxMirrors+1)
	for i := range many {
		many[i] = fmt.Sprintf("http://m%d/i", i)
	}
	tests := []struct {
		name    string
		mirrors []string
		want    string
	}{
		{"scheme", []string{"ftp://b/i"}, "http://"},
		{"no host", []string{"http:///i"}, "no host"},
		{"user info", []string{"http://u:pw@b/i"}, "no user information"},
		{"query", []string{"http://b/i?token=x"}, "no user information, query"},
		{"fragment", []string{"http://b/i#x"}, "fragment"},
		{"comma", []string{"http://b/i,j"}, "comma"},
		{"twice", []string{"http://b/i", "http://b/i"}, "given twice"},
		{"the primary again", []string{"http://a/i"}, "given twice"},
		{"too many", many, "at most 7"},
		{"whitespace", []string{"http://b/i j"}, "whitespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Document{Version: 1, Lower: Source{HTTP: &HTTPSource{URL: "http://a/i", Mirrors: tt.mirrors, Digest: testDigest}}, Upper: Upper{Tmpfs: &TmpfsUpper{}}}
			err := d.Validate()
			if err == nil || !strings.Contains(err.Error(), "lower.http.mirrors") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want lower.http.mirrors and %q", err, tt.want)
			}
			v := &Verity{HashURL: "http://a/i", HashMirrors: tt.mirrors, HashSize: 8192, RootHash: strings.Repeat("ab", 32)}
			d = Document{Version: 1, Lower: Source{HTTP: &HTTPSource{URL: "http://a/i", Digest: testDigest, Size: 8192, Mode: LowerLazy, Verity: v}}, Upper: Upper{Tmpfs: &TmpfsUpper{}}}
			if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "lower.http.verity.hash_mirrors") {
				t.Errorf("tree: Validate = %v, want lower.http.verity.hash_mirrors", err)
			}
		})
	}
}

// TestMirrorsStatic: the static command line carries the mirrors of the
// image and of the tree, comma-separated, into the document it stands
// for, and refuses them where they mean nothing.
func TestMirrorsStatic(t *testing.T) {
	h := func(c string) string { return strings.Repeat(c, 64) }
	cmdline := "overboot.lower=http://a/i overboot.lower.mirrors=http://b/i,http://c:8080/i overboot.digest=sha256:" + h("a") +
		" overboot.size=8192 overboot.lower.mode=lazy overboot.verity=http://a/t overboot.verity.mirrors=http://b/t" +
		" overboot.verity.size=8192 overboot.verity.root=" + h("c")
	p, err := Parse(cmdline)
	if err != nil {
		t.Fatal(err)
	}
	d := p.Document()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"http://a/i", "http://b/i", "http://c:8080/i"}, d.Lower.HTTP.URLs()); diff != "" {
		t.Errorf("image URLs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"http://a/t", "http://b/t"}, d.Lower.HTTP.Verity.HashURLs()); diff != "" {
		t.Errorf("tree URLs (-want +got):\n%s", diff)
	}
	if q, err := Parse(p.Format()); err != nil || q.Format() != p.Format() {
		t.Errorf("round trip: %v\n%s\n%s", err, p.Format(), q.Format())
	}
	for _, tc := range []struct{ cmdline, key string }{
		{"overboot.doc=http://h/d overboot.lower.mirrors=http://b/i", "overboot.lower.mirrors"},
		{"overboot.lower=http://a/i overboot.digest=sha256:" + h("a") + " overboot.lower.mirrors=http://a/i", "overboot.lower.mirrors"},
		{"overboot.lower=http://a/i overboot.digest=sha256:" + h("a") + " overboot.lower.mirrors=http://u:p@b/i", "overboot.lower.mirrors"},
		{"overboot.lower=http://a/i overboot.digest=sha256:" + h("a") + " overboot.lower.mirrors=ftp://b/i", "overboot.lower.mirrors"},
		{"overboot.lower=http://a/i overboot.digest=sha256:" + h("a") + " overboot.verity.mirrors=http://b/t", "overboot.verity.mirrors"},
		{"overboot.lower=http://a/i overboot.digest=sha256:" + h("a") + " overboot.lower.mirrors=" + strings.Repeat("http://b/i,", MaxMirrors) + "http://z/i", "overboot.lower.mirrors"},
	} {
		p, err := Parse(tc.cmdline)
		if err == nil {
			err = p.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.key+":") {
			t.Errorf("%s: %v, want an error naming %s", tc.cmdline, err, tc.key)
		}
	}
}
