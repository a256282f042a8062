package state

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Refill is a token bucket's arithmetic: a bucket of burst tokens that had
// tokens at at gains one per every; it returns the tokens at now (at most
// burst) and whether one could be taken (and was: the count returned is
// after taking it). enroll.Limiter (one server's memory) and TakeToken
// (the store, shared by every server) both count with it.
func Refill(tokens float64, at, now time.Time, every time.Duration, burst int) (float64, bool) {
	if d := now.Sub(at); d > 0 {
		tokens += float64(d) / float64(every)
	}
	if tokens > float64(burst) {
		tokens = float64(burst)
	}
	if tokens < 1 {
		return tokens, false
	}
	return tokens - 1, true
}

// TakeToken takes a token from key's bucket in the store (burst tokens,
// one more per every), and reports whether there was one: a limit that
// holds across every server sharing the store (a user's login attempts).
// A bucket is a row from its first use until PruneBuckets finds it full.
func (d *DB) TakeToken(ctx context.Context, key string, every time.Duration, burst int) (bool, error) {
	var ok bool
	err := d.tx(ctx, func(tx handle) error {
		now := d.now()
		tokens, at := float64(burst), now
		var ms int64
		err := tx.QueryRowContext(ctx, `SELECT tokens, at FROM rate_buckets WHERE key = ?`, key).Scan(&tokens, &ms)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			at = fromMillis(ms)
		}
		tokens, ok = Refill(tokens, at, now, every, burst)
		_, err = tx.ExecContext(ctx, `INSERT INTO rate_buckets (key, tokens, at, full_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at, full_at = excluded.full_at`,
			key, tokens, now.UnixMilli(), now.Add(time.Duration((float64(burst)-tokens)*float64(every))).UnixMilli())
		return err
	})
	return ok, err
}

// PruneBuckets removes the buckets full again at now (as good as absent),
// and returns how many.
func (d *DB) PruneBuckets(ctx context.Context) (int64, error) {
	var n int64
	err := d.tx(ctx, func(tx handle) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM rate_buckets WHERE full_at <= ?`, d.millis())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
