package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Booter decides what a network boot client downloads. The server
// implements it (profiles, enrolment); Policy is a default.
//
// The zero Answer or an error means "do not answer this client": it is
// not ours to boot. The caller logs an error at Warn and a zero Answer at
// Debug, and sends nothing either way.
type Booter interface {
	Boot(ctx context.Context, r Request) (Answer, error)
}

// BooterFunc adapts a function to Booter.
type BooterFunc func(ctx context.Context, r Request) (Answer, error)

// Boot implements Booter.
func (f BooterFunc) Boot(ctx context.Context, r Request) (Answer, error) { return f(ctx, r) }

// Request is what a boot client's DHCP packet says about it.
type Request struct {
	MAC net.HardwareAddr // chaddr
	// Arch is option 93's first entry (RFC 4578 section 2.1), or else the
	// Arch field of option 60.
	Arch Arch
	// UserClass is option 77 (RFC 3004) as text: "iPXE" when iPXE asks.
	// An RFC 3004 list of several classes is joined with ",".
	UserClass string
	// VendorClass is option 60 in full, e.g. "PXEClient:Arch:00007:UNDI:003016".
	VendorClass string
	// UUID is option 97's GUID (RFC 4578 section 2.3) as
	// 8-4-4-4-12 hex in wire order, or "" when the client sent none.
	UUID string
	// Interface is the name of the interface the packet came in on.
	Interface string
	// Relay is giaddr, the relay agent's address, or the zero Addr when
	// the client is on the interface's own link.
	Relay netip.Addr
}

// IsIPXE reports whether iPXE sent the request (user class "iPXE"): it
// fetches URLs itself, so it gets the script, not another iPXE binary.
func (r Request) IsIPXE() bool {
	return slices.Contains(strings.Split(r.UserClass, ","), "iPXE")
}

// IsHTTPClient reports whether the client is a UEFI HTTP Boot client
// (vendor class "HTTPClient"), which takes a URL and no TFTP.
func (r Request) IsHTTPClient() bool {
	return strings.HasPrefix(r.VendorClass, ClassHTTP)
}

// Answer is what a client downloads: by TFTP (File from TFTPServer) or
// by URL. Exactly one of File and URL is set; the zero Answer means "do
// not answer".
type Answer struct {
	// File is the boot file's name on the TFTP server (option 67 and the
	// file field). TFTPServer is that server (siaddr and option 66); the
	// zero Addr means the DHCP server's own address (option 54).
	File       string
	TFTPServer netip.Addr
	// URL is an http or https URL, for iPXE (user class "iPXE") and for
	// UEFI HTTP Boot clients (vendor class "HTTPClient"), who get option
	// 60 "HTTPClient" back. iPXE expands ${settings} in it.
	URL string
}

// IsZero reports whether a is the zero Answer, "do not answer".
func (a Answer) IsZero() bool {
	return a.File == "" && a.URL == "" && !a.TFTPServer.IsValid()
}

// bootFileMax is the usable size of the BOOTP file field (128 bytes with
// its terminating NUL, RFC 2131 section 2).
const bootFileMax = 127

// check reports whether a is well formed and usable by the client r.
func (a Answer) check(r Request) error {
	switch {
	case a.File != "" && a.URL != "":
		return errors.New("answer has both a TFTP file and a URL")
	case a.File == "" && a.URL == "":
		return errors.New("answer has neither a TFTP file nor a URL")
	case a.File != "":
		if a.TFTPServer.IsValid() && !a.TFTPServer.Is4() {
			return fmt.Errorf("answer's TFTP server %s is not IPv4", a.TFTPServer)
		}
		if len(a.File) > bootFileMax {
			return fmt.Errorf("boot file name of %d bytes, at most %d fit", len(a.File), bootFileMax)
		}
		if strings.IndexByte(a.File, 0) >= 0 {
			return errors.New("boot file name has a NUL byte")
		}
		if r.IsHTTPClient() {
			return fmt.Errorf("TFTP file %q for a UEFI HTTP Boot client, which needs a URL", a.File)
		}
	default:
		u, err := url.Parse(a.URL)
		if err != nil {
			return fmt.Errorf("answer's URL: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("answer's URL %q is not an http or https URL", a.URL)
		}
		if strings.IndexByte(a.URL, 0) >= 0 {
			return errors.New("answer's URL has a NUL byte")
		}
		if !r.IsIPXE() && !r.IsHTTPClient() {
			return fmt.Errorf("URL %q for a client that is neither iPXE nor a UEFI HTTP Boot client: it can only use TFTP", a.URL)
		}
	}
	return nil
}

// ErrNotNetboot marks a packet that is not a network boot client's
// DISCOVER or REQUEST: no option 60 PXEClient or HTTPClient, or another
// message type. Such packets are not answered by a Proxy.
var ErrNotNetboot = errors.New("not a network boot request")

// parseRequest reads what a netboot client's packet says about it. It
// fails with ErrNotNetboot for other clients and with errMalformedOption
// when an option PXE needs cannot be read.
func parseRequest(p *dhcpv4.DHCPv4, ifname string) (Request, error) {
	if p.OpCode != dhcpv4.OpcodeBootRequest {
		return Request{}, fmt.Errorf("op %s: %w", p.OpCode, ErrNotNetboot)
	}
	vc := string(p.Options.Get(dhcpv4.OptionClassIdentifier))
	class, vcArch, vcHasArch := parseVendorClass(vc)
	if class == "" {
		return Request{}, fmt.Errorf("vendor class %q: %w", vc, ErrNotNetboot)
	}
	if len(p.ClientHWAddr) == 0 {
		return Request{}, fmt.Errorf("no client hardware address: %w", errMalformedOption)
	}
	r := Request{
		MAC:         slices.Clone(p.ClientHWAddr),
		VendorClass: vc,
		UserClass:   strings.Join(parseUserClass(p.Options.Get(dhcpv4.OptionUserClassInformation)), ","),
		Interface:   ifname,
		Arch:        archUnspecified,
	}
	if b := p.Options.Get(dhcpv4.OptionClientSystemArchitectureType); b != nil {
		a, err := parseArch(b)
		if err != nil {
			return Request{}, err
		}
		r.Arch = a
	} else if vcHasArch {
		r.Arch = vcArch
	} else {
		// RFC 4578 section 2.1: PXE clients MUST send option 93.
		return Request{}, fmt.Errorf("no option 93 (client system architecture) and no Arch in option 60 %q: %w", vc, errMalformedOption)
	}
	// Firmware that omits option 97 exists and still expects to boot
	// (pixiecore and smee answer it too); a malformed one is refused.
	if b := p.Options.Get(dhcpv4.OptionClientMachineIdentifier); b != nil {
		id, err := parseMachineID(b)
		if err != nil {
			return Request{}, err
		}
		r.UUID = id
	}
	if gi, ok := netip.AddrFromSlice(p.GatewayIPAddr.To4()); ok && !gi.IsUnspecified() {
		r.Relay = gi
	}
	return r, nil
}
