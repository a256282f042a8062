package initagent

import (
	"bufio"
	"io"
	"path"
	"strings"
)

// Aliases maps a module name (underscores) to its modalias patterns, from
// modules.alias ("alias PATTERN MODULE" lines).
type Aliases map[string][]string

// ParseAliases reads modules.alias.
func ParseAliases(r io.Reader) (Aliases, error) {
	a := Aliases{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "alias" {
			continue
		}
		name := strings.ReplaceAll(f[2], "-", "_")
		a[name] = append(a[name], f[1])
	}
	return a, sc.Err()
}

// WithoutHardware returns the names among mods that are drivers for PCI
// devices only (every alias is a pci: pattern) and match none of the
// machine's PCI devices (their modalias strings): loading them would only
// cost time. Modules without aliases, or with other aliases (filesystems,
// virtio drivers) are always loaded.
func (a Aliases) WithoutHardware(mods []string, pciDevices []string) []string {
	var skip []string
	for _, m := range mods {
		pats := a[strings.ReplaceAll(m, "-", "_")]
		if len(pats) == 0 {
			continue
		}
		pciOnly, found := true, false
		for _, p := range pats {
			if !strings.HasPrefix(p, "pci:") {
				pciOnly = false
				break
			}
			for _, d := range pciDevices {
				if ok, _ := path.Match(p, d); ok {
					found = true
				}
			}
		}
		if pciOnly && !found {
			skip = append(skip, m)
		}
	}
	return skip
}

// deviceAliasPrefixes mark a device driver's aliases: a module with one
// binds to hardware (a NIC, a disk controller); the others provide
// filesystems, block devices or device-mapper targets.
var deviceAliasPrefixes = []string{"pci:", "virtio:", "usb:"}

// DeviceDrivers splits mods into device drivers (an alias for a bus's
// devices) and the rest, each in mods' order.
func (a Aliases) DeviceDrivers(mods []string) (drivers, others []string) {
	for _, m := range mods {
		driver := false
		for _, p := range a[strings.ReplaceAll(m, "-", "_")] {
			for _, bus := range deviceAliasPrefixes {
				driver = driver || strings.HasPrefix(p, bus)
			}
		}
		if driver {
			drivers = append(drivers, m)
		} else {
			others = append(others, m)
		}
	}
	return drivers, others
}
