// Package api is the overboot server's admin API: JSON under /api/v1,
// every request authenticated with a bearer token (overboot token create;
// stored hashed, package server/enroll). Where a request comes from grants
// nothing: a loopback client without a token is refused like any other.
//
// Resources: machines (list, show with boot history, approve, reset,
// rotate, delete), users (add, password, reset, delete), disks, images
// (publish a name to a blob, history, rollback; blob upload), boots with
// their events, admin tokens, gc of unreferenced blobs, and a consistent
// backup of the state store. Errors are JSON, {"error": "..."}, with a
// message that names what was wrong. A request that is refused changes
// nothing: inputs are parsed and checked before anything is touched.
package api
