package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/server"
	"github.com/overboot/overboot/server/config"
)

// TestParseBootScript: the URLs of a kernel script with fallbacks, in
// their "||" order, and the document URL of the first kernel.
func TestParseBootScript(t *testing.T) {
	script := `#!ipxe
set overboot-try:int32 0
:overboot-again
inc overboot-try
iseq ${overboot-try} 6 && goto overboot-failed ||
imgfree overboot-kernel ||
imgfree overboot-initrd0 ||
kernel --name overboot-kernel http://c:8/blobs/sha256/k initrd=overboot-initrd0 overboot.doc=http://s:1/doc/T console=ttyS0 || kernel --name overboot-kernel http://s:1/blobs/sha256/k initrd=overboot-initrd0 overboot.doc=http://s:1/doc/T console=ttyS0 || goto overboot-again
initrd --name overboot-initrd0 http://c:8/blobs/sha256/i || initrd --name overboot-initrd0 http://s:1/blobs/sha256/i || goto overboot-again
initrd --name overboot-initrd1 http://s:1/blobs/sha256/d || goto overboot-again
boot || goto overboot-again
`
	got, err := parseBootScript(script)
	if err != nil {
		t.Fatal(err)
	}
	want := bootScript{
		Kernel:  []string{"http://c:8/blobs/sha256/k", "http://s:1/blobs/sha256/k"},
		Initrds: [][]string{{"http://c:8/blobs/sha256/i", "http://s:1/blobs/sha256/i"}, {"http://s:1/blobs/sha256/d"}},
		Doc:     "http://s:1/doc/T",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for name, bad := range map[string]string{
		"no kernel":   "#!ipxe\ninitrd http://s/i\n",
		"no initrd":   "#!ipxe\nkernel http://s/k overboot.doc=http://s/doc/T\n",
		"no document": "#!ipxe\nkernel http://s/k\ninitrd http://s/i\n",
		"no URL":      "#!ipxe\nkernel --name k\ninitrd http://s/i\n",
		"two kernels": "#!ipxe\nkernel http://s/k overboot.doc=http://s/d\nkernel http://s/k2\ninitrd http://s/i\n",
	} {
		if _, err := parseBootScript(bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestStormMachines runs the storm's machine simulation against one
// overboot server in this process with a handful of machines, each from
// its own loopback address: every machine reaches its last report in one
// attempt, and the store holds it. With a cache that does not answer
// listed first (cache =), every artifact read fails there once and comes
// from the server, as iPXE's and the keeper's fallbacks do.
func TestStormMachines(t *testing.T) {
	const machines = 6
	for _, tc := range []struct {
		name      string
		deadCache bool
	}{{"server", false}, {"dead cache first", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := writeStormFiles(dir, 64<<10, 96<<10, 4<<20); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			conf := "[server]\nname = storm-test\ndata = " + dir + "/data\n"
			dead := ""
			if tc.deadCache {
				// A port nothing listens on: connections are refused.
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				dead = "http://" + l.Addr().String()
				l.Close()
				conf += "cache = " + dead + "\n"
			}
			cfg, err := config.Parse("storm.conf", strings.NewReader(conf+stormProfile(dir)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			s, err := server.Open(ctx, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- s.Serve(ctx, ln) }()
			t.Cleanup(func() {
				cancel()
				if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
					t.Errorf("serve: %v", err)
				}
				s.Close()
			})

			spec := &stormSpec{
				ImageReads: []byteRange{{0, 64 << 10}, {1 << 20, 256 << 10}, {4<<20 - 4096, 4096}},
				TreeReads:  stormTreeReads(),
				Attempts:   2, Retry: 10 * time.Millisecond, Timeout: 30 * time.Second,
			}
			base := "http://" + ln.Addr().String()
			ms := make([]stormMachine, machines)
			outs := make([]machineOutcome, machines)
			var prog stormProgress
			var wg sync.WaitGroup
			start := time.Now()
			for i := range ms {
				ms[i] = stormMachine{MAC: ctlMAC(0x7e, i), Addr: ctlAddr(77, i), Servers: []string{base}}
				wg.Add(1)
				go func() {
					defer wg.Done()
					outs[i] = spec.run(ctx, ms[i], start, &prog)
				}()
			}
			wg.Wait()
			// Fetches of artifacts: kernel, initramfs, image and tree
			// reads (the tree of a 4 MiB image fits one chunk).
			fetches := 2 + len(spec.ImageReads) + 1
			for i, o := range outs {
				if !o.Done || o.Attempts != 1 || o.ToDoc <= 0 || o.ToLast < o.ToDoc {
					t.Errorf("machine %d: done %v after %d attempts (to document %v, to last report %v): %v", i, o.Done, o.Attempts, o.ToDoc, o.ToLast, o.Err)
				}
				// One script, one document, the 15 reports of a lazy boot.
				if got := [nControl]int{len(o.Latency[cScript]), len(o.Latency[cDoc]), len(o.Latency[cReport])}; got != [nControl]int{1, 1, 15} {
					t.Errorf("machine %d: timed %v script, document and report requests, want 1, 1, 15", i, got)
				}
				want := 0
				if tc.deadCache {
					want = fetches
				}
				if len(o.Failures) != want {
					t.Errorf("machine %d: %d failed requests, want %d: %v", i, len(o.Failures), want, o.Failures)
				}
				for _, f := range o.Failures {
					if f.Base != dead {
						t.Errorf("machine %d: a request to %s failed: %v", i, f.Base, f.Err)
					}
				}
				var n int64
				for _, r := range spec.ImageReads {
					n += r.Len
				}
				if got := o.Bytes[base]; got < 64<<10+96<<10+n {
					t.Errorf("machine %d: %d artifact bytes from the server, want at least %d", i, got, 64<<10+96<<10+n)
				}
			}
			if got := prog.done.Load(); got != machines {
				t.Errorf("progress counts %d machines done, want %d", got, machines)
			}
			macs := make([]string, machines)
			for i, m := range ms {
				macs[i] = m.MAC
			}
			if n, err := lastReported(ctx, s.DB(), macs); err != nil || n != machines {
				t.Errorf("the store holds the last report of %d machines (%v), want %d", n, err, machines)
			}
		})
	}
}
