// Package peers brings a blob this server lacks from other overboot
// servers (its peers) or an origin, by digest: GET BASE/blobs/sha256/HEX
// from each source in order, streamed into the blob store and kept only
// when its SHA-256 (and size) is the digest asked for. A source that sends
// other bytes is logged by name and the next one is tried.
//
// A request a Fetcher sends carries the header Header; a server answers
// such a request from its own store only, never by fetching in turn, so
// two servers that list each other (A asks B asks A) cannot loop.
//
// Concurrent fetches of one digest are one transfer (the first caller
// starts it; it runs to its end even when that caller gives up, since
// others may wait for it). It does not serve HTTP and does not decide
// which digests may be fetched: package server does.
package peers
