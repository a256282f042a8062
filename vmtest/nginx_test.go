package vmtest

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/nginxtest"
)

// In the guest, behind nginx: server A is GuestServer:80, server B :81,
// nginx :82.
const guestNginxPort = 82

// nginxRig is two `overboot serve` processes with the same systemd image
// behind one nginx (proxy_cache, both servers in its upstream), each with
// `cache =` nginx's guest URL: scripts and documents (from A) name the
// kernel, initramfs, image and tree at nginx first, then at A, then at B.
// Machines PXE-boot through iPXE, so iPXE loads the kernel and initramfs
// through nginx too.
type nginxRig struct {
	a, b *serveProc
	ng   *nginxtest.Nginx
	tftp string
	// Where the artifacts are, as nginx logs them.
	kernel, initramfs, image, tree string
}

// nginxMachines are the test's machines: the first boots the default
// profile (systemd up, then power off), the second the reader profile
// (the failover routine reads every file of /usr/share once systemd is
// up).
const (
	nginxMAC1      = "52:54:00:0f:00:01"
	nginxMAC2      = "52:54:00:0f:00:02"
	nginxMACMiss   = "52:54:00:0f:00:03"
	nginxCmdline   = "console=ttyS0 panic=-1"
	nginxReaderArg = "overboot_test=failover overboot_test_read=/usr/share"
)

func startNginxRig(t *testing.T, a *Artifacts, opt nginxtest.Options) *nginxRig {
	t.Helper()
	dir := t.TempDir()
	img := systemdImage(t, dir)
	profile := func(name, cmdline string) string {
		return fmt.Sprintf("\n[profile %s]\nkernel = %s\ninitramfs = %s\nroot = %s\nlower-mode = lazy\nonfail = poweroff\nonfail-delay = 1s\ncmdline = %s\n",
			name, a.Kernel, a.Initramfs, img, cmdline)
	}
	profiles := profile("default", nginxCmdline) + profile("reader", nginxCmdline+" "+nginxReaderArg) +
		"\n[machine " + nginxMAC2 + "]\nprofile = reader\n"
	cache := fmt.Sprintf("cache = http://%s:%d\n", GuestServer, guestNginxPort)
	r := &nginxRig{tftp: bootstrapTFTP(t)}
	r.b = startServe(t, a, filepath.Join(dir, "b"), "url = http://"+GuestServer+":81\n"+cache+profiles)
	r.a = startServe(t, a, filepath.Join(dir, "a"), "url = http://"+GuestServer+"\nmirrors = http://"+GuestServer+":81\n"+cache+profiles)
	// B makes its tree with its first document: nginx may ask either.
	if _, err := httpGet("http://" + r.b.addr + "/doc/" + docToken(t, r.b.addr, "52:54:00:0f:00:99")); err != nil {
		t.Fatalf("B's document: %v", err)
	}
	opt.Upstreams = []string{r.a.addr, r.b.addr}
	r.ng = nginxtest.Start(t, opt)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx's error log:\n%s", r.ng.ErrorLog())
		}
	})
	r.kernel = "/blobs/sha256/" + fileSHA256(t, a.Kernel)
	r.initramfs = "/blobs/sha256/" + fileSHA256(t, a.Initramfs)
	imageHex := fileSHA256(t, img)
	r.image, r.tree = "/blobs/sha256/"+imageHex, "/verity/sha256/"+imageHex
	// The script names nginx first for the kernel.
	if s := machineScript(t, r.a.addr, nginxMAC1); !strings.Contains(s, fmt.Sprintf("kernel --name overboot-kernel http://%s:%d%s", GuestServer, guestNginxPort, r.kernel)) {
		t.Fatalf("the script does not load the kernel from nginx first:\n%s", s)
	}
	return r
}

// boot PXE-boots mac (iPXE asks A for its script).
func (r *nginxRig) boot(t *testing.T, mac string) *VM {
	t.Helper()
	return startVM(t, Options{
		PXE: true, TFTPDir: r.tftp, BootFile: "boot.ipxe", MAC: mac, MemoryMB: 1024, CPUs: 2,
		Forwards: []Forward{{GuestPort: 80, HostAddr: r.a.addr}, {GuestPort: 81, HostAddr: r.b.addr}, {GuestPort: guestNginxPort, HostAddr: strings.TrimPrefix(r.ng.URL, "http://")}},
	})
}

