package oci

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Transport says where a Ref's image is.
type Transport string

// The transports, spelled as in a reference (the containers/image names).
const (
	Docker        Transport = "docker"         // a registry
	Layout        Transport = "oci"            // an OCI image layout directory
	OCIArchive    Transport = "oci-archive"    // a tar of an OCI image layout
	DockerArchive Transport = "docker-archive" // docker save's tar
	Path          Transport = ""               // a plain tar or a directory: not a container image
)

// ErrRef: a reference that cannot be parsed.
var ErrRef = errors.New("bad image reference")

// Ref is a parsed image reference.
type Ref struct {
	Transport Transport
	Name      string // docker: REGISTRY/REPO:TAG or @sha256:...; else a path
	Tag       string // oci: the layout's tag (org.opencontainers.image.ref.name); "" = its only image
}

// String gives the reference back in its canonical form.
func (r Ref) String() string {
	switch r.Transport {
	case Path:
		return r.Name
	case Layout:
		if r.Tag != "" {
			return "oci:" + r.Name + ":" + r.Tag
		}
	case Docker:
		return "docker://" + r.Name
	}
	return string(r.Transport) + ":" + r.Name
}

// ParseRef parses docker://REGISTRY/REPO[:TAG|@sha256:HEX], oci:DIR[:TAG],
// oci-archive:FILE, docker-archive:FILE; anything else is a Path (a tar
// archive or a directory, for mkimage's own reader).
func ParseRef(s string) (Ref, error) {
	transport, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Ref{Transport: Path, Name: s}, nil
	}
	switch Transport(transport) {
	case Docker:
		if !strings.HasPrefix(rest, "//") {
			return Ref{}, fmt.Errorf("%q: want docker://REGISTRY/REPO:TAG: %w", s, ErrRef)
		}
		rest = strings.TrimPrefix(rest, "//")
		r, err := name.ParseReference(rest)
		if err != nil {
			return Ref{}, fmt.Errorf("%q: %v: %w", s, err, ErrRef)
		}
		return Ref{Transport: Docker, Name: r.Name()}, nil
	case Layout:
		dir, tag := rest, ""
		if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i+1:], "/") {
			dir, tag = rest[:i], rest[i+1:]
			if tag == "" {
				return Ref{}, fmt.Errorf("%q: an empty tag after the last ':': %w", s, ErrRef)
			}
		}
		if dir == "" {
			return Ref{}, fmt.Errorf("%q: no directory: want oci:DIR[:TAG]: %w", s, ErrRef)
		}
		return Ref{Transport: Layout, Name: dir, Tag: tag}, nil
	case OCIArchive, DockerArchive:
		if rest == "" {
			return Ref{}, fmt.Errorf("%q: no file: want %s:FILE: %w", s, transport, ErrRef)
		}
		return Ref{Transport: Transport(transport), Name: rest}, nil
	}
	return Ref{Transport: Path, Name: s}, nil
}
