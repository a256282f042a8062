package boot

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testDigest = Digest("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		want    Params
	}{
		{
			name:    "static minimal",
			cmdline: "console=ttyS0 overboot.lower=http://10.0.2.100/img overboot.digest=" + string(testDigest) + " quiet",
			want:    Params{Lower: "http://10.0.2.100/img", Digest: testDigest},
		},
		{
			name: "static everything",
			cmdline: "overboot.lower=http://h/i overboot.digest=" + string(testDigest) +
				" overboot.size=1234 overboot.upper.size=512M overboot.init=/lib/systemd/systemd" +
				" overboot.iface=eth1 overboot.link.timeout=3s overboot.dhcp.timeout=2s overboot.dhcp.attempts=9" +
				" overboot.fetch.timeout=1m overboot.fetch.attempts=2 overboot.modules=e1000,igb" +
				" overboot.onfail=shell overboot.onfail.delay=5s overboot.iscsi.recovery=5m",
			want: Params{
				Lower: "http://h/i", Digest: testDigest, Size: 1234, UpperSize: Size{Bytes: 512 << 20},
				Init: "/lib/systemd/systemd", Iface: "eth1", LinkTimeout: 3 * time.Second,
				DHCPTimeout: 2 * time.Second, DHCPAttempts: 9, FetchTimeout: time.Minute, FetchAttempts: 2,
				Modules: []string{"e1000", "igb"}, OnFail: ActionShell, FailDelay: 5 * time.Second,
				ISCSIRecovery: 5 * time.Minute,
			},
		},
		{
			name:    "document mode",
			cmdline: "overboot.doc=http://10.0.2.100/doc/abc overboot.onfail=reboot overboot.upper.size=25%x=1",
			want:    Params{},
		},
		{
			name:    "disk mode",
			cmdline: "root=/dev/nfs overboot.root=ibft:2 overboot.init=/bin/sh overboot.onfail=shell",
			want:    Params{Root: Root{Partition: 2}, Init: "/bin/sh", OnFail: ActionShell},
		},
		{
			name:    "static with report",
			cmdline: "overboot.lower=http://h/i overboot.digest=" + string(testDigest) + " overboot.report=http://10.0.2.100/report/tok123",
			want:    Params{Lower: "http://h/i", Digest: testDigest, Report: "http://10.0.2.100/report/tok123"},
		},
		{
			name:    "attested",
			cmdline: "overboot.attest=http://s/attest/abc overboot.report=http://s/report/r",
			want:    Params{Attest: "http://s/attest/abc", Report: "http://s/report/r"},
		},
		{
			name:    "document with report",
			cmdline: "overboot.report=https://s:8443/report/tok?x=1 overboot.doc=http://s/doc/abc",
			want:    Params{Doc: "http://s/doc/abc", Report: "https://s:8443/report/tok?x=1"},
		},
		{
			name:    "console login",
			cmdline: "console=ttyS0 overboot.login=https://s:8443/login/0123abcd overboot.onfail=poweroff",
			want:    Params{Login: "https://s:8443/login/0123abcd", OnFail: ActionPoweroff},
		},
		{
			name:    "disk with report",
			cmdline: "overboot.root=ibft:1 overboot.report=http://s/report/t",
			want:    Params{Root: Root{Partition: 1}, Report: "http://s/report/t"},
		},
		{
			name:    "quoted value",
			cmdline: `overboot.doc="http://10.0.2.100/doc/abc"`,
			want:    Params{Doc: "http://10.0.2.100/doc/abc"},
		},
		{
			name:    "after -- belongs to init",
			cmdline: "overboot.doc=http://h/d -- overboot.bogus=1",
			want:    Params{Doc: "http://h/d"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.cmdline)
			if tt.name == "document mode" {
				// upper.size=25%x=1 is malformed: the value is "25%x=1".
				if err == nil || !strings.Contains(err.Error(), "overboot.upper.size") {
					t.Fatalf("Parse(%q) error = %v, want one naming overboot.upper.size", tt.cmdline, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.cmdline, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.cmdline, diff)
			}
			again, err := Parse(got.Format())
			if err != nil {
				t.Fatalf("Parse(Format()) = %v; Format() = %q", err, got.Format())
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	d := " overboot.digest=" + string(testDigest)
	tests := []struct {
		name    string
		cmdline string
		key     string // the error must name this key
		want    string // and contain this
	}{
		{"unknown key", "overboot.lower=http://h/i" + d + " overboot.lowr=x", "overboot.lowr", "unknown parameter"},
		{"no value", "overboot.lower=http://h/i" + d + " overboot.init", "overboot.init", "needs a value"},
		{"empty value", "overboot.lower=http://h/i" + d + " overboot.init=", "overboot.init", "needs a value"},
		{"twice", "overboot.lower=http://h/i" + d + " overboot.init=/a overboot.init=/b", "overboot.init", "more than once"},
		{"bad duration", "overboot.lower=http://h/i" + d + " overboot.dhcp.timeout=10", "overboot.dhcp.timeout", "duration"},
		{"recovery in milliseconds", "overboot.doc=http://h/d overboot.iscsi.recovery=1500ms", "overboot.iscsi.recovery", "whole seconds"},
		{"recovery over a day", "overboot.doc=http://h/d overboot.iscsi.recovery=25h", "overboot.iscsi.recovery", "up to 24h"},
		{"recovery zero", "overboot.doc=http://h/d overboot.iscsi.recovery=0s", "overboot.iscsi.recovery", "positive"},
		{"tiny lower cache", "overboot.lower=http://h/i" + d + " overboot.lower.cache=512K", "overboot.lower.cache", "at least 4M"},
		{"negative duration", "overboot.lower=http://h/i" + d + " overboot.dhcp.timeout=-1s", "overboot.dhcp.timeout", "positive"},
		{"zero attempts", "overboot.lower=http://h/i" + d + " overboot.fetch.attempts=0", "overboot.fetch.attempts", "positive"},
		{"bad url scheme", "overboot.lower=ftp://h/i" + d, "overboot.lower", "http"},
		{"url without host", "overboot.lower=http:///i" + d, "overboot.lower", "no host"},
		{"uppercase digest", "overboot.lower=http://h/i overboot.digest=" + strings.ToUpper(string(testDigest)), "overboot.digest", "sha256"},
		{"short digest", "overboot.lower=http://h/i overboot.digest=sha256:abc", "overboot.digest", "64 hex"},
		{"missing digest", "overboot.lower=http://h/i", "overboot.digest", "missing"},
		{"missing everything", "console=ttyS0", "overboot.lower", "missing"},
		{"doc and lower", "overboot.doc=http://h/d overboot.lower=http://h/i" + d, "overboot.lower", "cannot be combined"},
		{"doc and init", "overboot.doc=http://h/d overboot.init=/sbin/init", "overboot.init", "cannot be combined"},
		{"doc and attest", "overboot.doc=http://h/d overboot.attest=http://h/a", "overboot.attest", "cannot be combined"},
		{"attest and lower", "overboot.attest=http://h/a overboot.lower=http://h/i" + d, "overboot.lower", "cannot be combined with overboot.attest"},
		{"attest and size", "overboot.attest=http://h/a overboot.size=4096", "overboot.size", "cannot be combined with overboot.attest"},
		{"attest and root", "overboot.attest=http://h/a overboot.root=ibft:1", "overboot.attest", "cannot be combined with overboot.root"},
		{"attest not a url", "overboot.attest=h/a", "overboot.attest", "http"},
		{"login and doc", "overboot.doc=http://h/d overboot.login=http://h/login/t", "overboot.login", "cannot be combined with overboot.doc"},
		{"login and lower", "overboot.login=http://h/login/t overboot.lower=http://h/i" + d, "overboot.lower", "cannot be combined with overboot.login"},
		{"login and init", "overboot.login=http://h/login/t overboot.init=/sbin/init", "overboot.init", "cannot be combined with overboot.login"},
		{"login and lower mode", "overboot.login=http://h/login/t overboot.lower.mode=lazy", "overboot.lower.mode", "cannot be combined with overboot.login"},
		{"login and root", "overboot.root=ibft:1 overboot.login=http://h/login/t", "overboot.login", "cannot be combined with overboot.root"},
		{"login not http", "overboot.login=ftp://h/login/t", "overboot.login", "http"},
		{"login without host", "overboot.login=http:///login/t", "overboot.login", "no host"},
		{"login twice", "overboot.login=http://h/login/a overboot.login=http://h/login/b", "overboot.login", "more than once"},
		{"login empty", "overboot.login=", "overboot.login", "needs a value"},
		{"relative init", "overboot.lower=http://h/i" + d + " overboot.init=sbin/init", "overboot.init", "absolute"},
		{"bad onfail", "overboot.lower=http://h/i" + d + " overboot.onfail=panic", "overboot.onfail", "reboot, shell or poweroff"},
		{"bad size", "overboot.lower=http://h/i" + d + " overboot.upper.size=lots", "overboot.upper.size", "size"},
		{"bad percent", "overboot.lower=http://h/i" + d + " overboot.upper.size=150%", "overboot.upper.size", "1%..100%"},
		{"bad module", "overboot.lower=http://h/i" + d + " overboot.modules=a,,b", "overboot.modules", "comma-separated"},
		{"root not ibft", "overboot.root=/dev/sda1", "overboot.root", "want ibft:N"},
		{"root partition 0", "overboot.root=ibft:0", "overboot.root", "1 to 128"},
		{"root partition 02", "overboot.root=ibft:02", "overboot.root", "1 to 128"},
		{"root and doc", "overboot.root=ibft:1 overboot.doc=http://h/d", "overboot.doc", "cannot be combined with overboot.root"},
		{"root and lower", "overboot.root=ibft:1 overboot.lower=http://h/i" + d, "overboot.lower", "cannot be combined with overboot.root"},
		{"report not http", "overboot.doc=http://h/d overboot.report=ftp://h/r", "overboot.report", "http"},
		{"report without host", "overboot.doc=http://h/d overboot.report=http:///r", "overboot.report", "no host"},
		{"report empty", "overboot.doc=http://h/d overboot.report=", "overboot.report", "needs a value"},
		{"report twice", "overboot.doc=http://h/d overboot.report=http://h/a overboot.report=http://h/b", "overboot.report", "more than once"},
		{"bad iface", "overboot.lower=http://h/i" + d + " overboot.iface=a/b", "overboot.iface", "interface"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.cmdline)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want an error", tt.cmdline)
			}
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %v is not a *ParamError", tt.cmdline, err)
			}
			if !strings.Contains(err.Error(), tt.key+":") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error = %q, want it to name %s and say %q", tt.cmdline, err, tt.key, tt.want)
			}
		})
	}
}

