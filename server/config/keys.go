package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/state/pgurl"
)

// Key is one key of a section: its name, its default (as the file would
// write it; "" for none) and what it means. Keys lists every one: the
// reference (Reference) is made from it, the setters below take exactly
// these (a test checks both ways), and an unknown key's error lists them.
type Key struct {
	Name, Default, Doc string
}

// Section is one kind of section and its keys.
type Section struct {
	Kind   string // server, profile, machine, subnet, select
	Header string // as written: [server], [profile NAME], ...
	Doc    string
	Keys   []Key
}

// Sections are the configuration's sections, in the order a file
// usually has them.
var Sections = []Section{
	{"server", "[server]", "The server itself: where it listens, its data, the network services it runs.", []Key{
		{"name", "", "This server's name among the servers sharing the state store (letters, digits, . - _); default: the host's name. Disks live on a named server."},
		{"listen", DefaultListen, "HTTP address (host:port). The default serves this host only: say 0.0.0.0:80 to serve a network."},
		{"data", DefaultData, "The data directory: blobs, the state store (state.db), disks, trees. One server at a time (DATA/lock)."},
		{"store", "", "The state store: empty for SQLite in DATA/state.db (one server), or PostgreSQL for several servers sharing one store: postgres://USER@HOST/DB?sslmode=verify-full, or host=/run/postgresql dbname=DB. No password in it."},
		{"store-password-file", "", "The PostgreSQL role's password: the first line of this file (mode 0600); default the PG environment (PGPASSWORD, PGPASSFILE, ~/.pgpass)."},
		{"url", "", "How machines reach the server (http://HOST[:PORT]); default: each request's Host header. Needed by proxy-dhcp and dhcp."},
		{"url6", "", "The server over IPv6 in the URLs it hands out (http://[ADDR][:PORT]); default url."},
		{"peers", "", "Other overboot servers (base URLs http://HOST[:PORT], space- or comma-separated), asked in order for a blob this one lacks (by digest; kept only when the bytes are that digest); default: the other servers registered in the state store and up (overboot server ls)."},
		{"origin", "", "One more base URL asked after peers: another server or any HTTP host serving BASE/blobs/sha256/HEX."},
		{"cache", "", "An HTTP cache in front of the servers (nginx proxy_cache; one base URL): machines read kernels, initramfs, images and trees from it first, then from this server and the mirrors. Scripts, documents and reports stay with the servers."},
		{"mirrors", "", "Base URLs (http[s]://HOST[:PORT][/PATH], space-separated, at most 7) of other servers or HTTP caches serving the same /blobs/sha256/ and /verity/sha256/ paths. Scripts and documents list every artifact here first (after cache), then at each mirror in this order; default: the other servers registered in the state store and up: a machine's kernel, initramfs and root (RAM download or lazy reads) move to the next when one fails."},
		{"tls-listen", "", "Serve HTTPS on this address (host:port) too: machines then fetch their document, send their reports and, with lower-tls, read their image over HTTPS. listen stays HTTP for firmware and boot loaders (kernel, initramfs: checked by digest). Default off."},
		{"tls-url", "", "How machines reach HTTPS (https://HOST[:PORT]); default: url's host (or the request's) with tls-listen's port."},
		{"tls-cert", "", "The site's own certificate (PEM file, chain after it), with tls-key; default: a certificate signed by the server's site CA (made at first start in DATA/tls; overboot tls ca prints it)."},
		{"tls-key", "", "The key of tls-cert (PEM file, mode 0600: refused if others can read it)."},
		{"tls-names", "", "More host names and addresses (space- or comma-separated) the site CA's certificate is for, besides the hosts of url, url6 and tls-url."},
		{"status", StatusToken, "Who reads /status: token (an admin token of any scope, or a session signed in with one) or public (anyone)."},
		{"pending-ttl", "24h", "A request for approval not repeated this long is forgotten (1m to 365d)."},
		{"forget-after", "30d", "An admission that open, open-insecure or login granted is forgotten when its machine has not booted this long and holds no disk of that profile (1h to 3650d, or never)."},
		{"iscsi", DefaultISCSI, "The iSCSI target's address, listened on when a profile has upper = iscsi or sanboot."},
		{"iscsi-portal", "", "How machines reach the target (host:port); default: the HTTP host with iscsi's port."},
		{"iscsi-login-timeout", "5s", "A connection that has not logged in by then is closed (1s to 5m)."},
		{"iscsi-max-per-address", "8", "Connections from one address that have not logged in yet."},
		{"iscsi-max-connections", "1024", "Connections that have not logged in yet, in all (sessions take no room)."},
		{"tftp", "", "Serve the iPXE binaries over TFTP on this address (host:port), for firmware PXE; default off."},
		{"tftp-root", DefaultTFTPRoot, "Where they are (Debian's ipxe package); copied into DATA/tftp at start, only what every local user could read."},
		{"shim", DefaultShim, "The Secure Boot path: Debian's Microsoft-signed shim (package shim-signed), served as it is (TFTP and /boot/shimx64.efi) to the UEFI machines of secure-boot profiles."},
		{"grub-net", DefaultGRUBNet, "The Secure Boot path: Debian's signed GRUB netboot image (package grub-efi-amd64-signed), served as it is beside the shim as grubx64.efi, the name shim loads."},
		{"mok-manager", DefaultMokManager, "The Secure Boot path: shim's signed MokManager (package shim-signed), served beside the shim as mmx64.efi, which shim starts when a key is waiting to be enrolled (mokutil --import); none: not served."},
		{"proxy-dhcp", "", "Answer PXE firmware on this interface with ProxyDHCP (no addresses: the site's DHCP server keeps giving them)."},
		{"dhcp", "", "Be the DHCP server of an isolated network on this interface (not with proxy-dhcp on the same one)."},
		{"dhcp-range", "", "The pool (FIRST-LAST IPv4 addresses) of dhcp."},
		{"dhcp-router", "", "The router (option 3) dhcp hands out."},
		{"dhcp-dns", "", "DNS servers (option 6, comma-separated) dhcp hands out."},
		{"dhcp-lease", "1h", "Lease time of dhcp (1m to 720h); leases are kept in the state store."},
		{"dhcpv6", "", "Be the DHCPv6 server (with the boot URL, option 59) on this interface."},
		{"dhcpv6-range", "", "The pool (FIRST-LAST IPv6 addresses, one /64) of dhcpv6."},
		{"dhcpv6-lease", "1h", "Lease time of dhcpv6 (1m to 720h)."},
		{"dhcpv6-dns", "", "DNS servers (comma-separated IPv6 addresses) dhcpv6 hands out."},
		{"quiet-ra", "", "Answer IPv6 router solicitations on this interface with an advertisement that configures nothing (not a router, no prefix, no DHCPv6): on a LAN without IPv6 routers UEFI iPXE waits about 15 s for one before its script. Not where a router advertises, nor with dhcpv6 on the same interface."},
	}},
	{"profile", "[profile NAME]", "How a machine boots. [profile default] is for machines no other rule names.", []Key{
		{"kernel", "", "The kernel: a store name, sha256:HEX, an absolute file path, or image: the root image's own kernel (built with it from its /boot/vmlinuz-* and /lib/modules/*; root must then be a store name). Required unless sanboot."},
		{"initramfs", "", "The overboot initramfs (overboot mkimage initramfs): a store name, sha256:HEX, a path, or image: the one built from the root image's own modules (the default with kernel = image). Required unless sanboot."},
		{"root", "", "The root image (a squashfs): a store name, sha256:HEX or a path; or nfs://HOST/EXPORT, a tree the machines mount read-only with the kernel's NFS client, under the upper as an image (for sites moving from NFS roots: what the NFS server answers is not verified, so no lower-mode, lower-cache or lower-tls). Required unless sanboot."},
		{"lower-nfs", "vers=4", "root = nfs://...: the NFS options, comma-separated: vers=4, 4.1, 4.2 or 3, and port=, mountport=, proto=tcp, mountproto=tcp, timeo=, retrans=, rsize= (no others: the mount is always read-only; NFSv3 also gets nolock)."},
		{"lower-mode", "ram", "ram (download whole, check, loop), lazy (read on demand behind dm-verity) or fill (lazy, then fill RAM)."},
		{"lower-tls", "no", "yes: the image (and its dm-verity tree) is read from this server over HTTPS (tls-listen), checked against the site CA: for images with secrets in them. Mirrors and the cache are then left out unless they are https."},
		{"lower-cache", "64M", "lazy and fill: the keeper's RAM cache of blocks."},
		{"upper", "tmpfs", "The writable layer: tmpfs, or iscsi (the machine's or user's private disk, kept)."},
		{"upper-size", "50%", "tmpfs upper: its size limit (bytes like 2G, or a percentage of RAM)."},
		{"upper-disk-size", "4G", "iscsi upper: a new disk's size (sparse, ext4, a multiple of 512)."},
		{"iscsi-recovery", "120s", "How long the kernel holds an iSCSI session's I/O while the keeper logs it in again (whole seconds, up to 24h)."},
		{"sanboot", "", "Boot this raw disk image whole with iPXE's sanboot, each machine (or user) on its own copy-on-write layer; then no kernel, initramfs, root or upper keys."},
		{"init", "/sbin/init", "The root's init."},
		{"onfail", "reboot", "What a failed boot does: reboot, shell (the rescue shell on the console) or poweroff."},
		{"onfail-delay", "30s", "How long the failure message shows first."},
		{"fetch-attempts", "6", "Download attempts of the agent (1 to 100)."},
		{"cmdline", "", "Extra kernel arguments (not overboot.*, which come from the other keys)."},
		{"enroll", "open", "Who may boot it: open, open-insecure (private disks on a network you trust), approve (an administrator admits each machine), login (a user's password) or tpm (the machine's TPM proves what it booted before it gets its secrets, sealed to that TPM; needs secure-boot = yes)."},
		{"login", "ipxe", "enroll = login: where the username and password are asked: ipxe (iPXE's form at the boot menu) or console (the agent asks on the console, echo off, and gets the user's document for them). The Secure Boot path always asks on the console. No console with sanboot."},
		{"max-machines", "1000", "Machines admitted to the profile or asking for it; unlimited says none."},
		{"max-disks", "1000", "Disks of the profile; unlimited says none."},
		{"max-disk-bytes", "unlimited", "The sum of its disks' sizes (copy-on-write layers count what they take)."},
		{"files", "", "A directory of templates rendered per machine into its root ({{.Hostname}}, {{.MAC}}, {{.IP}}, {{.Profile}}, {{.MachineID}}, {{.User}}, {{.Labels}})."},
		{"menu", "", "Other profiles offered as entries of this profile's boot menu (comma-separated); a login profile always has a menu."},
		{"menu-timeout", "10s", "How long the menu waits before its default (1s to 1h)."},
		{"menu-default", "", "login or one of menu; default the first item."},
		{"secure-boot", "no", "yes: its x86-64 UEFI machines boot Debian's signed chain (shim, GRUB, then the kernel; see docs/network.md) instead of iPXE, so Secure Boot may stay on. The kernel must be signed (Debian's linux-image-amd64 is); no sanboot. DHCP decides by [machine], [select] and the default: a [subnet] rule is not seen before the machine has its address."},
		{"tpm-first-use", "no", "Under enroll = tpm: yes pins the first TPM (EK) a machine shows, trust on first use; no: an administrator approves each EK (overboot machine approve MAC)."},
	}},
	{"machine", "[machine MAC] or [machine UUID]", "One known machine, by its MAC address or its SMBIOS UUID (as iPXE reports it).", []Key{
		{"profile", "", "Its profile; default: the rules below choose."},
		{"hostname", "", "Its host name; default its DHCP name, else ob-MAC."},
		{"labels", "", "Labels for [select] label (comma-separated)."},
		{"ip", "", "[machine MAC] only: its reserved address from [server] dhcp."},
	}},
	{"subnet", "[subnet CIDR]", "The machines asking from an IP prefix (the longest prefix wins).", []Key{
		{"profile", "", "Their profile (required)."},
	}},
	{"select", "[select NAME]", "Machines matching all of its keys (each key: any of its values), first section first.", []Key{
		{"profile", "", "Their profile (required)."},
		{"arch", "", "iPXE's ${buildarch}: i386, x86_64, arm64, ..."},
		{"platform", "", "iPXE's ${platform}: pcbios, efi."},
		{"hostname", "", "Host name shell patterns (lab-*)."},
		{"label", "", "Labels of the machine's [machine] section."},
	}},
}

