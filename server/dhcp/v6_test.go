package dhcp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	srvMAC6  = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	cliMAC6  = net.HardwareAddr{0x52, 0x54, 0, 0x0c, 0, 0x09}
	peer6    = &net.UDPAddr{IP: net.ParseIP("fe80::5054:ff:fe0c:9"), Port: 546, Zone: "br0"}
	policy6  = Policy{ScriptURL: "http://[2001:db8::1]/boot.ipxe", HTTPBootURL: "http://[2001:db8::1]/boot/ipxe.efi"}
	llt6     = &dhcpv6.DUIDLLT{HWType: iana.HWTypeEthernet, Time: 837080962, LinkLayerAddr: cliMAC6}
	uuid6    = &dhcpv6.DUIDUUID{UUID: [16]byte{0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}
	vcHTTP6  = dhcpv6.WithOption(&dhcpv6.OptVendorClass{EnterpriseNumber: 343, Data: [][]byte{[]byte("HTTPClient:Arch:00016:UNDI:003001")}})
	vcPXE6   = dhcpv6.WithOption(&dhcpv6.OptVendorClass{EnterpriseNumber: 343, Data: [][]byte{[]byte("PXEClient:Arch:00007:UNDI:003016")}})
	ipxeUC6  = dhcpv6.WithUserClass([]byte("iPXE"))
	bootORO6 = dhcpv6.WithRequestedOptions(dhcpv6.OptionBootfileURL, dhcpv6.OptionBootfileParam, dhcpv6.OptionDNSRecursiveNameServer, dhcpv6.OptionVendorClass)
)

// newServer6 is a server for 2001:db8::100-102 (three addresses) whose
// clock stands still until the test moves it.
func newServer6(t testing.TB, b Booter) (*Server6, *time.Time) {
	t.Helper()
	return newServer6With(t, b, nil)
}

// newServer6With is newServer6 with its leases in leases (nil: its own).
func newServer6With(t testing.TB, b Booter, leases Leases6) (*Server6, *time.Time) {
	t.Helper()
	s, err := NewServer6(Config6{Interface: "br0", ServerIP: netip.MustParseAddr("2001:db8::1"), HardwareAddr: srvMAC6,
		Start: netip.MustParseAddr("2001:db8::100"), End: netip.MustParseAddr("2001:db8::102"), LeaseTime: time.Hour, Leases: leases}, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	return s, &now
}

// msg6 is a client message of type typ from duid with IA_NA iaid (none
// when iaid is 0).
func msg6(typ dhcpv6.MessageType, duid dhcpv6.DUID, iaid byte, mods ...dhcpv6.Modifier) *dhcpv6.Message {
	m := &dhcpv6.Message{MessageType: typ, TransactionID: dhcpv6.TransactionID{1, 2, byte(typ)}}
	if duid != nil {
		m.AddOption(dhcpv6.OptClientID(duid))
	}
	if iaid != 0 {
		m.AddOption(&dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, iaid}})
	}
	for _, mod := range mods {
		mod(m)
	}
	return m
}

func withServerID6(d dhcpv6.DUID) dhcpv6.Modifier { return dhcpv6.WithServerID(d) }

var ourID6 = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: srvMAC6}

// withAddr6 puts addr in the message's IA_NA.
func withAddr6(addr string) dhcpv6.Modifier {
	return func(d dhcpv6.DHCPv6) {
		m := d.(*dhcpv6.Message)
		ia := m.Options.OneIANA()
		ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(addr)})
	}
}

// summary6 is what a test checks of a reply.
type summary6 struct {
	Type        string
	XIDSame     bool
	ClientID    bool
	ServerID    bool // ours
	Preference  int  // -1: none
	RapidCommit bool
	IAs         []string // an address with its lifetimes, or a status
	Status      string   // top level
	VendorClass string
	URL         string
	LastOption  int // its code
}

func summarize6(req *dhcpv6.Message, d dhcpv6.DHCPv6) *summary6 {
	m, _ := d.(*dhcpv6.Message)
	if m == nil {
		return nil
	}
	s := &summary6{Type: m.Type().String(), XIDSame: m.TransactionID == req.TransactionID, Preference: -1,
		ClientID: m.Options.ClientID() != nil, ServerID: m.Options.ServerID() != nil && m.Options.ServerID().Equal(ourID6),
		RapidCommit: m.GetOneOption(dhcpv6.OptionRapidCommit) != nil, URL: m.Options.BootFileURL()}
	if m.GetOneOption(dhcpv6.OptionPreference) != nil {
		s.Preference = int(m.Options.Preference())
	}
	for _, ia := range m.Options.IANA() {
		if a := ia.Options.OneAddress(); a != nil {
			s.IAs = append(s.IAs, a.IPv6Addr.String()+" "+a.ValidLifetime.String()+" T1="+ia.T1.String())
		} else if st := ia.Options.Status(); st != nil {
			s.IAs = append(s.IAs, st.StatusCode.String())
		}
	}
	if st := m.Options.Status(); st != nil {
		s.Status = st.StatusCode.String()
	}
	for _, vc := range m.Options.VendorClasses() {
		for _, d := range vc.Data {
			s.VendorClass += string(d)
		}
	}
	if n := len(m.Options.Options); n > 0 {
		s.LastOption = int(m.Options.Options[n-1].Code())
	}
	return s
}

