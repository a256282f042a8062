// Package console is the operator's console: the fleet run from a
// browser, under /console. An operator signs in with an admin token (of
// scope read to look, operate or admin to act), which opens a session kept
// in the state store (so it holds across the servers sharing it, and
// across restarts) until it expires, the operator signs out or the token
// is revoked. Every state change is a form POST carrying the session's
// CSRF token, from this server's own pages (Origin), and asks the token's
// scope again.
//
// Pages: the fleet's overview (machines by state, the last hour's times
// to root per image as a histogram, failures grouped by phase and
// message), the machine list (filtered, searched, sorted and paged on the
// server: it stays fast at 10,000 machines), a page per machine (its
// boots, the chosen one drawn as a waterfall: the server's steps and the
// agent's phases on one time axis; its identity, disks, enrolment and
// addresses; approve, reset, rotate and delete, each behind a page that
// says what will happen), the queue of pending approvals, images with
// their history and rollback, users with password reset and their disks,
// and the servers sharing the store.
//
// Pictures are SVG drawn by the server (package server/console/chart);
// the only script is the page's own few lines that follow the server's
// event stream and fetch the page again when it concerns it. Nothing is
// loaded from elsewhere: the pages keep the status page's CSP.
package console