// sectionKeys lists the keys of a kind of section (server, profile,
// machine, subnet, select).
func sectionKeys(kind string) []Key {
	for _, s := range Sections {
		if s.Kind == kind {
			return s.Keys
		}
	}
	return nil
}

// unknownKey is the error of a key a kind of section does not have.
func unknownKey(kind string) error {
	var names []string
	for _, k := range sectionKeys(kind) {
		names = append(names, k.Name)
	}
	return fmt.Errorf("unknown key in [%s]: want %s or %s", kind, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// Reference is the configuration reference, in Markdown, made from
// Sections: docs/configuration.md is this (a test keeps them equal).
func Reference() string {
	var b strings.Builder
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("`overboot serve --config FILE` reads one file of sections and `key = value` lines; `#` and `;` start comments. Unknown sections or keys, a key given twice, and bad values are refused at start (and by `systemctl reload`) with `FILE:LINE: reason`, the old configuration staying in force. This page is generated from the server's key table (`server/config`).\n")
	for _, s := range Sections {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n| key | default | meaning |\n| --- | --- | --- |\n", s.Header, s.Doc)
		for _, k := range s.Keys {
			def := "-"
			if k.Default != "" {
				def = "`" + k.Default + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", k.Name, def, strings.ReplaceAll(k.Doc, "|", "\\|"))
		}
	}
	return b.String()
}

func (c *Config) setServer(k, v string) error {
	var err error
	switch k {
	case "name":
		if !ValidServerName(v) {
			return fmt.Errorf("%q: want 1 to 63 letters, digits, '.', '-' or '_'", v)
		}
		c.Name = v
	case "listen":
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q: want host:port, e.g. 127.0.0.1:8080: %v", v, err)
		}
		c.Listen = v
	case "iscsi", "iscsi-portal":
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q: want host:port, e.g. 127.0.0.1:3260: %v", v, err)
		}
		if k == "iscsi" {
			c.ISCSI = v
		} else {
			c.Portal = v
		}
	case "tftp":
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q: want host:port, e.g. 192.0.2.10:69: %v", v, err)
		}
		c.TFTP = v
	case "proxy-dhcp":
		if v == "" || len(v) > 15 || strings.ContainsAny(v, "/ \t") {
			return fmt.Errorf("%q: want a network interface name, e.g. eth0", v)
		}
		c.ProxyDHCP = v
	case "quiet-ra":
		if v == "" || len(v) > 15 || strings.ContainsAny(v, "/ \t") {
			return fmt.Errorf("%q: want a network interface name, e.g. eth1", v)
		}
		c.QuietRA = v
	case "dhcp":
		if v == "" || len(v) > 15 || strings.ContainsAny(v, "/ \t") {
			return fmt.Errorf("%q: want a network interface name, e.g. eth1", v)
		}
		c.DHCP = v
	case "dhcp-range":
		a, b, ok := strings.Cut(v, "-")
		start, err1 := netip.ParseAddr(strings.TrimSpace(a))
		end, err2 := netip.ParseAddr(strings.TrimSpace(b))
		if !ok || err1 != nil || err2 != nil || !start.Is4() || !end.Is4() || end.Less(start) {
			return fmt.Errorf("%q: want FIRST-LAST IPv4 addresses, e.g. 192.0.2.100-192.0.2.199", v)
		}
		c.DHCPStart, c.DHCPEnd = start, end
	case "dhcp-router":
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			return fmt.Errorf("%q: want an IPv4 address", v)
		}
		c.DHCPRouter = a
	case "dhcp-dns":
		c.DHCPDNS, err = parseAddrs(v, false)
	case "dhcp-lease":
		c.DHCPLease, err = parseLease(v)
	case "dhcpv6":
		if v == "" || len(v) > 15 || strings.ContainsAny(v, "/ \t") {
			return fmt.Errorf("%q: want a network interface name, e.g. eth1", v)
		}
		c.DHCPv6 = v
	case "dhcpv6-range":
		a, b, ok := strings.Cut(v, "-")
		start, err1 := netip.ParseAddr(strings.TrimSpace(a))
		end, err2 := netip.ParseAddr(strings.TrimSpace(b))
		if !ok || err1 != nil || err2 != nil || !start.Is6() || !end.Is6() || start.Is4In6() || end.Less(start) {
			return fmt.Errorf("%q: want FIRST-LAST IPv6 addresses, e.g. 2001:db8::100-2001:db8::1ff", v)
		}
		c.DHCPv6Start, c.DHCPv6End = start, end
	case "dhcpv6-lease":
		c.DHCPv6Lease, err = parseLease(v)
	case "dhcpv6-dns":
		c.DHCPv6DNS, err = parseAddrs(v, true)
	case "url6":
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "http" || !strings.HasPrefix(u.Host, "[") || u.RawQuery != "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("%q: want http://[IPv6][:PORT], the address machines reach this server at over IPv6", v)
		}
		c.URL6 = strings.TrimSuffix(v, "/")
	case "mirrors":
		c.Mirrors, err = parseMirrors(v)
	case "cache":
		ms, err := parseMirrors(v)
		if err != nil {
			return err
		}
		if len(ms) != 1 {
			return fmt.Errorf("%q: want one base URL, e.g. http://cache.example:8080", v)
		}
		c.Cache = ms[0]
	case "tftp-root":
		if !strings.HasPrefix(v, "/") {
			return fmt.Errorf("%q: want an absolute directory", v)
		}
		c.TFTPRoot = v
	case "shim", "grub-net", "mok-manager":
		if k == "mok-manager" && v == "none" {
			c.MokManager = ""
			break
		}
		if !strings.HasPrefix(v, "/") {
			return fmt.Errorf("%q: want the absolute path of a signed EFI binary", v)
		}
		switch k {
		case "shim":
			c.Shim = v
		case "grub-net":
			c.GRUBNet = v
		default:
			c.MokManager = v
		}
	case "iscsi-login-timeout":
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 5*time.Minute {
			return fmt.Errorf("%q: want a duration from 1s to 5m", v)
		}
		c.ISCSILoginTimeout = d
	case "iscsi-max-per-address", "iscsi-max-connections":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1<<20 {
			return fmt.Errorf("%q: want a positive count", v)
		}
		if k == "iscsi-max-per-address" {
			c.ISCSIPerAddress = n
		} else {
			c.ISCSIConnections = n
		}
	case "pending-ttl":
		d, err := parseDays(v)
		if err != nil || d < time.Minute || d > 365*24*time.Hour {
			return fmt.Errorf("%q: want a duration from 1m to 365d, e.g. 24h", v)
		}
		c.PendingTTL = d
	case "forget-after":
		if v == "never" {
			c.ForgetAfter = Never
			break
		}
		d, err := parseDays(v)
		if err != nil || d < time.Hour || d > 10*365*24*time.Hour {
			return fmt.Errorf("%q: want a duration from 1h to 3650d (e.g. 30d), or never", v)
		}
		c.ForgetAfter = d
	case "status":
		if v != StatusToken && v != StatusPublic {
			return fmt.Errorf("%q: want token (an admin token or a signed-in session reads it) or public (anyone)", v)
		}
		c.Status = v
	case "data":
		if v == "" {
			return errors.New("empty")
		}
		c.Data = v
	case "peers":
		for u := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			if err := checkBaseURL(u); err != nil {
				return err
			}
			c.Peers = append(c.Peers, strings.TrimSuffix(u, "/"))
		}
		if len(c.Peers) == 0 {
			return errors.New("empty: want base URLs of other overboot servers, e.g. http://192.0.2.2:8080")
		}
	case "origin":
		if err := checkBaseURL(v); err != nil {
			return err
		}
		c.Origin = strings.TrimSuffix(v, "/")
	case "store":
		if v != "" {
			if err := pgurl.Check(v); err != nil {
				return err
			}
		}
		c.Store = v
	case "store-password-file":
		if !path.IsAbs(v) {
			return fmt.Errorf("%q: want the absolute path of a file (mode 0600) holding the PostgreSQL role's password", v)
		}
		c.StorePasswordFile = v
	case "tls-listen":
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%q: want host:port, e.g. 0.0.0.0:443: %v", v, err)
		}
		c.TLSListen = v
	case "tls-url":
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.User != nil || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("%q: want https://HOST[:PORT], the address machines reach this server's HTTPS at", v)
		}
		c.TLSURL = strings.TrimSuffix(v, "/")
	case "tls-cert", "tls-key":
		if !path.IsAbs(v) {
			return fmt.Errorf("%q: want the absolute path of a PEM file", v)
		}
		if k == "tls-cert" {
			c.TLSCert = v
		} else {
			c.TLSKey = v
		}
	case "tls-names":
		c.TLSNames = nil
		for n := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			if net.ParseIP(n) == nil && !validHostName(n) {
				return fmt.Errorf("%q: want host names or IP addresses, e.g. boot.example.org, 192.0.2.10", n)
			}
			c.TLSNames = append(c.TLSNames, n)
		}
		if len(c.TLSNames) == 0 {
			return errors.New("empty: want host names or IP addresses")
		}
	case "url":
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "http" || u.Host == "" || u.RawQuery != "" || u.User != nil || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("%q: want http://HOST[:PORT], the address machines reach this server at", v)
		}
		c.URL = strings.TrimSuffix(v, "/")
	default:
		return unknownKey("server")
	}
	return err
}