func TestServer6Handle(t *testing.T) {
	adv := func(ia, url, vc string, last int) *summary6 {
		return &summary6{Type: "ADVERTISE", XIDSame: true, ClientID: true, ServerID: true, Preference: 255,
			IAs: []string{ia}, URL: url, VendorClass: vc, LastOption: last}
	}
	const first = "2001:db8::100 1h0m0s T1=30m0s"
	for _, tc := range []struct {
		name string
		req  *dhcpv6.Message
		peer *net.UDPAddr
		want *summary6
	}{
		{
			// As OVMF's HTTPv6 boot option asks (edk2 HttpBootDhcp6.c).
			name: "uefi http boot solicit",
			req: msg6(dhcpv6.MessageTypeSolicit, llt6, 7, bootORO6, vcHTTP6, dhcpv6.WithArchType(iana.EFI_X86_64_HTTP),
				dhcpv6.WithOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionNII, OptionData: []byte{1, 3, 1}})),
			want: adv(first, "http://[2001:db8::1]/boot/ipxe.efi", "HTTPClient", 59),
		},
		{
			name: "ipxe solicit",
			req:  msg6(dhcpv6.MessageTypeSolicit, uuid6, 1, bootORO6, vcPXE6, ipxeUC6, dhcpv6.WithArchType(iana.EFI_X86_64)),
			want: adv(first, "http://[2001:db8::1]/boot.ipxe", "", 59),
		},
		{
			name: "uefi pxe solicit",
			req:  msg6(dhcpv6.MessageTypeSolicit, llt6, 7, bootORO6, vcPXE6, dhcpv6.WithArchType(iana.EFI_X86_64)),
			want: adv(first, "tftp://[2001:db8::1]/ipxe.efi", "", 59),
		},
		{
			name: "not a boot client: the address alone",
			req:  msg6(dhcpv6.MessageTypeSolicit, llt6, 7),
			want: adv(first, "", "", 3),
		},
		{
			name: "rapid commit",
			req:  msg6(dhcpv6.MessageTypeSolicit, uuid6, 1, ipxeUC6, dhcpv6.WithRapidCommit),
			want: &summary6{Type: "REPLY", XIDSame: true, ClientID: true, ServerID: true, Preference: -1, RapidCommit: true,
				IAs: []string{first}, URL: "http://[2001:db8::1]/boot.ipxe", LastOption: 59},
		},
		{
			name: "information request from ipxe",
			req:  msg6(dhcpv6.MessageTypeInformationRequest, uuid6, 0, ipxeUC6, bootORO6),
			want: &summary6{Type: "REPLY", XIDSame: true, ClientID: true, ServerID: true, Preference: -1,
				URL: "http://[2001:db8::1]/boot.ipxe", LastOption: 59},
		},
		{
			name: "request for us",
			req:  msg6(dhcpv6.MessageTypeRequest, llt6, 7, vcHTTP6, withServerID6(ourID6), withAddr6("2001:db8::101")),
			want: &summary6{Type: "REPLY", XIDSame: true, ClientID: true, ServerID: true, Preference: -1,
				IAs: []string{"2001:db8::101 1h0m0s T1=30m0s"}, URL: "http://[2001:db8::1]/boot/ipxe.efi", VendorClass: "HTTPClient", LastOption: 59},
		},
		{
			name: "request for another server",
			req:  msg6(dhcpv6.MessageTypeRequest, llt6, 7, withServerID6(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: cliMAC6})),
		},
		{
			name: "request without server id",
			req:  msg6(dhcpv6.MessageTypeRequest, llt6, 7),
		},
		{
			name: "solicit naming a server",
			req:  msg6(dhcpv6.MessageTypeSolicit, llt6, 7, withServerID6(ourID6)),
		},
		{
			name: "solicit without client id",
			req:  msg6(dhcpv6.MessageTypeSolicit, nil, 7),
		},
		{
			name: "hint outside the pool",
			req:  msg6(dhcpv6.MessageTypeSolicit, llt6, 7, withAddr6("2001:db8::9999")),
			want: adv(first, "", "", 3),
		},
		{
			name: "renew of an unknown binding",
			req:  msg6(dhcpv6.MessageTypeRenew, llt6, 7, withServerID6(ourID6), withAddr6("2001:db8::9999")),
			want: &summary6{Type: "REPLY", XIDSame: true, ClientID: true, ServerID: true, Preference: -1, IAs: []string{"NoBinding"}, LastOption: 3},
		},
		{
			name: "confirm on link",
			req:  msg6(dhcpv6.MessageTypeConfirm, llt6, 7, withAddr6("2001:db8::ab")),
			want: &summary6{Type: "REPLY", XIDSame: true, ClientID: true, ServerID: true, Preference: -1, Status: "Success", LastOption: 13},
		},
		{
			name: "confirm elsewhere",
			req:  msg6(dhcpv6.MessageTypeConfirm, llt6, 7, withAddr6("2001:db8:1::ab")),
			want: &summary6{Type: "REPLY", XIDSame: true, ClientID: true, ServerID: true, Preference: -1, Status: "NotOnLink", LastOption: 13},
		},
		{
			name: "confirm without addresses",
			req:  msg6(dhcpv6.MessageTypeConfirm, llt6, 7),
		},
		{
			// RFC 8415 section 18.3.7: Success, and NoBinding in each IA
			// the server has no binding for.
			name: "release of an IA the server does not hold",
			req:  msg6(dhcpv6.MessageTypeRelease, llt6, 7, withServerID6(ourID6), withAddr6("2001:db8::100")),
			want: &summary6{Type: "REPLY", XIDSame: true, ClientID: true, ServerID: true, Preference: -1, IAs: []string{"NoBinding"}, Status: "Success", LastOption: 13},
		},
		{
			// RFC 8415 section 18.3.8, the same.
			name: "decline of an IA the server does not hold",
			req:  msg6(dhcpv6.MessageTypeDecline, llt6, 7, withServerID6(ourID6), withAddr6("2001:db8::100")),
			want: &summary6{Type: "REPLY", XIDSame: true, ClientID: true, ServerID: true, Preference: -1, IAs: []string{"NoBinding"}, Status: "Success", LastOption: 13},
		},
		{
			// RFC 3315 section 17.2.2, RFC 8415 section 18.3.9: no IA, no
			// address in a Request either: only NoAddrsAvail and the IDs.
			name: "solicit without IA_NA",
			req:  msg6(dhcpv6.MessageTypeSolicit, uuid6, 0, bootORO6, vcPXE6, ipxeUC6),
			want: &summary6{Type: "ADVERTISE", XIDSame: true, ClientID: true, ServerID: true, Preference: -1, Status: "NoAddrsAvail", LastOption: 13},
		},
		{
			name: "rapid-commit solicit without IA_NA",
			req:  msg6(dhcpv6.MessageTypeSolicit, uuid6, 0, ipxeUC6, dhcpv6.WithRapidCommit),
			want: &summary6{Type: "REPLY", XIDSame: true, ClientID: true, ServerID: true, Preference: -1, RapidCommit: true, Status: "NoAddrsAvail", LastOption: 13},
		},
		{
			name: "solicit with only an IA_PD",
			req: msg6(dhcpv6.MessageTypeSolicit, llt6, 0, dhcpv6.WithOption(&dhcpv6.OptIAPD{IaId: [4]byte{0, 0, 0, 1}}),
				dhcpv6.WithRapidCommit),
			want: &summary6{Type: "REPLY", XIDSame: true, ClientID: true, ServerID: true, Preference: -1, RapidCommit: true, Status: "NoAddrsAvail", LastOption: 13},
		},
		// RFC 8415 section 16.12: an Information-request with an IA
		// option is discarded.
		{
			name: "information request with an IA_NA",
			req:  msg6(dhcpv6.MessageTypeInformationRequest, uuid6, 1, ipxeUC6),
		},
		{
			name: "information request with an IA_TA",
			req:  msg6(dhcpv6.MessageTypeInformationRequest, uuid6, 0, ipxeUC6, dhcpv6.WithOption(&dhcpv6.OptIATA{IaId: [4]byte{0, 0, 0, 1}})),
		},
		{
			name: "information request with an IA_PD",
			req:  msg6(dhcpv6.MessageTypeInformationRequest, uuid6, 0, ipxeUC6, dhcpv6.WithOption(&dhcpv6.OptIAPD{IaId: [4]byte{0, 0, 0, 1}})),
		},
		{
			name: "a server's message",
			req:  msg6(dhcpv6.MessageTypeAdvertise, llt6, 7, withServerID6(ourID6)),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newServer6(t, policy6)
			peer := tc.peer
			if peer == nil {
				peer = peer6
			}
			reply, dst := s.Handle(context.Background(), tc.req.ToBytes(), peer)
			if diff := cmp.Diff(tc.want, summarize6(tc.req, reply)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if reply != nil && dst != peer {
				t.Errorf("reply to %v, want back to the client %v", dst, peer)
			}
		})
	}
}

