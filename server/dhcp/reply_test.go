package dhcp

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	testMAC    = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	testServer = netip.MustParseAddr("192.0.2.1")
	testGUID   = []byte{0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
)

// Option 60 as firmware sends it.
const (
	vcBIOS  = "PXEClient:Arch:00000:UNDI:002001"
	vcEFI   = "PXEClient:Arch:00007:UNDI:003016"
	vcHTTP  = "HTTPClient:Arch:00016:UNDI:003001"
	vcAgent = "overboot"
)

// pkt is a request of type typ from testMAC with a fixed xid, through its
// wire form, so what tests feed is what a socket would give.
func pkt(t testing.TB, typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	p := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		TransactionID: dhcpv4.TransactionID{0xde, 0xad, 0xbe, 0xef},
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		ClientHWAddr:  testMAC,
		Options:       dhcpv4.Options{},
	}
	p.UpdateOption(dhcpv4.OptMessageType(typ))
	for _, m := range mods {
		m(p)
	}
	q, err := dhcpv4.FromBytes(p.ToBytes())
	if err != nil {
		t.Fatalf("test packet does not round-trip: %v", err)
	}
	return q
}

// pxe is what a PXE client sends: option 60, option 93 for arch, and the
// GUID in option 97.
func pxe(vc string, arch Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vc)),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(arch))),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, testGUID),
	}
}

func with(base []dhcpv4.Modifier, more ...dhcpv4.Modifier) []dhcpv4.Modifier {
	return append(append([]dhcpv4.Modifier{}, base...), more...)
}

var ipxeClass = dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE"))

// view is what matters in a reply, read back from its wire form.
type view struct {
	Type                 string
	XID                  string
	CIAddr, YIAddr       string
	SIAddr, GIAddr       string
	Broadcast            bool
	File                 string
	ServerID             string // 54
	VendorClass          string // 60
	Vendor               []byte // 43
	TFTPServer, BootFile string // 66, 67
	MachineID            []byte // 97
	Mask                 string // 1
	Router, DNS          string // 3, 6
	LeaseSeconds         int    // 51
	T1, T2               int    // 58, 59, in seconds
	Message              string // 56
	Other                []int  // any other option present
}

func viewOf(t testing.TB, p *dhcpv4.DHCPv4) view {
	t.Helper()
	q, err := dhcpv4.FromBytes(p.ToBytes())
	if err != nil {
		t.Fatalf("reply does not decode: %v", err)
	}
	v := view{
		Type:        q.MessageType().String(),
		XID:         q.TransactionID.String(),
		CIAddr:      q.ClientIPAddr.String(),
		YIAddr:      q.YourIPAddr.String(),
		SIAddr:      q.ServerIPAddr.String(),
		GIAddr:      q.GatewayIPAddr.String(),
		Broadcast:   q.IsBroadcast(),
		File:        q.BootFileName,
		VendorClass: q.ClassIdentifier(),
		Vendor:      q.Options.Get(dhcpv4.OptionVendorSpecificInformation),
		TFTPServer:  q.TFTPServerName(),
		BootFile:    q.BootFileNameOption(),
		MachineID:   q.Options.Get(dhcpv4.OptionClientMachineIdentifier),
		Message:     q.Message(),
	}
	if ip := q.ServerIdentifier(); ip != nil {
		v.ServerID = ip.String()
	}
	if m := q.SubnetMask(); m != nil {
		v.Mask = net.IP(m).String()
	}
	if r := q.Router(); r != nil {
		v.Router = joinIPs(r)
	}
	if d := q.DNS(); d != nil {
		v.DNS = joinIPs(d)
	}
	if q.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		v.LeaseSeconds = int(q.IPAddressLeaseTime(0).Seconds())
	}
	if q.Options.Has(dhcpv4.OptionRenewTimeValue) {
		v.T1 = int(q.IPAddressRenewalTime(0).Seconds())
	}
	if q.Options.Has(dhcpv4.OptionRebindingTimeValue) {
		v.T2 = int(q.IPAddressRebindingTime(0).Seconds())
	}
	known := map[uint8]bool{1: true, 3: true, 6: true, 43: true, 51: true, 53: true, 54: true, 56: true, 58: true, 59: true, 60: true, 66: true, 67: true, 97: true}
	for code := range q.Options {
		if !known[code] {
			v.Other = append(v.Other, int(code))
		}
	}
	return v
}

