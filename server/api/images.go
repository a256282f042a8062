package api

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/internal/blobstore"
	"github.com/overboot/overboot/server/drivers"
	"github.com/overboot/overboot/server/state"
)

// PublishRequest points a name at a blob.
type PublishRequest struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`         // sha256:HEX of a blob in the store (upload it first: POST /blobs)
	Kind   string `json:"kind,omitempty"` // root, kernel, initramfs or disk; default: root, kernel or initramfs, as the blob's first bytes say (a disk is published only when asked for)
	Note   string `json:"note,omitempty"`
}

// RollbackRequest moves a name back to an earlier version's blob.
type RollbackRequest struct {
	Version int `json:"version,omitempty"` // default: the version before the current one
}

// BlobView is an uploaded blob.
type BlobView struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size_bytes"`
	Kind   string `json:"kind"` // guessed
}

func (a *API) images(w http.ResponseWriter, r *http.Request) error {
	ims, err := a.d.DB.Images(r.Context())
	return writeList(w, ims, err)
}

func nameParam(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := blobstore.CheckName(name); err != nil {
		return "", errorf(http.StatusBadRequest, "image %v", err)
	}
	return name, nil
}

func (a *API) imageHistory(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r)
	if err != nil {
		return err
	}
	h, err := a.d.DB.ImageHistory(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, h)
}

// imagePublish makes a name's next version point at a blob, atomically:
// the next boot that asks for the name gets it; machines running the old
// blob keep reading it. A blob whose content is not of the kind it is
// published as (blobstore.Check) is refused, and the name stays.
func (a *API) imagePublish(w http.ResponseWriter, r *http.Request) error {
	var req PublishRequest
	if err := DecodeJSON(r.Body, &req); err != nil {
		return err
	}
	if err := blobstore.CheckName(req.Name); err != nil {
		return errorf(http.StatusBadRequest, "image %v", err)
	}
	d, err := boot.ParseDigest(req.Digest)
	if err != nil {
		return errorf(http.StatusBadRequest, "digest: %v", err)
	}
	if len(req.Note) > 200 {
		return errorf(http.StatusBadRequest, "note: at most 200 bytes")
	}
	f, err := a.d.Blobs.OpenBlob(d)
	if errors.Is(err, blobstore.ErrNotFound) {
		return errorf(http.StatusNotFound, "blob %s is not in the store: upload it first (overboot image publish NAME FILE does)", d)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	var kind blobstore.Kind
	if req.Kind != "" {
		if kind, err = blobstore.ParseKind(req.Kind); err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
	}
	// The content must be of the kind it is published as, as the boots
	// that get it will read it: checked before the name moves.
	if err := blobstore.Check(f, fi.Size(), kind); err != nil {
		var ke *blobstore.KindError
		if !errors.As(err, &ke) {
			return err
		}
		if ke.Kind == "" {
			return errorf(http.StatusBadRequest, `blob %s is %v; say --kind disk ("kind": "disk") for a raw disk image`, d, err)
		}
		return errorf(http.StatusBadRequest, "blob %s is %v", d, err)
	}
	if kind == "" {
		kind = blobstore.Sniff(f)
	}
	im, err := a.d.DB.PublishImage(background(r.Context()), state.Image{Name: req.Name, Digest: d.String(), Size: fi.Size(), Kind: string(kind), Note: req.Note})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, im)
}

func (a *API) imageRollback(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r)
	if err != nil {
		return err
	}
	var req RollbackRequest
	if err := DecodeJSON(r.Body, &req); err != nil {
		return err
	}
	im, err := a.Rollback(background(r.Context()), name, req.Version)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, im)
}