func TestServer6Bindings(t *testing.T) {
	s, now := newServer6(t, policy6)
	ctx := context.Background()
	duid := func(n byte) dhcpv6.DUID {
		return &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, n}}
	}
	ask := func(typ dhcpv6.MessageType, n byte, mods ...dhcpv6.Modifier) string {
		t.Helper()
		if typ != dhcpv6.MessageTypeSolicit {
			mods = append(mods, withServerID6(ourID6))
		}
		req := msg6(typ, duid(n), 1, mods...)
		reply, _ := s.Handle(ctx, req.ToBytes(), peer6)
		if reply == nil {
			return "no reply"
		}
		sum := summarize6(req, reply)
		if len(sum.IAs) == 0 {
			return sum.Status
		}
		return strings.Fields(sum.IAs[0])[0]
	}
	steps := []struct {
		do   func() string
		want string
	}{
		{func() string { return ask(dhcpv6.MessageTypeSolicit, 1) }, "2001:db8::100"},
		{func() string { return ask(dhcpv6.MessageTypeRequest, 1) }, "2001:db8::100"},
		// An advertised address is held for its client.
		{func() string { return ask(dhcpv6.MessageTypeSolicit, 2) }, "2001:db8::101"},
		{func() string { return ask(dhcpv6.MessageTypeSolicit, 3) }, "2001:db8::102"},
		{func() string { return ask(dhcpv6.MessageTypeSolicit, 4) }, "NoAddrsAvail"},
		// The advertise holds lapse; the lease does not.
		{func() string { *now = now.Add(3 * time.Minute); return ask(dhcpv6.MessageTypeSolicit, 4) }, "2001:db8::101"},
		{func() string { return ask(dhcpv6.MessageTypeRenew, 1, withAddr6("2001:db8::100")) }, "2001:db8::100"},
		// A declined address stays out of the pool; a released one
		// comes back.
		{func() string { return ask(dhcpv6.MessageTypeDecline, 4, withAddr6("2001:db8::101")) }, "Success"},
		{func() string { return ask(dhcpv6.MessageTypeSolicit, 5) }, "2001:db8::102"},
		{func() string { return ask(dhcpv6.MessageTypeRelease, 1, withAddr6("2001:db8::100")) }, "Success"},
		{func() string { return ask(dhcpv6.MessageTypeSolicit, 6) }, "2001:db8::100"},
		// Every advertise hold has lapsed by now, and the decline's too.
		{func() string { *now = now.Add(11 * time.Minute); return ask(dhcpv6.MessageTypeSolicit, 7) }, "2001:db8::100"},
		{func() string { return ask(dhcpv6.MessageTypeSolicit, 9) }, "2001:db8::101"},
		// An expired lease goes to whoever asks; its client can renew
		// only what is still free.
		{func() string {
			*now = now.Add(2 * time.Hour)
			return ask(dhcpv6.MessageTypeRenew, 8, withAddr6("2001:db8::101"))
		}, "2001:db8::101"},
	}
	for i, st := range steps {
		if got := st.do(); got != st.want {
			t.Errorf("step %d: %s, want %s", i, got, st.want)
		}
	}
}

