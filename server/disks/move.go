package disks

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/overboot/overboot/internal/durable"
	"github.com/overboot/overboot/server/state"
)

// A move copies a disk from its home to another server, verifies the
// copy and switches the home, crash-safely:
//
//  1. The home (the source) marks the row moving to the destination,
//     with the SHA-256 of a random secret (state.BeginMove). From here no
//     server boots or exports it.
//  2. It withdraws its target if no session is on it (target.RemoveIdle,
//     one lock with the check); with a session the move is called off
//     (the row back to ready) and refused, naming the session's
//     initiator.
//  3. It hashes its file and records the digest in the row.
//  4. It sends the file to the destination (PUT PeerPath, the secret in
//     the Authorization header). The destination checks the secret
//     against the row, writes the copy beside its final name, checks its
//     SHA-256 against the row's digest, puts it in place (fsync, rename,
//     fsync) and switches the row to itself, ready, in one conditional
//     update (state.FinishMove).
//  5. The source reads the row: switched, it removes its own file;
//     not, it calls the move off (conditional, state.UndoMove) and the
//     destination's copy goes at its next Sweep.
//
// The row decides which copy is the disk: before the switch the
// source's (never touched before it), after it the destination's (whole
// and verified before it). A crash anywhere leaves the row moving or
// switched: a restarted source calls a move still moving off (Recover);
// a server removes its copy of a disk that lives elsewhere, once the row
// says so (Sweep).
//
// Transport: the servers carry the copy themselves, source to
// destination, over the HTTP listeners they registered: the bytes go
// once, directly, and the process that decides (the source) is the one
// whose recovery undoes. It is authenticated by a secret only the store
// holders know, for this one move of this one disk (the row holds its
// hash, so a copy of the store does not give it), and the content by the
// digest the source wrote in the row, which the destination checks: a
// peer that learnt the secret on the wire can still only deliver the
// exact bytes. The administrator's token stays with the CLI.

// PeerPath is where a server receives a disk's copy from its home:
// PeerPath + ID.
const PeerPath = "/peer/disks/"

// moveAuth is the Authorization scheme of a disk copy.
const moveAuth = "Overboot-Move "

// ErrSessionOpen is wrapped by a move's error when a machine is using
// the disk.
var ErrSessionOpen = errors.New("a session is open on the disk")

// Move moves disk id, which lives here, to the server named to: only
// while no session is open on it. It returns when the disk lives there
// (and its copy here is gone), or an error with the disk still here.
func (m *Manager) Move(ctx context.Context, id int64, to string) error {
	k, err := m.db.DiskByID(ctx, id)
	if err != nil {
		return err
	}
	switch {
	case to == m.home:
		return fmt.Errorf("disk %d lives on %s already", id, to)
	case k.Home != m.home:
		return fmt.Errorf("disk %d lives on server %q, not on %s: ask it: %w", id, k.Home, m.home, state.ErrDiskBusy)
	case k.Status == state.DiskMoving:
		return movingError(k)
	case k.Status != state.DiskReady:
		return fmt.Errorf("disk %d is %s: %w", id, k.Status, state.ErrDiskBusy)
	case k.Kind != state.DiskUpper:
		return fmt.Errorf("disk %d is a %s disk: only upper disks move (a copy-on-write layer is tied to its base image file on this server; reset it instead)", id, k.Kind)
	}
	dest, err := m.db.Server(ctx, to)
	if err != nil {
		return err
	}
	if !dest.Up(timeNow()) {
		return fmt.Errorf("server %s is down (last heartbeat %s): %w", to, dest.Heartbeat.UTC().Format("2006-01-02T15:04:05Z"), ErrHomeDown)
	}
	if dest.Portal == "" || len(dest.URLs) == 0 {
		return fmt.Errorf("server %s serves no iSCSI (no portal registered): it cannot be a disk's home", to)
	}
	defer m.lockOwner(Owner{k.OwnerKind, k.Owner})()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	secretHex := hex.EncodeToString(secret)
	if err := m.db.BeginMove(ctx, id, m.home, to, hashHex(secretHex)); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx) // from here the move ends one way or the other
	callOff := func(why error) error {
		if ok, err := m.db.UndoMove(ctx, id, m.home, to); err != nil {
			return errors.Join(why, fmt.Errorf("call the move off: %w (the server calls it off at its next start)", err))
		} else if !ok {
			return m.afterSend(ctx, id, to, why)
		}
		return why
	}
	m.mu.Lock()
	busy, ok := m.target.RemoveIdle(TargetIQN(k))
	if ok {
		if lun, open := m.luns[id]; open {
			lun.Close()
			delete(m.luns, id)
		}
	}
	m.mu.Unlock()
	if !ok {
		return callOff(fmt.Errorf("disk %d: %w by %s (from %s): shut that machine down first", id, ErrSessionOpen, busy[0].Initiator, busy[0].Remote))
	}
	sum, err := fileSHA256(k.Path)
	if err != nil {
		return callOff(fmt.Errorf("disk %d: read its file: %w", id, err))
	}
	if ok, err := m.db.SetMoveDigest(ctx, id, m.home, to, sum); err != nil || !ok {
		return callOff(cmpErr(err, fmt.Errorf("disk %d: the move changed under it", id)))
	}
	m.log.Info("disk: moving", "id", id, "to", to, "bytes", k.Size, "sha256", sum)
	sendErr := m.send(ctx, dest.URLs[0], id, secretHex, k.Path, k.Size)
	return m.afterSend(ctx, id, to, sendErr)
}

