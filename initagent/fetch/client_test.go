package fetch

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestGet(t *testing.T) {
	for _, tt := range []struct {
		name     string
		handler  func(n int32, w http.ResponseWriter, r *http.Request) // n counts from 1
		wantBody string
		wantErr  string
		is       error
		requests int32
	}{
		{"ok", func(_ int32, w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Accept") != "application/json" {
				http.Error(w, "accept", 400)
				return
			}
			io.WriteString(w, "{}")
		}, "{}", "", nil, 1},
		{"503 then ok", func(n int32, w http.ResponseWriter, _ *http.Request) {
			if n < 3 {
				http.Error(w, "busy", 503)
				return
			}
			io.WriteString(w, "{}")
		}, "{}", "", nil, 3},
		{"gone", func(_ int32, w http.ResponseWriter, _ *http.Request) { http.Error(w, "used", 410) }, "", "HTTP 410 Gone", ErrNotFound, 1},
		{"always 500", func(_ int32, w http.ResponseWriter, _ *http.Request) { http.Error(w, "oops", 500) }, "", "unavailable after 3 attempts: HTTP 500", ErrUnavailable, 3},
		{"cut short, then whole", func(n int32, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "10")
			if n == 1 {
				io.WriteString(w, "{}")
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
			io.WriteString(w, "0123456789")
		}, "0123456789", "", nil, 2},
		{"too large", func(_ int32, w http.ResponseWriter, _ *http.Request) { io.WriteString(w, strings.Repeat("x", 101)) }, "", "larger than 100 bytes", nil, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tt.handler(n.Add(1), w, r) }))
			defer srv.Close()
			url := srv.URL + "/doc/secret-token-1234"
			body, err := Get(context.Background(), nil, url, "application/json", 100, Policy{Attempts: 3, Sleep: noSleep})
			switch {
			case tt.wantErr == "" && (err != nil || string(body) != tt.wantBody):
				t.Errorf("Get = %q, %v; want %q", body, err, tt.wantBody)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Get error = %v, want %q", err, tt.wantErr)
			case tt.is != nil && !errors.Is(err, tt.is):
				t.Errorf("Get error = %v, want it to match %v", err, tt.is)
			}
			if err != nil && strings.Contains(err.Error(), "secret-token") {
				t.Errorf("the error shows the token: %v", err)
			}
			if got := n.Load(); got != tt.requests {
				t.Errorf("%d requests, want %d", got, tt.requests)
			}
		})
	}
}

func TestGetStall(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	_, err := Get(context.Background(), nil, srv.URL, "", 100, Policy{Attempts: 2, Stall: 100 * time.Millisecond, Sleep: noSleep})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no answer for 100ms") {
		t.Fatalf("err = %v", err)
	}
}

// TestNoURLInErrors: the HTTP client's own errors quote the URL; a token in
// its path, query or user information must not come out that way.
func TestNoURLInErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1) + "/doc/secret-token-1234?sig=query-secret"
	srv.Close()
	_, sum := testImage(t, 1)
	_, ferr := Fetch(context.Background(), url, sum, 0, tempFile(t), Options{Policy: Policy{Attempts: 2, Sleep: noSleep}})
	_, gerr := Get(context.Background(), nil, url, "", 100, Policy{Attempts: 2, Sleep: noSleep})
	perr := Post(context.Background(), nil, url, "application/json", []byte("{}"))
	for i, err := range []error{ferr, gerr, perr} {
		if err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("error = %v, want connection refused", err)
			continue
		}
		secrets := []string{"secret-token", "query-secret", "hunter2"}
		if i == 0 {
			// An image's URL is named, its last element included
			// (RedactImageURL).
			secrets = secrets[1:]
		}
		for _, secret := range secrets {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows %s: %v", secret, err)
			}
		}
	}
}

// TestRedirects: the shared client follows a redirect for GET, not for
// POST, which would arrive elsewhere as a GET.
func TestRedirects(t *testing.T) {
	var posts atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/here", http.StatusFound) })
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		io.WriteString(w, "here")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := NewHTTPClient()
	body, err := Get(context.Background(), client, srv.URL+"/moved", "", 100, Policy{Sleep: noSleep})
	if err != nil || string(body) != "here" {
		t.Errorf("GET after a redirect = %q, %v", body, err)
	}
	err = Post(context.Background(), client, srv.URL+"/moved", "application/json", []byte("{}"))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusFound || err.Error() != "HTTP 302 Found" {
		t.Errorf("POST to a redirect = %v, want HTTP 302 Found", err)
	}
	if posts.Load() != 0 {
		t.Errorf("the POST was followed")
	}
}