// checkBaseURL checks a peer's or origin's base URL: http or https, a
// host, maybe a path, no query and no credentials (they would be logged).
func checkBaseURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q: want a base URL http[s]://HOST[:PORT][/PATH], with no query or user", v)
	}
	return nil
}

func (p *Profile) set(k, v string) error {
	var err error
	switch k {
	case "root":
		if strings.HasPrefix(v, "nfs://") {
			n, err := boot.ParseNFSURL(v)
			if err != nil {
				return err
			}
			p.Root, p.RootNFS = "", &n
			return nil
		}
		p.RootNFS = nil
		fallthrough
	case "kernel", "initramfs":
		if v == "" {
			return errors.New("empty: want a store name, sha256:HEX or an absolute file path")
		}
		if strings.HasPrefix(v, "sha256:") {
			if _, err := boot.ParseDigest(v); err != nil {
				return err
			}
		}
		switch k {
		case "kernel":
			p.Kernel = v
		case "initramfs":
			p.Initramfs = v
		default:
			p.Root = v
		}
	case "upper-size":
		p.UpperSize, err = boot.ParseSize(v)
	case "lower-mode":
		p.LowerMode, err = boot.ParseLowerMode(v)
	case "lower-cache":
		p.LowerCache, err = boot.ParseLowerCache(v)
	case "lower-nfs":
		if v == "" {
			return errors.New("empty: want NFS options like vers=3")
		}
		p.NFSVersion, p.NFSOptions, err = boot.ParseNFSOptions(v)
	case "lower-tls":
		p.LowerTLS, err = parseYesNo(v)
	case "iscsi-recovery":
		p.ISCSIRecovery, err = boot.ParseISCSIRecovery(v)
	case "init":
		if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, " \t\"$") {
			return fmt.Errorf("%q: want an absolute path", v)
		}
		p.Init = v
	case "onfail":
		p.OnFail, err = boot.ParseAction(v)
	case "onfail-delay":
		p.OnFailDelay, err = time.ParseDuration(v)
		if err == nil && p.OnFailDelay < 0 {
			err = errors.New("negative")
		}
	case "upper":
		if v != "tmpfs" && v != "iscsi" {
			return fmt.Errorf("%q: want tmpfs or iscsi", v)
		}
		p.Upper = v
	case "upper-disk-size":
		var sz boot.Size
		if sz, err = boot.ParseSize(v); err == nil && (sz.Bytes == 0 || sz.Bytes%512 != 0) {
			err = fmt.Errorf("%q: want bytes (a multiple of 512) like 4G, not a percentage", v)
		}
		p.UpperDiskSize = sz.Bytes
	case "sanboot":
		if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, "\"$") {
			return fmt.Errorf("%q: want the absolute path of a raw disk image", v)
		}
		p.Sanboot = v
	case "enroll":
		switch e := Enroll(v); e {
		case EnrollOpen, EnrollOpenInsecure, EnrollApprove, EnrollLogin, EnrollTPM:
			p.Enroll = e
		default:
			return fmt.Errorf("%q: want open, open-insecure, approve, login or tpm", v)
		}
	case "login":
		if v != LoginIPXE && v != LoginConsole {
			return fmt.Errorf("%q: want ipxe or console", v)
		}
		p.Login = v
	case "max-machines", "max-disks":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			if v != "unlimited" {
				return fmt.Errorf("%q: want a positive count, or unlimited", v)
			}
			n = Unlimited
		}
		if k == "max-machines" {
			p.MaxMachines = n
		} else {
			p.MaxDisks = n
		}
	case "max-disk-bytes":
		if v == "unlimited" {
			p.MaxDiskBytes = Unlimited
			break
		}
		sz, err := boot.ParseSize(v)
		if err != nil || sz.Bytes <= 0 {
			return fmt.Errorf("%q: want bytes like 500G (not a percentage), or unlimited", v)
		}
		p.MaxDiskBytes = sz.Bytes
	case "files":
		if !strings.HasPrefix(v, "/") {
			return fmt.Errorf("%q: want the absolute path of a directory of templates", v)
		}
		p.Files = v
	case "menu":
		for _, e := range strings.Split(v, ",") {
			e = strings.TrimSpace(e)
			if !validName(e) {
				return fmt.Errorf("%q: not a profile name", e)
			}
			p.Menu = append(p.Menu, e)
		}
	case "menu-timeout":
		p.MenuTimeout, err = time.ParseDuration(v)
		if err == nil && (p.MenuTimeout < time.Second || p.MenuTimeout > time.Hour) {
			err = errors.New("want 1s to 1h")
		}
	case "menu-default":
		if v != "login" && !validName(v) {
			return fmt.Errorf("%q: want login or a profile of the menu", v)
		}
		p.MenuDefault = v
	case "secure-boot":
		if v != "yes" && v != "no" {
			return fmt.Errorf("%q: want yes or no", v)
		}
		p.SecureBoot = v == "yes"
	case "tpm-first-use":
		if v != "yes" && v != "no" {
			return fmt.Errorf("%q: want yes or no", v)
		}
		p.TPMFirstUse = v == "yes"
	case "fetch-attempts":
		p.FetchAttempts, err = strconv.Atoi(v)
		if err == nil && (p.FetchAttempts < 1 || p.FetchAttempts > 100) {
			err = errors.New("want 1 to 100")
		}
	case "cmdline":
		for _, a := range boot.SplitCmdline(v) {
			if strings.HasPrefix(a.Key, boot.Prefix) {
				return fmt.Errorf("%s: overboot.* arguments come from the profile's other keys", a.Key)
			}
		}
		p.Cmdline = strings.Fields(v)
		for _, a := range p.Cmdline {
			if strings.ContainsAny(a, "\"$") {
				return fmt.Errorf("%q: no quotes or $ in kernel arguments", a)
			}
		}
	default:
		return unknownKey("profile")
	}
	return err
}

