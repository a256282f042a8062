package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMkimageInitramfsInspect: mkimage initramfs and inspect with pflag's
// --flags, a flag after the positional arguments, and the hint for a long
// flag written with one dash as before.
func TestMkimageInitramfsInspect(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent")
	os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755)
	img := filepath.Join(dir, "initramfs.img")
	out, err := cli(t, "", "mkimage", "initramfs", "--agent", agent, "--modules=", "--comp", "gzip", "--rescue-shell=false", "-o", img)
	if err != nil || !strings.Contains(out, img+" sha256:") {
		t.Fatalf("mkimage initramfs: %q %v", out, err)
	}
	out, err = cli(t, "", "inspect", img, "-l")
	if err != nil || !strings.Contains(out, "segment 1 at offset 0: gzip") || !strings.Contains(out, " init") || strings.Contains(out, "bin/sh") {
		t.Errorf("inspect FILE -l: %q %v", out, err)
	}
	if out2, err := cli(t, "", "inspect", "--long", img); err != nil || out2 != out {
		t.Errorf("inspect --long FILE: %q %v", out2, err)
	}
	store := filepath.Join(dir, "data")
	out, err = cli(t, "", "mkimage", "initramfs", "--agent", agent, "--modules", "", "--store", store, "--name", "initrd")
	if err != nil || !strings.Contains(out, "initrd version 1: sha256:") {
		t.Errorf("mkimage initramfs --store: %q %v", out, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"mkimage", "initramfs", "-agent", agent, "-o", img}, "mkimage initramfs: -agent: long flags take two dashes: --agent"},
		{[]string{"mkimage", "initramfs", "--agent", agent}, "give either -o FILE or --store DIR --name NAME"},
		{[]string{"mkimage", "root", "-store", dir, "src"}, "mkimage root: -store: long flags take two dashes: --store"},
		{[]string{"mkimage", "root", "--store", dir, "src"}, "mkimage root: --store needs --name"},
		{[]string{"mkimage", "verity"}, "mkimage verity: want exactly one IMAGE"},
		{[]string{"mkimage", "squash"}, `mkimage: unknown command "squash"`},
		{[]string{"serve", "-config", "x.conf"}, "serve: -config: long flags take two dashes: --config"},
		{[]string{"serve", "--listen", "nope"}, `serve: --listen "nope"`},
		{[]string{"inspect"}, "inspect: want one or more FILEs"},
	} {
		_, err := cli(t, "", tc.args...)
		if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
}
