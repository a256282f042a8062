// Package oci reads container images for mkimage root: it resolves a
// reference (docker://REGISTRY/REPO:TAG or @sha256:..., oci:DIR[:TAG],
// oci-archive:FILE, docker-archive:FILE) to the image for one platform,
// picked from an index (linux/amd64 unless asked), and flattens its layers
// into one tar stream the way container runtimes apply them (whiteouts,
// opaque directories, hard links across layers; see Flattener), which
// mkimage.BuildRoot turns into a squashfs with its netboot fix-ups.
//
// It owns the reference syntax, the platform choice, the size limits and
// the flattening; not the squashfs (mkimage) nor publishing (the state
// store). Registry credentials come from docker's config.json
// (authn.DefaultKeychain). A registry image's layers are pulled once into
// the caller's work directory and checked against their digests; every
// layer is checked against its diff_id as it is read. Nothing is extracted
// to disk (an oci-archive's layout files only), so no root is needed.
package oci
