package boot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func testISCSI() *ISCSISource {
	return &ISCSISource{
		Portal: "10.0.2.100:3260", Target: "iqn.2026-11.dev.overboot:m1-upper", Initiator: "iqn.2026-11.dev.overboot:m1",
		CHAP: &CHAP{User: "m1", Secret: "s3cret-abcdef"},
	}
}

func TestDocumentRoundTrip(t *testing.T) {
	docs := map[string]Document{
		"http lower, tmpfs upper": {
			Version: 1, Machine: "m1",
			Lower: Source{HTTP: &HTTPSource{URL: "http://10.0.2.100/blobs/sha256/x", Digest: testDigest, Size: 42}},
			Upper: Upper{Tmpfs: &TmpfsUpper{Size: Size{Percent: 30}}},
			Init:  "/sbin/init", Report: "http://10.0.2.100/events/tok",
		},
		"iscsi both": {
			Version: 1,
			Lower:   Source{ISCSI: &ISCSISource{Portal: "10.0.2.100:3260", Target: "iqn.2026-11.dev.overboot:img", Initiator: "iqn.2026-11.dev.overboot:m1", Digest: testDigest, Size: 4096}},
			Upper:   Upper{ISCSI: testISCSI()},
		},
	}
	for name, d := range docs {
		t.Run(name, func(t *testing.T) {
			b, err := d.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseDocument(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("ParseDocument(%s): %v", b, err)
			}
			if diff := cmp.Diff(d, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// lazyVerity is a valid "verity" member for the lazy-mode cases.
var lazyVerity = `"verity":{"hash_url":"http://h/t","hash_digest":"` + string(testDigest) + `","hash_size":8192,"root_hash":"` + strings.Repeat("ab", 32) + `","salt":"00ff"}`

func TestLazyDocument(t *testing.T) {
	d, err := ParseDocument(strings.NewReader(`{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `","size":8192,"mode":"lazy",` + lazyVerity + `}},"upper":{"tmpfs":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Lower.HTTP.Mode.OnDemand() || d.Lower.HTTP.Verity.Salt != "00ff" {
		t.Errorf("%+v", d.Lower.HTTP)
	}
}

func TestParseDocumentErrors(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"unknown field", `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `"}},"upper":{"tmpfs":{}},"colour":"red"}`, `unknown field "colour"`},
		{"wrong version", `{"version":2,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `"}},"upper":{"tmpfs":{}}}`, "version: is 2"},
		{"no lower", `{"version":1,"upper":{"tmpfs":{}}}`, "lower: missing"},
		{"no upper", `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `"}}}`, "upper: missing"},
		{"bad digest", `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"md5:00"}},"upper":{"tmpfs":{}}}`, "digest"},
		{"no digest", `{"version":1,"lower":{"http":{"url":"http://h/i"}},"upper":{"tmpfs":{}}}`, "lower.http.digest"},
		{"bad size", `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `"}},"upper":{"tmpfs":{"size":"x"}}}`, "size"},
		{"both lowers", `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `"},"iscsi":{}},"upper":{"tmpfs":{}}}`, "give one of http, iscsi and nfs, not more"},
		{"bad portal", `{"version":1,"lower":{"iscsi":{"portal":"h","target":"iqn.2026-11.x:y","initiator":"iqn.2026-11.x:z"}},"upper":{"tmpfs":{}}}`, "lower.iscsi.portal"},
		{"bad iqn", `{"version":1,"lower":{"iscsi":{"portal":"h:3260","target":"Bad Name","initiator":"iqn.2026-11.x:z"}},"upper":{"tmpfs":{}}}`, "lower.iscsi.target"},
		{"half mutual chap", `{"version":1,"lower":{"iscsi":{"portal":"h:3260","target":"iqn.2026-11.x:y","initiator":"iqn.2026-11.x:z","chap":{"user":"u","secret":"s","target_user":"t"}}},"upper":{"tmpfs":{}}}`, "mutual"},
		{"trailing data", `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `"}},"upper":{"tmpfs":{}}} {}`, "trailing"},
		{"not json", `version: 1`, "boot document"},
		{"bad mode", `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `","mode":"quick"}},"upper":{"tmpfs":{}}}`, "lower.http.mode"},
		{"lazy without verity", `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `","size":8192,"mode":"lazy"}},"upper":{"tmpfs":{}}}`, "lower.http.verity: is needed"},
		{"lazy odd size", `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `","size":8191,"mode":"fill",` + lazyVerity + `}},"upper":{"tmpfs":{}}}`, "lower.http.size"},
		{"bad root hash", `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `","size":8192,"mode":"lazy",` + strings.Replace(lazyVerity, `"root_hash":"`, `"root_hash":"X`, 1) + `}},"upper":{"tmpfs":{}}}`, "root_hash"},
		{"bad hash url", `{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `","size":8192,"mode":"lazy",` + strings.Replace(lazyVerity, `http://h/t`, `ftp://h/t`, 1) + `}},"upper":{"tmpfs":{}}}`, "hash_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDocument(strings.NewReader(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseDocument error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseDocumentTooLarge(t *testing.T) {
	big := `{"version":1,"machine":"` + strings.Repeat("x", MaxDocumentSize) + `"}`
	if _, err := ParseDocument(strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("error = %v, want a size error", err)
	}
}

func TestSecretsStayOutOfLogs(t *testing.T) {
	d := Document{Version: 1, Lower: Source{ISCSI: testISCSI()}, Upper: Upper{ISCSI: testISCSI()}}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("boot", "doc", d, "chap", *d.Upper.ISCSI.CHAP)
	if strings.Contains(buf.String(), "s3cret") {
		t.Fatalf("secret in log output: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "m1") {
		t.Fatalf("log lost the user name: %s", buf.String())
	}
	// Redacted must not alias the original.
	_ = d.Redacted()
	if d.Upper.ISCSI.CHAP.Secret != "s3cret-abcdef" {
		t.Fatal("Redacted modified the original document")
	}
	b, _ := json.Marshal(d)
	if !strings.Contains(string(b), "s3cret") {
		t.Fatal("the wire form must carry the secret")
	}
}

func TestStaticDocument(t *testing.T) {
	p := Params{Lower: "http://h/i", Digest: testDigest, Size: 9, UpperSize: Size{Bytes: 1 << 20}, Init: "/bin/init"}
	d := p.Document()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Lower.HTTP.URL != p.Lower || d.Upper.Tmpfs.Size != p.UpperSize || d.InitPath() != "/bin/init" {
		t.Errorf("Document() = %+v", d)
	}
}

func FuzzParseDocument(f *testing.F) {
	f.Add(`{"version":1,"lower":{"http":{"url":"http://h/i","digest":"` + string(testDigest) + `"}},"upper":{"tmpfs":{"size":"50%"}}}`)
	f.Add(`{"version":1,"lower":{"iscsi":{"portal":"h:3260","target":"iqn.2026-11.x:y","initiator":"iqn.2026-11.x:z","chap":{"user":"u","secret":"s"}}},"upper":{"iscsi":{"portal":"h:3260","target":"iqn.2026-11.x:w","initiator":"iqn.2026-11.x:z"}}}`)
	f.Add(`{"version":1,"lower":{"http":{"url":"http://h/i","mirrors":["http://m/i","https://n:8443/i"],"digest":"` + string(testDigest) + `","size":8192,"mode":"lazy","verity":{"hash_url":"http://h/t","hash_mirrors":["http://m/t"],"hash_size":8192,"root_hash":"` + strings.Repeat("ab", 32) + `"}}},"upper":{"tmpfs":{}}}`)
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDocument(strings.NewReader(s))
		if err != nil {
			return
		}
		b, err := d.Marshal()
		if err != nil {
			t.Fatalf("valid document does not marshal: %v", err)
		}
		d2, err := ParseDocument(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if diff := cmp.Diff(d, d2); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}

func TestIdentity(t *testing.T) {
	base := func() Document {
		return Document{Version: 1, Lower: Source{HTTP: &HTTPSource{URL: "http://h/i", Digest: Digest("sha256:" + strings.Repeat("a", 64))}}, Upper: Upper{Tmpfs: &TmpfsUpper{}},
			Identity: &Identity{Hostname: "lab-01", MachineID: strings.Repeat("ab", 16), Files: []IdentityFile{{Path: "/etc/ssh/ssh_host_ed25519_key", Mode: 0o600, Data: "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n"}}}}
	}
	d := base()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseDocument(strings.NewReader(string(b)))
	if err != nil || back.Identity.Files[0].Data != d.Identity.Files[0].Data {
		t.Fatalf("round trip: %v", err)
	}
	if r := d.Redacted(); strings.Contains(fmt.Sprint(r.LogValue()), "secret") || r.Identity.Files[0].Data != "(43 bytes)" || d.Identity.Files[0].Data == "(43 bytes)" {
		t.Errorf("redacted: %+v", r.Identity)
	}
	for name, tc := range map[string]struct {
		mod  func(*Identity)
		want string
	}{
		"bad hostname":     {func(i *Identity) { i.Hostname = "Lab_01" }, "identity.hostname"},
		"zero machine id":  {func(i *Identity) { i.MachineID = strings.Repeat("0", 32) }, "identity.machine_id"},
		"short machine id": {func(i *Identity) { i.MachineID = "abc" }, "identity.machine_id"},
		"relative path":    {func(i *Identity) { i.Files[0].Path = "etc/x" }, "identity.files[0].path"},
		"dotdot path":      {func(i *Identity) { i.Files[0].Path = "/etc/../x" }, "identity.files[0].path"},
		"proc":             {func(i *Identity) { i.Files[0].Path = "/proc/sys/x" }, "not under /proc"},
		"hostname file":    {func(i *Identity) { i.Files[0].Path = "/etc/hostname" }, "given by hostname"},
		"twice":            {func(i *Identity) { i.Files = append(i.Files, i.Files[0]) }, "given twice"},
		"mode":             {func(i *Identity) { i.Files[0].Mode = 0o100600 }, "permission bits only"},
	} {
		t.Run(name, func(t *testing.T) {
			d := base()
			tc.mod(d.Identity)
			if err := d.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
