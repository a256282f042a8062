package initagent

import "testing"

func TestUptime(t *testing.T) {
	a, b := Uptime(), Uptime()
	if a <= 0 || b < a {
		t.Errorf("Uptime not monotonic and positive: %v then %v", a, b)
	}
}
