package fetch

import "errors"

// Errors callers branch on with errors.Is: the agent's one set of error
// classes, of Fetch, Get and a RangeReader alike (and, for a refusal, a
// *StatusError; for giving up, an *ExhaustedError).
var (
	// ErrDigestMismatch: the bytes arrived but are not the image named.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch: the server sent fewer or more bytes than expected,
	// has an image of another size than expected or an empty one, or
	// refused a range inside the size it announced (HTTP 416).
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrNotFound: the server answered 404 or 410.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: every attempt failed until the Policy's attempts or
	// Patience ran out, or (Fetch) the server refused the request with a
	// status retrying cannot fix.
	ErrUnavailable = errors.New("unavailable")

	// ErrProtocol: the server's answers were malformed (Policy.MaxMalformed)
	// without progress between them: a *ProtocolError.
	ErrProtocol = errors.New("protocol error")

	// ErrNoRange: the server answers every Range request with the whole
	// body (a RangeReader's, at OpenRange; later, a 200 is a cache's miss
	// and retried).
	ErrNoRange = errors.New("server ignores Range requests")
	// ErrChanged: the image on the server is not the one first seen
	// (another ETag, Last-Modified or size; a 412 to If-Match or
	// If-Unmodified-Since). Bytes of two versions are never mixed.
	ErrChanged = errors.New("image changed on the server")
	// ErrClosed: the RangeReader was closed.
	ErrClosed = errors.New("reader closed")
)
