package drivers

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/overboot/overboot/mkimage/initramfs"
	"github.com/overboot/overboot/server/pci"
)

// pciAliasRE splits a modules.alias PCI pattern into its fields (the
// kernel's scripts/mod/file2alias.c do_pci_entry writes them in this
// order, each 8 or 2 upper-case hex digits or '*').
var pciAliasRE = regexp.MustCompile(`^pci:v([^a-z]*)d([^a-z]*)sv([^a-z]*)sd([^a-z]*)bc([^a-z]*)sc([^a-z]*)i([^a-z]*)$`)

// MatchPCIAlias reports whether a modules.alias pattern can match a PCI
// function with this vendor and device: the vendor and device fields are
// matched as the kernel's modprobe does (fnmatch on the upper-case hex of
// the device's modalias); the subsystem and class fields are unknown and
// taken to match. A pattern whose vendor and device are both wildcards (a
// class driver) never matches, nor does a pattern of another shape.
func MatchPCIAlias(pattern string, id pci.ID) bool {
	m := pciAliasRE.FindStringSubmatch(pattern)
	if m == nil {
		return false
	}
	v, d := fmt.Sprintf("%08X", id.Vendor), fmt.Sprintf("%08X", id.Device)
	if wild(m[1]) && wild(m[2]) {
		return false
	}
	okV, errV := path.Match(m[1], v)
	okD, errD := path.Match(m[2], d)
	return errV == nil && errD == nil && okV && okD
}

// wild reports whether a field pattern matches every value.
func wild(field string) bool { return strings.Trim(field, "*") == "" }

// Match returns the network drivers (modules under
// initramfs.NetworkDriverDirs) with a PCI alias matching id, sorted.
func Match(mt *initramfs.ModuleTree, id pci.ID) ([]string, error) {
	aliases, err := mt.Aliases()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", mt.Dir, err)
	}
	var out []string
	for name, pats := range aliases {
		file, ok := mt.File(name)
		if !ok || !initramfs.IsNetworkDriver(file) {
			continue
		}
		for _, p := range pats {
			if MatchPCIAlias(p, id) {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
