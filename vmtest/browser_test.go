package vmtest

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/overboot/overboot/internal/testneed"
)

// chromiumPath is Debian's Chromium (package chromium, in the Makefile's
// APT_PACKAGES, so make deps installs it before make vmtest runs).
var chromiumPath = "/usr/bin/chromium"

// needBrowser is left to the QEMU tier like needVM without
// OVERBOOT_VMTEST=1. With it, a missing browser is a failure, not a skip:
// make test installs it.
func needBrowser(t *testing.T) {
	t.Helper()
	testneed.VM(t)
	fi, err := os.Stat(chromiumPath)
	if err == nil && (fi.IsDir() || fi.Mode()&0o111 == 0) {
		err = os.ErrPermission
	}
	if err != nil {
		t.Fatalf("browser test needs Chromium at %s: %v; install Debian's chromium package (make deps does: it is in the Makefile's APT_PACKAGES)", chromiumPath, err)
	}
}

// browser is one headless Chromium with one tab, and what the tab did:
// every request it sent, its navigations, its script errors.
type browser struct {
	ctx context.Context // the tab's chromedp context

	mu         sync.Mutex // guards the fields below
	requests   []string   // every request URL, in order
	navigated  []string   // main-frame navigations
	exceptions []string   // uncaught script exceptions
	console    []string   // console and browser log entries of level error/warning
}

// newBrowser starts Chromium headless with a fresh profile. Its flags are
// these and no others (ENV.md, machines/go.md): headless as root, no GPU,
// no QUIC, and none of Chromium's own background traffic, which must never
// leave 127.0.0.1. Those flags alone still let Debian's Chromium 156 look
// up Google's hosts (accounts.google.com, clients2.google.com,
// update.googleapis.com, optimizationguide-pa.googleapis.com: DNS queries
// to the machine's resolver, seen with strace), so its resolver answers
// "not found" for every name: the page is on 127.0.0.1, which needs no
// lookup. chromedp adds the fresh --user-data-dir (a new temporary
// directory, removed when the browser exits), --remote-debugging-pipe
// (the DevTools protocol over a pipe, not a TCP port) and about:blank.
// The browser goes when the test ends.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.CombinedOutput(out),
	}
	b := &browser{}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(b.listen))
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit
		if t.Failed() {
			b.mu.Lock()
			defer b.mu.Unlock()
			t.Logf("browser: requests %q, navigations %q, exceptions %q, log %q (Chromium's output: %s)",
				b.requests, b.navigated, b.exceptions, b.console, out.Name())
		}
	})
	// The first Run starts the browser and attaches the tab: give it a
	// deadline of its own (a deadline on ctx would end the browser).
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err = <-started:
	case <-time.After(2 * time.Minute):
		err = context.DeadlineExceeded
	}
	if err != nil {
		t.Fatalf("start %s: %v (its output: %s)", chromiumPath, err, out.Name())
	}
	b.ctx = ctx
	return b
}

// listen runs in the tab's event loop: record, return at once.
func (b *browser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, ev.Request.URL)
	case *page.EventFrameNavigated:
		if ev.Frame.ParentID == "" {
			b.navigated = append(b.navigated, ev.Frame.URL)
		}
	case *runtime.EventExceptionThrown:
		msg := ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
		b.exceptions = append(b.exceptions, msg)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			b.console = append(b.console, "console "+string(ev.Type)+": "+strings.Join(args, " "))
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
			b.console = append(b.console, string(ev.Entry.Source)+" "+string(ev.Entry.Level)+": "+ev.Entry.Text+" "+ev.Entry.URL)
		}
	}
}

// run runs one action on the tab with its own timeout.
func run[T any](b *browser, timeout time.Duration, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// record returns copies of what the tab did so far.
func (b *browser) record() (requests, navigated, exceptions, console []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.requests), slices.Clone(b.navigated), slices.Clone(b.exceptions), slices.Clone(b.console)
}

// foreignRequests returns the request URLs that did not go to
// http://addr (addr being the test server's 127.0.0.1:port).
func foreignRequests(requests []string, addr string) []string {
	var bad []string
	for _, r := range requests {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "http" || u.Host != addr {
			bad = append(bad, r)
		}
	}
	return bad
}
