package testneed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeT records how a need ended the test: Fatalf or Skipf (each stops
// the goroutine, as testing's do), or neither.
type fakeT struct {
	testing.TB
	fatal, skip string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeT) Skipf(format string, args ...any) {
	f.skip = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// call runs need on a fakeT in a goroutine of its own.
func call(need func(t testing.TB)) *fakeT {
	f := &fakeT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		need(f)
	}()
	<-done
	return f
}

func TestMissing(t *testing.T) {
	for _, strict := range []string{"", "0", "1"} {
		t.Setenv(StrictEnv, strict)
		f := call(func(t testing.TB) { Missing(t, "needs %s", "X") })
		ended, other := f.skip, f.fatal
		if strict == "1" {
			ended, other = f.fatal, f.skip
		}
		if !strings.HasPrefix(ended, "needs X (") || other != "" {
			t.Errorf("%s=%q: fatal %q, skip %q", StrictEnv, strict, f.fatal, f.skip)
		}
	}
}

func TestTool(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "mksquashfs")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	var got string
	if f := call(func(t testing.TB) { got = Tool(t, "mksquashfs") }); f.fatal != "" || f.skip != "" || got != tool {
		t.Errorf("Tool(mksquashfs) = %q, fatal %q, skip %q; want %s", got, f.fatal, f.skip, tool)
	}

	t.Setenv(StrictEnv, "")
	if f := call(func(t testing.TB) { Tool(t, "tftp") }); !strings.Contains(f.skip, "needs tftp: apt-get install tftp-hpa") {
		t.Errorf("a missing tftp: skip %q, fatal %q", f.skip, f.fatal)
	}
	t.Setenv(StrictEnv, "1")
	if f := call(func(t testing.TB) { Tool(t, "tftp") }); !strings.Contains(f.fatal, "needs tftp: apt-get install tftp-hpa") {
		t.Errorf("a missing tftp, strict: fatal %q, skip %q", f.fatal, f.skip)
	}
	t.Setenv(StrictEnv, "")
	if f := call(func(t testing.TB) { Tool(t, "no-such-tool") }); !strings.Contains(f.fatal, "no Debian package known") {
		t.Errorf("a tool the table lacks: fatal %q, skip %q; want a failure even when not strict", f.fatal, f.skip)
	}
}

func TestFileAndGlob(t *testing.T) {
	t.Setenv(StrictEnv, "1")
	dir := t.TempDir()
	there := filepath.Join(dir, "r8169.ko")
	os.WriteFile(there, nil, 0o644)
	var got []string
	if f := call(func(t testing.TB) { File(t, there, "p"); got = Glob(t, filepath.Join(dir, "*.ko"), "p") }); f.fatal != "" || len(got) != 1 || got[0] != there {
		t.Errorf("File and Glob of what is there: %v, %q", got, f.fatal)
	}
	if f := call(func(t testing.TB) { File(t, filepath.Join(dir, "nope"), "linux-image-amd64") }); !strings.Contains(f.fatal, "apt-get install linux-image-amd64") {
		t.Errorf("File of a missing file: fatal %q", f.fatal)
	}
	if f := call(func(t testing.TB) { Glob(t, filepath.Join(dir, "*.ko.xz"), "linux-image-amd64") }); !strings.Contains(f.fatal, "*.ko.xz: apt-get install linux-image-amd64") {
		t.Errorf("Glob matching nothing: fatal %q", f.fatal)
	}
}

func TestLoadModuleMissing(t *testing.T) {
	if err := LoadModule("overboot-no-such-module"); !errors.Is(err, ErrNoModule) {
		t.Errorf("LoadModule of a module no kernel has: %v", err)
	}
	t.Setenv(StrictEnv, "1")
	if f := call(func(t testing.TB) { Module(t, "overboot_no_such_module") }); !strings.Contains(f.fatal, "needs kernel module overboot_no_such_module") {
		t.Errorf("Module: fatal %q", f.fatal)
	}
}

// TestVM: the QEMU tier is chosen by OVERBOOT_VMTEST alone; strictness
// does not make its tests fail outside it.
func TestVM(t *testing.T) {
	t.Setenv(StrictEnv, "1")
	t.Setenv(VMEnv, "")
	if f := call(VM); !strings.HasPrefix(f.skip, LeftToVM+":") || f.fatal != "" {
		t.Errorf("VM outside the QEMU tier: skip %q, fatal %q", f.skip, f.fatal)
	}
	t.Setenv(VMEnv, "1")
	if f := call(VM); f.skip != "" || f.fatal != "" {
		t.Errorf("VM in the QEMU tier: skip %q, fatal %q", f.skip, f.fatal)
	}
}
