package boot

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseNFSURL(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want NFSSource
		err  string // part of the error; "" means none
	}{
		{in: "nfs://192.0.2.1/srv/root", want: NFSSource{Server: "192.0.2.1", Export: "/srv/root"}},
		{in: "nfs://files.example.org/", want: NFSSource{Server: "files.example.org", Export: "/"}},
		{in: "nfs://[2001:db8::1]/root", want: NFSSource{Server: "2001:db8::1", Export: "/root"}},
		{in: "nfs://files.example.org", err: "export: missing"},
		{in: "nfs://192.0.2.1:2049/root", err: "give port=2049 in the options"},
		{in: "nfs://192.0.2.1/root?vers=3", err: "no user, query or fragment"},
		{in: "nfs://user@192.0.2.1/root", err: "no user, query or fragment"},
		{in: "nfs://192.0.2.1/srv/../etc", err: "want a clean absolute path"},
		{in: "nfs://192.0.2.1/srv/root/", err: "want a clean absolute path"},
		{in: "nfs://192.0.2.1/a,b", err: "','"},
		{in: "nfs://192.0.2.1/a%20b", err: "no %-escapes"},
		{in: "nfs://bad_host/root", err: "want a host name or an IP address"},
		{in: "nfs:///root", err: "want a host name or an IP address"},
		{in: "http://192.0.2.1/root", err: "want nfs://HOST/EXPORT"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseNFSURL(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
			if got.URL() != tt.in && got.URL() != strings.TrimSuffix(tt.in, "/")+"/" {
				t.Errorf("URL() = %s, want %s", got.URL(), tt.in)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestParseNFSOptions(t *testing.T) {
	for _, tt := range []struct {
		in      string
		version string
		opts    []string
		err     string
	}{
		{in: ""},
		{in: "vers=3", version: "3"},
		{in: "vers=4.2,port=2049", version: "4.2", opts: []string{"port=2049"}},
		{in: "mountport=20048,proto=tcp,vers=3", version: "3", opts: []string{"mountport=20048", "proto=tcp"}},
		{in: "vers=5", err: "vers=5: want one of 4, 4.1, 4.2, 3"},
		{in: "vers=2", err: "want one of"},
		{in: "port=0", err: "want a port"},
		{in: "port=65536", err: "want a port"},
		{in: "port=020", err: "want a port"},
		{in: "proto=udp", err: "TCP only"},
		{in: "rw", err: "want key=value"},
		{in: "sec=krb5", err: "not an option overboot passes on"},
		{in: "nolock=1", err: "not an option overboot passes on"},
		{in: "port=1,port=2", err: "port given twice"},
		{in: "vers=3,", err: "want key=value"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			v, opts, err := ParseNFSOptions(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v != tt.version || !cmp.Equal(opts, tt.opts) {
				t.Errorf("got %q %q, want %q %q", v, opts, tt.version, tt.opts)
			}
		})
	}
}

func TestNFSDocument(t *testing.T) {
	doc := func(n NFSSource) Document {
		return Document{Version: DocumentVersion, Lower: Source{NFS: &n}, Upper: Upper{Tmpfs: &TmpfsUpper{}}}
	}
	good := NFSSource{Server: "192.0.2.1", Export: "/root", Version: "3", Options: []string{"mountport=20048"}}
	b, err := doc(good).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseDocument(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(doc(good), got); diff != "" {
		t.Errorf("round trip (-want +got)\n%s", diff)
	}
	for _, tt := range []struct {
		name string
		n    NFSSource
		err  string
	}{
		{"no export", NFSSource{Server: "192.0.2.1"}, "lower.nfs: export: missing"},
		{"version 5", NFSSource{Server: "192.0.2.1", Export: "/r", Version: "5"}, `lower.nfs: version "5"`},
		{"mount option", NFSSource{Server: "192.0.2.1", Export: "/r", Options: []string{"rw"}}, `lower.nfs: options: "rw"`},
		{"vers in options", NFSSource{Server: "192.0.2.1", Export: "/r", Options: []string{"vers=3"}}, "the version goes in version"},
		{"no server", NFSSource{Export: "/r"}, "lower.nfs: server"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := doc(tt.n).Validate()
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v, want one with %q", err, tt.err)
			}
		})
	}
	both := doc(good)
	both.Lower.HTTP = &HTTPSource{URL: "http://192.0.2.1/x", Digest: Digest("sha256:" + strings.Repeat("0", 64))}
	if err := both.Validate(); err == nil || !strings.Contains(err.Error(), "give one of http, iscsi and nfs, not more") {
		t.Errorf("http and nfs: %v", err)
	}
}

func TestNFSParams(t *testing.T) {
	p, err := Parse("overboot.lower=nfs://192.0.2.1/root overboot.lower.nfs=vers=3,mountport=20048 overboot.upper.size=1G")
	if err != nil {
		t.Fatal(err)
	}
	want := Document{Version: DocumentVersion,
		Lower: Source{NFS: &NFSSource{Server: "192.0.2.1", Export: "/root", Version: "3", Options: []string{"mountport=20048"}}},
		Upper: Upper{Tmpfs: &TmpfsUpper{Size: Size{Bytes: 1 << 30}}}}
	if diff := cmp.Diff(want, p.Document()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if err := p.Document().Validate(); err != nil {
		t.Error(err)
	}
	if q, err := Parse(p.Format()); err != nil || !cmp.Equal(p, q) {
		t.Errorf("round trip: %v %v", q, err)
	}
	if _, err := Parse("overboot.lower=nfs://192.0.2.1/root"); err != nil {
		t.Errorf("an NFS lower needs no digest: %v", err)
	}
	for _, tt := range []struct{ cmdline, err string }{
		{"overboot.lower=nfs://192.0.2.1/root overboot.digest=sha256:" + strings.Repeat("0", 64), "overboot.digest: cannot be combined with an NFS lower"},
		{"overboot.lower=nfs://192.0.2.1/root overboot.lower.mode=lazy", "overboot.lower.mode: cannot be combined with an NFS lower"},
		{"overboot.lower=http://192.0.2.1/i overboot.digest=sha256:" + strings.Repeat("0", 64) + " overboot.lower.nfs=vers=3", "overboot.lower.nfs: only with overboot.lower=nfs://"},
		{"overboot.lower=nfs://192.0.2.1/root overboot.lower.nfs=vers=5", "overboot.lower.nfs: vers=5"},
		{"overboot.lower=nfs://192.0.2.1", "overboot.lower: \"nfs://192.0.2.1\": export: missing"},
		{"overboot.lower=nfs://192.0.2.1/root overboot.lower.nfs=hard=1", "not an option overboot passes on"},
	} {
		if _, err := Parse(tt.cmdline); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: error %v, want one with %q", tt.cmdline, err, tt.err)
		}
	}
}

func FuzzParseNFS(f *testing.F) {
	f.Add("nfs://192.0.2.1/root", "vers=3,port=2049")
	f.Add("nfs://[2001:db8::1]/", "")
	f.Add("nfs://h.example/a/b", "proto=tcp,mountport=1")
	f.Fuzz(func(t *testing.T, u, o string) {
		n, err := ParseNFSURL(u)
		if err != nil {
			return
		}
		if n.Version, n.Options, err = ParseNFSOptions(o); err != nil {
			return
		}
		if err := n.Validate(); err != nil {
			t.Fatalf("%q %q parsed but does not validate: %v", u, o, err)
		}
		again, err := ParseNFSURL(n.URL())
		if err != nil || again.Server != n.Server || again.Export != n.Export {
			t.Fatalf("URL %s reads back as %+v, %v", n.URL(), again, err)
		}
		if strings.ContainsAny(n.Server+n.Export, ", \t\n:") && !strings.Contains(n.Server, ":") {
			t.Fatalf("%+v: a comma, space or colon would reach the mount's source", n)
		}
	})
}