func TestParseUnknownKeyIsSentinel(t *testing.T) {
	_, err := Parse("overboot.doc=http://h/d overboot.nope=1")
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("error %v does not wrap ErrUnknownKey", err)
	}
}

func TestValidateRefusesUnsafeValues(t *testing.T) {
	for _, p := range []Params{
		{Lower: "http://h/a b", Digest: testDigest},
		{Lower: "http://h/${x}", Digest: testDigest},
		{Lower: "http://h/i", Digest: testDigest, Init: "/sbin/in\"it"},
		{Lower: "http://h/i", Digest: testDigest, DHCPAttempts: -1},
		{Lower: "http://h/i", Digest: testDigest, FailDelay: -time.Second},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", p)
		}
	}
}

func TestReportURL(t *testing.T) {
	p := Params{Doc: "http://s/doc/a", Report: "http://s/report/cmdline"}
	if got := p.ReportURL(Document{}); got != p.Report {
		t.Errorf("no document: ReportURL = %q, want the command line's", got)
	}
	if got := p.ReportURL(Document{Report: "http://s/report/doc"}); got != "http://s/report/doc" {
		t.Errorf("ReportURL = %q, want the document's, which overrides the command line's", got)
	}
	if got := (Params{}).ReportURL(Document{}); got != "" {
		t.Errorf("nothing set: ReportURL = %q", got)
	}
	static := Params{Lower: "http://h/i", Digest: testDigest, Report: "http://s/report/t"}
	if got := static.Document().Report; got != static.Report {
		t.Errorf("static Document().Report = %q, want %q", got, static.Report)
	}
}

