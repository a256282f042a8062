package state

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/overboot/overboot/boot"
)

// KeepWorkingSets is how many boots' working sets the store keeps per
// image, the latest: the next boots get the union of theirs. A few
// boots' worth covers what differs from boot to boot (a fsck, a first
// boot's setup) without growing with the number of boots.
const KeepWorkingSets = 8

// AddWorkingSet records the working set boot bootID of image (its
// digest) reported, and drops that image's sets beyond KeepWorkingSets.
// A boot reports once: a second report fails with ErrExists and changes
// nothing.
func (d *DB) AddWorkingSet(ctx context.Context, bootID int64, image string, ws boot.WorkingSet) error {
	if err := ws.Validate(); err != nil {
		return fmt.Errorf("boot %d's working set: %w", bootID, err)
	}
	return d.tx(ctx, func(tx handle) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO working_sets (boot_id, image, chunk_size, image_chunks, tree_chunks, reported_at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (boot_id) DO NOTHING`, bootID, image, ws.ChunkSize, ws.Image.String(), ws.Tree.String(), d.millis())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("boot %d's working set: %w", bootID, ErrExists)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM working_sets WHERE image = ? AND boot_id NOT IN
			(SELECT boot_id FROM working_sets WHERE image = ? ORDER BY reported_at DESC, boot_id DESC LIMIT ?)`, image, image, KeepWorkingSets)
		return err
	})
}

// WorkingSet is the union of the working sets kept for image (at most
// boot.MaxWorkingSetChunks: UnionWorkingSets), and how many boots'
// sets it joins; none (0) when no boot reported one.
func (d *DB) WorkingSet(ctx context.Context, image string) (boot.WorkingSet, int, error) {
	sets, err := queryAll(ctx, d.sql, func(row scanner) (boot.WorkingSet, error) {
		var ws boot.WorkingSet
		var img, tree string
		if err := row.Scan(&ws.ChunkSize, &img, &tree); err != nil {
			return ws, err
		}
		if err := ws.Image.UnmarshalText([]byte(img)); err != nil {
			return ws, fmt.Errorf("working set of %s: image chunks: %w", image, err)
		}
		if err := ws.Tree.UnmarshalText([]byte(tree)); err != nil {
			return ws, fmt.Errorf("working set of %s: tree chunks: %w", image, err)
		}
		return ws, nil
	}, `SELECT chunk_size, image_chunks, tree_chunks FROM working_sets WHERE image = ? ORDER BY reported_at DESC, boot_id DESC LIMIT ?`, image, KeepWorkingSets)
	if err != nil || len(sets) == 0 {
		return boot.WorkingSet{}, 0, err
	}
	u, n := UnionWorkingSets(sets, boot.MaxWorkingSetChunks)
	return u, n, nil
}

// UnionWorkingSets joins sets, latest first, in the chunk size of the
// first (sets in another are left out), and says how many it joined.
// When the union has more than limit chunks, those read by the most
// boots stay: a chunk one boot read is less likely the next's than one
// every boot read (ties: the tree's first, as dm-verity reads a tree
// block before each of its data blocks; then the lower chunks).
func UnionWorkingSets(sets []boot.WorkingSet, limit int) (boot.WorkingSet, int) {
	if len(sets) == 0 {
		return boot.WorkingSet{}, 0
	}
	type key struct {
		image bool
		chunk int64
	}
	counts := map[key]int{}
	joined := 0
	for _, s := range sets {
		if s.ChunkSize != sets[0].ChunkSize {
			continue
		}
		joined++
		for _, c := range s.Image.Chunks() {
			counts[key{true, c}]++
		}
		for _, c := range s.Tree.Chunks() {
			counts[key{false, c}]++
		}
	}
	keys := make([]key, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	// The tree's chunks first, then the image's, each in order.
	order := func(a, b key) int {
		if a.image != b.image {
			if a.image {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.chunk, b.chunk)
	}
	slices.SortFunc(keys, order)
	if len(keys) > limit {
		// Stable: among equal counts the order above decides.
		slices.SortStableFunc(keys, func(a, b key) int { return cmp.Compare(counts[b], counts[a]) })
		keys = keys[:limit]
		slices.SortFunc(keys, order)
	}
	var image, tree []int64
	for _, k := range keys {
		if k.image {
			image = append(image, k.chunk)
		} else {
			tree = append(tree, k.chunk)
		}
	}
	return boot.WorkingSet{ChunkSize: sets[0].ChunkSize, Image: boot.RangesOf(image), Tree: boot.RangesOf(tree)}, joined
}