// Rollback points the image name at an earlier version's blob again, as
// a new version (version 0: the one before the current). The blob must
// still be in the store.
func (a *API) Rollback(ctx context.Context, name string, version int) (state.Image, error) {
	cur, err := a.d.DB.Image(ctx, name)
	if err != nil {
		return state.Image{}, err
	}
	to := version
	if to == 0 {
		to = cur.Version - 1
	}
	if to < 1 || to >= cur.Version {
		return state.Image{}, errorf(http.StatusBadRequest, "image %s: no version %d to roll back to (current is %d)", name, to, cur.Version)
	}
	old, err := a.d.DB.ImageVersion(ctx, name, to)
	if err != nil {
		return state.Image{}, err
	}
	if _, err := os.Stat(a.d.Blobs.BlobPath(boot.Digest(old.Digest))); err != nil {
		return state.Image{}, errorf(http.StatusConflict, "image %s version %d: its blob %s is gone from the store", name, to, old.Digest)
	}
	old.Note = "rollback to " + strconv.Itoa(to)
	im, err := a.d.DB.PublishImage(ctx, old)
	if err == nil {
		a.d.Log.Info("image rolled back", "image", name, "to", to, "version", im.Version)
	}
	return im, err
}

// blobUpload stores the request body as a blob (hashed as it streams).
func (a *API) blobUpload(w http.ResponseWriter, r *http.Request) error {
	d, n, err := a.d.Blobs.Ingest(r.Body)
	if err != nil {
		return errorf(http.StatusBadRequest, "upload: %v", err)
	}
	f, err := a.d.Blobs.OpenBlob(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return writeJSON(w, http.StatusCreated, BlobView{Digest: d.String(), Size: n, Kind: string(blobstore.Sniff(f))})
}

// GCRequest asks to remove unreferenced blobs.
type GCRequest struct {
	Grace  string `json:"grace,omitempty"` // default 24h: blobs younger, and blobs of boots seen since, are kept
	DryRun bool   `json:"dry_run,omitempty"`
}

// GCResult says what a collection removed and kept.
type GCResult struct {
	Removed []string `json:"removed"`
	Freed   int64    `json:"freed_bytes"`
	Kept    int      `json:"kept"`
	// TreesRemoved are the modules trees unpacked for driver segments
	// (DATA/drivers/trees) whose modules blob is gone, by that blob.
	TreesRemoved []string `json:"trees_removed,omitempty"`
}

// gc removes blobs that no name's history, no profile and no boot within
// the grace period refers to, and that are older than the grace period
// (an upload not yet published is kept).
func (a *API) gc(w http.ResponseWriter, r *http.Request) error {
	var req GCRequest
	if err := DecodeJSON(r.Body, &req); err != nil {
		return err
	}
	grace := 24 * time.Hour
	if req.Grace != "" {
		g, err := time.ParseDuration(req.Grace)
		if err != nil || g < 0 {
			return errorf(http.StatusBadRequest, "grace %q: want a duration like 24h", req.Grace)
		}
		grace = g
	}
	ctx := r.Context()
	keep, err := a.d.DB.ImageDigests(ctx)
	if err != nil {
		return err
	}
	since := time.Now().Add(-grace)
	inUse, err := a.d.DB.BootImages(ctx, since)
	if err != nil {
		return err
	}
	for d := range a.d.Profiles().Digests() {
		keep[d.String()] = true
	}
	blobs, err := a.d.Blobs.Blobs()
	if err != nil {
		return err
	}
	res := GCResult{Removed: []string{}}
	for _, b := range blobs {
		if keep[b.Digest.String()] || inUse[b.Digest.String()] || b.ModTime.After(since) {
			res.Kept++
			continue
		}
		if !req.DryRun {
			if err := a.d.Blobs.Remove(b.Digest); err != nil {
				return err
			}
		}
		res.Removed = append(res.Removed, b.Digest.String())
		res.Freed += b.Size
	}
	// A dry run's removals have not happened: the trees they would
	// orphan are not listed.
	if res.TreesRemoved, err = drivers.OrphanTrees(a.d.Blobs, req.DryRun); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}