func TestDefaults(t *testing.T) {
	var p Params
	if got := p.InitPath(); got != "/sbin/init" {
		t.Errorf("InitPath() = %q", got)
	}
	if got := p.FailAction(); got != ActionReboot {
		t.Errorf("FailAction() = %q", got)
	}
	if got := p.UpperLimit(); got != (Size{Percent: 50}) {
		t.Errorf("UpperLimit() = %v", got)
	}
	if got := p.FetchTries(); got != DefaultFetchAttempts {
		t.Errorf("FetchTries() = %d", got)
	}
	if diff := cmp.Diff(Params{}, p); diff != "" {
		t.Errorf("accessors wrote defaults back: %+v", p)
	}
}

func TestSplitCmdline(t *testing.T) {
	got := SplitCmdline(` a=1  b="x y" "c=d e" f= g  h="" `)
	want := []Arg{
		{Key: "a", Value: "1", HasValue: true},
		{Key: "b", Value: "x y", HasValue: true},
		{Key: "c", Value: "d e", HasValue: true},
		{Key: "f", Value: "", HasValue: true},
		{Key: "g"},
		{Key: "h", Value: "", HasValue: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SplitCmdline (-want +got):\n%s", diff)
	}
}

func TestSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Size
		out  string
	}{
		{"512M", Size{Bytes: 512 << 20}, "512M"},
		{"1024M", Size{Bytes: 1 << 30}, "1G"},
		{"1000", Size{Bytes: 1000}, "1000"},
		{"4096", Size{Bytes: 4096}, "4K"},
		{"50%", Size{Percent: 50}, "50%"},
		{"2g", Size{Bytes: 2 << 30}, "2G"},
	} {
		got, err := ParseSize(tt.in)
		if err != nil {
			t.Fatalf("ParseSize(%q): %v", tt.in, err)
		}
		if got != tt.want || got.String() != tt.out {
			t.Errorf("ParseSize(%q) = %+v (%s), want %+v (%s)", tt.in, got, got, tt.want, tt.out)
		}
	}
	for _, bad := range []string{"", "0", "-1M", "0%", "101%", "05%", "1.5G", "M", "99999999999T", "+5"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
	if got := (Size{Percent: 25}).Of(1000); got != 250 {
		t.Errorf("25%% of 1000 = %d", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("overboot.lower=http://10.0.2.100/i overboot.digest=" + string(testDigest))
	f.Add(`overboot.doc="http://h/d" overboot.upper.size=50% overboot.modules=a,b -- x`)
	f.Add(`overboot.root=ibft:1 overboot.init=/sbin/init overboot.report=http://h/report/t`)
	f.Add(`overboot.doc=http://h/doc/a overboot.report="https://h:8443/report/t?k=v"`)
	f.Add("overboot.lower=http://h/i overboot.digest=" + string(testDigest) + " overboot.report=http://h/r")
	f.Add(`overboot.login=http://h/login/t overboot.onfail=poweroff`)
	f.Add(`overboot.doc=http://h/d overboot.dhcp.timeout=1m30s overboot.onfail=shell overboot.onfail.delay=1s`)
	f.Fuzz(func(t *testing.T, cmdline string) {
		p, err := Parse(cmdline)
		if err != nil {
			return
		}
		s := p.Format()
		q, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q) ok, but Parse(Format()) = %v; Format() = %q", cmdline, err, s)
		}
		if diff := cmp.Diff(p, q); diff != "" {
			t.Fatalf("round trip of %q (-want +got):\n%s", cmdline, diff)
		}
		if q.Format() != s {
			t.Fatalf("Format not stable: %q then %q", s, q.Format())
		}
	})
}