func TestParseRequest6(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *dhcpv6.Message
		peer *net.UDPAddr
		want Request
		err  bool
	}{
		{"http boot", msg6(dhcpv6.MessageTypeSolicit, llt6, 1, vcHTTP6, dhcpv6.WithArchType(iana.EFI_X86_64_HTTP)), nil,
			Request{MAC: cliMAC6, Arch: ArchEFI64HTTP, VendorClass: "HTTPClient:Arch:00016:UNDI:003001", Interface: "br0"}, false},
		{"ipxe with a uuid duid: mac from the link-local address", msg6(dhcpv6.MessageTypeSolicit, uuid6, 1, ipxeUC6, vcPXE6), peer6,
			Request{MAC: cliMAC6, Arch: ArchEFI64, UserClass: "iPXE", VendorClass: "PXEClient:Arch:00007:UNDI:003016", UUID: "deadbeef-0001-0203-0405-060708090a0b", Interface: "br0"}, false},
		{"arch only in the vendor class", msg6(dhcpv6.MessageTypeSolicit, llt6, 1, vcPXE6), nil,
			Request{MAC: cliMAC6, Arch: ArchEFI64, VendorClass: "PXEClient:Arch:00007:UNDI:003016", Interface: "br0"}, false},
		{"another vendor", msg6(dhcpv6.MessageTypeSolicit, llt6, 1, dhcpv6.WithOption(&dhcpv6.OptVendorClass{EnterpriseNumber: 1, Data: [][]byte{[]byte("foo")}})), nil,
			Request{MAC: cliMAC6, Arch: archUnspecified, Interface: "br0"}, true},
		{"no mac anywhere", msg6(dhcpv6.MessageTypeSolicit, uuid6, 1, ipxeUC6), &net.UDPAddr{IP: net.ParseIP("2001:db8::5")},
			Request{Arch: archUnspecified, UserClass: "iPXE", UUID: "deadbeef-0001-0203-0405-060708090a0b", Interface: "br0"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest6(tc.m, tc.peer, "br0")
			if (err != nil) != tc.err {
				t.Errorf("err %v, want error %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBootURL6(t *testing.T) {
	srv := netip.MustParseAddr("2001:db8::1")
	ipxe := Request{UserClass: "iPXE"}
	pxe := Request{VendorClass: "PXEClient:Arch:00007"}
	http := Request{VendorClass: "HTTPClient:Arch:00016"}
	for _, tc := range []struct {
		name string
		r    Request
		a    Answer
		srv  netip.Addr
		want string
	}{
		{"pxe file", pxe, Answer{File: "ipxe.efi"}, srv, "tftp://[2001:db8::1]/ipxe.efi"},
		{"pxe file, named server", pxe, Answer{File: "/x/ipxe.efi", TFTPServer: netip.MustParseAddr("2001:db8::2")}, srv, "tftp://[2001:db8::2]/x/ipxe.efi"},
		{"pxe file, no ipv6 server", pxe, Answer{File: "ipxe.efi"}, netip.Addr{}, ""},
		{"pxe file, ipv4 server", pxe, Answer{File: "ipxe.efi", TFTPServer: netip.MustParseAddr("192.0.2.1")}, srv, ""},
		{"pxe url", pxe, Answer{URL: "http://[2001:db8::1]/x"}, srv, ""},
		{"http file", http, Answer{File: "ipxe.efi"}, srv, ""},
		{"http url", http, Answer{URL: "http://[2001:db8::1]/boot/ipxe.efi"}, srv, "http://[2001:db8::1]/boot/ipxe.efi"},
		{"ipxe url", ipxe, Answer{URL: "https://boot.example/x.ipxe"}, srv, "https://boot.example/x.ipxe"},
		{"ipxe ftp", ipxe, Answer{URL: "ftp://[2001:db8::1]/x"}, srv, ""},
		{"both", ipxe, Answer{URL: "http://a/x", File: "x"}, srv, ""},
		{"neither", ipxe, Answer{}, srv, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bootURL6(tc.r, tc.a, tc.srv)
			if got != tc.want || (err == nil) != (tc.want != "") {
				t.Errorf("bootURL6 = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestNewServer6Config(t *testing.T) {
	ok := Config6{HardwareAddr: srvMAC6, Start: netip.MustParseAddr("2001:db8::100"), End: netip.MustParseAddr("2001:db8::1ff")}
	if _, err := NewServer6(ok, policy6, nil); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mod := range map[string]func(*Config6){
		"no mac":            func(c *Config6) { c.HardwareAddr = nil },
		"ipv4 pool":         func(c *Config6) { c.Start, c.End = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.9") },
		"reversed":          func(c *Config6) { c.Start, c.End = c.End, c.Start },
		"two /64s":          func(c *Config6) { c.End = netip.MustParseAddr("2001:db8:0:1::1") },
		"too big":           func(c *Config6) { c.End = netip.MustParseAddr("2001:db8::1:0:0") },
		"link-local":        func(c *Config6) { c.Start, c.End = netip.MustParseAddr("fe80::1"), netip.MustParseAddr("fe80::9") },
		"ipv4 server":       func(c *Config6) { c.ServerIP = netip.MustParseAddr("192.0.2.1") },
		"ipv4 dns":          func(c *Config6) { c.DNS = []netip.Addr{netip.MustParseAddr("192.0.2.1")} },
		"mapped pool bound": func(c *Config6) { c.Start = netip.MustParseAddr("::ffff:192.0.2.1") },
	} {
		c := ok
		mod(&c)
		if _, err := NewServer6(c, policy6, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewServer6(ok, nil, nil); err == nil {
		t.Errorf("no booter: accepted")
	}
}

// TestServer6OneAddressPerMachine: iPXE (DUID-UUID; its MAC from the
// link-local source) and then the agent (DUID-LL, another IAID) on the
// same NIC get the same address, which the boot document's token is bound
// to; another machine does not.
func TestServer6OneAddressPerMachine(t *testing.T) {
	s, _ := newServer6(t, policy6)
	ctx := context.Background()
	get := func(duid dhcpv6.DUID, iaid byte, peer *net.UDPAddr) string {
		t.Helper()
		reply, _ := s.Handle(ctx, msg6(dhcpv6.MessageTypeSolicit, duid, iaid, dhcpv6.WithRapidCommit).ToBytes(), peer)
		if reply == nil {
			t.Fatal("no reply")
		}
		sum := summarize6(msg6(dhcpv6.MessageTypeSolicit, duid, iaid), reply)
		if len(sum.IAs) == 0 {
			return sum.Status
		}
		return strings.Fields(sum.IAs[0])[0]
	}
	uuid := &dhcpv6.DUIDUUID{UUID: [16]byte{}}
	ipxe := get(uuid, 7, peer6)
	agent := get(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0x0c, 0, 9}}, 1, peer6)
	if ipxe != "2001:db8::100" || agent != ipxe {
		t.Errorf("iPXE got %s, the agent on the same NIC %s", ipxe, agent)
	}
	other := get(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0x0c, 0, 10}}, 1,
		&net.UDPAddr{IP: net.ParseIP("fe80::5054:ff:fe0c:a"), Port: 546, Zone: "br0"})
	if other == agent {
		t.Errorf("another machine got the same address %s", other)
	}
}

// handle6 is s.Handle with no reply as a nil DHCPv6.
func handle6(s *Server6, b []byte, peer *net.UDPAddr) (dhcpv6.DHCPv6, *net.UDPAddr) {
	reply, dst := s.Handle(context.Background(), b, peer)
	if reply == nil {
		return nil, nil
	}
	return reply, dst
}

// iaAddrs6 is the address, or else the status, of each IA_NA of reply
// (a client message; nil: "no reply").
func iaAddrs6(reply dhcpv6.DHCPv6) []string {
	m, ok := reply.(*dhcpv6.Message)
	if !ok || m == nil {
		return []string{"no reply"}
	}
	var out []string
	for _, ia := range m.Options.IANA() {
		if a := ia.Options.OneAddress(); a != nil {
			out = append(out, a.IPv6Addr.String())
		} else if st := ia.Options.Status(); st != nil {
			out = append(out, st.StatusCode.String())
		} else {
			out = append(out, "empty IA")
		}
	}
	return out
}

// withIANA6 adds an IA_NA iaid.
func withIANA6(iaid byte) dhcpv6.Modifier {
	return func(d dhcpv6.DHCPv6) { d.AddOption(&dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, iaid}}) }
}

// TestServer6DistinctBindings: an address belongs to one (DUID, IAID)
// at a time. A client's two IA_NAs, and two interfaces that share one
// host-wide DUID (each its IAID), get two addresses; what a machine's
// next DUID takes over (TestServer6OneAddressPerMachine) is only an
// address no other IA holds.
func TestServer6DistinctBindings(t *testing.T) {
	nic2 := &net.UDPAddr{IP: net.ParseIP("fe80::5054:ff:fe0c:a"), Port: 546, Zone: "br0"}
	rapid := func(duid dhcpv6.DUID, iaids ...byte) *dhcpv6.Message {
		m := msg6(dhcpv6.MessageTypeSolicit, duid, 0, dhcpv6.WithRapidCommit)
		for _, id := range iaids {
			withIANA6(id)(m)
		}
		return m
	}
	type step struct {
		m    *dhcpv6.Message
		peer *net.UDPAddr
		want []string
		// later moves the clock this far first.
		later time.Duration
	}
	mac2 := &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"two IA_NAs in one message", []step{
			{m: rapid(llt6, 1, 2), peer: peer6, want: []string{"2001:db8::100", "2001:db8::101"}},
			// Each keeps its own.
			{m: msg6(dhcpv6.MessageTypeRenew, llt6, 0, withServerID6(ourID6), withIANA6(2), withIANA6(1)), peer: peer6,
				want: []string{"2001:db8::101", "2001:db8::100"}},
		}},
		{"two IA_NAs in one advertise", []step{
			{m: msg6(dhcpv6.MessageTypeSolicit, llt6, 0, withIANA6(1), withIANA6(2)), peer: peer6, want: []string{"2001:db8::100", "2001:db8::101"}},
		}},
		{"two interfaces, one host-wide DUID", []step{
			{m: rapid(llt6, 1), peer: peer6, want: []string{"2001:db8::100"}},
			{m: rapid(llt6, 2), peer: nic2, want: []string{"2001:db8::101"}},
			// The first interface's IA still holds its address.
			{m: msg6(dhcpv6.MessageTypeRenew, llt6, 1, withServerID6(ourID6), withAddr6("2001:db8::100")), peer: peer6,
				want: []string{"2001:db8::100"}},
		}},
		{"the next DUID of a machine does not take an address someone else took since", []step{
			{m: rapid(llt6, 1), peer: peer6, want: []string{"2001:db8::100"}},
			// llt6's lease lapses; another client gets ::100.
			{m: rapid(mac2, 1), peer: nic2, want: []string{"2001:db8::100"}, later: 2 * time.Hour},
			// iPXE on llt6's NIC (its MAC from the link-local address).
			{m: rapid(uuid6, 1), peer: peer6, want: []string{"2001:db8::101"}},
			{m: msg6(dhcpv6.MessageTypeRenew, mac2, 1, withServerID6(ourID6), withAddr6("2001:db8::100")), peer: nic2,
				want: []string{"2001:db8::100"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, now := newServer6(t, policy6)
			for i, st := range tc.steps {
				*now = now.Add(st.later)
				reply, _ := handle6(s, st.m.ToBytes(), st.peer)
				if got := iaAddrs6(reply); !slices.Equal(got, st.want) {
					t.Errorf("step %d (%s): %v, want %v", i, st.m.Type(), got, st.want)
				}
			}
		})
	}
}

// TestServer6LeasesOutliveServer: a server started again over the same
// Leases6 (the state store, in the server) knows what the first gave:
// another client does not get a held address, its holder renews it, and
// an expired lease's address is free.
func TestServer6LeasesOutliveServer(t *testing.T) {
	leases := &MemLeases6{}
	s, now := newServer6With(t, policy6, leases)
	rapid := msg6(dhcpv6.MessageTypeSolicit, llt6, 1, dhcpv6.WithRapidCommit)
	if reply, _ := handle6(s, rapid.ToBytes(), peer6); !slices.Equal(iaAddrs6(reply), []string{"2001:db8::100"}) {
		t.Fatalf("first server: %v", iaAddrs6(reply))
	}
	s2, now2 := newServer6With(t, policy6, leases)
	*now2 = now.Add(time.Minute)
	other := msg6(dhcpv6.MessageTypeSolicit, uuid6, 1, dhcpv6.WithRapidCommit)
	nic2 := &net.UDPAddr{IP: net.ParseIP("fe80::5054:ff:fe0c:a"), Port: 546, Zone: "br0"}
	if reply, _ := handle6(s2, other.ToBytes(), nic2); !slices.Equal(iaAddrs6(reply), []string{"2001:db8::101"}) {
		t.Errorf("another client, second server: %v", iaAddrs6(reply))
	}
	renew := msg6(dhcpv6.MessageTypeRenew, llt6, 1, withServerID6(ourID6), withAddr6("2001:db8::100"))
	if reply, _ := handle6(s2, renew.ToBytes(), peer6); !slices.Equal(iaAddrs6(reply), []string{"2001:db8::100"}) {
		t.Errorf("the holder's renew, second server: %v", iaAddrs6(reply))
	}
	all, _ := leases.All()
	if len(all) != 2 || all[0].IP != netip.MustParseAddr("2001:db8::100") || all[0].IAID != 1 || !slices.Equal(all[0].MAC, cliMAC6) {
		t.Errorf("leases: %+v", all)
	}
	*now2 = now2.Add(2 * time.Hour)
	third := msg6(dhcpv6.MessageTypeSolicit, &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 3}}, 1, dhcpv6.WithRapidCommit)
	if reply, _ := handle6(s2, third.ToBytes(), nil); !slices.Equal(iaAddrs6(reply), []string{"2001:db8::100"}) {
		t.Errorf("a third client once the leases expired: %v", iaAddrs6(reply))
	}
}

// relay6 wraps m in a Relay-forward from a relay with link-address link
// and peer-address peer, and an Interface-ID option iid unless "".
func relay6(m dhcpv6.DHCPv6, link, peer, iid string, mods ...dhcpv6.Modifier) *dhcpv6.RelayMessage {
	r, err := dhcpv6.EncapsulateRelay(m, dhcpv6.MessageTypeRelayForward, net.ParseIP(link), net.ParseIP(peer))
	if err != nil {
		panic(err)
	}
	if iid != "" {
		r.AddOption(dhcpv6.OptInterfaceID([]byte(iid)))
	}
	for _, mod := range mods {
		mod(r)
	}
	return r
}

// describe6 renders a reply: each relay layer's header and
// Interface-ID, then the message's type, IA_NAs, status and boot URL.
func describe6(d dhcpv6.DHCPv6) string {
	var parts []string
	for d != nil {
		r, ok := d.(*dhcpv6.RelayMessage)
		if !ok {
			break
		}
		p := fmt.Sprintf("%s hop=%d link=%s peer=%s", r.Type(), r.HopCount, r.LinkAddr, r.PeerAddr)
		if iid := r.Options.InterfaceID(); iid != nil {
			p += " iid=" + string(iid)
		}
		parts = append(parts, p)
		d = r.Options.RelayMessage()
	}
	m, ok := d.(*dhcpv6.Message)
	if !ok {
		return strings.Join(append(parts, fmt.Sprintf("not a message: %v", d)), " / ")
	}
	p := m.Type().String() + " " + strings.Join(iaAddrs6(m), ",")
	if st := m.Options.Status(); st != nil {
		p += " status=" + st.StatusCode.String()
	}
	if u := m.Options.BootFileURL(); u != "" {
		p += " url=" + u
	}
	return strings.Join(append(parts, p), " / ")
}

// TestServer6Relay: a Relay-forward (RFC 8415 section 19) is answered
// with a Relay-reply to the relay that sent it, one layer for each of
// the Relay-forward's, each with its hop count, link-address,
// peer-address and Interface-ID. Only the relay closest to the client
// says where the client is: a link-address of another /64 than the
// pool's gets no address.
func TestServer6Relay(t *testing.T) {
	relayPeer := &net.UDPAddr{IP: net.ParseIP("2001:db8::2"), Port: 547}
	clientLL := "fe80::5054:ff:fe0c:9"
	solicit := msg6(dhcpv6.MessageTypeSolicit, llt6, 7, vcHTTP6, dhcpv6.WithArchType(iana.EFI_X86_64_HTTP))
	rapid := msg6(dhcpv6.MessageTypeSolicit, uuid6, 1, ipxeUC6, dhcpv6.WithRapidCommit)
	const url = " url=http://[2001:db8::1]/boot/ipxe.efi"
	for _, tc := range []struct {
		name string
		req  dhcpv6.DHCPv6
		want string // "": no reply
	}{
		{"one relay", relay6(solicit, "2001:db8::1", clientLL, "eth0"),
			"RELAY-REPL hop=0 link=2001:db8::1 peer=" + clientLL + " iid=eth0 / ADVERTISE 2001:db8::100" + url},
		{"two relays", relay6(relay6(rapid, "2001:db8::1", clientLL, "eth0"), "2001:db8:ffff::1", "2001:db8::2", "uplink"),
			"RELAY-REPL hop=1 link=2001:db8:ffff::1 peer=2001:db8::2 iid=uplink / RELAY-REPL hop=0 link=2001:db8::1 peer=" + clientLL +
				" iid=eth0 / REPLY 2001:db8::100 url=http://[2001:db8::1]/boot.ipxe"},
		{"no interface-id", relay6(solicit, "2001:db8::1", clientLL, ""),
			"RELAY-REPL hop=0 link=2001:db8::1 peer=" + clientLL + " / ADVERTISE 2001:db8::100" + url},
		{"link-address unspecified: the pool's link", relay6(solicit, "::", clientLL, "eth0"),
			"RELAY-REPL hop=0 link=:: peer=" + clientLL + " iid=eth0 / ADVERTISE 2001:db8::100" + url},
		{"link-address link-local: the pool's link", relay6(solicit, "fe80::1", clientLL, "eth0"),
			"RELAY-REPL hop=0 link=fe80::1 peer=" + clientLL + " iid=eth0 / ADVERTISE 2001:db8::100" + url},
		{"a client on another link: no address", relay6(solicit, "2001:db8:5::1", clientLL, "eth0"),
			"RELAY-REPL hop=0 link=2001:db8:5::1 peer=" + clientLL + " iid=eth0 / ADVERTISE NoAddrsAvail" + url},
		{"information-request", relay6(msg6(dhcpv6.MessageTypeInformationRequest, uuid6, 0, ipxeUC6), "2001:db8::1", clientLL, "eth0"),
			"RELAY-REPL hop=0 link=2001:db8::1 peer=" + clientLL + " iid=eth0 / REPLY  url=http://[2001:db8::1]/boot.ipxe"},
		{"request for another server", relay6(msg6(dhcpv6.MessageTypeRequest, llt6, 7,
			withServerID6(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: cliMAC6})), "2001:db8::1", clientLL, "eth0"), ""},
		{"a server's message inside", relay6(msg6(dhcpv6.MessageTypeAdvertise, llt6, 7, withServerID6(ourID6)), "2001:db8::1", clientLL, "eth0"), ""},
		{"relay-reply inside a relay-forward", func() dhcpv6.DHCPv6 {
			r := relay6(solicit, "2001:db8::1", clientLL, "eth0")
			r.MessageType = dhcpv6.MessageTypeRelayReply
			return relay6(r, "2001:db8::1", "2001:db8::2", "")
		}(), ""},
		{"a relay-reply", func() dhcpv6.DHCPv6 {
			r := relay6(solicit, "2001:db8::1", clientLL, "eth0")
			r.MessageType = dhcpv6.MessageTypeRelayReply
			return r
		}(), ""},
		{"no relay message option", &dhcpv6.RelayMessage{MessageType: dhcpv6.MessageTypeRelayForward,
			LinkAddr: net.ParseIP("2001:db8::1"), PeerAddr: net.ParseIP(clientLL)}, ""},
		{"more relays than a hop count allows", func() dhcpv6.DHCPv6 {
			var d dhcpv6.DHCPv6 = solicit
			for range 10 {
				d = relay6(d, "2001:db8::1", clientLL, "")
			}
			return d
		}(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newServer6(t, policy6)
			reply, dst := handle6(s, tc.req.ToBytes(), relayPeer)
			if reply == nil {
				if tc.want != "" {
					t.Fatalf("no reply, want %s", tc.want)
				}
				return
			}
			if got := describe6(reply); got != tc.want {
				t.Errorf("reply\n %s\nwant\n %s", got, tc.want)
			}
			if dst != relayPeer {
				t.Errorf("reply to %v, want the relay %v", dst, relayPeer)
			}
			if _, err := dhcpv6.FromBytes(reply.ToBytes()); err != nil {
				t.Errorf("reply does not decode: %v", err)
			}
		})
	}
}

// TestServer6RelayedMAC: a relayed client's hardware address comes from
// its DUID, else the Client Link-Layer Address option of the relay
// closest to it (RFC 6939), else that relay's peer-address.
func TestServer6RelayedMAC(t *testing.T) {
	var got net.HardwareAddr
	rec := BooterFunc(func(ctx context.Context, r Request) (Answer, error) { got = r.MAC; return Answer{}, nil })
	lla := func(mac net.HardwareAddr) dhcpv6.Modifier {
		return dhcpv6.WithOption(dhcpv6.OptClientLinkLayerAddress(iana.HWTypeEthernet, mac))
	}
	other := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x77}
	for _, tc := range []struct {
		name string
		req  dhcpv6.DHCPv6
		want net.HardwareAddr
	}{
		{"duid", relay6(msg6(dhcpv6.MessageTypeSolicit, llt6, 1, ipxeUC6), "2001:db8::1", "fe80::1", "", lla(other)), cliMAC6},
		{"option 79", relay6(msg6(dhcpv6.MessageTypeSolicit, uuid6, 1, ipxeUC6), "2001:db8::1", "fe80::5054:ff:fe0c:9", "", lla(other)), other},
		{"peer-address", relay6(msg6(dhcpv6.MessageTypeSolicit, uuid6, 1, ipxeUC6), "2001:db8::1", "fe80::5054:ff:fe0c:9", ""), cliMAC6},
		{"innermost relay's", relay6(relay6(msg6(dhcpv6.MessageTypeSolicit, uuid6, 1, ipxeUC6), "2001:db8::1", "fe80::5054:ff:fe0c:9", ""),
			"2001:db8::1", "fe80::5054:ff:fe00:1", "", lla(other)), cliMAC6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got = nil
			s, _ := newServer6(t, rec)
			if reply, _ := handle6(s, tc.req.ToBytes(), &net.UDPAddr{IP: net.ParseIP("2001:db8::2"), Port: 547}); reply == nil {
				t.Fatal("no reply")
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("MAC %v, want %v", got, tc.want)
			}
		})
	}
}

