package dhcp

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestFullPerfdhcp runs ISC's perfdhcp (Debian's kea-admin) against a
// Full on a veth for five seconds, 200 simulated clients at 100
// exchanges a second through its relay address, and checks that most
// exchanges complete, that perfdhcp saw no address given twice and no
// reply it rejected, and that no two MACs hold one address in the
// leases. Root, like the tests beside it (listen_linux_test.go's lab);
// perfdhcp must be installed.
func TestFullPerfdhcp(t *testing.T) {
	l := newLab(t)
	perfdhcp, err := exec.LookPath("perfdhcp")
	if err != nil {
		t.Fatal("perfdhcp missing: install kea-admin (apt-get install kea-admin)")
	}
	srv0, cli0, _ := l.link(0, "192.0.2.1/24", "192.0.2.2/24")
	leases := &MemLeases{}
	f, err := NewFull(FullConfig{
		Interface: srv0,
		ServerIP:  netip.MustParseAddr("192.0.2.1"),
		Subnet:    netip.MustParsePrefix("192.0.2.0/24"),
		Start:     netip.MustParseAddr("192.0.2.10"),
		End:       netip.MustParseAddr("192.0.2.250"),
		LeaseTime: 10 * time.Minute,
	}, leases, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, l.listen(srv0, dhcpv4.ServerPort), f.Serve)

	// perfdhcp acts as a relay: giaddr is its address, 192.0.2.2, and the
	// replies come back to its port 67.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.cli, perfdhcp, "-4", "-l", cli0, "-r", "100", "-R", "200", "-p", "5", "-W", "1000000", "192.0.2.1")
	out, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", cmd, out)
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) { // 3: some packets dropped
		t.Fatalf("perfdhcp: %v", err)
	}
	stat := func(re string) []int {
		var n []int
		for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(string(out), -1) {
			v, _ := strconv.Atoi(m[1])
			n = append(n, v)
		}
		return n
	}
	sent, recv := stat(`sent packets: (\d+)`), stat(`received packets: (\d+)`)
	if len(sent) != 2 || len(recv) != 2 {
		t.Fatalf("perfdhcp's report has no sent and received packets of DISCOVER-OFFER and REQUEST-ACK")
	}
	t.Logf("DISCOVER %d, OFFER %d, REQUEST %d, ACK %d", sent[0], recv[0], sent[1], recv[1])
	// perfdhcp's own checks: an address given to two of its clients, or
	// a reply that does not fit the request.
	for _, what := range []string{"non unique addresses", "rejected leases"} {
		for _, n := range stat(what + `: (\d+)`) {
			if n != 0 {
				t.Errorf("perfdhcp counts %d %s", n, what)
			}
		}
	}
	if sent[0] < 300 || recv[0] < sent[0]*9/10 || recv[1] < sent[1]*9/10 {
		t.Errorf("too few exchanges completed: DISCOVER %d, OFFER %d, REQUEST %d, ACK %d", sent[0], recv[0], sent[1], recv[1])
	}

	all, err := leases.All()
	if err != nil {
		t.Fatal(err)
	}
	held, live := map[netip.Addr]string{}, 0
	for _, l := range all {
		if !l.Expires.After(time.Now()) {
			continue
		}
		live++
		if other, dup := held[l.IP]; dup {
			t.Errorf("%v leased to %s and %s", l.IP, other, l.MAC)
		}
		held[l.IP] = l.MAC.String()
	}
	t.Logf("%d leases, %d live, %d addresses", len(all), live, len(held))
	if live == 0 {
		t.Errorf("no live lease")
	}
}
