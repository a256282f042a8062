package initagent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/overboot/overboot/boot"
)

// permanentError marks document errors that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanent(format string, args ...any) error {
	return permanentError{fmt.Errorf(format, args...)}
}

// backoffDelay is the wait before attempt try (2, 3, ...): 1s, 2s, 4s, 8s.
func backoffDelay(try int) time.Duration {
	return time.Duration(1<<min(try-2, 3)) * time.Second
}

// sleepCtx waits for d or until ctx is done. Tests replace it.
var sleepCtx = func(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// fetchDocument GETs the boot document, retrying transient failures
// (connection errors, 5xx) with backoff. A 4xx is final: for a single-use
// token, 404 or 410 means it was used or has expired.
func fetchDocument(ctx context.Context, s FetchDocument, client *http.Client) (boot.Document, error) {
	if client == nil {
		client = &http.Client{Timeout: s.Stall}
	}
	attempts := s.Attempts
	if attempts < 1 {
		attempts = 1
	}
	where := RedactURL(s.URL)
	var last error
	for try := 1; try <= attempts; try++ {
		if try > 1 {
			if err := sleepCtx(ctx, backoffDelay(try)); err != nil {
				return boot.Document{}, err
			}
		}
		doc, err := getDocument(ctx, client, s.URL)
		if err == nil {
			return doc, nil
		}
		last = err
		var perm permanentError
		if errors.As(err, &perm) {
			return boot.Document{}, fmt.Errorf("boot document %s: %w", where, perm.err)
		}
	}
	return boot.Document{}, fmt.Errorf("boot document %s: no answer after %d attempts: %w: is the server running and reachable from this machine?", where, attempts, last)
}

func getDocument(ctx context.Context, client *http.Client, url string) (boot.Document, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return boot.Document{}, permanent("%w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return boot.Document{}, withoutURL(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return boot.Document{}, permanent("HTTP %s: the token was already used or has expired: reboot the machine to get a new one", resp.Status)
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return boot.Document{}, permanent("HTTP %s", resp.Status)
	default:
		return boot.Document{}, fmt.Errorf("HTTP %s", resp.Status)
	}
	doc, err := boot.ParseDocument(resp.Body)
	if err != nil {
		return boot.Document{}, permanent("%w: the server and this agent disagree on the boot document: are they the same overboot version?", err)
	}
	return doc, nil
}

// withoutURL drops the URL that the HTTP client quotes in its errors
// (Get "http://server/doc/TOKEN": ...): it may carry a token, and the
// caller names the URL itself, redacted.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
