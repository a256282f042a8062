// Package mkimage builds what machines boot from (overboot mkimage): the
// root image, a squashfs made with mksquashfs from a directory or a tar
// (ownership, modes, xattrs, hard links and device nodes kept; netboot
// fix-ups applied, such as dropping root and swap entries from
// /etc/fstab), stored by digest in a blob store. The initramfs (the
// agent, the rescue shell and kernel modules) is its sub-package
// mkimage/initramfs. It needs mksquashfs (Debian's squashfs-tools); root
// only to read a tree whose files are not readable by the caller.
package mkimage
