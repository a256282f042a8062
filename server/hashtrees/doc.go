// Package hashtrees owns the dm-verity hash trees of the root images that
// machines read on demand (lower-mode lazy or fill): one tree per image
// digest, built the first time a machine needs it (internal/verity, the
// format veritysetup writes), kept in DATA/hashtrees as IMAGEHEX.tree with
// IMAGEHEX.json (the root hash, the salt and the tree's own digest), and
// served read-only to machines. The tree is derived from the image alone:
// its salt and UUID come from the image's digest, so a rebuilt tree is
// byte for byte the same.
package hashtrees
