package vmtest

import "fmt"

// Keys: a string as the key chords a person would type on a US keyboard,
// in QEMU's qcode names (QMP send-key). Each chord is pressed together
// and released: "A" is [shift a], "!" is [shift 1].

// unshifted maps the characters typed without shift to their qcodes.
var unshifted = map[rune]string{
	' ': "spc", '\t': "tab", '\n': "ret",
	'-': "minus", '=': "equal", '[': "bracket_left", ']': "bracket_right",
	'\\': "backslash", ';': "semicolon", '\'': "apostrophe", '`': "grave_accent",
	',': "comma", '.': "dot", '/': "slash",
}

// shifted maps the characters typed with shift to the qcode of their key.
var shifted = map[rune]string{
	'!': "1", '@': "2", '#': "3", '$': "4", '%': "5", '^': "6", '&': "7", '*': "8", '(': "9", ')': "0",
	'_': "minus", '+': "equal", '{': "bracket_left", '}': "bracket_right", '|': "backslash",
	':': "semicolon", '"': "apostrophe", '~': "grave_accent", '<': "comma", '>': "dot", '?': "slash",
}

// KeyChord returns the qcodes that type r.
func KeyChord(r rune) ([]string, error) {
	switch {
	case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		return []string{string(r)}, nil
	case r >= 'A' && r <= 'Z':
		return []string{"shift", string(r - 'A' + 'a')}, nil
	}
	if k, ok := unshifted[r]; ok {
		return []string{k}, nil
	}
	if k, ok := shifted[r]; ok {
		return []string{"shift", k}, nil
	}
	return nil, fmt.Errorf("keys: no US-keyboard key types %q", r)
}

// KeyChords returns the chords that type s, one per character; it fails
// on any character a US keyboard cannot type, before any key is sent.
func KeyChords(s string) ([][]string, error) {
	var out [][]string
	for _, r := range s {
		c, err := KeyChord(r)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