func joinIPs(ips []net.IP) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}

var sortInts = cmpopts.SortSlices(func(a, b int) bool { return a < b })

func TestProxyReply(t *testing.T) {
	longURL := "http://192.0.2.1/ipxe?mac=${net0/mac:hexhyp}&uuid=${uuid}&" + strings.Repeat("x", 120)
	pxeOpt43 := []byte{6, 1, 8, 255}
	// offer is the reply to a BIOS PXE ROM's DISCOVER; cases change it.
	offer := view{
		Type: "OFFER", XID: "0xdeadbeef", CIAddr: "0.0.0.0", YIAddr: "0.0.0.0", SIAddr: "192.0.2.1", GIAddr: "0.0.0.0",
		Broadcast: true, File: "undionly.kpxe", ServerID: "192.0.2.1", VendorClass: "PXEClient", Vendor: pxeOpt43,
		TFTPServer: "192.0.2.1", BootFile: "undionly.kpxe", MachineID: testGUID,
	}
	change := func(f func(v *view)) view { v := offer; f(&v); return v }
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		a    Answer
		want view
	}{
		{
			name: "BIOS PXE ROM, TFTP from this server",
			req:  pkt(t, dhcpv4.MessageTypeDiscover, pxe(vcBIOS, ArchBIOS)...),
			a:    Answer{File: "undionly.kpxe"},
			want: offer,
		},
		{
			name: "TFTP from another server",
			req:  pkt(t, dhcpv4.MessageTypeDiscover, pxe(vcBIOS, ArchBIOS)...),
			a:    Answer{File: "undionly.kpxe", TFTPServer: netip.MustParseAddr("192.0.2.9")},
			want: change(func(v *view) { v.SIAddr, v.TFTPServer = "192.0.2.9", "192.0.2.9" }),
		},
		{
			name: "firmware without option 97 still gets an answer, without 97",
			req: pkt(t, dhcpv4.MessageTypeDiscover,
				dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vcBIOS)), dhcpv4.WithOption(dhcpv4.OptClientArch(0))),
			a:    Answer{File: "undionly.kpxe"},
			want: change(func(v *view) { v.MachineID = nil }),
		},
		{
			name: "no option 93: the arch from option 60",
			req:  pkt(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vcEFI))),
			a:    Answer{File: "ipxe.efi"},
			want: change(func(v *view) { v.File, v.BootFile, v.MachineID = "ipxe.efi", "ipxe.efi", nil }),
		},
		{
			name: "x86-64 UEFI PXE",
			req:  pkt(t, dhcpv4.MessageTypeDiscover, pxe(vcEFI, ArchEFI64)...),
			a:    Answer{File: "snponly.efi"},
			want: change(func(v *view) { v.File, v.BootFile = "snponly.efi", "snponly.efi" }),
		},
		{
			name: "iPXE gets the script URL",
			req:  pkt(t, dhcpv4.MessageTypeDiscover, with(pxe(vcBIOS, ArchBIOS), ipxeClass)...),
			a:    Answer{URL: "http://192.0.2.1/boot.ipxe"},
			want: change(func(v *view) {
				v.File, v.BootFile, v.TFTPServer = "http://192.0.2.1/boot.ipxe", "http://192.0.2.1/boot.ipxe", ""
			}),
		},
		{
			name: "iPXE in an RFC 3004 user class list",
			req: pkt(t, dhcpv4.MessageTypeDiscover, with(pxe(vcEFI, ArchEFI64),
				dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("\x03lab\x04iPXE")))...),
			a: Answer{URL: "https://192.0.2.1/boot.ipxe"},
			want: change(func(v *view) {
				v.File, v.BootFile, v.TFTPServer = "https://192.0.2.1/boot.ipxe", "https://192.0.2.1/boot.ipxe", ""
			}),
		},
		{
			name: "iPXE given a TFTP file gets a tftp:// URL",
			req:  pkt(t, dhcpv4.MessageTypeDiscover, with(pxe(vcBIOS, ArchBIOS), ipxeClass)...),
			a:    Answer{File: "undionly.kpxe", TFTPServer: netip.MustParseAddr("192.0.2.9")},
			want: change(func(v *view) {
				v.SIAddr, v.TFTPServer = "192.0.2.9", "192.0.2.9"
				v.File, v.BootFile = "tftp://192.0.2.9/undionly.kpxe", "tftp://192.0.2.9/undionly.kpxe"
			}),
		},
		{
			name: "UEFI HTTP Boot: HTTPClient back, no option 43",
			req:  pkt(t, dhcpv4.MessageTypeDiscover, pxe(vcHTTP, ArchEFI64HTTP)...),
			a:    Answer{URL: "http://192.0.2.1/ipxe.efi"},
			want: change(func(v *view) {
				v.VendorClass, v.Vendor, v.TFTPServer = "HTTPClient", nil, ""
				v.File, v.BootFile = "http://192.0.2.1/ipxe.efi", "http://192.0.2.1/ipxe.efi"
			}),
		},
		{
			name: "a URL past the file field goes in option 67 alone",
			req:  pkt(t, dhcpv4.MessageTypeDiscover, with(pxe(vcBIOS, ArchBIOS), ipxeClass)...),
			a:    Answer{URL: longURL},
			want: change(func(v *view) { v.File, v.BootFile, v.TFTPServer = "", longURL, "" }),
		},
		{
			name: "boot server request on port 4011: an ACK to ciaddr",
			req: pkt(t, dhcpv4.MessageTypeRequest, with(pxe(vcEFI, ArchEFI64),
				dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 50)))...),
			a: Answer{File: "ipxe.efi"},
			want: change(func(v *view) {
				v.Type, v.CIAddr, v.Broadcast = "ACK", "192.0.2.50", false
				v.File, v.BootFile = "ipxe.efi", "ipxe.efi"
			}),
		},
		{
			name: "through a relay: giaddr kept, options 61 and 82 echoed",
			req: pkt(t, dhcpv4.MessageTypeDiscover, with(pxe(vcBIOS, ArchBIOS),
				dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, 254)),
				dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 0x52, 0x54, 0, 0x12, 0x34, 0x56})),
				dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("port7")))))...),
			a:    Answer{File: "undionly.kpxe"},
			want: change(func(v *view) { v.GIAddr, v.Other = "192.0.2.254", []int{61, 82} }),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := ProxyReply(tc.req, tc.a, testServer)
			if err != nil {
				t.Fatalf("ProxyReply: %v", err)
			}
			if diff := cmp.Diff(tc.want, viewOf(t, reply), sortInts); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if reply.ClientHWAddr.String() != testMAC.String() || reply.OpCode != dhcpv4.OpcodeBootReply {
				t.Errorf("op %v chaddr %s, want BootReply %s", reply.OpCode, reply.ClientHWAddr, testMAC)
			}
			if tc.a.URL != "" && reply.Options.Has(dhcpv4.OptionTFTPServerName) {
				t.Errorf("a URL answer names a TFTP server")
			}
		})
	}
}

