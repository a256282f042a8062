package boot

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

// hostnameRE is a DNS host name (RFC 1123), lowercase.
var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// ParseMAC reads a 6-byte Ethernet address written with ':' or '-' separators.
func ParseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
	if err != nil || len(mac) != 6 || strings.Count(s, ":")+strings.Count(s, "-") != 5 {
		return nil, fmt.Errorf("%q is not a MAC address like 52:54:00:12:34:56", s)
	}
	return mac, nil
}

// URLPath joins a base URL and a path, for scripts and documents.
func URLPath(base string, elem ...string) string {
	u := strings.TrimSuffix(base, "/")
	for _, e := range elem {
		u += "/" + url.PathEscape(e)
	}
	return u
}
