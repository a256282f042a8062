// Package nginxtest starts Debian's nginx (/usr/sbin/nginx, package
// nginx, with its slice module) as a caching reverse proxy in front of
// upstream HTTP servers, for tests: everything it writes (configuration,
// pid, error and access logs, temp files, the cache) lives in a temporary
// directory, it listens on a free port of 127.0.0.1, and it is stopped and
// removed when the test ends.
//
// The configuration is the one docs/operations.md shows: /blobs/ and
// /verity/ (immutable, named by digest) are cached; everything else is
// passed to the upstreams uncached. Range requests are either passed to
// the upstream and cached per range (Options.Slice empty: the range is in
// the cache key) or sliced (Options.Slice "1m": nginx's slice module asks
// the upstream for aligned slices and caches each), or (Options.WholeFirst)
// never passed on: an object is fetched whole and cached from its second
// request on, so the first request gets 200 and the whole object, Range
// or not. The access log has
// $upstream_cache_status (MISS, HIT, ...) per request: Log reads it.
//
// Run and Nginx.Stop do the same outside of a test (a benchmark's), with
// Options.Connections for many clients at once. Restart stops it and
// starts it again on the same port, its cache emptied or kept.
//
// It needs nginx: testneed.Tool skips (or fails under OVERBOOT_STRICT=1)
// without it. Run as root, the workers run as root too, so they can write
// the test's directory.
package nginxtest
