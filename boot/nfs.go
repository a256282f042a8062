package boot

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
)

// NFSSource is a directory tree read over NFS through the kernel's NFS
// client, read-only, as the lower of the overlay: for sites that serve
// their roots over NFS today and move to images. The NFS server's
// answers are not verified (NFS has no digest of a tree): the lower is as
// trustworthy as the server and the network to it.
//
// Its text form is an NFS URL, nfs://HOST/EXPORT (RFC 2224's form without
// a port: give port=N in the options), with the options apart
// (FormatNFSOptions: "vers=3,mountport=20048").
type NFSSource struct {
	Server string `json:"server"` // host name or IP address literal
	Export string `json:"export"` // absolute path on the server (NFSv4: in its pseudo file system)
	// Version is the protocol: "4" (the default when empty), "4.1",
	// "4.2" or "3".
	Version string `json:"version,omitempty"`
	// Options are further mount options, each of NFSOptionKeys as
	// key=value: never arbitrary mount options (the agent adds ro,
	// and nolock for NFSv3, itself).
	Options []string `json:"options,omitempty"`
}

// NFS versions the agent mounts.
var NFSVersions = []string{"4", "4.1", "4.2", "3"}

// DefaultNFSVersion is the version of an NFSSource with none.
const DefaultNFSVersion = "4"

// NFSOptionKeys are the mount options an NFSSource may carry, with what
// each takes: a port, a positive number, or one word.
var NFSOptionKeys = []string{"port", "mountport", "proto", "mountproto", "timeo", "retrans", "rsize"}

// NFSVersion returns the source's version or the default.
func (n NFSSource) NFSVersion() string {
	if n.Version == "" {
		return DefaultNFSVersion
	}
	return n.Version
}

// URL returns the source's nfs:// URL (without the options).
func (n NFSSource) URL() string {
	host := n.Server
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	return "nfs://" + host + n.Export
}

// String is the URL and the options, for messages.
func (n NFSSource) String() string {
	if o := FormatNFSOptions(n.Version, n.Options); o != "" {
		return n.URL() + " (" + o + ")"
	}
	return n.URL()
}

// ParseNFSURL reads nfs://HOST/EXPORT: HOST a host name or an IP address
// (IPv6 in brackets), EXPORT an absolute path. No port, user, query or
// fragment: the options come apart (ParseNFSOptions).
func ParseNFSURL(s string) (NFSSource, error) {
	rest, ok := strings.CutPrefix(s, "nfs://")
	if !ok {
		return NFSSource{}, fmt.Errorf("%q: want nfs://HOST/EXPORT", s)
	}
	if strings.ContainsAny(rest, "?#@") {
		return NFSSource{}, fmt.Errorf("%q: want nfs://HOST/EXPORT with no user, query or fragment (give the options apart: vers=3,port=2049)", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return NFSSource{}, fmt.Errorf("%q: %v", s, err)
	}
	if u.Port() != "" {
		return NFSSource{}, fmt.Errorf("%q: no port in the URL: give port=%s in the options", s, u.Port())
	}
	n := NFSSource{Server: u.Hostname(), Export: u.Path}
	if u.RawPath != "" || strings.Contains(rest, "%") {
		return NFSSource{}, fmt.Errorf("%q: no %%-escapes: the export is a plain path", s)
	}
	if err := checkNFSServer(n.Server); err != nil {
		return NFSSource{}, fmt.Errorf("%q: %w", s, err)
	}
	if err := checkNFSExport(n.Export); err != nil {
		return NFSSource{}, fmt.Errorf("%q: %w", s, err)
	}
	return n, nil
}

// ParseNFSOptions reads comma-separated NFS options: vers=V (one of
// NFSVersions) and the keys of NFSOptionKeys, each at most once. It
// returns the version ("" when not given) and the other options in the
// order given.
func ParseNFSOptions(s string) (version string, opts []string, err error) {
	if s == "" {
		return "", nil, nil
	}
	seen := map[string]bool{}
	for _, o := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(o, "=")
		if !ok || v == "" {
			return "", nil, fmt.Errorf("%q: want key=value options like vers=3,port=2049", o)
		}
		if seen[k] {
			return "", nil, fmt.Errorf("%s given twice", k)
		}
		seen[k] = true
		if k == "vers" {
			if !slices.Contains(NFSVersions, v) {
				return "", nil, fmt.Errorf("vers=%s: want one of %s", v, strings.Join(NFSVersions, ", "))
			}
			version = v
			continue
		}
		if err := checkNFSOption(o); err != nil {
			return "", nil, err
		}
		opts = append(opts, o)
	}
	return version, opts, nil
}

