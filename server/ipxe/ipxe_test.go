package ipxe

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/pci"
)

func TestKernelScript(t *testing.T) {
	s := KernelScript{
		Comment:  "machine 52:54:00:12:34:56, profile lab",
		Kernel:   "http://10.0.2.100/blobs/sha256/aa",
		Initrds:  []string{"http://10.0.2.100/blobs/sha256/bb"},
		Args:     []string{"console=ttyS0", "overboot.doc=http://10.0.2.100/doc/tok"},
		Attempts: 2, RetryDelay: 5 * time.Second,
	}
	got, err := s.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := `#!ipxe
# overboot: machine 52:54:00:12:34:56, profile lab
set overboot-try:int32 0
:overboot-retry
iseq ${overboot-try} 2 && goto overboot-failed ||
inc overboot-try
echo overboot: loading kernel and initrd, attempt ${overboot-try} of 2
imgfree overboot-kernel ||
imgfree overboot-initrd0 ||
kernel --name overboot-kernel http://10.0.2.100/blobs/sha256/aa initrd=overboot-initrd0 console=ttyS0 overboot.doc=http://10.0.2.100/doc/tok || goto overboot-again
initrd --name overboot-initrd0 http://10.0.2.100/blobs/sha256/bb || goto overboot-again
echo overboot: booting
boot || goto overboot-again
:overboot-again
sleep 5 ||
goto overboot-retry
:overboot-failed
echo overboot: boot failed after 2 attempts, falling through to the next boot device
exit 1
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("script (-want +got):\n%s", diff)
	}
}

func TestKernelScriptRefusesUnsafe(t *testing.T) {
	base := KernelScript{Kernel: "http://h/k", Initrds: []string{"http://h/i"}}
	for name, mod := range map[string]func(*KernelScript){
		"space in arg":         func(k *KernelScript) { k.Args = []string{"a b"} },
		"expansion in arg":     func(k *KernelScript) { k.Args = []string{"x=${net0/mac}"} },
		"comment arg":          func(k *KernelScript) { k.Args = []string{"#x"} },
		"separator arg":        func(k *KernelScript) { k.Args = []string{"||"} },
		"newline in comment":   func(k *KernelScript) { k.Comment = "a\nexit 0" },
		"no initrd":            func(k *KernelScript) { k.Initrds = nil },
		"bad kernel url":       func(k *KernelScript) { k.Kernel = "tftp://h/k" },
		"expansion in mirror":  func(k *KernelScript) { k.KernelMirrors = []string{"http://h/${x}"} },
		"space in mirror":      func(k *KernelScript) { k.InitrdMirrors = [][]string{{"http://h/i j"}} },
		"mirrors of no initrd": func(k *KernelScript) { k.InitrdMirrors = [][]string{{"http://m/i"}, {"http://m/j"}} },
	} {
		k := base
		mod(&k)
		if _, err := k.Render(); err == nil {
			t.Errorf("%s: Render succeeded", name)
		}
	}
}

func TestChainScript(t *testing.T) {
	got, err := ChainScript{Server: "http://10.0.2.100/"}.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := `#!ipxe
# overboot bootstrap: fetch this machine's script from the server
set overboot-try:int32 0
:overboot-retry
iseq ${overboot-try} 3 && goto overboot-failed ||
inc overboot-try
isset ${net0/ip} || dhcp || goto overboot-again
imgfetch --name overboot-script http://10.0.2.100/ipxe?mac=${net0/mac:hexhyp}&uuid=${uuid}&hostname=${hostname}&buildarch=${buildarch}&platform=${platform}&pcivendor=${pci/${net0/busloc}.0.2:hexraw}&pcidevice=${pci/${net0/busloc}.2.2:hexraw} || goto overboot-again
imgexec overboot-script || goto overboot-failed
:overboot-again
sleep 3 ||
goto overboot-retry
:overboot-failed
echo overboot: no boot script from the server, falling through to the next boot device
exit 1
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("script (-want +got):\n%s", diff)
	}
}

func TestFailScript(t *testing.T) {
	got := FailScript("no profile for ${x}\nexit 0 # hi")
	if strings.Count(got, "\n") != 3 || strings.Contains(got, "${") || !strings.HasSuffix(got, "exit 1\n") {
		t.Errorf("FailScript = %q", got)
	}
}

func TestParseQueryPCI(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      pci.ID
	}{
		{"virtio-net", "pcivendor=1af4&pcidevice=1000", pci.ID{Vendor: 0x1af4, Device: 0x1000}},
		{"upper case", "pcivendor=8086&pcidevice=10D3", pci.ID{Vendor: 0x8086, Device: 0x10d3}},
		{"device 0000", "pcivendor=1234&pcidevice=0000", pci.ID{Vendor: 0x1234, Device: 0}},
		{"both unset", "pcivendor=&pcidevice=", pci.ID{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.raw)
			c, err := ParseQuery(q)
			if err != nil {
				t.Fatal(err)
			}
			if c.NIC != tc.want {
				t.Errorf("NIC = %v, want %v", c.NIC, tc.want)
			}
			c2, err := ParseQuery(c.Query())
			if err != nil || c2.NIC != c.NIC {
				t.Errorf("round trip: %v %v", c2.NIC, err)
			}
		})
	}
}

