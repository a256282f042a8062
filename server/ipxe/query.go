package ipxe

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/pci"
)

// Client identifies a machine asking for its script: what the bootstrap
// script's query says about it.
type Client struct {
	MAC       net.HardwareAddr // net0's MAC address
	UUID      string           // SMBIOS UUID, lowercase, or ""
	Hostname  string           // from DHCP, or ""
	BuildArch string           // iPXE's ${buildarch}: i386, x86_64, arm64, ...
	Platform  string           // iPXE's ${platform}: pcbios, efi, ...
	NIC       pci.ID           // the booting NIC's PCI vendor and device; zero = unknown
}

// queryKeys lists the bootstrap query: the parameter name and the iPXE
// setting that fills it. ${net0/mac:hexhyp} avoids ':' in the query.
//
// pcivendor and pcidevice read the booting NIC's PCI configuration space
// through iPXE's pci settings (${pci/BUSLOC.OFFSET.LENGTH}, big-endian):
// with :hexraw, Debian's iPXE 1.0.0+git-20190125 prints "10ec" and "8139"
// for QEMU's rtl8139 (untyped it prints the same; :uint16 would print
// "0x8139", :hex "81:39"). When ${net0/busloc} is unset (a NIC that is not
// on PCI) the setting reads bus 0 device 0, the host bridge: the server
// only ever matches the ID against network drivers.
var queryKeys = []struct{ name, ipxe string }{
	{"mac", "${net0/mac:hexhyp}"},
	{"uuid", "${uuid}"},
	{"hostname", "${hostname}"},
	{"buildarch", "${buildarch}"},
	{"platform", "${platform}"},
	{"pcivendor", "${pci/${net0/busloc}.0.2:hexraw}"},
	{"pcidevice", "${pci/${net0/busloc}.2.2:hexraw}"},
}

var (
	uuidRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	wordRE     = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)
)

// ParseQuery reads the bootstrap script's query. iPXE expands unset settings
// to "", so empty values mean "unknown". Unknown parameters and malformed
// values are errors naming the parameter. pcivendor and pcidevice come
// together or not at all, and vendor 0000 and ffff (no device) are refused.
func ParseQuery(q url.Values) (Client, error) {
	var c Client
	var errs []error
	bad := func(k, format string, args ...any) {
		errs = append(errs, fmt.Errorf("query parameter %s: %s", k, fmt.Sprintf(format, args...)))
	}
	for k, vs := range q {
		known := false
		for _, qk := range queryKeys {
			known = known || qk.name == k
		}
		if !known {
			bad(k, "unknown")
			continue
		}
		if len(vs) != 1 {
			bad(k, "given %d times", len(vs))
			continue
		}
		v := strings.ToLower(vs[0])
		if v == "" {
			continue
		}
		switch k {
		case "mac":
			mac, err := boot.ParseMAC(v)
			if err != nil {
				bad(k, "%v", err)
			}
			c.MAC = mac
		case "uuid":
			if !uuidRE.MatchString(v) {
				bad(k, "%q is not a UUID", vs[0])
			}
			c.UUID = v
		case "hostname":
			if len(v) > 253 || !hostnameRE.MatchString(v) {
				bad(k, "%q is not a host name", vs[0])
			}
			c.Hostname = v
		case "buildarch":
			if !wordRE.MatchString(v) {
				bad(k, "%q is not an architecture name", vs[0])
			}
			c.BuildArch = v
		case "platform":
			if !wordRE.MatchString(v) {
				bad(k, "%q is not a platform name", vs[0])
			}
			c.Platform = v
		case "pcivendor":
			n, err := pci.ParseWord(v)
			switch {
			case err != nil:
				bad(k, "%v", err)
			case n == 0 || n == 0xffff:
				bad(k, "%q is not a PCI vendor ID", vs[0])
			}
			c.NIC.Vendor = n
		case "pcidevice":
			n, err := pci.ParseWord(v)
			if err != nil {
				bad(k, "%v", err)
			}
			c.NIC.Device = n
		}
	}
	vendor, device := q.Get("pcivendor") != "", q.Get("pcidevice") != ""
	switch {
	case vendor && !device:
		bad("pcidevice", "missing, and pcivendor is given")
	case device && !vendor:
		bad("pcivendor", "missing, and pcidevice is given")
	}
	if err := errors.Join(errs...); err != nil {
		return Client{}, err
	}
	return c, nil
}

// Query encodes the client as the bootstrap script would; ParseQuery reads it back.
func (c Client) Query() url.Values {
	q := url.Values{}
	if c.MAC != nil {
		q.Set("mac", strings.ReplaceAll(c.MAC.String(), ":", "-"))
	}
	for _, kv := range [][2]string{{"uuid", c.UUID}, {"hostname", c.Hostname}, {"buildarch", c.BuildArch}, {"platform", c.Platform}} {
		if kv[1] != "" {
			q.Set(kv[0], kv[1])
		}
	}
	if !c.NIC.IsZero() {
		q.Set("pcivendor", fmt.Sprintf("%04x", c.NIC.Vendor))
		q.Set("pcidevice", fmt.Sprintf("%04x", c.NIC.Device))
	}
	return q
}
