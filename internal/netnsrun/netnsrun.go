// Package netnsrun runs a function inside a network namespace made with
// `ip netns add` (Linux, root): sockets the function opens belong to that
// namespace for their whole life, whichever goroutine uses them later.
// Tests and the benchmarks use it to put servers and clients on networks
// of their own.
package netnsrun

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has entered namespace name
// (/run/netns/NAME) and returns fn's results. The thread is locked and
// never given back to the runtime: it ends with its goroutine, so no
// other goroutine runs in the namespace by accident.
func Do[T any](name string, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + name)
		if err != nil {
			c <- result{err: fmt.Errorf("netns %s: %w", name, err)}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			c <- result{err: fmt.Errorf("enter netns %s: %w", name, err)}
			return
		}
		v, err := fn()
		c <- result{v, err}
	}()
	r := <-c
	return r.v, r.err
}
