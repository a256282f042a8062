package dhcp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// logRecorder is a slog.Handler that keeps every record, so tests can
// check what was logged at which level.
type logRecorder struct {
	mu   sync.Mutex // guards recs
	recs []string   // "LEVEL message key=value ..."
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, b.String())
	return nil
}

func (l *logRecorder) logger() *slog.Logger { return slog.New(l) }

// find returns the first record at level whose text contains every one
// of words, or "".
func (l *logRecorder) find(level slog.Level, words ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, r := range l.recs {
		if !strings.HasPrefix(r, level.String()+" ") {
			continue
		}
		for _, w := range words {
			if !strings.Contains(r, w) {
				continue next
			}
		}
		return r
	}
	return ""
}

func (l *logRecorder) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.recs, "\n")
}

// loopback is a UDP socket on 127.0.0.1 at a free port.
func loopback(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveOn runs serve(ctx, conn) until the test ends, and fails the test
// when it returns an error.
func serveOn(t *testing.T, conn net.PacketConn, serve func(context.Context, net.PacketConn) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// exchange sends req from client to server and returns the reply with
// req's transaction ID.
func exchange(t *testing.T, client net.PacketConn, server net.Addr, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	if _, err := client.WriteTo(req.ToBytes(), server); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, maxPacket)
	if err := client.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		n, _, err := client.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no reply to %s (xid %s): %v", req.MessageType(), req.TransactionID, err)
		}
		p, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatalf("reply does not decode: %v", err)
		}
		if p.TransactionID == req.TransactionID {
			return p
		}
	}
}

func withXID(b byte) dhcpv4.Modifier {
	return dhcpv4.WithTransactionID(dhcpv4.TransactionID{0, 0, 0, b})
}
