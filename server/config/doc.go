// Package config reads the overboot server's configuration file: INI-like
// sections ([server], [profile NAME], [machine MAC|UUID], [subnet CIDR],
// [select NAME]) of "key = value" lines. Parsing is strict: an unknown
// section or key, a duplicate, or a malformed value is an error naming
// the file and the line, the key's own line when the error is about a
// key.
//
// lexer.go reads lines into sections; keys.go is the key table (every
// key, its default and meaning: Sections, from which Reference makes
// docs/configuration.md) and the setters that read each value;
// config.go holds the types and the checks that span sections. Pure: it
// reads a reader, or the one file Load opens.
package config