func (m *Machine) set(k, v string) error {
	switch k {
	case "profile":
		if !validName(v) {
			return fmt.Errorf("%q: not a profile name", v)
		}
		m.Profile = v
	case "hostname":
		if !validName(v) {
			return fmt.Errorf("%q: want letters, digits, '.', '_' and '-'", v)
		}
		m.Hostname = v
	case "labels":
		ls, err := nameList(v)
		if err != nil {
			return err
		}
		m.Labels = ls
	case "ip":
		if m.MAC == nil {
			// Honouring it would need the client's option 97 (its
			// UUID, which PXE firmware sends, an OS often not) to
			// reserve the address for it: refused, not ignored.
			return errors.New("not in a [machine UUID] section: the DHCP server reserves addresses by MAC, so the address would stay in the pool for anyone; give it in a [machine MAC] section")
		}
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			return fmt.Errorf("%q: want an IPv4 address (a reservation of [server] dhcp)", v)
		}
		m.IP = a
	default:
		return unknownKey("machine")
	}
	return nil
}

func (sn *Subnet) set(k, v string) error {
	if k != "profile" {
		return unknownKey("subnet")
	}
	if !validName(v) {
		return fmt.Errorf("%q: not a profile name", v)
	}
	sn.Profile = v
	return nil
}

