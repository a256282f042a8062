// Package telemetry is what the server knows about boots as they happen:
// each boot's events (the server's own: script, kernel, initramfs, root,
// document, sanboot, login; and the agent's phase reports) recorded in the
// state store, live updates to the status page over server-sent events,
// and Prometheus metrics (prometheus/client_golang): requests, bytes
// served, boots by outcome, phase durations, iSCSI connections and
// sessions, disk bytes.
//
// The status page (/status) is one HTML document with its script and
// style inline: no external assets. It lists machines with their profile,
// enrolment, current phase, image, user, disk and last error, and updates
// rows as events arrive (/status/events, text/event-stream).
package telemetry
