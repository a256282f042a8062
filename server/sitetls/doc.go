// Package sitetls owns the server's TLS certificate: either the site's own
// certificate and key (files named by the configuration, the key readable
// by its owner only), or a site CA the server makes under DATA/tls at its
// first start, with a server certificate signed by it for the names
// machines reach the server at. The CA certificate is what `overboot
// mkimage initramfs` puts into the initramfs for the agent to trust.
//
// The server certificate of the site CA is renewed when it nears its end
// (Renew before NotAfter) and made again when the names change (a new
// url); Certs hands the current one to every TLS handshake.
//
// Files (DATA/tls): ca.key, ca.pem, server.key, server.pem; keys 0600,
// the directory 0700. Keys are ECDSA P-256.
package sitetls