// TestServer6ReleaseDecline: a Release or Decline ends the bindings it
// names and answers NoBinding in each IA the server holds no binding for
// (RFC 8415 sections 18.3.7, 18.3.8), nothing in the others; a Decline
// takes out of the pool only an address the IA held.
func TestServer6ReleaseDecline(t *testing.T) {
	s, _ := newServer6(t, policy6)
	ask := func(m *dhcpv6.Message) string {
		t.Helper()
		reply, _ := handle6(s, m.ToBytes(), peer6)
		if reply == nil {
			return "no reply"
		}
		sum := summarize6(m, reply)
		return fmt.Sprint(sum.IAs, " ", sum.Status)
	}
	withIA := func(iaid byte, addr string) dhcpv6.Modifier {
		return func(d dhcpv6.DHCPv6) {
			ia := &dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, iaid}}
			ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(addr)})
			d.AddOption(ia)
		}
	}
	rapid := msg6(dhcpv6.MessageTypeSolicit, llt6, 0, withIANA6(1), withIANA6(2), dhcpv6.WithRapidCommit)
	for i, st := range []struct {
		m    *dhcpv6.Message
		want string
	}{
		{rapid, "[2001:db8::100 1h0m0s T1=30m0s 2001:db8::101 1h0m0s T1=30m0s] "},
		// IA 1 released, IA 3 unknown.
		{msg6(dhcpv6.MessageTypeRelease, llt6, 0, withServerID6(ourID6), withIA(1, "2001:db8::100"), withIA(3, "2001:db8::102")), "[NoBinding] Success"},
		// Released already.
		{msg6(dhcpv6.MessageTypeRelease, llt6, 0, withServerID6(ourID6), withIA(1, "2001:db8::100")), "[NoBinding] Success"},
		// An address the IA does not hold: not declined.
		{msg6(dhcpv6.MessageTypeDecline, llt6, 0, withServerID6(ourID6), withIA(2, "2001:db8::102")), "[] Success"},
		{msg6(dhcpv6.MessageTypeSolicit, &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}}, 0,
			withIANA6(5), withIANA6(6)), "[2001:db8::100 1h0m0s T1=30m0s 2001:db8::102 1h0m0s T1=30m0s] "},
		{msg6(dhcpv6.MessageTypeDecline, llt6, 0, withServerID6(ourID6), withIA(2, "2001:db8::101")), "[] Success"},
		// ::101 is out of the pool now; the IA's binding is gone.
		{msg6(dhcpv6.MessageTypeSolicit, llt6, 0, withIANA6(2), withIANA6(4)), "[NoAddrsAvail NoAddrsAvail] "},
		{msg6(dhcpv6.MessageTypeRenew, llt6, 0, withServerID6(ourID6), withIA(2, "2001:db8::101")), "[NoBinding] "},
	} {
		if got := ask(st.m); got != st.want {
			t.Errorf("step %d (%s): %s, want %s", i, st.m.Type(), got, st.want)
		}
	}
}
