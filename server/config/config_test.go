package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/overboot/overboot/boot"
)

const good = `# lab
[server]
listen = 0.0.0.0:80
data = /srv/overboot
url = http://192.0.2.1

[profile default]
kernel = /boot/vmlinuz
initramfs = overboot-initramfs
root = sha256:` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `
upper-size = 25%
init = /lib/systemd/systemd
onfail = shell
onfail-delay = 10s
fetch-attempts = 4
iscsi-recovery = 5m
cmdline = console=ttyS0 quiet

[machine 52-54-00-AA-BB-CC]
profile = default
hostname = lab-01
`

func TestParseGood(t *testing.T) {
	c, err := Parse("lab.conf", strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Profiles["default"]
	if c.Listen != "0.0.0.0:80" || c.Data != "/srv/overboot" || c.URL != "http://192.0.2.1" {
		t.Errorf("server: %+v", c)
	}
	if p.UpperSize != (boot.Size{Percent: 25}) || p.OnFail != boot.ActionShell || p.OnFailDelay != 10*time.Second || p.FetchAttempts != 4 || p.ISCSIRecovery != 5*time.Minute || strings.Join(p.Cmdline, " ") != "console=ttyS0 quiet" {
		t.Errorf("profile: %+v", p)
	}
	m := c.Machines["52:54:00:aa:bb:cc"]
	if m == nil || m.Hostname != "lab-01" || m.Line != 19 {
		t.Errorf("machine: %+v", m)
	}
	if m.Profile != "default" {
		t.Errorf("machine profile %q", m.Profile)
	}
}

func TestParseSecureBoot(t *testing.T) {
	c, err := Parse("f", strings.NewReader("[server]\ngrub-net = /srv/grubnetx64.efi.signed\n[profile default]\nkernel = k\ninitramfs = i\nroot = r\n[profile sb]\nkernel = k\ninitramfs = i\nroot = r\nsecure-boot = yes\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Profiles["sb"].SecureBoot || c.Profiles["default"].SecureBoot || !c.SecureBoot() {
		t.Errorf("secure-boot: sb %v, default %v, config %v", c.Profiles["sb"].SecureBoot, c.Profiles["default"].SecureBoot, c.SecureBoot())
	}
	if c.Shim != DefaultShim || c.GRUBNet != "/srv/grubnetx64.efi.signed" || c.MokManager != DefaultMokManager {
		t.Errorf("shim %q, grub-net %q, mok-manager %q", c.Shim, c.GRUBNet, c.MokManager)
	}
	for v, want := range map[string]string{"none": "", "/srv/mm.efi": "/srv/mm.efi"} {
		c, err := Parse("f", strings.NewReader("[server]\nmok-manager = "+v+"\n[profile default]\nkernel = k\ninitramfs = i\nroot = r\n"))
		if err != nil || c.MokManager != want {
			t.Errorf("mok-manager = %s: %q %v", v, c.MokManager, err)
		}
	}
	if _, err := Parse("f", strings.NewReader("[server]\nmok-manager = mm.efi\n")); err == nil || !strings.Contains(err.Error(), "f:2") {
		t.Errorf("a relative mok-manager: %v", err)
	}
	c, err = Parse("f", strings.NewReader("[profile default]\nkernel = k\ninitramfs = i\nroot = r\n"))
	if err != nil || c.SecureBoot() {
		t.Errorf("no secure-boot profile: SecureBoot() = %v, %v", c.SecureBoot(), err)
	}
}

func TestParseSelectors(t *testing.T) {
	const prof = "[profile default]\nkernel = k\ninitramfs = i\nroot = r\n[profile lab]\nkernel = k\ninitramfs = i\nroot = r\n"
	c, err := Parse("s.conf", strings.NewReader(prof+`[machine 4C4C4544-0000-1000-8000-000000000001]
profile = lab
[machine 52:54:00:00:00:01]
labels = gpu, Lab2
[subnet 192.0.2.0/24]
profile = lab
[select efi-gpu]
platform = efi
label = gpu
hostname = lab-*, node?
profile = lab
`))
	if err != nil {
		t.Fatal(err)
	}
	if u := c.UUIDs["4c4c4544-0000-1000-8000-000000000001"]; u == nil || u.Profile != "lab" || u.Line != 9 {
		t.Errorf("uuid machine: %+v", u)
	}
	if m := c.Machines["52:54:00:00:00:01"]; m.Profile != "" || strings.Join(m.Labels, ",") != "gpu,lab2" {
		t.Errorf("labels: %+v", m)
	}
	if len(c.Subnets) != 1 || c.Subnets[0].Prefix.String() != "192.0.2.0/24" || c.Subnets[0].Line != 13 {
		t.Errorf("subnets: %+v", c.Subnets)
	}
	if sl := c.Selects[0]; sl.Name != "efi-gpu" || strings.Join(sl.Hostname, ",") != "lab-*,node?" || sl.Line != 15 {
		t.Errorf("select: %+v", sl)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"host bits", "[subnet 192.0.2.1/24]\nprofile = lab\n", "s:9: subnet \"192.0.2.1/24\": want a network"},
		{"subnet without profile", "[subnet 192.0.2.0/24]\n", "s:9: subnet 192.0.2.0/24: no [profile (profile = missing)]"},
		{"select matches all", "[select all]\nprofile = lab\n", "s:9: select all: matches every machine"},
		{"select bad pattern", "[select x]\nhostname = [\n", "s:10: hostname:"},
		{"select unknown key", "[select x]\nmac = 1\n", "s:10: mac: unknown key in [select]"},
		{"uuid twice", "[machine 4c4c4544-0000-1000-8000-000000000001]\n[machine 4C4C4544-0000-1000-8000-000000000001]\n", "s:10: machine 4c4c4544-0000-1000-8000-000000000001 again"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse("s", strings.NewReader(prof+tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse("x", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.Data != DefaultData {
		t.Errorf("defaults: %+v", c)
	}
}

// TestQuotasAndRetention: quotas have defaults and can be unlimited;
// the [server] retention keys take days.
func TestQuotasAndRetention(t *testing.T) {
	c, err := Parse("f", strings.NewReader("[server]\nname = rack-1.a_b\nstatus = public\npending-ttl = 2d\nforget-after = never\n"+
		"[profile default]\nkernel = k\ninitramfs = i\nroot = r\n"+
		"[profile big]\nkernel = k\ninitramfs = i\nroot = r\nmax-machines = unlimited\nmax-disks = 7\nmax-disk-bytes = unlimited\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "rack-1.a_b" {
		t.Errorf("name %q", c.Name)
	}
	if c.Status != StatusPublic || c.PendingTTL != 48*time.Hour || c.ForgetAfter != Never {
		t.Errorf("server: %q %v %v", c.Status, c.PendingTTL, c.ForgetAfter)
	}
	d, b := c.Profiles["default"], c.Profiles["big"]
	if d.MachinesQuota() != DefaultMaxMachines || d.DisksQuota() != DefaultMaxDisks || d.DiskBytesQuota() != 0 {
		t.Errorf("default quotas: %d %d %d", d.MachinesQuota(), d.DisksQuota(), d.DiskBytesQuota())
	}
	if b.MachinesQuota() != 0 || b.DisksQuota() != 7 || b.DiskBytesQuota() != 0 {
		t.Errorf("big quotas: %d %d %d", b.MachinesQuota(), b.DisksQuota(), b.DiskBytesQuota())
	}
}

func TestParseErrors(t *testing.T) {
	const prof = "[profile default]\nkernel = k\ninitramfs = i\nroot = r\n"
	for _, tc := range []struct{ name, in, want string }{
		{"key outside section", "listen = x\n", "f:1: listen outside a section"},
		{"unknown section", "[servers]\n", "f:1: unknown section [servers]"},
		{"unterminated section", "[server\n", "f:1: section header"},
		{"unknown key", "[server]\nport = 80\n", "f:2: port: unknown key in [server]"},
		{"duplicate key", "[server]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\n", "f:3: listen set again (first at line 2)"},
		{"duplicate section", "[server]\n[server]\n", "f:2: section [server] again"},
		{"bad listen", "[server]\nlisten = 8080\n", "f:2: listen: \"8080\": want host:port"},
		{"comment is not a value", "[server]\nlisten = # nothing\n", "f:2: listen: \"\": want host:port"},
		{"bad url", "[server]\nurl = ftp://x\n", "f:2: url:"},
		{"password in store", "[server]\nstore = postgres://ob:s3cret@db/ob\n", "f:2: store: postgres://ob:xxxxx@db/ob: the connection string has a password in it: put it in a file (store-password-file"},
		{"password in store's query", "[server]\nstore = postgres://ob@db/ob?password=s3cret\n", "f:2: store: postgres://ob@db/ob?password=xxxxx: the connection string has a password"},
		{"password in store's keywords", "[server]\nstore = host=db password=s3cret\n", "f:2: store: host=db password=xxxxx: the connection string has a password"},
		{"store not postgres", "[server]\nstore = /var/lib/x.db\n", "f:2: store: \"/var/lib/x.db\": want postgres://"},
		{"store password file relative", "[server]\nstore = postgres://ob@db/ob\nstore-password-file = pw\n", "f:3: store-password-file: \"pw\": want the absolute path"},
		{"store password file without store", "[server]\nstore-password-file = /etc/overboot/pg\n", "store-password-file without store"},
		{"no equals", "[server]\nlisten\n", "f:2: \"listen\": want key = value"},
		{"bad size", prof + "upper-size = lots\n", "f:5: upper-size:"},
		{"kernel = image with a root path", "[profile default]\nkernel = image\nroot = /srv/root.sqfs\n", "f:2: profile default: kernel = image takes the kernel published with the root image: root /srv/root.sqfs must be a store name"},
		{"kernel = image with a root digest", "[profile default]\nkernel = image\nroot = sha256:" + strings.Repeat("a", 64) + "\n", "must be a store name"},
		{"initramfs = image alone", "[profile default]\nkernel = k\ninitramfs = image\nroot = r\n", "f:2: profile default: initramfs = image goes with kernel = image"},
		{"root = image", "[profile default]\nkernel = image\nroot = image\n", "root = image: the root is the image"},
		{"bad action", prof + "onfail = explode\n", "f:5: onfail:"},
		{"bad delay", prof + "onfail-delay = soon\n", "f:5: onfail-delay:"},
		{"bad attempts", prof + "fetch-attempts = 0\n", "f:5: fetch-attempts: want 1 to 100"},
		{"bad iscsi recovery", prof + "iscsi-recovery = 1500ms\n", "f:5: iscsi-recovery: \"1500ms\": want whole seconds"},
		{"overboot in cmdline", prof + "cmdline = quiet overboot.lower=x\n", "f:5: cmdline: overboot.lower"},
		{"bad digest", "[profile p]\nroot = sha256:xyz\n", "f:2: root:"},
		{"relative init", prof + "init = sbin/init\n", "f:5: init:"},
		{"missing artifacts", "[profile p]\nkernel = k\n", "f:1: profile p: missing initramfs, root"},
		{"bad mac", "[machine zz]\n", "f:1: machine \"zz\": want a MAC address like 52:54:00:12:34:56 or an SMBIOS UUID"},
		{"machine without profile", "[machine 52:54:00:00:00:01]\nprofile = nope\n", "f:2: machine 52:54:00:00:00:01: no [profile nope]"},
		{"duplicate machine", prof + "[machine 52:54:00:00:00:01]\n[machine 52-54-00-00-00-01]\n", "f:6: machine 52:54:00:00:00:01 again (first at line 5)"},
		{"control character", "[server]\nlisten = 127.0.0.1:1\x01\n", "f:2: control"},
		{"bad profile name", "[profile a/b]\n", "f:1: profile name"},
		{"relative sanboot", "[profile p]\nsanboot = disk.img\n", "f:2: sanboot: \"disk.img\": want the absolute path"},
		{"sanboot with kernel", "[profile p]\nsanboot = /srv/disk.img\nkernel = k\ncmdline = quiet\n", "f:3: profile p: sanboot boots a whole disk; kernel, cmdline do not apply"},
		{"secure-boot maybe", prof + "secure-boot = maybe\n", "f:5: secure-boot: \"maybe\": want yes or no"},
		{"secure-boot sanboot", "[profile p]\nsanboot = /srv/disk.img\nenroll = approve\nsecure-boot = yes\n", "f:4: profile p: sanboot needs iPXE, which is unsigned"},
		{"relative shim", "[server]\nshim = shimx64.efi\n", "f:2: shim: \"shimx64.efi\": want the absolute path"},
		{"iscsi login timeout", "[server]\niscsi-login-timeout = 0s\n", "f:2: iscsi-login-timeout: \"0s\": want a duration from 1s to 5m"},
		{"iscsi cap", "[server]\niscsi-max-per-address = none\n", "f:2: iscsi-max-per-address:"},
		{"private disk open", prof + "upper = iscsi\n", "f:5: profile default: upper = iscsi gives each machine a private disk, and enroll = open would hand it to anyone"},
		{"sanboot open", "[profile p]\nsanboot = /srv/disk.img\n", "f:2: profile p: sanboot gives each machine a private disk"},
		{"bad enroll", prof + "enroll = maybe\n", "f:5: enroll: \"maybe\": want open, open-insecure, approve, login or tpm"},
		{"tpm without secure boot", prof + "enroll = tpm\n", "f:5: profile default: enroll = tpm needs secure-boot = yes: only the Secure Boot path"},
		{"tpm-first-use without tpm", prof + "enroll = approve\ntpm-first-use = yes\n", "f:6: profile default: tpm-first-use applies to enroll = tpm only"},
		{"tpm-first-use maybe", prof + "tpm-first-use = maybe\n", "f:5: tpm-first-use: \"maybe\": want yes or no"},
		{"bad quota", prof + "max-disks = -1\n", "f:5: max-disks: \"-1\": want a positive count, or unlimited"},
		{"percent disk bytes", prof + "max-disk-bytes = 50%\n", "f:5: max-disk-bytes:"},
		{"bad status", "[server]\nstatus = open\n", "f:2: status: \"open\": want token"},
		{"bad server name", "[server]\nname = a/b\n", "f:2: name: \"a/b\": want 1 to 63 letters"},
		{"bad pending-ttl", "[server]\npending-ttl = 1s\n", "f:2: pending-ttl: \"1s\": want a duration from 1m to 365d"},
		{"bad forget-after", "[server]\nforget-after = soon\n", "f:2: forget-after: \"soon\": want a duration from 1h to 3650d"},
		{"menu unknown profile", prof + "menu = nope\n", "f:5: profile default: menu entry nope: no [profile nope]"},
		{"menu self", prof + "menu = default\n", "a profile cannot be its own entry"},
		{"menu nests", prof + "menu = b\n[profile b]\nkernel = k\ninitramfs = i\nroot = r\nenroll = login\n", "menu entry b has a menu itself"},
		{"menu default not an item", prof + "enroll = login\nmenu-default = other\n", "menu-default other is not an item of its menu"},
		{"menu timeout without menu", prof + "menu-timeout = 5s\n", "need a menu"},
		{"menu timeout range", prof + "enroll = login\nmenu-timeout = 2h\n", "f:6: menu-timeout: want 1s to 1h"},
		{"bad login", prof + "enroll = login\nlogin = form\n", "f:6: login: \"form\": want ipxe or console"},
		{"login without enroll login", prof + "enroll = approve\nlogin = console\n", "f:6: profile default: login = console needs enroll = login"},
		{"console login sanboot", "[profile p]\nsanboot = /srv/disk.img\nenroll = login\nlogin = console\n", "f:4: profile p: login = console asks in the agent, which a sanboot does not run"},
		{"long line", "[server]\n" + strings.Repeat("x", 5000) + "\n", "f:2: line longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f", strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(good)
	f.Add("[server]\nlisten = :1\n[profile default]\nkernel=a\ninitramfs=b\nroot=c\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse("fuzz", strings.NewReader(s))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, p := range c.Profiles {
			if p.Sanboot != "" {
				if p.Kernel != "" || p.Root != "" || p.Upper != "" {
					t.Fatalf("accepted a sanboot profile with a kernel, root or upper: %+v", p)
				}
				continue
			}
			if p.Kernel == "" || p.Initramfs == "" || p.Root == "" {
				t.Fatalf("accepted a profile without artifacts: %+v", p)
			}
		}
	})
}

func TestExampleConfig(t *testing.T) {
	c, err := Load("../../testdata/overboot.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Profiles) != 5 || len(c.Machines) != 4 || len(c.UUIDs) != 1 || len(c.Subnets) != 1 || len(c.Selects) != 1 || c.Profiles["kiosk"].UpperSize.String() != "256M" ||
		c.Profiles["workstation"].Upper != "iscsi" || c.Profiles["windows"].Sanboot == "" {
		t.Errorf("%+v", c)
	}
	cl := c.Profiles["classroom"]
	if cl.Policy() != EnrollLogin || !cl.HasMenu() || strings.Join(cl.Menu, ",") != "default,kiosk" || cl.MenuTimeout != 15*time.Second || cl.MenuDefault != "login" || cl.MaxDisks != 500 {
		t.Errorf("classroom: %+v", cl)
	}
	if w := c.Profiles["workstation"]; w.Policy() != EnrollApprove || w.MaxMachines != 200 || w.MaxDiskBytes != 2<<40 {
		t.Errorf("workstation: %+v", w)
	}
	if c.Profiles["default"].Policy() != EnrollOpen {
		t.Errorf("default policy: %v", c.Profiles["default"].Policy())
	}
}

func TestParseDHCP(t *testing.T) {
	c, err := Parse("d", strings.NewReader("[server]\nurl = http://192.0.2.1\ndhcp = br0\ndhcp-range = 192.0.2.50-192.0.2.59\ndhcp-dns = 192.0.2.1, 192.0.2.2\ndhcp-lease = 2h\nproxy-dhcp = eth0\n[machine 52:54:00:00:00:01]\nip = 192.0.2.40\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DHCP != "br0" || c.DHCPStart.String() != "192.0.2.50" || c.DHCPEnd.String() != "192.0.2.59" || len(c.DHCPDNS) != 2 || c.DHCPLease != 2*time.Hour || c.ProxyDHCP != "eth0" {
		t.Errorf("%+v", c)
	}
	if c.Machines["52:54:00:00:00:01"].IP.String() != "192.0.2.40" {
		t.Errorf("reservation: %+v", c.Machines["52:54:00:00:00:01"])
	}
	for _, tc := range []struct{ in, want string }{
		{"[server]\nurl = http://h\ndhcp = br0\nproxy-dhcp = br0\ndhcp-range = 192.0.2.1-192.0.2.2\n", "one or the other"},
		{"[server]\nurl = http://h\ndhcp = br0\n", "dhcp needs url and dhcp-range"},
		{"[server]\ndhcp-range = 192.0.2.1-192.0.2.2\n", "need dhcp = IFACE"},
		{"[server]\ndhcp-range = 192.0.2.9-192.0.2.2\n", "d:2: dhcp-range:"},
		{"[server]\nproxy-dhcp = eth0\n", "proxy-dhcp needs url"},
		{"[machine 52:54:00:00:00:01]\nip = fe80::1\n", "d:2: ip:"},
	} {
		if _, err := Parse("d", strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestParseQuietRA(t *testing.T) {
	c, err := Parse("d", strings.NewReader("[server]\nquiet-ra = br0\n"))
	if err != nil || c.QuietRA != "br0" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestParseDHCPv6(t *testing.T) {
	c, err := Parse("d", strings.NewReader("[server]\nurl6 = http://[2001:db8::1]\ndhcpv6 = br0\ndhcpv6-range = 2001:db8::100-2001:db8::1ff\ndhcpv6-lease = 2h\ndhcpv6-dns = 2001:db8::1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DHCPv6 != "br0" || c.DHCPv6Start.String() != "2001:db8::100" || c.DHCPv6End.String() != "2001:db8::1ff" || c.DHCPv6Lease != 2*time.Hour || len(c.DHCPv6DNS) != 1 || c.URL6 != "http://[2001:db8::1]" {
		t.Errorf("%+v", c)
	}
	for _, tc := range []struct{ in, want string }{
		{"[server]\ndhcpv6 = br0\n", "dhcpv6 needs dhcpv6-range"},
		{"[server]\ndhcpv6-range = 2001:db8::1-2001:db8::2\n", "need dhcpv6 = IFACE"},
		{"[server]\ndhcpv6-range = 192.0.2.1-192.0.2.2\n", "d:2: dhcpv6-range:"},
		{"[server]\nurl6 = http://192.0.2.1\n", "d:2: url6:"},
		{"[server]\nurl6 = http://[2001:db8::1]\ndhcpv6 = br0\ndhcpv6-range = 2001:db8::100-2001:db8::1ff\nquiet-ra = br0\n", "quiet-ra and dhcpv6 on the same interface br0"},
		{"[server]\nquiet-ra = eth 0\n", "d:2: quiet-ra:"},
	} {
		if _, err := Parse("d", strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestDHCPListsRefused: DNS lists of the wrong family and lease times out
// of range are errors naming the file, the line and the value.
func TestDHCPListsRefused(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"dhcp-dns = 192.0.2.1, 2001:db8::1", `"192.0.2.1, 2001:db8::1": want IPv4 addresses`},
		{"dhcpv6-dns = 2001:db8::1,192.0.2.1", `"2001:db8::1,192.0.2.1": want IPv6 addresses`},
		{"dhcpv6-dns = ::ffff:192.0.2.1", "want IPv6 addresses"},
		{"dhcp-lease = 30s", `"30s": want a duration from 1m to 720h`},
		{"dhcpv6-lease = 1000h", `"1000h": want a duration from 1m to 720h`},
	} {
		_, err := Parse("d", strings.NewReader("[server]\n"+tc.line+"\n"))
		if err == nil || !strings.Contains(err.Error(), "d:2") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.line, err)
		}
	}
}

// TestParseUUIDMachineNoIP: ip = in a [machine UUID] section is refused
// at its line: the DHCP server reserves addresses by MAC (chaddr), so the
// address would stay in the pool for anyone.
func TestParseUUIDMachineNoIP(t *testing.T) {
	_, err := Parse("d", strings.NewReader("[server]\nurl = http://192.0.2.1\ndhcp = br0\ndhcp-range = 192.0.2.50-192.0.2.59\n[machine 4C4C4544-0042-3510-8052-B4C04F4E4E31]\nhostname = n1\nip = 192.0.2.40\n"))
	if err == nil || !strings.Contains(err.Error(), "d:7: ip: ") || !strings.Contains(err.Error(), "[machine MAC]") {
		t.Errorf("Parse = %v, want d:7: ip: refused, naming [machine MAC]", err)
	}
}

// TestParsePeers: peers and origin are base URLs, in the order written;
// Sources lists the peers, then the origin; a URL with a query,
// credentials or another scheme is refused naming the line.
func TestParsePeers(t *testing.T) {
	c, err := Parse("d", strings.NewReader("[server]\npeers = http://192.0.2.2:8080/, http://192.0.2.3 https://192.0.2.4/overboot\norigin = http://192.0.2.9/mirror/\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://192.0.2.2:8080", "http://192.0.2.3", "https://192.0.2.4/overboot", "http://192.0.2.9/mirror"}
	if d := cmp.Diff(want, c.Sources()); d != "" {
		t.Errorf("sources (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want[:3], c.Peers); d != "" {
		t.Errorf("peers (-want +got):\n%s", d)
	}
	if c, _ := Parse("d", strings.NewReader("[server]\n")); len(c.Sources()) != 0 {
		t.Errorf("sources without peers: %v", c.Sources())
	}
	for _, tc := range []struct{ line, want string }{
		{"peers = ftp://192.0.2.2", `"ftp://192.0.2.2": want a base URL`},
		{"peers = http://192.0.2.2 http://user:secret@192.0.2.3", "want a base URL"},
		{"peers = ,", "empty"},
		{"origin = http://192.0.2.2/?x=1", "want a base URL"},
		{"origin = 192.0.2.2", "want a base URL"},
	} {
		_, err := Parse("d", strings.NewReader("[server]\n"+tc.line+"\n"))
		if err == nil || !strings.Contains(err.Error(), "d:2") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.line, err)
		}
	}
}

// TestParseStore: a PostgreSQL store and its password file are read as
// given; no store is SQLite in the data directory.
func TestParseStore(t *testing.T) {
	c, err := Parse("s", strings.NewReader("[server]\nstore = postgres://overboot@db.example/overboot?sslmode=verify-full\nstore-password-file = /etc/overboot/pg-password\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store != "postgres://overboot@db.example/overboot?sslmode=verify-full" || c.StorePasswordFile != "/etc/overboot/pg-password" {
		t.Errorf("store %q, password file %q", c.Store, c.StorePasswordFile)
	}
	c, err = Parse("s", strings.NewReader("[server]\nstore = host=/run/postgresql dbname=overboot\n"))
	if err != nil || c.Store != "host=/run/postgresql dbname=overboot" {
		t.Errorf("keyword/value store: %+v %v", c, err)
	}
	if c, err := Parse("s", strings.NewReader("[server]\n")); err != nil || c.Store != "" {
		t.Errorf("no store: %q %v", c.Store, err)
	}
}

// TestParseMirrors: mirrors are base URLs in the order given, without
// their trailing slash; anything that is not a plain http(s) URL, a
// repeat, this server's own url or more than boot.MaxMirrors is refused
// at its line.
func TestParseMirrors(t *testing.T) {
	c, err := Parse("d", strings.NewReader("[server]\nurl = http://192.0.2.1\nmirrors = http://192.0.2.2:8080/  https://cache.example/overboot\ncache = http://192.0.2.9:3128/\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache != "http://192.0.2.9:3128" {
		t.Errorf("cache %q", c.Cache)
	}
	if got, want := strings.Join(c.Mirrors, " "), "http://192.0.2.2:8080 https://cache.example/overboot"; got != want {
		t.Errorf("mirrors %q, want %q", got, want)
	}
	for _, tc := range []struct{ lines, want string }{
		{"mirrors = ftp://192.0.2.2", "d:2: mirrors:"},
		{"mirrors = http://u:secret@192.0.2.2", "no user information"},
		{"mirrors = http://192.0.2.2/?k=v", "query"},
		{"mirrors = http://192.0.2.2 http://192.0.2.2/", "given twice"},
		{"mirrors = http://a http://b http://c http://d http://e http://f http://g http://h", "at most 7"},
		{"url = http://192.0.2.1\nmirrors = http://192.0.2.1", "this server's url"},
		{"cache = http://192.0.2.1 http://192.0.2.2", "want one base URL"},
		{"cache = http://u:p@192.0.2.1", "no user information"},
		{"url = http://192.0.2.1\ncache = http://192.0.2.1", "cache: http://192.0.2.1 is also this server's url"},
	} {
		_, err := Parse("d", strings.NewReader("[server]\n"+tc.lines+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.lines, err, tc.want)
		}
	}
}

// TestParseTLS: the tls-* keys, the names the site CA's certificate is
// for, and their errors at the key's line.
func TestParseTLS(t *testing.T) {
	c, err := Parse("t", strings.NewReader("[server]\nurl = http://boot.example:8080\ntls-listen = 0.0.0.0:8443\ntls-names = 192.0.2.1, boot.example alias.example\n[profile default]\nkernel = k\ninitramfs = i\nroot = r\nlower-tls = yes\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.TLSListen != "0.0.0.0:8443" || !c.Profiles["default"].LowerTLS {
		t.Errorf("tls-listen %q, lower-tls %v", c.TLSListen, c.Profiles["default"].LowerTLS)
	}
	if got, want := strings.Join(c.CertNames(), " "), "boot.example 192.0.2.1 alias.example"; got != want {
		t.Errorf("certificate names %q, want %q", got, want)
	}
	c, err = Parse("t", strings.NewReader("[server]\ntls-listen = :8443\ntls-url = https://b.example/\ntls-cert = /etc/overboot/tls.pem\ntls-key = /etc/overboot/tls.key\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.TLSURL != "https://b.example" || c.TLSCert != "/etc/overboot/tls.pem" || c.TLSKey != "/etc/overboot/tls.key" {
		t.Errorf("%q %q %q", c.TLSURL, c.TLSCert, c.TLSKey)
	}
	const prof = "[profile p]\nkernel = k\ninitramfs = i\nroot = r\n"
	for _, tc := range []struct{ in, want string }{
		{"[server]\ntls-listen = 8443\n", "t:2: tls-listen: \"8443\": want host:port"},
		{"[server]\ntls-listen = :8443\ntls-url = http://b.example\n", "t:3: tls-url: \"http://b.example\": want https://"},
		{"[server]\ntls-listen = :8443\ntls-cert = cert.pem\n", "t:3: tls-cert: \"cert.pem\": want the absolute path"},
		{"[server]\nurl = http://b\ntls-listen = :8443\ntls-cert = /c.pem\n", "t:4: tls-cert and tls-key go together"},
		{"[server]\nurl = http://b\ntls-listen = :8443\n\ntls-key = /c.key\n", "t:5: tls-cert and tls-key go together"},
		{"[server]\ntls-cert = /c.pem\ntls-key = /c.key\n", "t:2: tls-cert without tls-listen"},
		{"[server]\ntls-names = b.example\n", "t:2: tls-names without tls-listen"},
		{"[server]\ntls-listen = :8443\ntls-names = bad_name!\n", "t:3: tls-names: \"bad_name!\": want host names or IP addresses"},
		{"[server]\ntls-listen = :8443\n", "t:2: tls-listen with the site CA needs the names"},
		{"[server]\nlisten = :80\ntls-listen = :80\ntls-names = b\n", "t:3: tls-listen :80 is also listen"},
		{"[server]\n" + prof + "lower-tls = yes\n", "t:6: profile p: lower-tls = yes needs tls-listen"},
		{"[server]\n" + prof + "lower-tls = sure\n", "t:6: lower-tls: \"sure\": want yes or no"},
	} {
		_, err := Parse("t", strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestEnrollTPM(t *testing.T) {
	c, err := Parse("f", strings.NewReader("[profile default]\nkernel = k\ninitramfs = i\nroot = r\nsecure-boot = yes\nenroll = tpm\ntpm-first-use = yes\n[profile b]\nkernel = k\ninitramfs = i\nroot = r\nsecure-boot = yes\nenroll = tpm\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Profiles["default"]; p.Policy() != EnrollTPM || !p.TPMFirstUse {
		t.Errorf("default: policy %s, first use %v", p.Policy(), p.TPMFirstUse)
	}
	if p := c.Profiles["b"]; p.Policy() != EnrollTPM || p.TPMFirstUse {
		t.Errorf("b: policy %s, first use %v (default no)", p.Policy(), p.TPMFirstUse)
	}
}

// TestProfileLogin: login = console is read, the default is iPXE's form.
func TestProfileLogin(t *testing.T) {
	const prof = "[profile a]\nkernel = k\ninitramfs = i\nroot = r\nenroll = login\nlogin = console\n[profile b]\nkernel = k\ninitramfs = i\nroot = r\nenroll = login\n[profile c]\nkernel = k\ninitramfs = i\nroot = r\nenroll = login\nlogin = ipxe\n"
	c, err := Parse("f", strings.NewReader(prof))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"a": true, "b": false, "c": false} {
		if got := c.Profiles[name].ConsoleLogin(); got != want {
			t.Errorf("profile %s: ConsoleLogin() = %v, want %v", name, got, want)
		}
	}
}

// TestKernelImage: kernel = image alone brings the image's initramfs; an
// explicit initramfs stays.
func TestKernelImage(t *testing.T) {
	c, err := Parse("f", strings.NewReader("[profile default]\nkernel = image\nroot = node\n[profile mine]\nkernel = image\ninitramfs = custom\nroot = node\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Profiles["default"]; p.Kernel != ImageRef || p.Initramfs != ImageRef {
		t.Errorf("default: kernel %q initramfs %q", p.Kernel, p.Initramfs)
	}
	if p := c.Profiles["mine"]; p.Initramfs != "custom" {
		t.Errorf("mine: initramfs %q", p.Initramfs)
	}
}
