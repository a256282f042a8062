package mkimage

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/overboot/overboot/boot"
)

// lockedWriter serialises progress lines from the goroutines of a build. A
// nil w discards.
type lockedWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	if l.w == nil {
		return len(p), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// barRE matches mksquashfs's progress bar: "[====-   ] 1234/4928  25%".
var barRE = regexp.MustCompile(`\]\s+(\d+)/(\d+)\s+(\d+)%`)

// barWriter turns mksquashfs's standard output into a progress line every
// 10 percent; the other lines (its summary) go to the debug log.
type barWriter struct {
	progress io.Writer
	log      *slog.Logger
	buf      []byte
	next     int // the next percentage worth a line
}

func (w *barWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexAny(w.buf, "\r\n")
		if i < 0 {
			break
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // no line ending in sight: not a bar
		w.line(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

func (w *barWriter) line(l []byte) {
	if m := barRE.FindSubmatch(l); m != nil {
		pct, _ := strconv.Atoi(string(m[3]))
		if pct >= w.next {
			fmt.Fprintf(w.progress, "mksquashfs: %3d%% (%s/%s)\n", pct, m[1], m[2])
			w.next = pct/10*10 + 10
		}
		return
	}
	if s := strings.TrimSpace(string(l)); s != "" {
		w.log.Debug("mksquashfs", "out", s)
	}
}

// tailWriter keeps the end of mksquashfs's standard error for the error
// message, and sends its lines to the debug log.
type tailWriter struct {
	log  *slog.Logger
	max  int
	buf  []byte
	cut  bool   // buf has lost its beginning
	part []byte // an unfinished line
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if len(w.buf) > 2*w.max {
		w.buf = append([]byte(nil), w.buf[len(w.buf)-w.max:]...)
		w.cut = true
	}
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		if s := strings.TrimSpace(string(w.part[:i])); s != "" {
			w.log.Debug("mksquashfs", "err", s)
		}
		w.part = w.part[i+1:]
	}
	if len(w.part) > w.max {
		w.part = nil
	}
	return len(p), nil
}

// String returns the last lines written, at most max bytes.
func (w *tailWriter) String() string {
	b := w.buf
	if len(b) > w.max {
		b, w.cut = b[len(b)-w.max:], true
	}
	if w.cut {
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// countingReader reports how much of the source archive has been read, every
// 10 percent.
type countingReader struct {
	r        io.Reader
	total    int64
	n        int64
	next     int64 // the next percentage worth a line
	progress io.Writer
	name     string
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.total > 0 {
		if pct := c.n * 100 / c.total; pct >= c.next {
			fmt.Fprintf(c.progress, "read %s: %3d%%\n", c.name, pct)
			c.next = pct/10*10 + 10
		}
	}
	return n, err
}

// hashFile returns the sha256 digest and size of the file at p.
func hashFile(p string) (boot.Digest, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", p, err)
	}
	return boot.DigestFromSum(h.Sum(nil)), n, nil
}

// envWithout returns env without the variable named key.
func envWithout(env []string, key string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// shellQuote quotes s for /bin/sh, which runs mksquashfs's pseudo file
// commands.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
