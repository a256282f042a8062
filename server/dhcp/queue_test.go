package dhcp

import (
	"fmt"
	"testing"
	"time"
)

// TestPacketQueue: push drops the oldest when full; pop drops what is
// older than maxAge, and returns the rest in order.
func TestPacketQueue(t *testing.T) {
	q := newPacketQueue(3, time.Second)
	var drops []string
	dropped := func(p packet, why string) { drops = append(drops, fmt.Sprintf("%s:%s", p.b, why)) }
	for i, at := range []time.Time{t0, t0.Add(100 * time.Millisecond), t0.Add(200 * time.Millisecond), t0.Add(1500 * time.Millisecond)} {
		q.push(packet{b: []byte{'a' + byte(i)}, at: at}, dropped)
	}
	if fmt.Sprint(drops) != "[a:queue full]" {
		t.Errorf("drops when full: %v, want the oldest, a", drops)
	}
	drops = nil
	now := func() time.Time { return t0.Add(1150 * time.Millisecond) }
	p, ok := q.pop(now, dropped)
	if !ok || string(p.b) != "c" || fmt.Sprint(drops) != "[b:waited too long]" {
		t.Errorf("pop at 1.15 s: %q %v, drops %v; want c, b dropped for its age", p.b, ok, drops)
	}
	p, ok = q.pop(now, dropped)
	if !ok || string(p.b) != "d" {
		t.Errorf("pop: %q %v, want d", p.b, ok)
	}
	done := make(chan bool)
	go func() {
		_, ok := q.pop(now, dropped)
		done <- ok
	}()
	q.close()
	if <-done {
		t.Errorf("pop on a closed, empty queue returned a packet")
	}
}
