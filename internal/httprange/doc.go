// Package httprange reads a remote read-only image as an io.ReaderAt over
// HTTP Range requests (RFC 9110 section 14). It is the lazy root's data
// source in the agent: the kernel reads the squashfs through an NBD device
// whose server calls ReadAt, and dm-verity above checks every block.
//
//	Open(ctx, client, url, opts) -> *Reader: ReadAt(p, off) -> cache | join | request
//
// Open's first request, a Range GET of the first chunk, learns the size
// (Content-Range) and the ETag. The image is read and cached in whole
// chunks (ChunkSize): an LRU bounded by CacheBytes, or, with Fill, the
// whole image, completed in order in the background behind demand reads,
// after which the server is not needed. Readers of a chunk under way wait
// for the same request. A read that continues a sequential stream (several
// are tracked, so interleaved readers each get theirs) queues requests for
// the chunks ahead and drops the chunks the stream has passed: the page
// cache above holds them, and their buffers, recycled while the CPU's
// cache still holds them, bring a stream within about 20% of one plain GET
// on loopback (BenchmarkSequential). At most Parallel requests run;
// read-ahead and the fill use at most Parallel-1, so a demand read always
// finds one.
//
// It does not verify content, but never returns wrong bytes for an offset:
// every response must be a 206 for the range asked with the size and
// ETag seen at Open, whose body is exactly that long; requests carry
// If-Match, so the server itself refuses another version (412). A body cut
// short is an error for that attempt, never data. Failures the server may
// recover from (refused, reset, 5xx, a stall, a malformed answer) are
// retried with jittered exponential backoff for Patience (default forever),
// logged once when they start and once when they end; the others (another
// ETag or size, 416, 404, a 200 ignoring Range) are permanent, returned at
// once and for every later request.
//
// Messages (Options.Logf) and errors never show the URL's query or user
// information: a token may be there.
//
// It is pure Go, tested against loopback HTTP servers.
package httprange