// log is nginx's access log now.
func (r *nginxRig) log(t *testing.T) []nginxtest.Entry {
	t.Helper()
	log, err := r.ng.Log()
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// what names an access log entry's artifact, "" for others.
func (r *nginxRig) what(e nginxtest.Entry) string {
	switch e.URI {
	case r.kernel:
		return "kernel"
	case r.initramfs:
		return "initramfs"
	case r.image:
		return "image"
	case r.tree:
		return "tree"
	}
	return ""
}

// tally counts entries by artifact and cache status ("image 206 HIT").
func (r *nginxRig) tally(log []nginxtest.Entry) map[string]int {
	n := map[string]int{}
	for _, e := range log {
		if w := r.what(e); w != "" {
			n[fmt.Sprintf("%s %d %s", w, e.Status, e.Cache)]++
		}
	}
	return n
}

// served is what the two servers say they served: artifact bytes
// (kernel, initramfs, image) and tree requests, from their /metrics.
func (r *nginxRig) served(t *testing.T) (blobBytes, treeReqs int64) {
	t.Helper()
	for _, p := range []*serveProc{r.a, r.b} {
		b, err := httpGet("http://" + p.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			name, v, ok := strings.Cut(sc.Text(), " ")
			if !ok || strings.HasPrefix(name, "#") {
				continue
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				continue
			}
			switch {
			case name == "overboot_http_sent_bytes_total":
				blobBytes += int64(f)
			case strings.HasPrefix(name, "overboot_http_requests_total{") && strings.Contains(name, `endpoint="verity"`):
				treeReqs += int64(f)
			}
		}
	}
	return blobBytes, treeReqs
}

// checkConsole fails the test for every console line that says a read
// of the root failed, and logs the keeper's moves between sources.
func checkConsole(t *testing.T, vm *VM) {
	t.Helper()
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "overboot-keeper") && (strings.Contains(l.Text, "image source") || strings.Contains(l.Text, "image server")) {
			t.Logf("keeper: %s", l)
		}
		if strings.Contains(l.Text, MarkerFailover+" slow") {
			t.Logf("%s", l)
		}
		for _, bad := range []string{"I/O error", "SQUASHFS error", "is corrupted", "overboot-keeper: stopped", "image changed"} {
			if strings.Contains(l.Text, bad) {
				t.Errorf("console: %s", l)
			}
		}
	}
}

// expectSystemd waits for the systemd root's report.
func expectSystemd(t *testing.T, vm *VM, what string) Line {
	t.Helper()
	l, i, err := vm.ExpectAny(2*bootTimeout, MarkerSystemd, "overboot: BOOT FAILED")
	if err != nil || i != 0 {
		t.Fatalf("%s: systemd did not report: %v %s", what, err, l.Text)
	}
	if !regexp.MustCompile(`state=(running|degraded)`).MatchString(l.Text) {
		t.Errorf("%s: %s", what, l.Text)
	}
	return l
}