func (sl *Select) set(k, v string) error {
	var err error
	switch k {
	case "profile":
		if !validName(v) {
			return fmt.Errorf("%q: not a profile name", v)
		}
		sl.Profile = v
	case "arch":
		sl.Arch, err = nameList(v)
	case "platform":
		sl.Platform, err = nameList(v)
	case "label":
		sl.Label, err = nameList(v)
	case "hostname":
		for _, h := range strings.Split(v, ",") {
			h = strings.ToLower(strings.TrimSpace(h))
			if _, perr := path.Match(h, ""); perr != nil || h == "" || strings.ContainsAny(h, "/ ") {
				return fmt.Errorf("%q: want host name patterns like lab-* (shell patterns, comma-separated)", v)
			}
			sl.Hostname = append(sl.Hostname, h)
		}
	default:
		return unknownKey("select")
	}
	return err
}

// ValidServerName reports whether s can name a server: 1 to 63 of
// [A-Za-z0-9._-], as a host name's label would be.
func ValidServerName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parseMirrors reads the mirrors key: base URLs separated by whitespace,
// each a plain http or https URL (no user information, query or
// fragment: they reach every machine's console), without a trailing
// slash, none twice.
func parseMirrors(v string) ([]string, error) {
	fields := strings.Fields(v)
	if len(fields) == 0 {
		return nil, errors.New("empty: want base URLs like http://10.0.0.2 http://cache.example:8080/overboot")
	}
	ms := make([]string, len(fields))
	for i, f := range fields {
		ms[i] = strings.TrimSuffix(f, "/")
	}
	if err := boot.CheckMirrors("", ms); err != nil {
		return nil, fmt.Errorf("%w: want base URLs like http://10.0.0.2 http://cache.example:8080/overboot", err)
	}
	return ms, nil
}

// parseYesNo reads yes or no.
func parseYesNo(v string) (bool, error) {
	switch v {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, fmt.Errorf("%q: want yes or no", v)
}

// validHostName reports whether s is a DNS host name: labels of letters,
// digits and '-', separated by dots.
func validHostName(s string) bool {
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
