// Package drivers gives a booting machine the driver of its NIC when the
// base initramfs lacks it: an extra initramfs segment, loaded by iPXE as a
// second initrd, that holds the driver's modules with their dependencies,
// the firmware they name, and the list the agent loads them from (the
// layout is package boot's; mkimage/initramfs builds it).
//
// Server(query) → Match(PCI ID, modules.alias) → the drivers the base
// lacks → a segment per (kernel release, drivers), built once, kept in the
// blob store.
//
//   - The kernel release is the base initramfs's own: the directory
//     lib/modules/RELEASE it ships (read from the blob once per digest and
//     cached with its module names). An image record's KernelRelease or
//     the profile could disagree with the blob; the blob cannot. A base
//     that ships no modules gets no segment.
//   - The modules come from the server's own ModulesDir/RELEASE (default
//     /lib/modules): install the booted kernel's modules package on the
//     server (Debian: the same linux-image-* package). Without it a machine
//     boots with the base alone, and the server logs why.
//   - A base built for a root image's own kernel (mkimage/imagekernel)
//     names its modules blob (lib/modules/RELEASE/overboot-image-modules/
//     sha256:HEX): its segments come from that blob, unpacked once under
//     DATA/drivers/trees/HEX, and are indexed under RELEASE@HEX16, apart
//     from the server's own tree of the same release. Firmware still comes
//     from FirmwareDir.
//   - Firmware comes from FirmwareDir (default /lib/firmware); files a
//     driver names that are absent are listed in the segment's record and
//     logged (many drivers name firmware for chips the machine may not
//     have).
//   - Matching is the kernel's fnmatch of modules.alias patterns
//     (pci:vVVVVVVVVdDDDDDDDDsv*sd*bc*sc*i*) on the vendor and device the
//     bootstrap query reports; subsystem and class are not reported, so
//     they are taken to match. Only network drivers count
//     (initramfs.NetworkDriverDirs), and patterns with neither vendor nor
//     device (class drivers such as ahci) never match: every driver
//     matching the ID goes into the segment, as udev would load them all
//     (QEMU's rtl8139 matches 8139cp and 8139too; 8139cp takes it).
//   - Segments are cached in the blob store and indexed in
//     DATA/drivers/RELEASE/NAME.json; an index entry is rebuilt when its
//     blob is gone (a blob collection removes unreferenced segments after
//     its grace period), when modules.dep changed, or when a firmware file
//     it lacked has appeared.
//
// It does not handle NICs that are not on PCI, nor several NICs: the
// query reports the one iPXE booted from.
package drivers
