package vmtest

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overboot/overboot/server"
)

// rangeCounter counts the Range requests for the image, and those larger
// than the keeper's read-ahead (4 chunks of 256 KiB), which only its
// prefetch of a working set makes in lazy mode.
type rangeCounter struct {
	h http.Handler

	mu          sync.Mutex
	reads, big  int
	workingSets int // POST .../working-set answered
}

var rangeRE = regexp.MustCompile(`^bytes=(\d+)-(\d+)$`)

func (c *rangeCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m := rangeRE.FindStringSubmatch(r.Header.Get("Range")); m != nil && strings.HasPrefix(r.URL.Path, server.BlobPrefix) {
		first, _ := strconv.ParseInt(m[1], 10, 64)
		last, _ := strconv.ParseInt(m[2], 10, 64)
		c.mu.Lock()
		c.reads++
		if last-first+1 > 1<<20 {
			c.big++
		}
		c.mu.Unlock()
	}
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/working-set") {
		c.mu.Lock()
		c.workingSets++
		c.mu.Unlock()
	}
	c.h.ServeHTTP(w, r)
}

// counts returns the reads and big reads so far, and zeroes them.
func (c *rangeCounter) counts() (reads, big int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	reads, big = c.reads, c.big
	c.reads, c.big = 0, 0
	return reads, big
}

// TestWorkingSetPrefetch: the first boot of a lazy root reports what it
// read in its first minute; the second boot's document carries it, and
// its keeper fetches it in a few large requests (counted at the server)
// before the root's init runs.
func TestWorkingSetPrefetch(t *testing.T) {
	t.Parallel()
	a := needVM(t)
	data := filepath.Join(t.TempDir(), "store")
	// lazyread rounds keep the first machine up past the keeper's
	// minute; a 16 MiB cache leaves the prefetch 8 MiB.
	conf := fmt.Sprintf("[profile default]\nkernel = %s\ninitramfs = %s\nroot = %s\nlower-mode = lazy\nonfail = poweroff\nonfail-delay = 1s\nlower-cache = 16M\ncmdline = console=ttyS0 panic=-1 OVERBOOT_TEST=lazyread OVERBOOT_TEST_ROUNDS=1000\n",
		a.Kernel, a.Initramfs, a.Root)
	s := configServer(t, conf, data)
	counter := &rangeCounter{h: s.Handler()}
	rs := newRestartable(t, counter)
	image := a.RootSum.String()

	vm := startLazyVM(t, rs, "52:54:00:0d:00:21")
	if _, err := vm.Expect(MarkerLazyRound+" 1", bootTimeout); err != nil {
		t.Fatalf("the first boot's root did not read: %v", err)
	}
	rep, err := vm.Expect("overboot-keeper: working set of image", 3*time.Minute)
	if err != nil {
		t.Fatalf("the first boot's keeper did not report its working set: %v", err)
	}
	vm.Kill()
	if strings.Contains(rep.Text, "not reported") {
		t.Fatalf("the keeper's report failed: %s", rep.Text)
	}
	t.Logf("%s", rep)
	ws, n, err := s.DB().WorkingSet(context.Background(), image)
	if err != nil || n != 1 || ws.Count() == 0 {
		t.Fatalf("the store holds %d working sets of %s (%v), %d chunks", n, image, err, ws.Count())
	}
	t.Logf("working set after one boot: %d chunks of the image, %d of its tree (%d bytes each)", ws.Image.Count(), ws.Tree.Count(), ws.ChunkSize)
	reads1, big1 := counter.counts()
	if big1 != 0 {
		t.Errorf("the first boot made %d requests larger than a read-ahead: no working set to prefetch", big1)
	}

	vm2 := startLazyVM(t, rs, "52:54:00:0d:00:22")
	l, err := vm2.Expect("overboot-keeper: working set: ", bootTimeout)
	if err != nil {
		t.Fatalf("the second boot's keeper did not prefetch: %v", err)
	}
	t.Logf("%s", l)
	if _, err := vm2.Expect(MarkerLazyReading, bootTimeout); err != nil {
		t.Fatalf("the second boot's root did not start reading: %v", err)
	}
	reads2, big2 := counter.counts()
	vm2.Kill()
	t.Logf("image Range requests: first boot %d (its whole life), second boot %d until its init reads", reads1, reads2)
	if big2 == 0 {
		t.Errorf("the second boot made no request larger than a read-ahead: the working set was not fetched in large requests")
	}
	m := regexp.MustCompile(`working set: ([\d.]+) MiB of the image in (\d+) requests`).FindStringSubmatch(l.Text)
	if m == nil || m[1] == "0.0" || m[2] == "0" {
		t.Errorf("the keeper fetched nothing of the working set: %s", l.Text)
	}
	if counter.workingSets < 1 {
		t.Errorf("no working set report reached the server")
	}
}
