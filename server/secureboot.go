package server

import (
	"bytes"
	"context"
	"debug/pe"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/answer"
	"github.com/overboot/overboot/server/grub"
	"github.com/overboot/overboot/server/tftp"
)

// The Secure Boot path (docs/network.md): DHCP hands the x86-64 UEFI
// machines of secure-boot profiles Debian's signed shim (policy), shim
// loads the signed GRUB netboot image served beside it as grubx64.efi
// (secureBootFiles), GRUB reads /grub/grub.cfg (the bootstrap, from
// TFTP or HTTP) and then its machine's own config from /grub?mac=...: the
// same flow as /ipxe (script), rendered by package server/grub.

// dialectKey marks a request on the Secure Boot path in its context.
type dialectKey struct{}

// grubRequest marks h's requests as GRUB's: their answers are GRUB
// configs.
func grubRequest(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h(w, r.WithContext(context.WithValue(r.Context(), dialectKey{}, true)))
	}
}

// isGRUB reports whether r came by the Secure Boot path.
func isGRUB(r *http.Request) bool {
	v, _ := r.Context().Value(dialectKey{}).(bool)
	return v
}

// grubBootstrap serves /grub/grub.cfg, where Debian's GRUB netboot image
// loaded over UEFI HTTP Boot looks first: the static config asking for
// the machine's own. (Over TFTP the same text is DATA/tftp/grub/grub.cfg.)
func (s *Server) grubBootstrap(w http.ResponseWriter, r *http.Request) {
	base, err := s.base(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	s.reply(w, r, http.StatusOK, answer.Bootstrap{Server: base})
}

// ErrUnsigned is the refusal of a kernel that carries no Authenticode
// signature: shim would refuse to start it, after the download.
var ErrUnsigned = errors.New("the kernel is not signed")

// checkSigned checks that the kernel blob d is an EFI (PE) image with an
// Authenticode signature. Who signed it is the firmware's and shim's to
// check (db, MOK); this catches an unsigned kernel (a site's own build,
// a test kernel) before the machine downloads it for nothing.
func (s *Server) checkSigned(d boot.Digest) error {
	f, err := s.blobs.OpenBlob(d)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", d, err)
	}
	defer f.Close()
	return signedPE(f)
}

// signedPE checks that r is a PE image whose certificate table (data
// directory 4, IMAGE_DIRECTORY_ENTRY_SECURITY) is not empty.
func signedPE(r io.ReaderAt) error {
	f, err := pe.NewFile(r)
	if err != nil {
		return fmt.Errorf("%w: not an EFI image (%v): the Secure Boot path needs a signed EFI-stub kernel, such as Debian's linux-image-amd64", ErrUnsigned, err)
	}
	defer f.Close()
	var dirs []pe.DataDirectory
	switch h := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		dirs = h.DataDirectory[:min(int(h.NumberOfRvaAndSizes), len(h.DataDirectory))]
	case *pe.OptionalHeader32:
		dirs = h.DataDirectory[:min(int(h.NumberOfRvaAndSizes), len(h.DataDirectory))]
	}
	if len(dirs) <= pe.IMAGE_DIRECTORY_ENTRY_SECURITY || dirs[pe.IMAGE_DIRECTORY_ENTRY_SECURITY].Size == 0 {
		return fmt.Errorf("%w: it carries no signature, and Secure Boot would refuse it: use a signed kernel (Debian's linux-image-amd64) or sign it (sbsign)", ErrUnsigned)
	}
	return nil
}

// tftpFiles answers what GRUB asks over TFTP beyond DATA/tftp (Debian's
// signed netboot image has no http module, so it reads everything from
// the TFTP server it came from): its machine's config (/grub?mac=...,
// the same answer as over HTTP, the TFTP client's address standing for
// the HTTP one: tokens are bound to it) and menu entries
// (/grub/entry/TOKEN/NAME, /grub/console-login/TOKEN), and blobs by digest (/blobs/sha256/HEX, the
// kernel and initramfs the config names). Anything else is DATA/tftp's.
func (s *Server) tftpFiles(ctx context.Context, name string, client netip.Addr) (tftp.File, int64, error) {
	u, err := url.Parse("/" + strings.TrimPrefix(name, "/"))
	if err != nil {
		return nil, 0, tftp.ErrNotMine
	}
	switch {
	case strings.HasPrefix(u.Path, answer.BlobPrefix):
		d, err := boot.ParseDigest("sha256:" + strings.TrimPrefix(u.Path, answer.BlobPrefix))
		if err != nil {
			return nil, 0, &tftp.Error{Code: tftp.ErrNotFound, Message: "bad digest: want /blobs/sha256/<64 lowercase hex digits>"}
		}
		f, err := s.blobs.OpenBlob(d)
		if err != nil {
			return nil, 0, &tftp.Error{Code: tftp.ErrNotFound, Message: d.String() + ": not here"}
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, fi.Size(), nil
	case u.Path == grub.Path || strings.HasPrefix(u.Path, grub.Path+"/entry/") || strings.HasPrefix(u.Path, grub.Path+answer.ConsoleLoginPath):
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, 0, tftp.ErrNotMine
		}
		req.RemoteAddr = netip.AddrPortFrom(client, 0).String()
		w := &memResponse{header: http.Header{}}
		if rest, ok := strings.CutPrefix(u.Path, grub.Path+"/entry/"); ok {
			token, profile, _ := strings.Cut(rest, "/")
			req.SetPathValue("token", token)
			req.SetPathValue("profile", profile)
			grubRequest(s.entry)(w, req)
		} else if token, ok := strings.CutPrefix(u.Path, grub.Path+answer.ConsoleLoginPath); ok {
			req.SetPathValue("token", token)
			grubRequest(s.consoleLoginEntry)(w, req)
		} else {
			grubRequest(s.script)(w, req)
		}
		return memFile{bytes.NewReader(w.body.Bytes())}, int64(w.body.Len()), nil
	}
	return nil, 0, tftp.ErrNotMine
}

// memResponse keeps a handler's answer for a TFTP transfer: GRUB shows
// the text of a refusal as it runs any config, whatever the status.
type memResponse struct {
	header http.Header
	body   bytes.Buffer
}

func (m *memResponse) Header() http.Header         { return m.header }
func (m *memResponse) Write(b []byte) (int, error) { return m.body.Write(b) }
func (m *memResponse) WriteHeader(int)             {}

type memFile struct{ *bytes.Reader }

func (memFile) Close() error { return nil }
