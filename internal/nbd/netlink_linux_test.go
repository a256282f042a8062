package nbd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
)

// socketpairServer serves img on the agent end of a Socketpair and returns
// a fake kernel on the other end (with scratch, if not nil, for payloads).
func socketpairServer(tb testing.TB, img Backend, scratch []byte) *fakeKernel {
	tb.Helper()
	kf, agent, err := Socketpair()
	if err != nil {
		tb.Fatal(err)
	}
	kc, err := net.FileConn(kf)
	kf.Close()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, agent, img) }()
	tb.Cleanup(func() {
		cancel()
		kc.Close()
		<-done
		agent.Close()
	})
	return newFakeKernelScratch(kc, scratch)
}

func TestSocketpair(t *testing.T) {
	k := socketpairServer(t, patternImage{1 << 20}, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			off := int64(i) * 65536
			if res := k.read(t, off, 65536); res.reply.Error != 0 || !bytes.Equal(res.data, wantPattern(off, 65536)) {
				t.Errorf("read at %d over a socketpair: %v", off, res.reply.Error)
			}
		})
	}
	wg.Wait()
}

// TestNetlinkWithoutModule: on a kernel without nbd, Disconnect says so
// (ErrNoModule). Where nbd is there (loaded, or loaded by the family
// lookup as root: a Debian kernel) there is nothing to check: a platform
// condition, not a need, so a skip even under make test (the CI machines'
// kernel has no nbd).
func TestNetlinkWithoutModule(t *testing.T) {
	if _, err := os.Stat("/sys/module/nbd"); err == nil {
		t.Skip("platform: this kernel has nbd loaded; the test is for a kernel without it")
	}
	err := Disconnect(Device(0))
	if _, statErr := os.Stat("/sys/module/nbd"); statErr == nil {
		t.Skip("platform: the netlink family lookup loaded nbd; the test is for a kernel without it")
	}
	if !errors.Is(err, ErrNoModule) {
		t.Errorf("Disconnect without nbd.ko: %v, want ErrNoModule", err)
	}
}

// BenchmarkServe: 128 KiB reads (the kernel's usual read-ahead size), 16 in
// flight, over a Unix socketpair, from memory: the cost of the framing,
// the workers and the socket, not of a backend.
func BenchmarkServe(b *testing.B) {
	const n = 128 << 10
	const size = 64 << 20
	img := zeroImage(size)
	k := socketpairServer(b, img, make([]byte, n))
	b.SetBytes(n)
	b.ReportAllocs()
	b.ResetTimer()
	inFlight := make(chan (<-chan result), 16)
	go func() {
		defer close(inFlight)
		for i := range b.N {
			off := int64(i) * n % size
			inFlight <- k.send(b, Request{Type: CmdRead, Offset: uint64(off), Length: n}, nil)
		}
	}()
	for ch := range inFlight {
		if res := <-ch; res.reply.Error != 0 || len(res.data) != n {
			b.Fatalf("read: %v, %d bytes", res.reply.Error, len(res.data))
		}
	}
}

// zeroImage reads as zeros without touching the buffer, so the benchmark
// measures the server and not the filling of the pattern.
type zeroImage int64

func (z zeroImage) Size() int64 { return int64(z) }

func (z zeroImage) ReadAt(p []byte, off int64) (int, error) { return len(p), nil }
