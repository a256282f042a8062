package initramfs

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// MaxModuleSize bounds a module file read into memory (the largest in
// Debian's 6.1 kernel, amdgpu, is about 16 MB uncompressed).
const MaxModuleSize = 256 << 20

// ModInfo returns a module file's .modinfo section: the "key=value"
// strings modinfo(8) prints (license, alias, depends, firmware, ...), in
// section order. The file may be compressed (.ko.xz, .ko.zst, .ko.gz).
func ModInfo(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(file, ".xz"):
		if r, err = xz.NewReader(f); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	case strings.HasSuffix(file, ".zst"):
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(file, ".gz"):
		if r, err = gzip.NewReader(f); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	var ra io.ReaderAt = f
	if r != io.Reader(f) {
		b, err := io.ReadAll(io.LimitReader(r, MaxModuleSize+1))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(b) > MaxModuleSize {
			return nil, fmt.Errorf("%s: larger than %d bytes uncompressed", file, MaxModuleSize)
		}
		ra = bytes.NewReader(b)
	}
	ef, err := elf.NewFile(ra)
	if err != nil {
		return nil, fmt.Errorf("%s: not a kernel module: %w", file, err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", file)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: .modinfo: %w", file, err)
	}
	var out []string
	for _, s := range bytes.Split(data, []byte{0}) {
		if len(s) > 0 {
			out = append(out, string(s))
		}
	}
	return out, nil
}

// ModuleFirmware returns the firmware files a module may request
// (its .modinfo "firmware=" entries), as paths relative to /lib/firmware.
// Entries that are not clean relative paths are an error.
func ModuleFirmware(file string) ([]string, error) {
	info, err := ModInfo(file)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, kv := range info {
		name, ok := strings.CutPrefix(kv, "firmware=")
		if !ok {
			continue
		}
		if name == "" || path.IsAbs(name) || path.Clean(name) != name || strings.HasPrefix(name, "../") {
			return nil, fmt.Errorf("%s: firmware %q: not a clean relative path", file, name)
		}
		out = append(out, name)
	}
	return out, nil
}

// DefaultFirmwareDir is where the kernel looks for firmware files.
const DefaultFirmwareDir = "/lib/firmware"

// findFirmware returns the file for a firmware name under dir: the name
// itself or name.xz (Debian's 6.1 kernel decompresses xz firmware,
// CONFIG_FW_LOADER_COMPRESS_XZ; not zstd), relative to dir, or "" when
// absent.
func findFirmware(dir, name string) (string, error) {
	for _, n := range []string{name, name + ".xz"} {
		fi, err := os.Stat(dir + "/" + n)
		switch {
		case err == nil && fi.Mode().IsRegular():
			return n, nil
		case err != nil && !errors.Is(err, os.ErrNotExist):
			return "", err
		}
	}
	return "", nil
}
