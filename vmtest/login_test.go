package vmtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/server/enroll"
	"github.com/overboot/overboot/server/state"
)

// screenWatch reads a machine's VGA screen through QMP screendumps: every
// screen whose text differs from the one before is kept as a numbered PNG
// (with its text beside it) in dir, a film strip of what the machine
// showed.
type screenWatch struct {
	t    *testing.T
	vm   *VM
	qmp  *QMP
	font *Font
	dir  string
	ppm  string // the latest screendump

	n     int    // frames kept
	last  string // text of the latest frame kept
	frame string // path of the latest frame kept
	texts []string
}

// look takes one screendump and reads its text; a new screen becomes a
// frame.
func (w *screenWatch) look() (*Text, error) {
	if err := w.qmp.Screendump(w.ppm); err != nil {
		return nil, err
	}
	s, err := ReadPPM(w.ppm)
	if err != nil {
		return nil, err
	}
	x, rerr := w.font.Read(s)
	if rerr != nil {
		// A graphics mode (or the blank screen before the BIOS sets
		// one): an empty text, still kept as a frame.
		x = &Text{}
	}
	if txt := x.String(); frameKey(txt) != frameKey(w.last) || w.n == 0 {
		w.n++
		w.last = txt
		w.texts = append(w.texts, txt)
		w.frame = filepath.Join(w.dir, fmt.Sprintf("%02d.png", w.n))
		if err := s.WritePNG(w.frame); err != nil {
			return nil, err
		}
		note := fmt.Sprintf("# frame %d at %.1fs since QEMU started, %dx%d", w.n, time.Since(w.vm.start).Seconds(), s.W, s.H)
		if rerr != nil {
			note += " (not a text screen)"
		}
		if err := os.WriteFile(strings.TrimSuffix(w.frame, ".png")+".txt", []byte(note+"\n"+txt+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// waitFor polls the screen until ok accepts it, and returns it. It fails
// the test when QEMU exits first or timeout passes, showing the last
// screen's text.
func (w *screenWatch) waitFor(what string, timeout time.Duration, ok func(*Text) bool) *Text {
	w.t.Helper()
	t0 := time.Now()
	deadline := t0.Add(timeout)
	for {
		x, err := w.look()
		if err != nil {
			w.t.Fatalf("waiting for %s: read the screen: %v", what, err)
		}
		if ok(x) {
			w.t.Logf("screen %s: after %.1fs (QEMU at %.1fs), frame %s:\n%s", what, time.Since(t0).Seconds(), time.Since(w.vm.start).Seconds(), w.frame, indent(x.String()))
			return x
		}
		select {
		case <-w.vm.exited:
			w.t.Fatalf("waiting for %s: QEMU exited; last screen (frame %s):\n%s", what, w.frame, indent(x.String()))
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("waiting %s for %s: not on screen; last screen (frame %s):\n%s", timeout, what, w.frame, indent(x.String()))
		}
	}
}

func indent(s string) string { return "\t| " + strings.ReplaceAll(s, "\n", "\n\t| ") }

// formField is the content of a field of iPXE's login form: the first
// text under its label, without the underscores that draw the field's
// empty places. ok is false until the field is drawn whole.
func formField(x *Text, label string) (text string, ok bool) {
	r, _, ok := x.Find(label)
	if !ok {
		return "", false
	}
	for r++; r < x.Rows; r++ {
		if l := strings.TrimSpace(x.Line(r)); l != "" {
			return strings.TrimRight(l, "_"), len(l) == formFieldWidth
		}
	}
	return "", false
}

// formFieldWidth is how wide iPXE draws the login form's fields.
const formFieldWidth = 20

// frameKey is a screen's text without what the blinking cursor changes
// (it reads as an underscore): screens that differ only by the cursor are
// one frame.
func frameKey(txt string) string {
	lines := strings.Split(txt, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(strings.TrimSuffix(l, "_"), " ")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n")
}

// TestLoginMenu drives the server's login menu as a person would, on
// iPXE's VGA screen through QMP: the menu, the login form with a wrong
// password, the menu again with the server's notice, the form with the
// right password, and the user's own iSCSI root, new on this first login.
// The screen is read back into text with the VGA BIOS's own font (see
// Font), so each step checks what iPXE actually drew.
func TestLoginMenu(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	font, err := LoadVGAFont("")
	if err != nil {
		t.Fatal(err)
	}
	const (
		mac  = "52:54:00:0b:00:08"
		user = "alice"
		// Every character that broke the query when the form sent
		// ${password:uristring} ('&', '+', ';' went raw in this iPXE,
		// the NIC ROM 1.0.0+git-20190125): the form now sends hex.
		right = "Open & 4+2; 42%!" // the form field shows 20 characters
		wrong = "open sesame"
	)
	dir := t.TempDir()
	conf := fmt.Sprintf(`[server]
data = %s
iscsi-portal = %s:3260

[profile default]
kernel = %s
initramfs = %s
root = %s
upper = iscsi
upper-disk-size = 64M
enroll = login
menu = guest
menu-timeout = 60s
onfail = poweroff
onfail-delay = 1s
cmdline = console=ttyS0 panic=-1 OVERBOOT_TEST_UPPER=iscsi

[profile guest]
kernel = %[3]s
initramfs = %[4]s
root = %[5]s
onfail = poweroff
onfail-delay = 1s
cmdline = console=ttyS0 panic=-1
`, dir, GuestServer, a.Kernel, a.Initramfs, a.Root)
	srv, httpAddr, iscsiAddr := startServer(t, conf, dir)
	ctx := context.Background()
	hash, err := enroll.HashPassword(right)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.DB().AddUser(ctx, user, hash); err != nil {
		t.Fatal(err)
	}

	shots := filepath.Join(t.TempDir(), "screens")
	if d := os.Getenv("OVERBOOT_VMTEST_SHOTS"); d != "" {
		shots = filepath.Join(d, t.Name()) // kept after the test
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screens: %s", shots)
	qmpPath := filepath.Join(t.TempDir(), "qmp.sock")
	vm := startVM(t, Options{
		PXE: true, TFTPDir: bootstrapTFTP(t), BootFile: "boot.ipxe", MAC: mac,
		Forwards: []Forward{{GuestPort: 80, HostAddr: httpAddr}, {GuestPort: 3260, HostAddr: iscsiAddr}},
		VGA:      true, QMP: qmpPath,
	})
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	qmp, err := DialQMP(dctx, qmpPath)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qmp.Close() })
	w := &screenWatch{t: t, vm: vm, qmp: qmp, font: font, dir: shots, ppm: filepath.Join(shots, "latest.ppm")}

	// The menu: its three items, the login item first and highlighted
	// (drawn in another background colour than the others).
	menu := func(x *Text) bool {
		return x.Contains("Log in (your own root)") && x.Contains("Boot guest") && x.Contains("Exit (next boot device)")
	}
	checkMenu := func(x *Text) {
		t.Helper()
		lr, lc, _ := x.Find("Log in (your own root)")
		gr, gc, _ := x.Find("Boot guest")
		er, _, _ := x.Find("Exit (next boot device)")
		if !(lr < gr && gr < er) {
			t.Errorf("menu items out of order: login row %d, guest row %d, exit row %d", lr, gr, er)
		}
		sel, other := x.RowBG(lr, lc, lc+22), x.RowBG(gr, gc, gc+10)
		if sel == other {
			t.Errorf("the login item is not highlighted: its background %s is the other items'", sel)
		} else {
			t.Logf("menu: login item highlighted (background %s, other items %s)", sel, other)
		}
	}
	x := w.waitFor("the menu", bootTimeout, menu)
	checkMenu(x)
	if x.Contains("Wrong username or password") {
		t.Errorf("the first menu already shows the wrong-password notice")
	}

	// The login form: Enter takes the default item.
	form := func(x *Text) bool {
		_, u := formField(x, "Username:")
		_, p := formField(x, "Password:")
		return u && p
	}
	login := func(name, pw string) {
		t.Helper()
		if err := qmp.SendKey("ret"); err != nil {
			t.Fatal(err)
		}
		x := w.waitFor("the login form", time.Minute, form)
		if f, _ := formField(x, "Password:"); f != "" {
			t.Errorf("the form's password field is not empty: %q", f)
		}
		// iPXE keeps the username setting from an earlier form.
		if have, _ := formField(x, "Username:"); have != name {
			if have != "" {
				t.Fatalf("the form's username field holds %q", have)
			}
			if err := qmp.Type(name); err != nil {
				t.Fatal(err)
			}
		}
		w.waitFor("the username typed", time.Minute, func(x *Text) bool {
			f, _ := formField(x, "Username:")
			return f == name
		})
		if err := qmp.Type("\t" + pw); err != nil {
			t.Fatal(err)
		}
		// The password shows as one mask character per character typed.
		w.waitFor("the password typed (masked)", time.Minute, func(x *Text) bool {
			f, _ := formField(x, "Password:")
			return f == strings.Repeat("*", len(pw))
		})
		if err := qmp.SendKey("ret"); err != nil {
			t.Fatal(err)
		}
	}
	login(user, wrong)

	// Back to the menu, with the server's notice.
	x = w.waitFor("the menu with the wrong-password notice", time.Minute, func(x *Text) bool {
		return menu(x) && x.Contains("Wrong username or password: try again")
	})
	checkMenu(x)
	// On the way, the server's answer said why (for the 2 s it sleeps).
	said := false
	for _, txt := range w.texts {
		said = said || strings.Contains(txt, "overboot: wrong username or password")
	}
	if !said {
		t.Errorf("no screen showed the server's %q", "overboot: wrong username or password")
	}
	nr, _, _ := x.Find("Wrong username or password: try again")
	if lr, _, _ := x.Find("Log in (your own root)"); nr >= lr {
		t.Errorf("the notice (row %d) is not above the login item (row %d)", nr, lr)
	}
	bs, err := srv.DB().Boots(ctx, mac, 10)
	if err != nil {
		t.Fatal(err)
	}
	failed := bootsWith(t, srv.DB(), bs, "server", "login", "failed")
	if len(failed) != 1 {
		t.Errorf("boots with a failed login: %d, want 1 (boots %+v)", len(failed), bs)
	} else if failed[0].User != "" {
		t.Errorf("the failed login's boot has user %q", failed[0].User)
	}
	if ds, err := srv.DB().DisksOf(ctx, state.OwnerUser, user); err != nil || len(ds) != 0 {
		t.Errorf("after a wrong password, %s has disks %+v (%v)", user, ds, err)
	}

	// The right password: the kernel boots, the agent attaches alice's
	// disk, new on this first login.
	login(user, right)
	// Film the screen (iPXE loading the kernel, then the kernel's own
	// VGA console) until the root reports or QEMU exits.
	for deadline := time.Now().Add(bootTimeout); !vm.Contains(MarkerPersistNew) && time.Now().Before(deadline); {
		if _, err := w.look(); err != nil {
			break // QEMU has gone
		}
		time.Sleep(500 * time.Millisecond) // the polling period, not a wait for anything
	}
	if l, err := vm.Expect(MarkerPersistNew, time.Second); err != nil {
		t.Errorf("boot events: %s", loginBoots(srv.DB(), mac))
		t.Fatalf("first boot on %s's new disk: %v; last screen (frame %s):\n%s", user, err, w.frame, indent(w.last))
	} else {
		t.Logf("console %s", l)
	}
	expectPass(t, vm)
	t.Logf("screens: %d frames in %s", w.n, shots)

	ds, err := srv.DB().DisksOf(ctx, state.OwnerUser, user)
	if err != nil || len(ds) != 1 {
		t.Errorf("%s's disks: %+v (%v), want one", user, ds, err)
	}
	bs, err = srv.DB().Boots(ctx, mac, 10)
	if err != nil {
		t.Fatal(err)
	}
	ok := bootsWith(t, srv.DB(), bs, "server", "login", "ok")
	if len(ok) != 1 || ok[0].ID != bs[0].ID || ok[0].User != user {
		t.Errorf("the latest boot is not %s's logged-in boot: logged in %+v, boots %+v", user, ok, bs)
	} else if ev, _ := srv.DB().BootEvents(ctx, bs[0].ID); !hasEvent(ev, "server", "document", "ok") || !hasEvent(ev, "agent", "upper", "ok") {
		t.Errorf("%s's boot has no document or no attached upper: %+v", user, ev)
	} else {
		for _, e := range ev {
			if e.Source == "server" && e.Phase == "document" && !strings.Contains(e.Message, ":u-"+user+"-d") {
				t.Errorf("%s's boot got disk %q, not one of %s's", user, e.Message, user)
			}
		}
	}
	t.Logf("the server's record: %s", loginBoots(srv.DB(), mac))
	u, err := srv.DB().User(ctx, user)
	if err != nil || u.Secret == "" {
		t.Fatalf("%s has no CHAP secret after the login (%v)", user, err)
	}
	// Neither password, nor the login URL's query that carries it
	// (iPXE shows the URLs it fetches), nor the CHAP secret.
	for what, s := range map[string]string{
		"the password": right, "the wrong password": wrong, "the CHAP secret": u.Secret, "a login query": "password=",
	} {
		if vm.Contains(s) {
			t.Errorf("%s appeared on the serial console", what)
		}
		for i, txt := range w.texts {
			if strings.Contains(txt, s) {
				t.Errorf("%s appeared on the screen (frame %d)", what, i+1)
			}
		}
	}
}

// bootsWith returns the boots that have an event of source, phase and
// outcome.
func bootsWith(t *testing.T, db *state.DB, bs []state.Boot, source, phase, outcome string) []state.Boot {
	t.Helper()
	var out []state.Boot
	for _, b := range bs {
		ev, err := db.BootEvents(context.Background(), b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if hasEvent(ev, source, phase, outcome) {
			out = append(out, b)
		}
	}
	return out
}

func hasEvent(ev []state.BootEvent, source, phase, outcome string) bool {
	for _, e := range ev {
		if e.Source == source && e.Phase == phase && e.Outcome == outcome {
			return true
		}
	}
	return false
}

// loginBoots describes a machine's recent boots and their events, for
// failure messages.
func loginBoots(db *state.DB, mac string) string {
	ctx := context.Background()
	bs, err := db.Boots(ctx, mac, 10)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for i := len(bs) - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "\n\tboot %d (profile %s, user %q):", bs[i].ID, bs[i].Profile, bs[i].User)
		ev, _ := db.BootEvents(ctx, bs[i].ID)
		for _, e := range ev {
			fmt.Fprintf(&b, " %s/%s:%s", e.Source, e.Phase, e.Outcome)
			if e.Message != "" {
				fmt.Fprintf(&b, "(%s)", e.Message)
			}
		}
	}
	return b.String()
}
