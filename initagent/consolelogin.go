package initagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/fetch"
)

// The console login (overboot.login): the person at the machine types a
// username and a password on the console, the agent POSTs them to the
// server (boot.ConsoleLogin) and the answer is the user's boot document,
// as FetchDocument's would be. A refusal brings the URL of the next try
// (a single-use URL serves one attempt): the agent says why and asks
// again. The exchange is here, pure; the console is a Prompter
// (consolelogin_linux.go opens /dev/console, the password without echo).

// Prompter asks the person at the console.
type Prompter interface {
	// Say shows a line.
	Say(line string) error
	// Ask shows prompt and reads a line, echoed.
	Ask(prompt string) (string, error)
	// AskSecret shows prompt and reads a line without echo.
	AskSecret(prompt string) (string, error)
}

// MaxLoginWait caps a wait the server asks for (Retry-After) between
// attempts.
const MaxLoginWait = time.Minute

// consoleLogin runs the console login of s: it asks for a username and
// a password, POSTs them, and asks again after a refusal, until the
// server answers the document or refuses for good. Connection errors
// and 5xx answers are retried with the same URL and credentials, as the
// agent retries a document. sleep waits (nil: a timer).
func consoleLogin(ctx context.Context, client *http.Client, s ConsoleLogin, pr Prompter, sleep func(context.Context, time.Duration) error, progress func(Phase, string)) (boot.Document, error) {
	if sleep == nil {
		sleep = sleepCtx
	}
	first, err := neturl.Parse(s.URL)
	if err != nil {
		return boot.Document{}, fmt.Errorf("console login: %w", err)
	}
	server := serverOf(s.URL)
	heading := "overboot login at " + server
	if p := first.Query().Get("profile"); p != "" {
		heading = fmt.Sprintf("overboot login for %s at %s", p, server)
	}
	url := s.URL
	for {
		if err := pr.Say(heading); err != nil {
			return boot.Document{}, fmt.Errorf("console login: the console: %w", err)
		}
		var c boot.ConsoleLogin
		for c.Username == "" {
			if c.Username, err = pr.Ask("username: "); err != nil {
				return boot.Document{}, fmt.Errorf("console login: the console: %w", err)
			}
			c.Username = strings.TrimSpace(c.Username)
		}
		if c.Password, err = pr.AskSecret("password: "); err != nil {
			return boot.Document{}, fmt.Errorf("console login: the console: %w", err)
		}
		a, err := postLogin(ctx, client, url, c, s, sleep, progress)
		if err != nil {
			return boot.Document{}, err
		}
		if a.doc != nil {
			return *a.doc, nil
		}
		if err := sameServer(first, a.refusal.Login); err != nil {
			return boot.Document{}, fmt.Errorf("console login at %s: %s, and %w", server, a.refusal.Error, err)
		}
		url = a.refusal.Login
		msg := a.refusal.Error
		if a.wait > 0 {
			msg += fmt.Sprintf(" (waiting %v)", a.wait)
		}
		if err := pr.Say(msg); err != nil {
			return boot.Document{}, fmt.Errorf("console login: the console: %w", err)
		}
		if a.wait > 0 {
			if err := sleep(ctx, a.wait); err != nil {
				return boot.Document{}, err
			}
		}
	}
}

// loginAnswer is the server's answer to one login: the document, or a
// refusal with the URL of the next try (and how long to wait first).
type loginAnswer struct {
	doc     *boot.Document
	refusal boot.ConsoleLoginRefusal
	wait    time.Duration
}

