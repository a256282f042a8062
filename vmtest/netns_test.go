package vmtest

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/testneed"
)

// TestNetNS: a listener opened in the namespace answers on the bridge's
// address from inside it, and the namespace cannot reach the host's
// loopback (it is a world of its own).
func TestNetNS(t *testing.T) {
	testneed.Root(t, "network namespaces")
	n := NewNetNS(t)
	ln := n.Listen(t, n.Addr+":8080")
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello from the namespace"))
			c.Close()
		}
	}()
	var got string
	if err := n.Do(func() error {
		c, err := net.DialTimeout("tcp", n.Addr+":8080", 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		b := make([]byte, 64)
		k, _ := c.Read(b)
		got = string(b[:k])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != "hello from the namespace" {
		t.Errorf("got %q", got)
	}
	// From the host's own namespace the bridge address is not there.
	if c, err := net.DialTimeout("tcp", n.Addr+":8080", time.Second); err == nil {
		c.Close()
		t.Error("the namespace's listener is reachable from the host namespace")
	}
	if tap := n.Tap(t); !strings.HasPrefix(tap, "tap") {
		t.Errorf("tap %q", tap)
	}
}
