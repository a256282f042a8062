package main

import (
	"errors"
	"os"
	"path/filepath"
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