// afterSend reads what the destination made of the copy: switched to
// it, this server's file goes; not, the move is called off.
func (m *Manager) afterSend(ctx context.Context, id int64, to string, sendErr error) error {
	k, err := m.db.DiskByID(ctx, id)
	if err != nil {
		return errors.Join(sendErr, err)
	}
	if k.Home == to {
		if err := os.RemoveAll(m.diskDir(id)); err != nil {
			m.log.Warn("disk: moved, but its old copy here stays until the next start", "id", id, "err", err)
		}
		m.log.Info("disk moved", "id", id, "to", to)
		return nil
	}
	if sendErr == nil {
		sendErr = fmt.Errorf("disk %d: server %s did not take the copy", id, to)
	}
	if _, err := m.db.UndoMove(ctx, id, m.home, to); err != nil {
		return errors.Join(sendErr, fmt.Errorf("call the move off: %w (the server calls it off at its next start)", err))
	}
	return fmt.Errorf("%w; the disk stays on %s", sendErr, m.home)
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// send PUTs the file to the destination's PeerPath.
func (m *Manager) send(ctx context.Context, base string, id int64, secret, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("disk %d: its file has %d bytes, its row says %d", id, fi.Size(), size)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, strings.TrimSuffix(base, "/")+PeerPath+fmt.Sprint(id), io.NopCloser(f))
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Authorization", moveAuth+secret)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := m.peers.Do(req)
	if err != nil {
		return fmt.Errorf("disk %d: send the copy: %w", id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("disk %d: the destination refused the copy: %s: %s", id, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Received is the destination's answer to a copy.
type Received struct {
	ID     int64  `json:"id"`
	Home   string `json:"home"`
	SHA256 string `json:"sha256"`
}

// ErrBadCopy is wrapped by Receive's errors about the request (not its
// move's, a wrong secret, a wrong size or digest).
var ErrBadCopy = errors.New("bad disk copy")

// Receive takes the copy of disk id, moving here, from r (size bytes):
// authorization is the request's Authorization header. It checks the
// secret against the row, writes the copy beside its place (sparse:
// blocks of zeros become holes), checks its SHA-256 against the digest
// the home recorded, puts it in place and switches the disk's home to
// this server. On any failure nothing of the copy stays.
func (m *Manager) Receive(ctx context.Context, id int64, authorization string, size int64, r io.Reader) (Received, error) {
	secret, ok := strings.CutPrefix(authorization, moveAuth)
	if !ok || secret == "" {
		return Received{}, fmt.Errorf("disk %d: no move secret: %w", id, ErrBadCopy)
	}
	k, err := m.db.DiskByID(ctx, id)
	if err != nil {
		return Received{}, err
	}
	sh := hashHex(secret)
	check := func(k state.Disk) error {
		switch {
		case !k.MoveSecretIs(sh):
			return fmt.Errorf("disk %d: not moving, or not with this secret: %w", id, ErrBadCopy)
		case k.MoveTo != m.home:
			return fmt.Errorf("disk %d is moving to %s, not here (%s): %w", id, k.MoveTo, m.home, ErrBadCopy)
		case k.MoveDigest == "":
			return fmt.Errorf("disk %d: its home has not recorded its digest: %w", id, ErrBadCopy)
		case k.Kind != state.DiskUpper:
			return fmt.Errorf("disk %d is a %s disk: %w", id, k.Kind, ErrBadCopy)
		case size != k.Size:
			return fmt.Errorf("disk %d has %d bytes, the copy %d: %w", id, k.Size, size, ErrBadCopy)
		}
		return nil
	}
	if err := check(k); err != nil {
		return Received{}, err
	}
	// The owner's lock against Sweep: a copy arriving is never swept.
	defer m.lockOwner(Owner{k.OwnerKind, k.Owner})()
	if k, err = m.db.DiskByID(ctx, id); err != nil {
		return Received{}, err
	}
	if err := check(k); err != nil {
		return Received{}, err
	}
	dir := m.diskDir(id)
	path := filepath.Join(dir, fileName(k.Kind))
	fail := func(err error) (Received, error) {
		os.Remove(path + ".new")
		return Received{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Received{}, err
	}
	sum, err := writeSparse(path+".new", io.LimitReader(r, size), size)
	if err != nil {
		return fail(fmt.Errorf("disk %d: receive the copy: %w", id, err))
	}
	if sum != k.MoveDigest {
		return fail(fmt.Errorf("disk %d: the copy's SHA-256 is %s, its home read %s: %w", id, sum, k.MoveDigest, ErrBadCopy))
	}
	if err := os.Rename(path+".new", path); err != nil {
		return fail(err)
	}
	if err := durable.Sync(dir); err != nil {
		return fail(err)
	}
	ok, err = m.db.FinishMove(context.WithoutCancel(ctx), id, k.Home, m.home, sh, path)
	if err != nil || !ok {
		// Called off meanwhile (or unknown: the next Sweep decides by
		// the row).
		if err == nil {
			os.RemoveAll(dir)
			err = fmt.Errorf("disk %d: the move was called off: %w", id, ErrBadCopy)
		}
		return Received{}, err
	}
	m.log.Info("disk moved here", "id", id, "from", k.Home, "sha256", sum)
	return Received{ID: id, Home: m.home, SHA256: sum}, nil
}

// writeSparse writes r's size bytes to a new file at path (0600),
// leaving holes for blocks of zeros, syncs it and returns the SHA-256
// (hex) of all of it.
func writeSparse(path string, r io.Reader, size int64) (string, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	var off int64
	for off < size {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-off)])
		if n > 0 {
			h.Write(buf[:n])
			if !bytes.Equal(buf[:n], zero[:n]) {
				if _, werr := f.WriteAt(buf[:n], off); werr != nil {
					return "", werr
				}
			}
			off += int64(n)
		}
		if err != nil {
			return "", fmt.Errorf("after %d of %d bytes: %w", off, size, err)
		}
	}
	if err := f.Truncate(size); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}
