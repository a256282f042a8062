package answer

import (
	"cmp"
	"strings"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/config"
)

// TreePrefix is where the server serves the dm-verity tree of an image
// read on demand, by the image's digest.
const TreePrefix = "/verity/sha256/"

// Image is the root image a document names.
type Image struct {
	Digest boot.Digest
	Size   int64
	// Tree is its dm-verity tree, for a profile that reads it on demand;
	// nil otherwise.
	Tree *Tree
	// WorkingSet is what earlier boots of it read first, with a Tree;
	// nil when none reported one.
	WorkingSet *boot.WorkingSet
}

// Tree is an image's dm-verity tree, as package server/hashtrees made it.
type Tree struct {
	Hash     boot.Digest // of the tree file
	Size     int64
	RootHash string
	Salt     string
}

// Disk is a machine's (or its user's) private disk, exported to it.
type Disk struct {
	Portal    string // host:port
	Target    string
	Initiator string
	CHAP      boot.CHAP // both ways: the target proves itself too
}

// DocumentFacts is what a boot document is made of; everything in it was
// decided or made before (the token spent, the disk attached, the
// identity made, the report token issued).
type DocumentFacts struct {
	Base    string   // the server's URL for this machine
	Mirrors []string // base URLs of other servers or caches of the same blobs and trees, in order
	Cache   string   // an HTTP cache in front of the servers, read before Base; "" = none
	// Secure is the server's HTTPS base URL; "" = none. Reports go
	// there, and the image too when the profile says lower-tls.
	Secure      string
	Machine     Machine
	Profile     *config.Profile
	Root        Image
	Disk        *Disk // the upper on iSCSI; nil: tmpfs
	Identity    *boot.Identity
	ReportToken string
}

// Document is the boot document of one boot: the lower (the root image
// over HTTP, whole or read on demand behind dm-verity, or the profile's
// NFS export, root = nfs://...), the upper (tmpfs
// or the private disk, with its CHAP secrets both ways), the machine's
// identity and where to report. It is validated as the agent will read
// it.
func Document(f DocumentFacts) (boot.Document, error) {
	p := f.Profile
	// The image and its tree at the cache in front of the servers, if
	// any, then at this server (it has just answered the machine), then
	// at each mirror: the same bytes, checked by the
	// digest or dm-verity wherever they come from.
	first, others := imageBases(f.Base, f.Cache, f.Mirrors)
	if p.LowerTLS && f.Secure != "" {
		// The image may hold secrets: this server over HTTPS, then the
		// mirrors that are HTTPS too; no plain HTTP cache.
		first, others = f.Secure, nil
		for _, m := range f.Mirrors {
			if strings.HasPrefix(m, "https://") {
				others = append(others, m)
			}
		}
	}
	lower := &boot.HTTPSource{URL: BlobURL(first, f.Root.Digest), Mirrors: mirrorURLs(others, BlobPrefix+f.Root.Digest.Hex()), Digest: f.Root.Digest, Size: f.Root.Size, Mode: p.LowerMode}
	if t := f.Root.Tree; t != nil {
		lower.Verity = &boot.Verity{HashURL: first + TreePrefix + f.Root.Digest.Hex(), HashMirrors: mirrorURLs(others, TreePrefix+f.Root.Digest.Hex()), HashDigest: t.Hash, HashSize: t.Size, RootHash: t.RootHash, Salt: t.Salt}
		lower.WorkingSet = f.Root.WorkingSet
	}
	upper := boot.Upper{Tmpfs: &boot.TmpfsUpper{Size: p.UpperSize}}
	if d := f.Disk; d != nil {
		chap := d.CHAP
		upper = boot.Upper{ISCSI: &boot.ISCSISource{Portal: d.Portal, Target: d.Target, Initiator: d.Initiator, CHAP: &chap}}
	}
	src := boot.Source{HTTP: lower}
	if n := p.NFSLower(); n != nil {
		// An NFS export: the machine mounts it as it is; no digest,
		// nothing the server could check.
		src = boot.Source{NFS: n}
	}
	doc := boot.Document{Version: 1, Machine: f.Machine.MAC,
		Lower:    src,
		Upper:    upper,
		Init:     p.Init,
		Report:   cmp.Or(f.Secure, f.Base) + "/report/" + f.ReportToken,
		Identity: f.Identity,
	}
	if f.Machine.User != "" {
		doc.Machine = f.Machine.MAC + " (user " + f.Machine.User + ")"
	}
	if err := doc.Validate(); err != nil {
		return boot.Document{}, err
	}
	return doc, nil
}