// TestNginxLazyRoot: two servers behind nginx with the documented
// configuration (1 MiB slices); two machines, one after the other, boot
// the same systemd image on a lazy root through iPXE. The first one's
// kernel, initramfs, tree and image come through nginx and fill its cache
// (MISS); the second machine's are HITs, and the servers' counters show
// they did not send those bytes again. Then, while the second machine's
// root reads every file of /usr/share (most never read before), nginx is restarted with its cache deleted (stopped, cache
// directory removed, started on the same port): the reads go on, none
// fails, and later ones go through the cold nginx again (MISS). The
// longest stall (the slowest batch of reads, guest-side) is logged as a
// figure, not asserted.
func TestNginxLazyRoot(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	r := startNginxRig(t, a, nginxtest.Options{Slice: "1m"})

	// Machine 1: everything through nginx, a cold cache.
	vm1 := r.boot(t, nginxMAC1)
	t.Logf("machine 1: %s", expectSystemd(t, vm1, "machine 1"))
	if _, err := vm1.Wait(2 * time.Minute); err != nil {
		t.Fatalf("machine 1 did not power off: %v", err)
	}
	checkConsole(t, vm1)
	log1 := r.log(t)
	n1 := r.tally(log1)
	t.Logf("machine 1 through nginx: %v", n1)
	for _, w := range []string{"kernel 200 MISS", "initramfs 200 MISS", "image 206 MISS", "tree 206 MISS"} {
		if n1[w] == 0 {
			t.Errorf("machine 1: no %q in nginx's log", w)
		}
	}

	// Machine 2: the same image, from the cache.
	bytes0, trees0 := r.served(t)
	vm2 := r.boot(t, nginxMAC2)
	t.Logf("machine 2: %s", expectSystemd(t, vm2, "machine 2"))
	ready, i, err := vm2.ExpectAny(bootTimeout, MarkerFailover+" ready", "overboot: BOOT FAILED")
	if err != nil || i != 0 {
		t.Fatalf("machine 2: the reading routine did not start: %v %s", err, ready.Text)
	}
	log2 := r.log(t)
	bytes1, trees1 := r.served(t)
	boot2 := log2[len(log1):]
	n2 := r.tally(boot2)
	t.Logf("machine 2 through nginx, up to systemd's report: %v", n2)
	var hitBytes, missBytes int64
	for _, e := range boot2 {
		w := r.what(e)
		if w == "" {
			continue
		}
		if e.Cache == "HIT" {
			hitBytes += e.Bytes
			if e.Upstream != "-" || e.UpstreamBytes != 0 {
				t.Errorf("machine 2: a HIT that asked a server: %s", e)
			}
		} else {
			missBytes += e.Bytes
		}
		if w == "kernel" || w == "initramfs" {
			if e.Cache != "HIT" {
				t.Errorf("machine 2: %s: %s, want a HIT", w, e)
			} else {
				t.Logf("machine 2 HIT: %s", e)
			}
		}
	}
	for _, w := range []string{"kernel 200 HIT", "initramfs 200 HIT", "image 206 HIT", "tree 206 HIT"} {
		if n2[w] == 0 {
			t.Errorf("machine 2: no %q in nginx's log", w)
		}
	}
	for _, e := range boot2 {
		if r.what(e) == "image" && e.Cache == "HIT" {
			t.Logf("machine 2 image HIT, e.g.: %s", e)
			break
		}
	}
	fromServers := bytes1 - bytes0
	t.Logf("machine 2's boot: nginx sent %d artifact bytes from its cache (HIT), %d otherwise; the servers sent %d artifact bytes and answered %d tree requests meanwhile",
		hitBytes, missBytes, fromServers, trees1-trees0)
	// The servers sent nginx at most what its misses needed, each rounded
	// out to whole slices (at most 2 MiB more): nothing for the HITs.
	if hitBytes == 0 || fromServers > missBytes+int64(missCount(boot2))*(2<<20) {
		t.Errorf("the servers sent %d bytes for machine 2's boot, nginx %d from its cache and %d otherwise: the cache did not spare them", fromServers, hitBytes, missBytes)
	}

	// nginx restarted with a cold cache while machine 2's root reads.
	t.Logf("machine 2's reading routine started at %.1fs", ready.At.Seconds())
	seen := len(log2)
	for deadline := time.Now().Add(time.Minute); ; {
		if log := r.log(t); hasImageRead(r, log[seen:]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the root's reads did not reach nginx within a minute of the routine's start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := len(r.log(t))
	restartAt := time.Since(vm2.start)
	if err := r.ng.Restart(true); err != nil {
		t.Fatal(err)
	}
	t.Logf("nginx restarted with an empty cache at the console's %.1fs (down %.2fs)", restartAt.Seconds(), (time.Since(vm2.start) - restartAt).Seconds())

	done, i, err := vm2.ExpectAny(bootTimeout, MarkerFailover+" done", "overboot: BOOT FAILED")
	if err != nil || i != 0 {
		t.Fatalf("machine 2: no checkpoint after the restart: %v %s", err, done.Text)
	}
	t.Logf("checkpoint at %.1fs: %s", done.At.Seconds(), done.Text)
	if _, err := vm2.Wait(2 * time.Minute); err != nil {
		t.Errorf("machine 2 did not power off: %v", err)
	}
	checkConsole(t, vm2)
	m := regexp.MustCompile(`files=(\d+) bytes=(\d+) errors=(\d+) batches=(\d+) longest_ms=(\d+) median_ms=(\d+) total_ms=(\d+)`).FindStringSubmatch(done.Text)
	switch {
	case m == nil:
		t.Fatalf("unreadable checkpoint %q", done.Text)
	case m[3] != "0":
		t.Errorf("%s batches of reads failed across nginx's restart", m[3])
	default:
		t.Logf("FIGURE: longest stall <= %s ms (slowest batch of 40 files, guest clock; median batch %s ms), %s files, %s bytes read in %s ms, nginx restarted cold meanwhile",
			m[5], m[6], m[1], m[2], m[7])
	}
	// The batch in flight at the restart, if it was slow (over 2 s: the
	// routine prints those with the console time they ended at).
	inFlight := "under 2000 ms"
	slow := regexp.MustCompile(MarkerFailover + ` slow batch=\d+ ms=(\d+)`)
	for _, l := range vm2.Lines() {
		if f := slow.FindStringSubmatch(l.Text); f != nil {
			ms, _ := strconv.Atoi(f[1])
			if l.At >= restartAt && l.At-time.Duration(ms)*time.Millisecond <= restartAt {
				inFlight = f[1] + " ms"
			}
		}
	}
	t.Logf("FIGURE: the batch of reads in flight at nginx's restart took %s", inFlight)
	after := r.tally(r.log(t)[before:])
	t.Logf("through nginx after its restart: %v", after)
	if after["image 206 MISS"] == 0 {
		t.Errorf("no image read through the restarted nginx (MISS from its empty cache)")
	}
}

// missCount is the number of artifact requests nginx did not answer from
// its cache.
func missCount(log []nginxtest.Entry) int {
	n := 0
	for _, e := range log {
		if strings.HasPrefix(e.URI, "/blobs/") && e.Cache != "HIT" {
			n++
		}
	}
	return n
}

// hasImageRead reports whether log has a Range read of the image.
func hasImageRead(r *nginxRig, log []nginxtest.Entry) bool {
	for _, e := range log {
		if e.URI == r.image && e.Range != "-" {
			return true
		}
	}
	return false
}

// TestNginxMissAnswers200: nginx answers the first request of each object
// (not cached yet) with 200 and the whole object, whatever Range the
// machine asked (nginxtest.Options.WholeFirst: a cache that cannot serve
// a range before it holds the object); later requests get ranges from
// the cache. A machine boots the systemd image on a lazy root through it:
// the keeper meets 200s to its Range requests (nginx's log), takes them
// as a failing source, reads from the servers meanwhile and returns to
// nginx later; systemd comes up and powers off with no read failing.
func TestNginxMissAnswers200(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	r := startNginxRig(t, a, nginxtest.Options{WholeFirst: true})
	vm := r.boot(t, nginxMACMiss)
	t.Logf("%s", expectSystemd(t, vm, "the machine"))
	if _, err := vm.Wait(2 * time.Minute); err != nil {
		t.Fatalf("systemd did not power off: %v", err)
	}
	checkConsole(t, vm)
	if !vm.Contains("reboot: Power down") {
		t.Errorf("no clean power-off on the console")
	}
	log := r.log(t)
	t.Logf("through nginx: %v", r.tally(log))
	whole := 0
	for _, e := range log {
		if r.what(e) != "" && e.Range != "-" && e.Status == http.StatusOK {
			whole++
			if whole <= 3 {
				t.Logf("200 to a Range request: %s", e)
			}
		}
	}
	if whole == 0 {
		t.Errorf("the machine met no 200 to a Range request: the test proved nothing")
	}
	// After a 200 the keeper left nginx for a while; it came back to it
	// later (the object cached by then: 206s).
	ranged, after200 := 0, false
	for _, e := range log {
		if r.what(e) == "image" && e.Range != "-" {
			switch e.Status {
			case http.StatusOK:
				after200 = true
			case http.StatusPartialContent:
				if after200 {
					ranged++
				}
			}
		}
	}
	t.Logf("%d answers of 200 to a Range request; then %d image reads answered 206 by nginx", whole, ranged)
	if ranged == 0 {
		t.Errorf("after a 200 to a Range request, the keeper never read the image from nginx again")
	}
}

// fileSHA256 is the hex SHA-256 of the file at path.
func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
