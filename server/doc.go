// Package server is the overboot HTTP server: iPXE scripts per machine
// (by MAC, falling back to the default profile), and kernels, initramfs and
// images by digest with Range, ETag and zero-copy (sendfile) serving, plus
// a JSON view of each machine's boot progress, a status page and metrics.
//
//	Server(listener, handler(config, store))
//
// It needs no root and no other service. Sub-packages: config (the
// configuration file), store (content-addressed artifacts).
package server