func TestProxyReplyRefuses(t *testing.T) {
	bios := pxe(vcBIOS, ArchBIOS)
	tftp := Answer{File: "undionly.kpxe"}
	for _, tc := range []struct {
		name     string
		req      *dhcpv4.DHCPv4
		a        Answer
		server   netip.Addr
		wantErr  error // errors.Is, when set
		contains string
	}{
		{"a client that is not a boot client", pkt(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("MSFT 5.0"))), tftp, testServer, ErrNotNetboot, ""},
		{"no option 60 at all", pkt(t, dhcpv4.MessageTypeDiscover), tftp, testServer, ErrNotNetboot, ""},
		{"the agent's own DHCP", pkt(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vcAgent))), tftp, testServer, ErrNotNetboot, ""},
		{"an INFORM", pkt(t, dhcpv4.MessageTypeInform, bios...), tftp, testServer, ErrNotNetboot, ""},
		{"a RELEASE", pkt(t, dhcpv4.MessageTypeRelease, bios...), tftp, testServer, ErrNotNetboot, ""},
		{"a reply, not a request", pkt(t, dhcpv4.MessageTypeDiscover, with(bios, func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply })...), tftp, testServer, ErrNotNetboot, ""},
		{"option 97 of the wrong size", pkt(t, dhcpv4.MessageTypeDiscover, with(bios, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, testGUID[:9]))...), tftp, testServer, errMalformedOption, "option 97"},
		{"option 97 of type 1", pkt(t, dhcpv4.MessageTypeDiscover, with(bios, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{1}, testGUID[1:]...)))...), tftp, testServer, errMalformedOption, "type 1"},
		{"option 93 of odd length", pkt(t, dhcpv4.MessageTypeDiscover, with(bios, dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0, 7}))...), tftp, testServer, errMalformedOption, "option 93"},
		{"no arch anywhere", pkt(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient"))), tftp, testServer, errMalformedOption, "no option 93"},
		{"a URL to a PXE ROM", pkt(t, dhcpv4.MessageTypeDiscover, bios...), Answer{URL: "http://192.0.2.1/boot.ipxe"}, testServer, nil, "can only use TFTP"},
		{"a TFTP file to an HTTP Boot client", pkt(t, dhcpv4.MessageTypeDiscover, pxe(vcHTTP, ArchEFI64HTTP)...), Answer{File: "ipxe.efi"}, testServer, nil, "needs a URL"},
		{"both a file and a URL", pkt(t, dhcpv4.MessageTypeDiscover, with(bios, ipxeClass)...), Answer{File: "a", URL: "http://192.0.2.1/"}, testServer, nil, "both"},
		{"neither a file nor a URL", pkt(t, dhcpv4.MessageTypeDiscover, bios...), Answer{TFTPServer: testServer}, testServer, nil, "neither"},
		{"an ftp URL", pkt(t, dhcpv4.MessageTypeDiscover, with(bios, ipxeClass)...), Answer{URL: "ftp://192.0.2.1/boot.ipxe"}, testServer, nil, "not an http"},
		{"a URL without a host", pkt(t, dhcpv4.MessageTypeDiscover, with(bios, ipxeClass)...), Answer{URL: "http:///boot.ipxe"}, testServer, nil, "not an http"},
		{"a file name past the file field", pkt(t, dhcpv4.MessageTypeDiscover, bios...), Answer{File: strings.Repeat("a", 128)}, testServer, nil, "at most 127"},
		{"a file name with a NUL", pkt(t, dhcpv4.MessageTypeDiscover, bios...), Answer{File: "a\x00b"}, testServer, nil, "NUL"},
		{"an IPv6 TFTP server", pkt(t, dhcpv4.MessageTypeDiscover, bios...), Answer{File: "a", TFTPServer: netip.MustParseAddr("2001:db8::1")}, testServer, nil, "not IPv4"},
		{"an IPv6 server address", pkt(t, dhcpv4.MessageTypeDiscover, bios...), tftp, netip.MustParseAddr("2001:db8::1"), nil, "not IPv4"},
		{"no server address", pkt(t, dhcpv4.MessageTypeDiscover, bios...), tftp, netip.Addr{}, nil, "not IPv4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := ProxyReply(tc.req, tc.a, tc.server)
			if err == nil {
				t.Fatalf("ProxyReply answered %s, want an error", reply.Summary())
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q is not %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not say %q", err, tc.contains)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	eq := cmpopts.EquateComparable(netip.Addr{})
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		want Request
	}{
		{
			name: "BIOS PXE ROM",
			req:  pkt(t, dhcpv4.MessageTypeDiscover, pxe(vcBIOS, ArchBIOS)...),
			want: Request{MAC: testMAC, Arch: ArchBIOS, VendorClass: vcBIOS, UUID: "12345678-9abc-def0-0123-456789abcdef", Interface: "eth1"},
		},
		{
			name: "iPXE through a relay",
			req: pkt(t, dhcpv4.MessageTypeDiscover, with(pxe(vcEFI, ArchEFI64), ipxeClass,
				dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, 254)))...),
			want: Request{MAC: testMAC, Arch: ArchEFI64, UserClass: "iPXE", VendorClass: vcEFI, UUID: "12345678-9abc-def0-0123-456789abcdef", Interface: "eth1", Relay: netip.MustParseAddr("192.0.2.254")},
		},
		{
			name: "option 93 wins over option 60",
			req: pkt(t, dhcpv4.MessageTypeDiscover,
				dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vcBIOS)), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC))),
			want: Request{MAC: testMAC, Arch: ArchEFIBC, VendorClass: vcBIOS, Interface: "eth1"},
		},
		{
			name: "RFC 3004 user classes joined",
			req: pkt(t, dhcpv4.MessageTypeDiscover, with(pxe(vcHTTP, ArchEFI64HTTP),
				dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("\x03lab\x04iPXE")))...),
			want: Request{MAC: testMAC, Arch: ArchEFI64HTTP, UserClass: "lab,iPXE", VendorClass: vcHTTP, UUID: "12345678-9abc-def0-0123-456789abcdef", Interface: "eth1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest(tc.req, "eth1")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, eq); diff != "" {
				t.Errorf("parseRequest (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestClasses(t *testing.T) {
	for _, tc := range []struct {
		r          Request
		ipxe, http bool
	}{
		{Request{UserClass: "iPXE"}, true, false},
		{Request{UserClass: "lab,iPXE"}, true, false},
		{Request{UserClass: "iPXEx"}, false, false},
		{Request{UserClass: "ipxe"}, false, false},
		{Request{VendorClass: vcHTTP}, false, true},
		{Request{VendorClass: vcBIOS}, false, false},
	} {
		if got := tc.r.IsIPXE(); got != tc.ipxe {
			t.Errorf("%+v IsIPXE = %v, want %v", tc.r, got, tc.ipxe)
		}
		if got := tc.r.IsHTTPClient(); got != tc.http {
			t.Errorf("%+v IsHTTPClient = %v, want %v", tc.r, got, tc.http)
		}
	}
}

func TestReplyAddr(t *testing.T) {
	client := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 50), Port: 68}
	anon := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	relay := dhcpv4.WithGatewayIP(net.IPv4(192, 0, 2, 254))
	offer := pkt(t, dhcpv4.MessageTypeOffer)
	nak := pkt(t, dhcpv4.MessageTypeNak)
	for _, tc := range []struct {
		name  string
		req   *dhcpv4.DHCPv4
		reply *dhcpv4.DHCPv4
		peer  *net.UDPAddr
		want  string
	}{
		{"a client without an address: broadcast", pkt(t, dhcpv4.MessageTypeDiscover), offer, anon, "255.255.255.255:68"},
		{"a client with one: back to it", pkt(t, dhcpv4.MessageTypeRequest), offer, client, "192.0.2.50:68"},
		{"boot server request from port 4011's client", pkt(t, dhcpv4.MessageTypeRequest), offer, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 50), Port: 4011}, "192.0.2.50:4011"},
		{"through a relay: the relay's server port", pkt(t, dhcpv4.MessageTypeDiscover, relay), offer, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 254), Port: 67}, "192.0.2.254:67"},
		{"a NAK is broadcast", pkt(t, dhcpv4.MessageTypeRequest), nak, client, "255.255.255.255:68"},
		{"a NAK through a relay goes to the relay", pkt(t, dhcpv4.MessageTypeRequest, relay), nak, client, "192.0.2.254:67"},
		{"loopback tests: back to the peer", pkt(t, dhcpv4.MessageTypeDiscover), offer, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, "127.0.0.1:40000"},
		{"no port: the client port", pkt(t, dhcpv4.MessageTypeDiscover), offer, &net.UDPAddr{}, "255.255.255.255:68"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := replyAddr(tc.req, tc.reply, tc.peer).String(); got != tc.want {
				t.Errorf("replyAddr = %s, want %s", got, tc.want)
			}
		})
	}
}