// postLogin POSTs c to url with the agent's retry policy for what is not
// an answer (the transport's errors, 5xx), and reads the answer: the
// document (200), a refusal to try again (400, 401, 429), or an error
// (any other: the URL is spent, expired or another machine's).
func postLogin(ctx context.Context, client *http.Client, url string, c boot.ConsoleLogin, s ConsoleLogin, sleep func(context.Context, time.Duration) error, progress func(Phase, string)) (loginAnswer, error) {
	where := fetch.RedactURL(url)
	body, err := json.Marshal(c)
	if err != nil {
		return loginAnswer{}, err
	}
	var a loginAnswer
	pol := fetch.Policy{Attempts: max(s.Attempts, 1), Stall: s.Stall, Sleep: sleep, Retrying: retrying(PhaseDocument, progress)}
	err = pol.Retry(ctx, func(ctx context.Context, _ int) error {
		var err error
		a, err = postLoginOnce(ctx, client, url, body)
		return err
	})
	var ex *fetch.ExhaustedError
	switch {
	case err == nil:
		return a, nil
	case errors.As(err, &ex):
		return loginAnswer{}, fmt.Errorf("console login %s: no answer after %d attempts: %w: is the server running and reachable from this machine?", where, ex.Attempts, ex.Err)
	case errors.Is(err, fetch.ErrNotFound):
		return loginAnswer{}, fmt.Errorf("console login %s: %w: the login URL was already used or has expired: reboot the machine to get a new one", where, err)
	}
	return loginAnswer{}, fmt.Errorf("console login %s: %w", where, err)
}

// postLoginOnce is one attempt of postLogin. Its errors do not quote the
// URL.
func postLoginOnce(ctx context.Context, client *http.Client, url string, body []byte) (loginAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return loginAnswer{}, fetch.Permanent(errors.New("malformed login URL"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if client == nil {
		client = fetch.DefaultClient()
	}
	// No redirect: the password goes to overboot.login's server only (a
	// 3xx is then an answer like any other refusal).
	noRedirect := *client
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noRedirect.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
		}
		return loginAnswer{}, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		b, err := io.ReadAll(io.LimitReader(resp.Body, boot.MaxDocumentSize+1))
		if err != nil {
			return loginAnswer{}, err
		}
		if len(b) > boot.MaxDocumentSize {
			return loginAnswer{}, fetch.Permanent(fmt.Errorf("the document is larger than %d bytes", boot.MaxDocumentSize))
		}
		doc, err := boot.ParseDocument(bytes.NewReader(b))
		if err != nil {
			return loginAnswer{}, fetch.Permanent(fmt.Errorf("%w: the server and this agent disagree on the boot document: are they the same overboot version?", err))
		}
		return loginAnswer{doc: &doc}, nil
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusTooManyRequests:
		var ref boot.ConsoleLoginRefusal
		b, err := io.ReadAll(io.LimitReader(resp.Body, boot.MaxConsoleLoginSize+1))
		if err != nil {
			return loginAnswer{}, err
		}
		if json.Unmarshal(b, &ref) != nil || ref.Error == "" {
			return loginAnswer{}, fetch.Permanent(fmt.Errorf("HTTP %s without the server's reason: is this an overboot server?", resp.Status))
		}
		a := loginAnswer{refusal: ref}
		if resp.StatusCode == http.StatusTooManyRequests {
			a.wait = retryAfter(resp.Header.Get("Retry-After"))
		}
		return a, nil
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	se := &fetch.StatusError{Code: resp.StatusCode, Status: resp.Status}
	if se.Retryable() {
		return loginAnswer{}, se
	}
	return loginAnswer{}, fetch.Permanent(se)
}

// retryAfter reads a Retry-After in seconds, capped by MaxLoginWait; a
// missing or malformed one is a second.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return time.Second
	}
	return min(time.Duration(n)*time.Second, MaxLoginWait)
}

// sameServer checks the next URL a refusal gives: the same scheme and
// host as overboot.login's, so a password never goes elsewhere or in
// the clear after HTTPS.
func sameServer(first *neturl.URL, next string) error {
	if next == "" {
		return errors.New("the server gave no URL to try again: reboot the machine")
	}
	u, err := neturl.Parse(next)
	if err != nil || boot.CheckURL(next) != nil || u.Scheme != first.Scheme || u.Host != first.Host {
		return fmt.Errorf("the server's next login URL is not on %s://%s: refused", first.Scheme, first.Host)
	}
	return nil
}

// sleepCtx waits d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
