// Package chart draws the operator console's pictures as inline SVG: a
// boot's waterfall (Steps, then Waterfall) and a histogram of boot times
// (Histogram).
//
// The output is one <svg> element meant to be written straight into an
// HTML page whose CSP is default-src 'none': it uses no external asset,
// no script, no font to fetch, no id (so any number of charts can share a
// page) and no stylesheet, only presentation attributes. Every string
// that came from a machine or an operator (phase names, messages, series
// labels, titles) is XML-escaped; the markup itself is built only from
// constants and numbers.
//
// Steps turns a boot's recorded events (state.BootEvent) into bars on one
// time axis, in seconds since the boot's first event. It knows what the
// server and the agent record (see Steps); it does not read the store.
//
// The package is pure Go: no I/O beyond the io.Writer it is given.
package chart