func TestParseQuery(t *testing.T) {
	q, _ := url.ParseQuery("mac=52-54-00-12-34-56&uuid=&hostname=lab1.example&buildarch=x86_64&platform=pcbios&pcivendor=10EC&pcidevice=8139")
	c, err := ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	if c.MAC.String() != "52:54:00:12:34:56" || c.UUID != "" || c.Hostname != "lab1.example" || c.BuildArch != "x86_64" || c.Platform != "pcbios" {
		t.Errorf("ParseQuery = %+v", c)
	}
	if c.NIC != (pci.ID{Vendor: 0x10ec, Device: 0x8139}) || c.NIC.String() != "10ec:8139" {
		t.Errorf("NIC = %v", c.NIC)
	}
	c2, err := ParseQuery(c.Query())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, c2); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for raw, want := range map[string]string{
		"mac=52-54-00":                   "mac",
		"uuid=nope":                      "uuid",
		"hostname=a_b":                   "hostname",
		"colour=red":                     "colour: unknown",
		"mac=52-54-00-12-34-56&mac=x":    "given 2 times",
		"platform=efi%20x":               "platform",
		"pcivendor=10ec":                 "pcidevice: missing",
		"pcidevice=8139":                 "pcivendor: missing",
		"pcivendor=10e&pcidevice=8139":   "pcivendor: \"10e\": want 4 hex digits",
		"pcivendor=10ec&pcidevice=81390": "pcidevice: \"81390\": want 4 hex digits",
		"pcivendor=0x10&pcidevice=8139":  "pcivendor",
		"pcivendor=ffff&pcidevice=ffff":  "pcivendor: \"ffff\" is not a PCI vendor ID",
		"pcivendor=10ec&pcidevice=81:3":  "pcidevice",
	} {
		q, _ := url.ParseQuery(raw)
		if _, err := ParseQuery(q); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseQuery(%s) error = %v, want %q", raw, err, want)
		}
	}
}

func FuzzParseQuery(f *testing.F) {
	f.Add("mac=52-54-00-12-34-56&uuid=12345678-1234-1234-1234-123456789abc&hostname=h&buildarch=x86_64&platform=efi")
	f.Add("mac=52:54:00:12:34:56")
	f.Add("mac=52-54-00-12-34-56&pcivendor=10ec&pcidevice=8139")
	f.Add("pcivendor=8086&pcidevice=10D3")
	f.Add("pcivendor=1af4&pcidevice=")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		c, err := ParseQuery(q)
		if err != nil {
			return
		}
		c2, err := ParseQuery(c.Query())
		if err != nil {
			t.Fatalf("re-parse of %v: %v", c.Query(), err)
		}
		if diff := cmp.Diff(c, c2); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}

func TestSANScript(t *testing.T) {
	s := SANScript{
		Comment: "52:54:00:0b:00:05, profile win",
		Portal:  "10.0.2.100:3260", Target: "iqn.2026-11.org.overboot:m-525400", LUN: 0,
		Initiator: "iqn.2026-11.org.overboot:i-525400",
		CHAP:      boot.CHAP{User: "m1", Secret: "0123456789abcdef"},
	}
	text, err := s.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"set initiator-iqn iqn.2026-11.org.overboot:i-525400\n",
		"set username m1\n", "set password 0123456789abcdef\n",
		"sanboot iscsi:10.0.2.100::3260:0:iqn.2026-11.org.overboot:m-525400 || goto overboot-failed\n",
		"exit 1\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("script lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "reverse") {
		t.Errorf("one-way CHAP set reverse credentials:\n%s", text)
	}
	s.CHAP.TargetUser, s.CHAP.TargetSecret = "tgt", "fedcba9876543210"
	if text, err = s.Render(); err != nil || !strings.Contains(text, "set reverse-username tgt\nset reverse-password fedcba9876543210\n") {
		t.Errorf("mutual CHAP: %v\n%s", err, text)
	}

	for _, tc := range []struct {
		name   string
		change func(*SANScript)
		want   string
	}{
		{"ipv6 portal", func(s *SANScript) { s.Portal = "[fe80::1]:3260" }, "IPv4 address or a host name"},
		{"no port", func(s *SANScript) { s.Portal = "10.0.2.100" }, "want host:port"},
		{"secret expands", func(s *SANScript) { s.CHAP.Secret = "abc${x}defghijk" }, "chap secret: contains ${"},
		{"no user", func(s *SANScript) { s.CHAP.User = "" }, "chap user: empty"},
		{"spaces in target", func(s *SANScript) { s.Target = "iqn.x y" }, "target: contains whitespace"},
		{"half mutual", func(s *SANScript) { s.CHAP.TargetUser = "" }, "target chap user: empty"},
		{"lun", func(s *SANScript) { s.LUN = 300 }, "LUN 300"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s
			tc.change(&c)
			if _, err := c.Render(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestChainOnceScript(t *testing.T) {
	text, err := ChainOnceScript{Comment: "m", URL: "http://10.0.2.100/san/abc"}.Render()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "chain --autofree http://10.0.2.100/san/abc || goto overboot-failed\n") || !strings.HasSuffix(text, "exit 1\n") {
		t.Errorf("script:\n%s", text)
	}
	if _, err := (ChainOnceScript{URL: "http://x/a b"}).Render(); err == nil {
		t.Errorf("a URL with a space was accepted")
	}
}
