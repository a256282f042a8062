// Package imagekernel takes the kernel a root image carries: when the
// tree holds /boot/vmlinuz-RELEASE and /lib/modules/RELEASE (or
// /usr/lib/modules/RELEASE), the kernel and its modules tree are copied
// out of it (Collect from a directory; Capture from the tar stream a build
// feeds mksquashfs, so nothing else is extracted), one release is chosen
// (Find: the newest by version order, or the one asked for), and Build
// stores three blobs: the kernel, an overboot initramfs made from the
// image's own modules (mkimage/initramfs), and the modules tree itself as
// a zstd tar (the server's driver segments are built from it:
// server/drivers). The initramfs names the modules blob in an empty file,
// lib/modules/RELEASE/overboot-image-modules/sha256:HEX (MarkerDir), so
// a server that holds the initramfs knows where its modules are without
// any other record.
//
// Only regular files and directories are taken: symbolic links in the
// tree (the modules' build and source links, a /lib that points to
// /usr/lib on the build machine) are never followed. It needs no root.
package imagekernel