// FormatNFSOptions writes what ParseNFSOptions reads.
func FormatNFSOptions(version string, opts []string) string {
	var all []string
	if version != "" {
		all = append(all, "vers="+version)
	}
	return strings.Join(append(all, opts...), ",")
}

// checkNFSOption checks one key=value option against NFSOptionKeys.
func checkNFSOption(o string) error {
	k, v, _ := strings.Cut(o, "=")
	switch k {
	case "port", "mountport":
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != v {
			return fmt.Errorf("%s=%s: want a port, 1 to 65535", k, v)
		}
	case "proto", "mountproto":
		if v != "tcp" && v != "tcp6" {
			return fmt.Errorf("%s=%s: want tcp or tcp6 (overboot mounts over TCP only)", k, v)
		}
	case "timeo", "retrans", "rsize":
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 1<<20 || strconv.Itoa(n) != v {
			return fmt.Errorf("%s=%s: want a positive number", k, v)
		}
	default:
		return fmt.Errorf("%q: not an option overboot passes on (it takes vers and %s; the mount is always read-only)", o, strings.Join(NFSOptionKeys, ", "))
	}
	return nil
}

// checkNFSServer accepts an IP address literal or a DNS host name.
func checkNFSServer(s string) error {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return errors.New("server: an IPv6 address with a zone cannot be mounted")
		}
		return nil
	}
	if !validHost(s) {
		return fmt.Errorf("server %q: want a host name or an IP address", s)
	}
	return nil
}

// validHost reports whether s is a DNS host name (RFC 1123 labels).
func validHost(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// checkNFSExport accepts a clean absolute path without the characters
// that would change the mount's source or options (',', whitespace, ':'
// and control characters).
func checkNFSExport(s string) error {
	switch {
	case s == "":
		return errors.New("export: missing: want nfs://HOST/EXPORT, e.g. nfs://files.example.org/srv/roots/debian")
	case !path.IsAbs(s) || path.Clean(s) != s:
		return fmt.Errorf("export %q: want a clean absolute path", s)
	case len(s) > 1024:
		return fmt.Errorf("export of %d bytes: too long", len(s))
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f || c == ',' || c == ':' || c == '"' || c == '\\' {
			return fmt.Errorf("export %q: no whitespace, control characters, quotes, backslashes, ',' or ':'", s)
		}
	}
	return nil
}

// Validate checks the source; errors name the field (server, export,
// version, options).
func (n NFSSource) Validate() error {
	var errs []error
	if err := checkNFSServer(n.Server); err != nil {
		errs = append(errs, err)
	}
	if err := checkNFSExport(n.Export); err != nil {
		errs = append(errs, err)
	}
	if n.Version != "" && !slices.Contains(NFSVersions, n.Version) {
		errs = append(errs, fmt.Errorf("version %q: want one of %s", n.Version, strings.Join(NFSVersions, ", ")))
	}
	seen := map[string]bool{}
	for _, o := range n.Options {
		k, _, _ := strings.Cut(o, "=")
		if k == "vers" {
			errs = append(errs, fmt.Errorf("options: %q: the version goes in version", o))
			continue
		}
		if err := checkNFSOption(o); err != nil {
			errs = append(errs, fmt.Errorf("options: %w", err))
			continue
		}
		if seen[k] {
			errs = append(errs, fmt.Errorf("options: %s given twice", k))
		}
		seen[k] = true
	}
	return errors.Join(errs...)
}
