package vmtest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/telemetry"
)

// statusColumns are the status table's headers, in order.
var statusColumns = []string{"MAC", "Host", "Profile", "Enrolment", "Address", "Pinned", "TPM", "Phase", "Outcome", "Image", "User", "Disk", "Last error", "Conflict"}

// pageState is what the status page shows, read from its DOM.
type pageState struct {
	Title   string              `json:"title"`
	Live    string              `json:"live"`    // the #live line
	Headers []string            `json:"headers"` // the table's column names
	Rows    []map[string]string `json:"rows"`    // by column name
	Marker  string              `json:"marker"`  // set once after the load: gone if the page reloaded
	Seen    []seenPhase         `json:"seen"`    // the watched row, render by render
}

// seenPhase is one state of the watched row, as the page's MutationObserver
// (installed by the test) saw it.
type seenPhase struct {
	At      float64 `json:"at"` // Date.now(), ms
	Phase   string  `json:"phase"`
	Outcome string  `json:"outcome"`
}

func (s seenPhase) String() string {
	if s.Phase == "" {
		return "(no row)"
	}
	return s.Phase + "/" + s.Outcome
}

// readPage reads the page's state.
const readPage = `(() => {
  const heads = Array.from(document.querySelectorAll("thead th"), th => th.textContent);
  const t = window.__overbootTest;
  return {
    title: document.title,
    live: document.getElementById("live").textContent,
    headers: heads,
    rows: Array.from(document.querySelectorAll("#rows tr"),
      tr => Object.fromEntries(Array.from(tr.cells, (td, i) => [heads[i], td.textContent]))),
    marker: t ? t.marker : "",
    seen: t ? t.seen : [],
  };
})()`

// watchRow records every state the row of one MAC takes (its Phase and
// Outcome cells), render by render: the page rebuilds its table at each
// update, and polling alone could miss a short-lived phase. It leaves a
// marker that a reload would wipe.
const watchRow = `((mac, marker) => {
  const heads = Array.from(document.querySelectorAll("thead th"), th => th.textContent);
  const pi = heads.indexOf("Phase"), oi = heads.indexOf("Outcome");
  const t = { marker: marker, seen: [] };
  const note = () => {
    const tr = Array.from(document.querySelectorAll("#rows tr")).find(tr => tr.cells[0] && tr.cells[0].textContent === mac);
    const s = { at: Date.now(), phase: tr ? tr.cells[pi].textContent : "", outcome: tr ? tr.cells[oi].textContent : "" };
    const last = t.seen[t.seen.length - 1];
    if (!last || last.phase !== s.phase || last.outcome !== s.outcome) t.seen.push(s);
  };
  new MutationObserver(note).observe(document.getElementById("rows"), { childList: true, subtree: true, characterData: true });
  note();
  window.__overbootTest = t;
  return true;
})(%q, %q)`

// storeRows is the status table as the server has it (what /status/rows
// would answer), for failure messages.
func storeRows(s *server.Server) string {
	rows, err := telemetry.Rows(context.Background(), s.DB())
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%s %s/%s", r.MAC, r.Phase, r.Outcome))
	}
	return fmt.Sprintf("%q", out)
}

// bootEvents lists the events of mac's latest boot as the server recorded
// them, each one an update the page was sent.
func bootEvents(s *server.Server, mac string, start time.Time) string {
	ctx := context.Background()
	bs, err := s.DB().Boots(ctx, mac, 1)
	if err != nil || len(bs) != 1 {
		return fmt.Sprintf("no boot (%v)", err)
	}
	ev, err := s.DB().BootEvents(ctx, bs[0].ID)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range ev {
		out = append(out, fmt.Sprintf("%+.1fs %s/%s", e.At.Sub(start).Seconds(), e.Phase, e.Outcome))
	}
	return strings.Join(out, ", ")
}

// Phases before switch_root: the server's steps and the agent's reports.
var bootPhases = []string{"script", "kernel", "initramfs", "root", "early", "modules", "network", "lower", "upper", "overlay"}

