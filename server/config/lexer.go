package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxLine bounds a line of the file.
const maxLine = 4096

// block is one section as written: its header's words and line, and its
// key = value lines in order.
type block struct {
	kind, arg string // [kind arg]: "profile", "lab"
	line      int
	entries   []entry
}

// entry is one key = value line.
type entry struct {
	key, value string
	line       int
}

// lex reads the file's lines into sections: comments (# or ; at the
// start, or after whitespace), blank lines, section headers, key = value
// lines. What it refuses, it refuses with the file and the line (a line
// that is neither, a key outside a section or given twice in one, a
// malformed header, control characters, a line longer than maxLine); the
// lines of a section whose header it refused are skipped, not reported
// again. What a section or key means is Parse's and the key table's.
func lex(name string, r io.Reader) ([]block, []error) {
	var blocks []block
	var errs []error
	fail := func(line int, format string, args ...any) {
		errs = append(errs, &Error{name, line, fmt.Errorf(format, args...)})
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, maxLine), maxLine)
	var cur *block
	skipping := false // the current section's header was refused
	sections := map[string]int{}
	keys := map[string]int{}
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' || text[0] == ';' {
			continue
		}
		if !isPrintable(text) {
			fail(line, "control or non-UTF-8 characters")
			continue
		}
		if text[0] == '[' {
			text = strings.TrimSpace(stripComment(text)) // "[machine X]   # a note"
			cur, keys = nil, map[string]int{}
			if !strings.HasSuffix(text, "]") {
				fail(line, "section header %q: missing ]", text)
				skipping = true
				continue
			}
			head := strings.Fields(text[1 : len(text)-1])
			id := strings.Join(head, " ")
			if first, dup := sections[id]; dup {
				fail(line, "section [%s] again (first at line %d)", id, first)
				skipping = true
				continue
			}
			sections[id] = line
			if len(head) == 0 || len(head) > 2 {
				fail(line, "unknown section [%s]: want [server], [profile NAME], [machine MAC|UUID], [subnet CIDR] or [select NAME]", id)
				skipping = true
				continue
			}
			b := block{kind: head[0], line: line}
			if len(head) == 2 {
				b.arg = head[1]
			}
			blocks = append(blocks, b)
			cur, skipping = &blocks[len(blocks)-1], false
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok {
			fail(line, "%q: want key = value", text)
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(stripComment(v))
		switch {
		case skipping:
			continue // the section header was already reported
		case cur == nil:
			fail(line, "%s outside a section: start with [server] or [profile NAME]", k)
			continue
		}
		if first, dup := keys[k]; dup {
			fail(line, "%s set again (first at line %d)", k, first)
			continue
		}
		keys[k] = line
		cur.entries = append(cur.entries, entry{key: k, value: v, line: line})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			fail(line+1, "line longer than %d bytes", maxLine)
		} else {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return blocks, errs
}

// isPrintable reports a line without control characters (but tabs) and
// of valid UTF-8.
func isPrintable(s string) bool {
	for _, r := range s {
		if r == '\t' {
			continue
		}
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

// stripComment drops a trailing comment: '#' or ';' after whitespace.
func stripComment(v string) string {
	for i := 1; i < len(v); i++ {
		if (v[i] == '#' || v[i] == ';') && (v[i-1] == ' ' || v[i-1] == '\t') {
			return v[:i]
		}
	}
	return v
}
