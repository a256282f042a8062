package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/overboot/overboot/mkimage/initramfs"
	"github.com/overboot/overboot/server/sitetls"
)

// TestTLSCA: tls ca prints the site CA (made with --make, refused
// without one), and mkimage initramfs --store takes it into the
// initramfs by itself; --no-ca leaves it out.
func TestTLSCA(t *testing.T) {
	data := t.TempDir()
	if _, err := cli(t, "", "tls", "ca", "--data", data); err == nil || !strings.Contains(err.Error(), "no site CA in "+filepath.Join(data, "tls")+" yet") {
		t.Errorf("no CA yet: %v", err)
	}
	out, err := cli(t, "", "tls", "ca", "--data", data, "--make")
	if err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(sitetls.CAPath(data))
	if out != string(file) || !strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("tls ca printed %q, the file has %q", out, file)
	}
	if again, err := cli(t, "", "tls", "ca", "--data", data, "--make"); err != nil || again != out {
		t.Errorf("a second --make changed the CA: %v", err)
	}
	if _, err := cli(t, "", "tls", "ca"); !errors.As(err, new(usageError)) {
		t.Errorf("no flags: %v", err)
	}

	dir := t.TempDir()
	agent := filepath.Join(dir, "agent")
	os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755)
	has := func(img string) bool {
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		segs, err := initramfs.List(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range segs[0].Entries {
			if e.Name == initramfs.SiteCAPath {
				return true
			}
		}
		return false
	}
	out, err = cli(t, "", "mkimage", "initramfs", "--agent", agent, "--modules=", "--store", data, "--name", "initrd")
	if err != nil || !strings.Contains(out, "site CA: "+sitetls.CAPath(data)) {
		t.Fatalf("mkimage initramfs --store: %q %v", out, err)
	}
	img := filepath.Join(dir, "with.img")
	if _, err := cli(t, "", "mkimage", "initramfs", "--agent", agent, "--modules=", "--ca", sitetls.CAPath(data), "-o", img); err != nil || !has(img) {
		t.Errorf("--ca: %v, CA in it: %v", err, has(img))
	}
	img = filepath.Join(dir, "without.img")
	if _, err := cli(t, "", "mkimage", "initramfs", "--agent", agent, "--modules=", "-o", img); err != nil || has(img) {
		t.Errorf("no --ca: %v, CA in it: %v", err, has(img))
	}
	if _, err := cli(t, "", "mkimage", "initramfs", "--agent", agent, "--modules=", "--ca", filepath.Join(data, "tls", "ca.key"), "-o", img); err == nil || !strings.Contains(err.Error(), "want CA certificates only") {
		t.Errorf("a key as --ca: %v", err)
	}
}

// TestServeTLS: serve listens on tls-listen and says where the site CA
// is, which answers a client that trusts it; serve --check-config
// refuses a key file others can read, as serve does.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	k := filepath.Join(dir, "k")
	os.WriteFile(k, []byte("K"), 0o644)
	conf := filepath.Join(dir, "overboot.conf")
	os.WriteFile(conf, []byte("[server]\nlisten = 127.0.0.1:0\nurl = http://127.0.0.1\ntls-listen = 127.0.0.1:0\ndata = "+dir+"/data\n[profile default]\nkernel = "+k+"\ninitramfs = "+k+"\nroot = "+k+"\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", conf}, strings.NewReader(""), out, out) }()
	waitFor(t, out, "signed by the site CA "+sitetls.CAPath(dir+"/data"))
	addr := regexp.MustCompile(`HTTPS on (127\.0\.0\.1:\d+), certificate for 127\.0\.0\.1 `).FindStringSubmatch(out.String())
	if addr == nil {
		t.Fatalf("no HTTPS line in:\n%s", out.String())
	}
	pem, _ := os.ReadFile(sitetls.CAPath(dir + "/data"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	r, err := c.Get("https://" + addr[1] + "/boot.ipxe")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("/boot.ipxe over HTTPS: %s", r.Status)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}

	own := &sitetls.Site{Dir: filepath.Join(dir, "own")}
	if _, err := own.ServerCert([]string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(own.Dir, sitetls.ServerKeyFile)
	os.Chmod(key, 0o640)
	os.WriteFile(conf, []byte("[server]\nlisten = 127.0.0.1:0\ntls-listen = 127.0.0.1:0\ntls-cert = "+filepath.Join(own.Dir, sitetls.ServerCrtFile)+"\ntls-key = "+key+"\ndata = "+dir+"/data\n"), 0o644)
	if _, err := cli(t, "", "serve", "--config", conf, "--check-config"); err == nil || !strings.Contains(err.Error(), conf+":4: tls-cert: "+key+": mode 0640") {
		t.Errorf("check-config with a 0640 key: %v", err)
	}
}
