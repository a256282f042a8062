package initagent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"

	"github.com/overboot/overboot/initagent/fetch"
)

// download fetches the image into s.Dest (on the image tmpfs), verified.
// A failed download leaves nothing behind.
func download(ctx context.Context, s Download, client *http.Client, progress func(Phase, string)) (string, error) {
	if err := os.MkdirAll(filepath.Dir(s.Dest), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(s.Dest, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	// Mirrors: a failing server's download goes on from the next, by
	// Range from where it was (WithMirrors), the digest still checked.
	client, err = fetch.WithMirrors(client, append([]string{s.URL}, s.Mirrors...), fetch.FailoverOptions{
		ExpectSize: s.Size,
		Logf:       func(format string, args ...any) { progress(PhaseLower, fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		f.Close()
		os.Remove(s.Dest)
		return "", err
	}
	res, err := fetch.Fetch(ctx, s.URL, s.Digest, s.Size, f, fetch.Options{
		Client:   client,
		Policy:   fetch.Policy{Attempts: s.Attempts, Stall: s.Stall, Retrying: retrying(PhaseLower, progress)},
		Progress: func(p fetch.Progress) { progress(PhaseLower, "fetch "+p.String()) },
	})
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write %s: %w", s.Dest, cerr)
	}
	if err != nil {
		os.Remove(s.Dest)
		if errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("%w: the image does not fit in RAM: give the machine more memory", err)
		}
		return "", err
	}
	return res.String(), nil
}