// TestStatusPageLive opens the server's status page in headless Chromium
// before a machine boots, PXE-boots it as TestPXE does, and, without a
// reload, watches the machine's row appear and follow the boot through
// the server-sent events up to switch_root. The page must fetch nothing
// but from the test server.
func TestStatusPageLive(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	a := needVM(t)
	s := newServer(t, a)
	addr := serveHTTP(t, s.Handler())
	page := "http://" + addr + "/status"
	const mac = "52:54:00:0b:00:09"

	b := newBrowser(t)
	if _, err := run(b, time.Minute, chromedp.EmulateViewport(1500, 420)); err != nil {
		t.Fatal(err)
	}
	// Without a token nothing of the page's data answers; the page is
	// its sign-in form, which takes a read token.
	for _, path := range []string{"/status/rows", "/status/events"} {
		r, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a token: HTTP %d", path, r.StatusCode)
		}
	}
	tok, _, err := enroll.NewAPIToken(context.Background(), s.DB(), "viewer", enroll.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := run(b, time.Minute, chromedp.NavigateResponse(page))
	if err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	if resp.Status != http.StatusUnauthorized {
		t.Fatalf("open %s without a session: HTTP %d, want the sign-in form (401)", page, resp.Status)
	}
	if _, err := run(b, time.Minute, chromedp.SendKeys("#token", tok)); err != nil {
		t.Fatalf("type the token: %v", err)
	}
	if _, err := run(b, time.Minute, chromedp.Click("#signin")); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if _, err := run(b, time.Minute, chromedp.WaitReady("#rows")); err != nil {
		t.Fatalf("the status page after signing in: %v", err)
	}

	// poll reads the page until done says so, or fails after timeout.
	poll := func(what string, timeout time.Duration, done func(pageState) bool, each func(pageState)) pageState {
		t.Helper()
		deadline := time.Now().Add(timeout)
		var st pageState
		var err error
		for {
			st, err = run(b, 30*time.Second, chromedp.Evaluate[pageState](readPage))
			if err == nil {
				if each != nil {
					each(st)
				}
				if done(st) {
					return st
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting %s for %s: the page showed %+v (err %v); the server's own rows: %s", timeout, what, st, err, storeRows(s))
			}
			time.Sleep(100 * time.Millisecond) // a polling interval, not an assertion
		}
	}

	// The script has run: the event stream is open (its onopen fetched
	// the rows and rendered them), and no machine is known yet.
	st := poll("the page to go live", time.Minute, func(st pageState) bool { return strings.HasPrefix(st.Live, "live, updated ") }, nil)
	if !slices.Equal(st.Headers, statusColumns) {
		t.Errorf("table headers %q, want %q", st.Headers, statusColumns)
	}
	if len(st.Rows) != 0 {
		t.Fatalf("before the boot the table has rows: %v", st.Rows)
	}
	t.Logf("page %s: %q, %q, empty table", page, st.Title, st.Live)
	marker := fmt.Sprintf("loaded-%d", time.Now().UnixNano())
	if _, err := run(b, 30*time.Second, chromedp.Evaluate[bool](fmt.Sprintf(watchRow, mac, marker))); err != nil {
		t.Fatalf("install the row watcher: %v", err)
	}

	start := time.Now()
	vm := startVM(t, Options{
		PXE: true, TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: mac,
		Forwards: []Forward{{GuestPort: 80, HostAddr: addr}},
	})

	// Poll the DOM until the row shows switch_root, the agent's last
	// report before the image's init, and note each change polling sees.
	// The machine powers off soon after switch_root: the page gets a
	// while longer to show it, then the failure compares the page with
	// the server's rows (a stale page means it missed an update).
	var polled []string
	last := ""
	var exited time.Time
	st = poll("the row to show switch_root", bootTimeout, func(st pageState) bool {
		for _, r := range st.Rows {
			if r["MAC"] == mac && r["Phase"] == "switch_root" {
				return true
			}
		}
		select {
		case <-vm.exited:
			if exited.IsZero() {
				exited = time.Now()
			} else if time.Since(exited) > 30*time.Second {
				t.Fatalf("QEMU exited %s ago and the page never showed switch_root: it showed %v; the server's own rows: %s",
					time.Since(exited).Round(time.Second), st.Seen, storeRows(s))
			}
		default:
		}
		return false
	}, func(st pageState) {
		if st.Marker != marker {
			t.Fatalf("the page reloaded or navigated (marker %q, want %q)", st.Marker, marker)
		}
		for _, r := range st.Rows {
			if p := r["Phase"] + "/" + r["Outcome"]; r["MAC"] == mac && p != last {
				polled = append(polled, fmt.Sprintf("+%.1fs %s", time.Since(start).Seconds(), p))
				last = p
			}
		}
	})
	shown := time.Since(start)

	// Every state the row took, as the page rendered it.
	var seq []string
	var phases []string
	for _, sp := range st.Seen {
		seq = append(seq, fmt.Sprintf("%+.1fs %s", (sp.At-float64(start.UnixMilli()))/1000, sp))
		if sp.Phase != "" && (len(phases) == 0 || phases[len(phases)-1] != sp.Phase) {
			phases = append(phases, sp.Phase)
		}
	}
	t.Logf("the page showed switch_root %.1fs after QEMU started", shown.Seconds())
	t.Logf("the row as rendered (MutationObserver, since QEMU started): %s", strings.Join(seq, ", "))
	t.Logf("the row as polled: %s", strings.Join(polled, ", "))
	if len(st.Seen) == 0 || st.Seen[0].Phase != "" {
		t.Errorf("the row was there before the boot: %v", st.Seen)
	}
	i := slices.Index(phases, "switch_root")
	if i < 0 {
		t.Fatalf("the watcher never saw switch_root (phases %q)", phases)
	}
	var during []string
	for _, p := range phases[:i] {
		if slices.Contains(bootPhases, p) {
			during = append(during, p)
		}
	}
	if len(during) == 0 {
		t.Errorf("the row showed no phase before switch_root (phases %q): the page did not follow the boot as it went", phases)
	}

	// Let the boot finish as TestPXE does, then look at the page again.
	expectPass(t, vm)
	t.Logf("the server recorded (since QEMU started): %s", bootEvents(s, mac, start))
	st, err = run(b, 30*time.Second, chromedp.Evaluate[pageState](readPage))
	if err != nil {
		t.Fatal(err)
	}
	if st.Marker != marker {
		t.Errorf("the page reloaded or navigated (marker %q, want %q)", st.Marker, marker)
	}
	if len(st.Rows) != 1 || st.Rows[0]["MAC"] != mac {
		t.Errorf("after the boot: rows %v, want one for %s", st.Rows, mac)
	} else {
		r := st.Rows[0]
		t.Logf("final row: %v; %s", r, st.Live)
		if r["Phase"] != "switch_root" || r["Profile"] != "default" || r["Image"] == "" {
			t.Errorf("final row %v: want phase switch_root, profile default and an image", r)
		}
	}
	png, err := run(b, time.Minute, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "status.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))

	// Nothing but the test server: the page, its event stream, its rows.
	requests, navigated, exceptions, console := b.record()
	t.Logf("the tab's requests: %q", requests)
	if bad := foreignRequests(requests, addr); len(bad) > 0 {
		t.Errorf("the page requested something not on http://%s: %q", addr, bad)
	}
	for _, want := range []string{page, page + "/events", page + "/rows"} {
		if !slices.Contains(requests, want) {
			t.Errorf("the tab never requested %s", want)
		}
	}
	// The page, then (the form posted, answered 303) the page again.
	if len(navigated) != 2 || navigated[0] != page || navigated[1] != page {
		t.Errorf("main-frame navigations %q, want %s twice (sign-in form, then the page)", navigated, page)
	}
	if len(exceptions) > 0 {
		t.Errorf("script exceptions: %q", exceptions)
	}
	if len(console) > 0 {
		t.Logf("console and log: %q", console)
	}
}
