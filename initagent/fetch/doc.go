// Package fetch is the agent's HTTP: one client, one retry policy, one set
// of error classes, one Content-Range parser and one URL redactor for
// everything the agent fetches or reports, and the two ways it reads an
// image: whole, verified (Fetch), or on demand (RangeReader).
//
//   - NewHTTPClient builds the client the agent makes once and shares
//     (client.go): no proxy, dial, TLS and response-header timeouts as
//     backstops, response headers capped at MaxResponseHeaderBytes (64
//     KiB, where net/http allows 10 MB), keep-alive, no compression, and
//     CheckRedirect, the one redirect policy of the download and the Range
//     reader: GET and HEAD only, at most MaxRedirects, http and https
//     only, never https to http, never a link-local address.
//   - Policy is the retry policy (retry.go): attempts or a patience,
//     backoff doubling with jitter, a stall timeout and a minimum rate
//     (SlowBytes per SlowWindow, about 1 KiB/s) per attempt, a bound on
//     malformed answers without progress (MaxMalformed: a *ProtocolError,
//     ErrProtocol), and which errors are permanent (IsPermanent: a 4xx but
//     408 and 429, a digest or size mismatch, errors marked Permanent).
//     Giving up is an *ExhaustedError, which matches ErrUnavailable; a 404
//     or 410 matches ErrNotFound; an image of the wrong size
//     ErrSizeMismatch; an image that changed on the server ErrChanged.
//   - Fetch downloads an image into a file (fetch.go), verifying its
//     SHA-256 while the bytes stream in. A dropped connection, a stall or
//     a server error is retried; bytes already received are kept and the
//     download resumes with a Range request guarded by If-Range, so a
//     changed image restarts from zero instead of splicing two versions;
//     a second change (a cache holding slices of two versions cuts every
//     body where they meet) is ErrChanged, "image changed". A coded body
//     (Content-Encoding) is refused at once.
//   - Get fetches a small resource with the same policy (the boot
//     document); Post sends one phase report, once.
//   - OpenRange opens a RangeReader (rangereader.go), an io.ReaderAt over
//     HTTP Range requests (RFC 9110 section 14): the lazy root's data
//     source, which the keeper serves the kernel through an NBD device,
//     dm-verity above checking every block. Described below.
//   - parseContentRange (contentrange.go) is strict, table-tested and
//     fuzzed; Fetch checks a resumed download with it, a RangeReader every
//     answer.
//   - RedactURL and RedactImageURL (redact.go) are what the agent shows of
//     a URL: never its user information, query or, for a document's or a
//     report's URL, its token. No error or message of this package quotes
//     a URL otherwise: the HTTP client's own errors do, and are rewritten.
//
// # RangeReader
//
//	OpenRange(ctx, client, url, opts) -> *RangeReader
//	ReadAt(p, off) -> cache | join | request
//
// OpenRange's first request, a Range GET of the first chunk, learns the
// size (Content-Range) and the ETag. The image is read and cached in whole
// chunks (ChunkSize): an LRU bounded by CacheBytes (rangecache.go), or,
// with Fill, the whole image, completed in order in the background behind
// demand reads, after which the server is not needed. Readers of a chunk
// under way wait for the same request (rangesched.go). A read that
// continues a sequential stream (several are tracked, so interleaved
// readers each get theirs) queues requests for the chunks ahead and drops
// the chunks the stream has passed: the page cache above holds them, and
// their buffers, recycled while the CPU's cache still holds them, bring a
// stream within about 20% of one plain GET on loopback
// (BenchmarkRangeSequential). At most Parallel requests run; read-ahead
// and the fill use at most Parallel-1, so a demand read always finds one.
//
// It does not verify content, but never returns wrong bytes for an offset
// (rangehttp.go): every response must be a 206 for the range asked with
// the validators and size seen at OpenRange, whose body is as long as its
// Content-Range says. Requests carry If-Match when the ETag is strong, or
// else If-Unmodified-Since with the Last-Modified date, so the server
// itself refuses another version (412); answers are compared as well. An
// answer that starts at the offset asked and ends early, or a body cut
// short, brings the bytes it holds, kept apart until their chunk is whole,
// and the next request asks for the rest: a cache of slices that cuts a
// body where two versions meet is then asked past the cut, meets the new
// version and fails as ErrChanged instead of being asked the same for
// ever.
//
// Failures the server may recover from (refused, reset, 5xx, a stall, an
// attempt slower than SlowBytes per SlowWindow, a 200 with the whole
// image, which a cache answers on a miss) are retried by the Policy loop
// with the reader's own parameters: no bound on the attempts, Patience
// (default forever) from the start of the outage all its requests share, a
// shorter backoff; the outage is logged when it starts, again every
// LogEvery (30s) while it lasts with its latest error, and when it ends.
// Malformed answers (a Content-Range for other bytes, a Content-Length
// that disagrees with it, a multipart/byteranges answer, a refused
// redirect, oversized headers, a body longer than its Content-Range) are
// retried too, but MaxMalformed (4) of them without progress fail the
// read with ErrProtocol, naming the last; the reader stays usable. At
// OpenRange a 200 counts as malformed: MaxMalformed of them are
// ErrNoRange. The others (another ETag, Last-Modified or size, 416, 404,
// a coded body) are permanent, returned at once and for every later
// request.
//
// It is pure Go (no syscalls) and tested against httptest and loopback
// servers.
package fetch
