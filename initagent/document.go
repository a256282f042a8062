package initagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	neturl "net/url"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/fetch"
)

// fetchDocument GETs the boot document with the agent's retry policy
// (package fetch): connection errors, stalls and 5xx are retried with
// backoff; a 4xx is final: for a single-use token, 404 or 410 means it was
// used or has expired. sleep waits between attempts (nil: a timer).
func fetchDocument(ctx context.Context, client *http.Client, s FetchDocument, sleep func(context.Context, time.Duration) error, progress func(Phase, string)) (boot.Document, error) {
	where := fetch.RedactURL(s.URL)
	pol := fetch.Policy{Attempts: max(s.Attempts, 1), Stall: s.Stall, Sleep: sleep, Retrying: retrying(PhaseDocument, progress),
		Waiting: storeWaiting(PhaseDocument, s.URL, progress)}
	body, err := fetch.Get(ctx, fetch.WithRetryAfter(client), s.URL, "application/json", boot.MaxDocumentSize, pol)
	var ex *fetch.ExhaustedError
	switch {
	case err == nil:
	case errors.As(err, &ex):
		return boot.Document{}, fmt.Errorf("boot document %s: no answer after %d attempts: %w: is the server running and reachable from this machine?", where, ex.Attempts, ex.Err)
	case errors.Is(err, fetch.ErrNotFound):
		return boot.Document{}, fmt.Errorf("boot document %s: %w: the token was already used or has expired: reboot the machine to get a new one", where, err)
	default: // a refusal (HTTP 403), ctx's error
		return boot.Document{}, fmt.Errorf("boot document %s: %w", where, err)
	}
	doc, err := boot.ParseDocument(bytes.NewReader(body))
	if err != nil {
		return boot.Document{}, fmt.Errorf("boot document %s: %w: the server and this agent disagree on the boot document: are they the same overboot version?", where, err)
	}
	return doc, nil
}

// retrying tells the console of a failed attempt that another follows.
func retrying(p Phase, progress func(Phase, string)) func(int, time.Duration, error) {
	return func(attempt int, wait time.Duration, err error) {
		progress(p, fmt.Sprintf("attempt %d failed (%v); again in %.1fs", attempt, err, wait.Seconds()))
	}
}

// StoreWaitEvery is how often the console hears that the agent still
// waits for a server that answers 503 with Retry-After.
const StoreWaitEvery = 30 * time.Second

// storeWaiting tells the console, at the first wait and then at most every
// StoreWaitEvery, that the server at url asks to wait: an overboot server
// answers 503 with Retry-After while its state store cannot be reached.
// The waits spend no attempt, up to fetch.DefaultBusy in all.
func storeWaiting(p Phase, url string, progress func(Phase, string)) func(wait, waited time.Duration, err *fetch.BusyError) {
	var told time.Duration = -1
	return func(wait, waited time.Duration, err *fetch.BusyError) {
		if told >= 0 && waited-told < StoreWaitEvery {
			return
		}
		told = waited
		progress(p, fmt.Sprintf("the server's state store is unavailable: waiting (server %s, %s; waited %v of at most %v)",
			serverOf(url), err, waited.Round(time.Second), fetch.DefaultBusy))
	}
}

// serverOf names the server of url for the console: scheme and host.
func serverOf(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil || u.Host == "" {
		return "?"
	}
	return u.Scheme + "://" + u.Host
}
