package vmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/overboot/overboot/server/api"
	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
	"github.com/overboot/overboot/server/telemetry"
)

// hostile is what a machine could say about itself (its host name, its
// failure message): markup and script that must reach the console's
// pages as text.
const hostile = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">`

// waitJS polls the tab until js (a boolean expression) is true, or fails
// the test after timeout. Errors while a page loads (the document went
// away under the evaluation) count as "not yet".
func waitJS(t *testing.T, b *browser, what string, timeout time.Duration, js string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := run(b, 10*time.Second, chromedp.Evaluate[bool](js))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			loc, _ := run(b, 5*time.Second, chromedp.Location())
			text, _ := run(b, 5*time.Second, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 600) : ""`))
			t.Fatalf("waiting %s for %s: not so (last error %v); the tab is at %s showing %q", timeout, what, err, loc, text)
		}
		time.Sleep(100 * time.Millisecond) // a polling interval, not an assertion
	}
}

// atPage is a JS condition: the tab shows path, loaded, with an element
// matching sel.
func atPage(path, sel string) string {
	return fmt.Sprintf(`location.pathname === %q && document.readyState === "complete" && document.querySelector(%q) !== null`, path, sel)
}

// click clicks the element sel matches (the first one).
func click(t *testing.T, b *browser, sel string) {
	t.Helper()
	if _, err := run(b, 30*time.Second, chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
}

// text is the text of the element sel matches, "" if none.
func text(t *testing.T, b *browser, sel string) string {
	t.Helper()
	s, err := run(b, 10*time.Second, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent : ""; })()`, sel)))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

// consoleSignIn signs the tab in through the console's form with tok,
// and waits for the overview.
func consoleSignIn(t *testing.T, b *browser, base, tok string) {
	t.Helper()
	if _, err := run(b, time.Minute, chromedp.Navigate(base+"/console/machines")); err != nil {
		t.Fatalf("open the console: %v", err)
	}
	waitJS(t, b, "the sign-in form (a page asked without a session)", 30*time.Second, atPage("/console/signin", "#token"))
	if _, err := run(b, 30*time.Second, chromedp.SendKeys(chromedp.CSS("#token"), tok)); err != nil {
		t.Fatalf("type the token: %v", err)
	}
	click(t, b, "#signin")
	waitJS(t, b, "the overview after signing in", 30*time.Second, atPage("/console", "#signout"))
}

// sessionCookie reads the console's session cookie from the browser
// (HttpOnly: no page script could).
func sessionCookie(t *testing.T, b *browser, base string) *network.Cookie {
	t.Helper()
	cs, err := run(b, 10*time.Second, chromedp.Action[[]*network.Cookie](func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		r, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/console"}})
		return r.Cookies, err
	}))
	if err != nil {
		t.Fatalf("read the cookies: %v", err)
	}
	for _, c := range cs {
		if c.Name == "overboot_console" {
			return c
		}
	}
	return nil
}