func TestDHCPFamily(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    int
	}{
		{"overboot.doc=http://192.0.2.1/d/x", 4},
		{"overboot.doc=http://[2001:db8::1]/d/x", 6},
		{"overboot.doc=http://[2001:db8::1]:8080/d/x overboot.dhcp=4", 4},
		{"overboot.doc=http://boot.example/d/x", 4},
		{"overboot.login=http://[2001:db8::1]/login/x", 6},
		{"overboot.doc=http://boot.example/d/x overboot.dhcp=6", 6},
		{"overboot.lower=http://[fe80::1%25eth0]/i overboot.digest=sha256:" + strings.Repeat("a", 64), 6},
		{"overboot.doc=http://[::ffff:192.0.2.1]/d/x", 4},
	} {
		p, err := Parse(tc.cmdline)
		if err != nil {
			t.Fatalf("%s: %v", tc.cmdline, err)
		}
		if got := p.DHCPFamily(); got != tc.want {
			t.Errorf("%s: DHCPv%d, want v%d", tc.cmdline, got, tc.want)
		}
	}
	if _, err := Parse("overboot.dhcp=5"); err == nil || !strings.Contains(err.Error(), "overboot.dhcp") {
		t.Errorf("overboot.dhcp=5: %v", err)
	}
}

func TestLowerCache(t *testing.T) {
	p, err := Parse("overboot.doc=http://h/d overboot.lower.cache=8M")
	if err != nil || p.LowerCacheBytes() != 8<<20 {
		t.Errorf("%v %d", err, p.LowerCacheBytes())
	}
	if (Params{}).LowerCacheBytes() != DefaultLowerCache {
		t.Error("default")
	}
}

