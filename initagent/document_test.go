package initagent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/overboot/overboot/boot"
)

func TestFetchDocument(t *testing.T) {
	var slept []time.Duration
	sleep := func(ctx context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	good := `{"version":1,"machine":"m1","lower":{"http":{"url":"http://s/i","digest":"` + string(digest) + `"}},"upper":{"tmpfs":{}}}`
	tests := []struct {
		name      string
		responses []int // status per request; the last repeats
		body      string
		wantErr   string
		wantReqs  int32
	}{
		{"ok", []int{200}, good, "", 1},
		{"retry 503 then ok", []int{503, 503, 200}, good, "", 3},
		{"used token", []int{410}, good, "already used", 1},
		{"forbidden", []int{403}, good, "403", 1},
		{"bad document", []int{200}, `{"version":1}`, "disagree", 1},
		{"always 500", []int{500}, good, "no answer after 2 attempts", 2},
		{"408 and 429 are retried", []int{408, 429, 200}, good, "", 3},
		{"gone", []int{404}, good, "already used", 1},
		{"too large", []int{200}, `{"version":1,"machine":"` + strings.Repeat("x", boot.MaxDocumentSize) + `"}`, "larger than", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slept = nil
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				code := tt.responses[min(i, len(tt.responses)-1)]
				w.WriteHeader(code)
				if code == 200 {
					w.Write([]byte(tt.body))
				}
			}))
			defer srv.Close()
			attempts := 3
			if tt.name == "always 500" {
				attempts = 2
			}
			var lines []string
			progress := func(p Phase, l string) { lines = append(lines, string(p)+": "+l) }
			doc, err := fetchDocument(context.Background(), srv.Client(), FetchDocument{URL: srv.URL + "/doc/tok-0123456789?k=query-0123456789", Attempts: attempts}, sleep, progress)
			if tt.wantErr == "" {
				if err != nil || doc.Machine != "m1" {
					t.Fatalf("fetchDocument = %+v, %v", doc, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "tok-0123456789") || strings.Contains(err.Error(), "query-0123456789") || !strings.Contains(err.Error(), "/doc/...?...")) {
				t.Errorf("error shows the token: %v", err)
			}
			if got := n.Load(); got != tt.wantReqs || len(slept) != int(got)-1 {
				t.Errorf("%d requests and %d backoff waits, want %d requests", got, len(slept), tt.wantReqs)
			}
			// Each wait is announced on the console, without the token.
			if len(lines) != len(slept) {
				t.Errorf("console lines %q for %d waits", lines, len(slept))
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, fmt.Sprintf("document: attempt %d failed (", i+1)) || strings.Contains(l, "0123456789") {
					t.Errorf("console line %q", l)
				}
			}
		})
	}
}

// TestFetchDocumentUnreachable: the HTTP client's own errors quote the URL;
// the token must not reach the console that way either.
func TestFetchDocumentUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/doc/secret-token-1234"
	srv.Close()
	var lines []string
	_, err := fetchDocument(context.Background(), nil, FetchDocument{URL: url, Attempts: 2}, func(context.Context, time.Duration) error { return nil },
		func(_ Phase, l string) { lines = append(lines, l) })
	if len(lines) != 1 || strings.Contains(lines[0], "secret-token-1234") {
		t.Errorf("console lines %q: want one retry notice without the token", lines)
	}
	if err == nil || !strings.Contains(err.Error(), "no answer after 2 attempts") {
		t.Fatalf("error = %v, want no answer after 2 attempts", err)
	}
	if strings.Contains(err.Error(), "secret-token-1234") {
		t.Errorf("error shows the token: %v", err)
	}
}
