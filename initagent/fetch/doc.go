// Package fetch is the agent's HTTP: one client, one retry policy and one
// URL redactor for everything the agent fetches or reports.
//
//   - NewHTTPClient builds the client the agent makes once and shares
//     (client.go): no proxy, dial, TLS and response-header timeouts as
//     backstops, keep-alive, no compression, redirects for GET only.
//   - Policy is the retry policy (retry.go): attempts or a patience,
//     backoff doubling with jitter, a stall timeout per attempt, and which
//     errors are permanent (IsPermanent: a 4xx but 408 and 429, a digest or
//     size mismatch, errors marked Permanent).
//   - Fetch downloads an image into a file (fetch.go), verifying its
//     SHA-256 while the bytes stream in. A dropped connection, a stall or
//     a server error is retried; bytes already received are kept and the
//     download resumes with a Range request guarded by If-Range, so a
//     changed image restarts from zero instead of splicing two versions.
//   - Get fetches a small resource with the same policy (the boot
//     document); Post sends one phase report, once.
//   - RedactURL and RedactImageURL (redact.go) are what the agent shows of
//     a URL: never its user information, query or, for a document's or a
//     report's URL, its token. No error of this package quotes a URL
//     otherwise: the HTTP client's own errors do, and are rewritten.
//
// It is pure Go (no syscalls) and tested against httptest servers.
package fetch