// apiCall sends one admin API request with tok and decodes its JSON answer.
func apiCall(t *testing.T, base, tok, method, path, ctype string, body []byte, out any) {
	t.Helper()
	req, err := http.NewRequest(method, base+api.Prefix+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e bytes.Buffer
		e.ReadFrom(resp.Body)
		t.Fatalf("%s %s: HTTP %d %s", method, path, resp.StatusCode, e.String())
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// publishVersion uploads content and publishes it as the next version of
// name through the admin API (as overboot image publish does).
func publishVersion(t *testing.T, base, tok, name string, content []byte) state.Image {
	t.Helper()
	var bv api.BlobView
	apiCall(t, base, tok, http.MethodPost, "/blobs", "application/octet-stream", content, &bv)
	req, _ := json.Marshal(api.PublishRequest{Name: name, Digest: bv.Digest, Kind: "disk", Note: "console test"})
	var im state.Image
	apiCall(t, base, tok, http.MethodPost, "/images", "application/json", req, &im)
	return im
}

// waterfallState is what the machine page shows of its boot.
type waterfallState struct {
	Marker string   `json:"marker"` // set once after the load: gone if the page reloaded
	Counts []int    `json:"counts"` // bar counts, render by render (MutationObserver)
	Rects  int      `json:"rects"`  // bars now
	Titles []string `json:"titles"` // the bars' titles now
	Live   string   `json:"live"`
}

// watchWaterfall records the number of bars (<rect> in #waterfall) at
// every change of the page's <main>, which the console's script replaces
// when an event concerns the machine; and leaves a marker a reload wipes.
const watchWaterfall = `((marker) => {
  const t = { marker: marker, counts: [] };
  const note = () => {
    const n = document.querySelectorAll("#waterfall rect").length;
    if (t.counts.length === 0 || t.counts[t.counts.length - 1] !== n) t.counts.push(n);
  };
  new MutationObserver(note).observe(document.querySelector("main"), { childList: true, subtree: true, characterData: true });
  note();
  window.__overbootTest = t;
  return true;
})(%q)`

const readWaterfall = `(() => {
  const t = window.__overbootTest;
  return {
    marker: t ? t.marker : "",
    counts: t ? t.counts : [],
    rects: document.querySelectorAll("#waterfall rect").length,
    titles: Array.from(document.querySelectorAll("#waterfall rect title"), e => e.textContent),
    live: (document.getElementById("live") || {}).textContent || "",
  };
})()`

// marked is a JS condition: the tab still carries the marker set after
// its load (it did not reload or navigate).
func marked(marker string) string {
	return fmt.Sprintf(`!!window.__overbootTest && window.__overbootTest.marker === %q`, marker)
}

// escapedHere checks the tab's page: the hostile text is on it as text
// (in the elements sels match) and none of its markup ran or loaded.
func escapedHere(t *testing.T, b *browser, where string, sels ...string) {
	t.Helper()
	pwned, err := run(b, 10*time.Second, chromedp.Evaluate[string](`typeof window.__pwned === "undefined" ? "undefined" : String(window.__pwned)`))
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if pwned != "undefined" {
		t.Errorf("%s: the machine's markup ran: window.__pwned = %s", where, pwned)
	}
	n, err := run(b, 10*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("main img, main script").length`))
	if err != nil || n != 0 {
		t.Errorf("%s: %d img or script elements in the page's main (%v)", where, n, err)
	}
	for _, sel := range sels {
		if got := text(t, b, sel); !strings.Contains(got, hostile) {
			t.Errorf("%s: %s shows %q, want the text %q in it", where, sel, got, hostile)
		}
	}
}

// TestConsoleLive drives the operator's console in headless Chromium
// against a PXE-booted QEMU machine whose profile waits for approval and
// has an iSCSI upper disk: sign in through the form; watch the pending
// queue show the machine without a reload; approve it through the
// confirmation page that names its address; watch, without a reload, its
// boot's waterfall fill in up to switch_root; reset its disk and roll an
// image back through the console, checking the store. And the attacks: a
// form of another origin (no CSRF token, a made-up one) and a tampered
// form of the console's own, a host name and failure message carrying
// markup and script, a viewer's action, a session cookie after sign-out.
// With OVERBOOT_SCREENSHOT=PATH it saves the machine page's boot section
// there (the README's picture); on failure a full-page screenshot goes to
// the test's artifact directory (go test -artifacts keeps it).
func TestConsoleLive(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	a := needVM(t)
	artifactDir := t.ArtifactDir()
	dir := t.TempDir()
	const (
		mac      = "52:54:00:0b:00:31"
		evilMAC  = "52:54:00:0b:00:32"
		image    = "console-demo"
		waitBoot = bootTimeout
	)
	conf := fmt.Sprintf(`[server]
data = %s
iscsi-portal = %s:3260

[profile default]
kernel = %s
initramfs = %s
root = %s
upper = iscsi
enroll = approve
upper-disk-size = 128M
onfail = poweroff
onfail-delay = 1s
cmdline = console=ttyS0 panic=-1 OVERBOOT_TEST_UPPER=iscsi
`, dir, GuestServer, a.Kernel, a.Initramfs, a.Root)
	s, httpAddr, iscsiAddr := startServer(t, conf, dir)
	base := "http://" + httpAddr
	ctx := context.Background()

	// A machine whose host name and failure message carry markup, as a
	// machine could report them (the recorder stores what it is told).
	if err := s.DB().AddMachine(ctx, state.Machine{MAC: evilMAC, Profile: "default", Hostname: hostile, Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	eb, err := s.DB().StartBoot(ctx, state.Boot{MAC: evilMAC, Profile: "default", Address: "127.0.0.1"},
		state.BootEvent{Source: telemetry.SourceServer, Phase: "script", Outcome: telemetry.OK})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []state.BootEvent{
		{Source: telemetry.SourceAgent, Phase: "lower", Outcome: telemetry.Running},
		{Source: telemetry.SourceAgent, Phase: "lower", Outcome: telemetry.Failed, Seconds: 1.5, Message: hostile},
	} {
		if _, err := s.DB().AddBootEvent(ctx, eb.ID, e); err != nil {
			t.Fatal(err)
		}
	}

	operate, _, err := enroll.NewAPIToken(ctx, s.DB(), "console-operator", enroll.ScopeOperate)
	if err != nil {
		t.Fatal(err)
	}
	viewer, _, err := enroll.NewAPIToken(ctx, s.DB(), "console-viewer", enroll.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	// Two versions of an image, through the admin API.
	v1 := publishVersion(t, base, operate, image, bytes.Repeat([]byte("version one "), 4096))
	v2 := publishVersion(t, base, operate, image, bytes.Repeat([]byte("version two "), 4096))
	if v1.Version != 1 || v2.Version != 2 || v1.Digest == v2.Digest {
		t.Fatalf("published %+v and %+v: want versions 1 and 2 of different blobs", v1, v2)
	}

	b := newBrowser(t)
	// On failure, the page the tab was on, whole.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		png, err := run(b, time.Minute, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("no screenshot of the failure: %v", err)
			return
		}
		p := filepath.Join(artifactDir, "console-failure.png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Logf("no screenshot of the failure: %v", err)
			return
		}
		loc, _ := run(b, 5*time.Second, chromedp.Location())
		t.Logf("screenshot of %s at the failure: %s (kept with go test -artifacts)", loc, p)
	})
	if _, err := run(b, time.Minute, chromedp.EmulateViewport(1100, 900)); err != nil {
		t.Fatal(err)
	}

	// Sign in with the operate token, through the form.
	consoleSignIn(t, b, base, operate)
	if who := text(t, b, "header .who"); !strings.Contains(who, "console-operator (operate)") {
		t.Errorf("header after signing in: %q", who)
	}

	// A second tab of the same browser (same session) on the machine
	// list, left open through the machine's arrival: the list is built
	// again by the page's script (innerHTML) with the hostile machine in it.
	tabCtx, closeTab := chromedp.NewContext(b.ctx)
	defer closeTab()
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("open a second tab: %v", err)
	}
	list := &browser{ctx: tabCtx}
	if _, err := run(list, time.Minute, chromedp.Navigate(base+"/console/machines")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, list, "the machine list", 30*time.Second, atPage("/console/machines", "#machines"))
	listMarker := fmt.Sprintf("list-%d", time.Now().UnixNano())
	if _, err := run(list, 10*time.Second, chromedp.Evaluate[bool](fmt.Sprintf(`(window.__overbootTest = { marker: %q }, true)`, listMarker))); err != nil {
		t.Fatal(err)
	}

	// The pending queue, empty, then the machine in it without a reload.
	if _, err := run(b, time.Minute, chromedp.Navigate(base+"/console/pending")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the empty pending queue", 30*time.Second, atPage("/console/pending", "#empty"))
	marker := fmt.Sprintf("pending-%d", time.Now().UnixNano())
	if _, err := run(b, 10*time.Second, chromedp.Evaluate[bool](fmt.Sprintf(`(window.__overbootTest = { marker: %q }, true)`, marker))); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	vm := startVM(t, Options{
		PXE: true, TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: mac,
		Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: iscsiAddr}},
	})
	row := fmt.Sprintf(`tr[data-mac=%q]`, mac)
	waitJS(t, b, "the machine in the pending queue", waitBoot, fmt.Sprintf(`document.querySelector(%q) !== null`, "#pending "+row))
	waitJS(t, b, "the pending page not to have reloaded", time.Second, marked(marker))
	t.Logf("the pending queue showed %s %.1fs after QEMU started, without a reload", mac, time.Since(start).Seconds())
	qs, err := s.DB().Requests(ctx, mac)
	if err != nil || len(qs) != 1 {
		t.Fatalf("the machine's requests: %+v %v, want one", qs, err)
	}
	addr := qs[0].Address

	// The list tab followed too, and shows the hostile machine as text.
	waitJS(t, list, "the machine in the list tab", time.Minute, fmt.Sprintf(`document.querySelector(%q) !== null`, "#machines "+row))
	waitJS(t, list, "the list tab not to have reloaded", time.Second, marked(listMarker))
	escapedHere(t, list, "the machine list (rebuilt live)", fmt.Sprintf(`tr[data-mac=%q] td.host`, evilMAC), fmt.Sprintf(`tr[data-mac=%q] td.err`, evilMAC))
	// Its page offers "Approve PROFILE at ADDRESS", a link whose query
	// names both.
	if _, err := run(list, time.Minute, chromedp.Navigate(base+"/console/machines/"+mac)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, list, "the machine's page in the list tab", 30*time.Second, atPage("/console/machines/"+mac, "#actions"))
	approveLink, err := run(list, 10*time.Second, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#actions a"), a => a.textContent + " -> " + a.href)`))
	if err != nil {
		t.Fatal(err)
	}
	wantLink := fmt.Sprintf("Approve default at %s -> %s/console/machines/%s/approve?address=%s&profile=default", addr, base, mac, addr)
	if !slices.Contains(approveLink, wantLink) {
		t.Errorf("the machine page's actions: %q, want %q", approveLink, wantLink)
	}
	closeTab()

	// Approve through its confirmation page, which names the address.
	click(t, b, "#pending "+row+" a.button")
	waitJS(t, b, "the approval's confirmation page", 30*time.Second, atPage("/console/machines/"+mac+"/approve", "#confirm"))
	if what := text(t, b, "#what"); !strings.Contains(what, "at address "+addr) || !strings.Contains(what, "profile default") {
		t.Errorf("the confirmation says %q: want it to name address %s and profile default", what, addr)
	}
	click(t, b, "#do")
	waitJS(t, b, "the approval's result", 30*time.Second, atPage("/console/machines/"+mac+"/approve", "#message"))
	if msg := text(t, b, "#message"); !strings.Contains(msg, "Approved "+mac+" for profile default at "+addr) {
		t.Fatalf("after approving: %q", msg)
	}
	if adm, err := s.DB().Admission(ctx, mac, "default"); err != nil || adm.Address != addr {
		t.Fatalf("the store's admission: %+v %v, want one at %s", adm, err, addr)
	}

	// The machine's page, open while it boots (iPXE asks again on its
	// own): the waterfall grows without a reload, up to switch_root.
	if _, err := run(b, time.Minute, chromedp.Navigate(base+"/console/machines/"+mac)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the machine page", 30*time.Second, atPage("/console/machines/"+mac, "#actions"))
	marker = fmt.Sprintf("machine-%d", time.Now().UnixNano())
	if _, err := run(b, 10*time.Second, chromedp.Evaluate[bool](fmt.Sprintf(watchWaterfall, marker))); err != nil {
		t.Fatalf("install the waterfall watcher: %v", err)
	}
	var polled []int
	var st waterfallState
	deadline := time.Now().Add(waitBoot)
	for {
		st, err = run(b, 10*time.Second, chromedp.Evaluate[waterfallState](readWaterfall))
		if err != nil {
			t.Fatalf("read the machine page: %v", err)
		}
		if st.Marker != marker {
			t.Fatalf("the machine page reloaded or navigated (marker %q, want %q)", st.Marker, marker)
		}
		if len(polled) == 0 || polled[len(polled)-1] != st.Rects {
			polled = append(polled, st.Rects)
		}
		if slices.ContainsFunc(st.Titles, func(s string) bool { return strings.HasPrefix(s, "switch_root ") }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for switch_root in the waterfall: bars %v (titles %q), live %q; the server recorded: %s; console:\n%s",
				waitBoot, st.Counts, st.Titles, st.Live, bootEvents(s, mac, start), vm.Tail(20))
		}
		time.Sleep(100 * time.Millisecond) // a polling interval, not an assertion
	}
	t.Logf("the waterfall showed switch_root %.1fs after QEMU started; bars as rendered %v, as polled %v; live %q", time.Since(start).Seconds(), st.Counts, polled, st.Live)
	t.Logf("its bars: %q", st.Titles)
	distinct := slices.Compact(slices.Sorted(slices.Values(st.Counts)))
	if len(distinct) < 2 || st.Counts[len(st.Counts)-1] <= st.Counts[0] {
		t.Errorf("the waterfall did not grow as the boot went: bar counts %v", st.Counts)
	}
	expectPass(t, vm)
	t.Logf("the server recorded (since QEMU started): %s", bootEvents(s, mac, start))
	waitJS(t, b, "the machine page not to have reloaded", time.Second, marked(marker))
	if p := os.Getenv("OVERBOOT_SCREENSHOT"); p != "" {
		png, err := run(b, time.Minute, chromedp.Screenshot(chromedp.CSS("#boot")))
		if err != nil {
			t.Fatalf("screenshot of #boot: %v", err)
		}
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the machine's boot: %s (%d bytes)", p, len(png))
	}

	ks, err := s.DB().DisksOf(ctx, state.OwnerMachine, mac)
	if err != nil || len(ks) != 1 {
		t.Fatalf("the machine's disks after its boot: %+v %v, want one", ks, err)
	}
	diskUnchanged := func(what string) {
		t.Helper()
		now, err := s.DB().DisksOf(ctx, state.OwnerMachine, mac)
		if err != nil || len(now) != 1 || now[0].ID != ks[0].ID {
			t.Errorf("%s changed the machine's disks: %+v %v", what, now, err)
		}
		if _, err := os.Stat(ks[0].Path); err != nil {
			t.Errorf("%s: the disk's file: %v", what, err)
		}
	}

	// CSRF: a page of another origin (another port of 127.0.0.1: the
	// same site, so the browser sends the SameSite=Strict cookie) posts
	// the reset form, with no CSRF token and with a made-up one.
	resetURL := base + "/console/machines/" + mac + "/reset"
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		field := ""
		if r.URL.Query().Get("csrf") == "made-up" {
			field = `<input type="hidden" name="csrf" value="` + strings.Repeat("ab", 32) + `">`
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>a page elsewhere</title><form id="f" method="post" action="%s">%s</form><script>document.getElementById("f").submit()</script>`, resetURL, field)
	}))
	defer evil.Close()
	for _, q := range []string{"", "?csrf=made-up"} {
		if _, err := run(b, time.Minute, chromedp.Navigate(evil.URL+"/"+q)); err != nil {
			t.Fatal(err)
		}
		waitJS(t, b, "the console's answer to another site's form"+q, 30*time.Second, atPage("/console/machines/"+mac+"/reset", "#message"))
		h, msg := text(t, b, "h1"), text(t, b, "#message")
		t.Logf("another site's reset form%s: %s: %q", q, h, msg)
		if h != "Forbidden" || !strings.Contains(strings.ToLower(msg), "nothing changed") {
			t.Errorf("another site's reset form%s: %s %q, want a 403 page", q, h, msg)
		}
		diskUnchanged("another site's form" + q)
	}
	// The console's own form with its CSRF token changed.
	if _, err := run(b, time.Minute, chromedp.Navigate(resetURL)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the reset's confirmation page", 30*time.Second, atPage("/console/machines/"+mac+"/reset", "#confirm"))
	if _, err := run(b, 10*time.Second, chromedp.Evaluate[bool](`(document.querySelector("#confirm input[name=csrf]").value = "`+strings.Repeat("cd", 32)+`", true)`)); err != nil {
		t.Fatal(err)
	}
	click(t, b, "#do")
	waitJS(t, b, "the answer to a tampered form", 30*time.Second, atPage("/console/machines/"+mac+"/reset", "#message"))
	if h, msg := text(t, b, "h1"), text(t, b, "#message"); h != "Forbidden" || !strings.Contains(msg, "CSRF token") {
		t.Errorf("a form with another CSRF token: %s %q, want a 403 page about the CSRF token", h, msg)
	}
	diskUnchanged("a form with another CSRF token")

	// Reset the disk through the console.
	if _, err := run(b, time.Minute, chromedp.Navigate(base+"/console/machines/"+mac)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the machine page", 30*time.Second, atPage("/console/machines/"+mac, "#reset"))
	click(t, b, "#reset")
	waitJS(t, b, "the reset's confirmation page", 30*time.Second, atPage("/console/machines/"+mac+"/reset", "#confirm"))
	if what := text(t, b, "#what"); !strings.Contains(what, fmt.Sprintf("upper disk %d of profile default", ks[0].ID)) {
		t.Errorf("the reset's confirmation says %q: want it to name upper disk %d", what, ks[0].ID)
	}
	click(t, b, "#do")
	waitJS(t, b, "the reset's result", 30*time.Second, atPage("/console/machines/"+mac+"/reset", "#message"))
	if msg := text(t, b, "#message"); !strings.Contains(msg, "Reset "+mac+": 1 disk removed") {
		t.Errorf("after the reset: %q", msg)
	}
	if now, err := s.DB().DisksOf(ctx, state.OwnerMachine, mac); err != nil || len(now) != 0 {
		t.Errorf("the machine's disks after the reset: %+v %v, want none", now, err)
	}
	if _, err := os.Stat(ks[0].Path); !os.IsNotExist(err) {
		t.Errorf("the reset disk's file %s: %v, want it gone", ks[0].Path, err)
	}

	// Roll the image back to version 1.
	if _, err := run(b, time.Minute, chromedp.Navigate(base+"/console/images/"+image)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the image's page", 30*time.Second, atPage("/console/images/"+image, "#versions"))
	click(t, b, "#rollback-1")
	waitJS(t, b, "the rollback's confirmation page", 30*time.Second, atPage("/console/images/"+image+"/rollback", "#confirm"))
	if what := text(t, b, "#what"); !strings.Contains(what, "version 1 of "+image) || !strings.Contains(what, v1.Digest) {
		t.Errorf("the rollback's confirmation says %q: want version 1, %s", what, v1.Digest)
	}
	click(t, b, "#do")
	waitJS(t, b, "the rollback's result", 30*time.Second, atPage("/console/images/"+image+"/rollback", "#message"))
	t.Logf("rollback: %q", text(t, b, "#message"))
	if cur, err := s.DB().Image(ctx, image); err != nil || cur.Version != 3 || cur.Digest != v1.Digest {
		t.Errorf("the image after the rollback: %+v %v, want version 3 at version 1's %s", cur, err, v1.Digest)
	}

	// The hostile machine's own page: its host name in the heading and
	// its failure message, as text.
	if _, err := run(b, time.Minute, chromedp.Navigate(base+"/console/machines/"+evilMAC)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the hostile machine's page", 30*time.Second, atPage("/console/machines/"+evilMAC, "#failure"))
	escapedHere(t, b, "the hostile machine's page", "h1", "#failure")

	// Sign out; the old session cookie, put back, opens nothing.
	old := sessionCookie(t, b, base)
	if old == nil {
		t.Fatal("no session cookie in the browser while signed in")
	}
	click(t, b, "#signout")
	waitJS(t, b, "the sign-in page after signing out", 30*time.Second, atPage("/console/signin", "#token"))
	if c := sessionCookie(t, b, base); c != nil {
		t.Errorf("the session cookie is still in the browser after signing out: %+v", c)
	}
	if _, err := run(b, 10*time.Second, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		httpOnly := true
		_, err := cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{Name: old.Name, Value: old.Value, URL: base + "/console",
			Path: "/console", HTTPOnly: &httpOnly, SameSite: network.CookieSameSiteStrict})
		return err
	})); err != nil {
		t.Fatalf("put the old cookie back: %v", err)
	}
	if c := sessionCookie(t, b, base); c == nil || c.Value != old.Value {
		t.Fatalf("the old cookie is not back: %+v", c)
	}
	if _, err := run(b, time.Minute, chromedp.Navigate(base+"/console/machines")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the sign-in page for the old session's cookie", 30*time.Second, atPage("/console/signin", "#token"))

	// A viewer (read scope) tries to delete the machine.
	consoleSignIn(t, b, base, viewer)
	if _, err := run(b, time.Minute, chromedp.Navigate(base+"/console/machines/"+mac+"/delete")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the delete's confirmation page, as a viewer", 30*time.Second, atPage("/console/machines/"+mac+"/delete", "#confirm"))
	click(t, b, "#do")
	waitJS(t, b, "the answer to a viewer's delete", 30*time.Second, atPage("/console/machines/"+mac+"/delete", "#message"))
	if h, msg := text(t, b, "h1"), text(t, b, "#message"); h != "Forbidden" || !strings.Contains(msg, "scope operate") || !strings.Contains(msg, "console-viewer, of scope read") {
		t.Errorf("a viewer's delete: %s %q, want a 403 page naming the scope needed", h, msg)
	}
	if _, err := s.DB().Machine(ctx, mac); err != nil {
		t.Errorf("after a viewer's delete: %v", err)
	}

	requests, _, exceptions, _ := b.record()
	evilHost := strings.TrimPrefix(evil.URL, "http://")
	var foreign []string
	for _, r := range foreignRequests(requests, httpAddr) {
		if !strings.HasPrefix(r, "http://"+evilHost+"/") {
			foreign = append(foreign, r)
		}
	}
	if len(foreign) > 0 {
		t.Errorf("the tab requested something not on the test's servers: %q", foreign)
	}
	for _, r := range requests {
		if strings.HasSuffix(r, "/x") {
			t.Errorf("the tab loaded the hostile image: %s", r)
		}
	}
	if len(exceptions) > 0 {
		t.Errorf("script exceptions: %q", exceptions)
	}
}