func TestLazyStaticParams(t *testing.T) {
	h := func(c string) string { return strings.Repeat(c, 64) }
	base := "overboot.lower=http://h/i overboot.digest=sha256:" + h("a") + " overboot.size=8192 overboot.lower.mode=lazy"
	verity := " overboot.verity=http://h/i.verity overboot.verity.digest=sha256:" + h("b") + " overboot.verity.size=8192 overboot.verity.root=" + h("c")
	p, err := Parse(base + verity)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	d := p.Document()
	if err := d.Validate(); err != nil || d.Lower.HTTP.Verity.RootHash != h("c") || d.Lower.HTTP.Verity.Salt != "" {
		t.Errorf("document: %v %+v", err, d.Lower.HTTP.Verity)
	}
	if q, err := Parse(p.Format()); err != nil || q.Format() != p.Format() {
		t.Errorf("round trip: %v\n%s\n%s", err, p.Format(), q.Format())
	}
	for _, tc := range []struct{ cmdline, key string }{
		{base, "overboot.verity.root"},
		{strings.Replace(base, " overboot.size=8192", "", 1) + verity, "overboot.size"},
		{"overboot.lower=http://h/i overboot.digest=sha256:" + h("a") + verity, "overboot.verity"},
		{"overboot.doc=http://h/d overboot.lower.mode=lazy", "overboot.lower.mode"},
	} {
		p, err := Parse(tc.cmdline)
		if err == nil {
			err = p.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.key+":") {
			t.Errorf("%s: %v, want an error naming %s", tc.cmdline, err, tc.key)
		}
	}
	if _, err := Parse("overboot.verity.root=ABC"); err == nil || !strings.Contains(err.Error(), "overboot.verity.root") {
		t.Errorf("bad root hash: %v", err)
	}
}

func TestISCSIRecovery(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    time.Duration
	}{
		{"overboot.doc=http://h/d", DefaultISCSIRecovery},
		{"overboot.doc=http://h/d overboot.iscsi.recovery=90s", 90 * time.Second},
		{"overboot.root=ibft:1 overboot.iscsi.recovery=10m", 10 * time.Minute},
	} {
		p, err := Parse(tc.cmdline)
		if err != nil {
			t.Fatalf("%s: %v", tc.cmdline, err)
		}
		if got := p.ISCSIRecoveryTimeout(); got != tc.want {
			t.Errorf("%s: recovery timeout %v, want %v", tc.cmdline, got, tc.want)
		}
	}
}
