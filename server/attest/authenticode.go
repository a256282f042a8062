package attest

import (
	"crypto/sha256"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
)

// AuthenticodeSHA256 is the Authenticode hash (SHA-256) of the PE image
// r of size bytes: what UEFI firmware measures into PCR 4 for each EFI
// application it starts (shim, then GRUB through shim's LoadImage), and
// what a signature signs. As Microsoft's "Windows Authenticode Portable
// Executable Signature Format" says: the headers without the checksum
// and the certificate table's directory entry, then the sections in file
// order, then what follows them up to the certificate table.
func AuthenticodeSHA256(r io.ReaderAt, size int64) ([]byte, error) {
	f, err := pe.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("authenticode: not a PE image: %w", err)
	}
	defer f.Close()
	// e_lfanew: where the PE signature starts; the optional header
	// follows the signature (4) and the file header (20).
	var lfanew [4]byte
	if _, err := r.ReadAt(lfanew[:], 0x3c); err != nil {
		return nil, fmt.Errorf("authenticode: %w", err)
	}
	opt := int64(binary.LittleEndian.Uint32(lfanew[:])) + 4 + 20
	var headers int64
	var certDir int64 // offset of the certificate table's directory entry
	var cert pe.DataDirectory
	switch h := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		headers, certDir = int64(h.SizeOfHeaders), opt+112+8*pe.IMAGE_DIRECTORY_ENTRY_SECURITY
		if h.NumberOfRvaAndSizes > pe.IMAGE_DIRECTORY_ENTRY_SECURITY {
			cert = h.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
		}
	case *pe.OptionalHeader32:
		headers, certDir = int64(h.SizeOfHeaders), opt+96+8*pe.IMAGE_DIRECTORY_ENTRY_SECURITY
		if h.NumberOfRvaAndSizes > pe.IMAGE_DIRECTORY_ENTRY_SECURITY {
			cert = h.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
		}
	default:
		return nil, errors.New("authenticode: the PE image has no optional header")
	}
	checksum := opt + 64
	if headers > size || certDir+8 > headers {
		return nil, fmt.Errorf("authenticode: headers of %d bytes in a file of %d", headers, size)
	}
	h := sha256.New()
	put := func(off, n int64) error {
		if n < 0 || off+n > size {
			return fmt.Errorf("authenticode: %d bytes at %d: past the end of the file (%d bytes)", n, off, size)
		}
		_, err := io.Copy(h, io.NewSectionReader(r, off, n))
		return err
	}
	if err := hashRanges(put, [][2]int64{{0, checksum}, {checksum + 4, certDir - checksum - 4}, {certDir + 8, headers - certDir - 8}}); err != nil {
		return nil, err
	}
	sections := make([]*pe.Section, 0, len(f.Sections))
	for _, s := range f.Sections {
		if s.Size > 0 {
			sections = append(sections, s)
		}
	}
	sort.SliceStable(sections, func(i, j int) bool { return sections[i].Offset < sections[j].Offset })
	hashed := headers
	for _, s := range sections {
		if err := put(int64(s.Offset), int64(s.Size)); err != nil {
			return nil, err
		}
		hashed += int64(s.Size)
	}
	end := size
	if cert.Size > 0 {
		end = int64(cert.VirtualAddress) // a file offset, for this entry
	}
	if end > hashed {
		if err := put(hashed, end-hashed); err != nil {
			return nil, err
		}
	}
	return sumOf(h), nil
}

func hashRanges(put func(off, n int64) error, rs [][2]int64) error {
	for _, r := range rs {
		if err := put(r[0], r[1]); err != nil {
			return err
		}
	}
	return nil
}

func sumOf(h hash.Hash) []byte { return h.Sum(nil) }
