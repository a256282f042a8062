package initagent

import (
	"fmt"
	"path"
	"strings"
)

// Where the booted system's network managers read configuration that
// lives for one boot. /run moves into the new root at switch_root, so what
// the agent writes there is what the image's udev, systemd-networkd and
// NetworkManager find, and nothing lands in the image or a persistent
// upper. dracut hands its interfaces over the same way.
const (
	NetworkdRunDir = "/run/systemd/network"
	NMRunConfDir   = "/run/NetworkManager/conf.d"
)

// HandOverNetwork tells the booted system about the interface the agent
// configured. The .link file keeps its name: udev's predictable names
// would rename it, a rename of an interface that is up fails, and
// systemd-networkd then leaves the link pending for good (seen with
// Debian 12's udev). When the root depends on the network (iSCSI, a lazy
// image), Keep also marks the interface as one to leave configured:
// systemd-networkd keeps the address and routes it finds and renews with
// DHCP (KeepConfiguration=yes, the successor of CriticalConnection), and
// NetworkManager leaves the device unmanaged. Without Keep the image's own
// network configuration applies as it would on any machine.
type HandOverNetwork struct {
	Keep bool
}

func (h HandOverNetwork) String() string {
	s := "hand the boot interface to the booted system: " + path.Join(NetworkdRunDir, "10-overboot-IFACE.link")
	if h.Keep {
		s += ", 10-overboot-IFACE.network (KeepConfiguration=yes), " + path.Join(NMRunConfDir, "10-overboot.conf") + " (unmanaged)"
	}
	return s
}

// Phase implements Step.
func (HandOverNetwork) Phase() Phase { return PhaseOverlay }

// HandOverFiles renders the files HandOverNetwork writes for the interface
// iface with hardware address mac, keyed by absolute path.
func HandOverFiles(iface, mac string, keep bool) (map[string]string, error) {
	if iface == "" || strings.ContainsAny(iface, "/ \n\t") {
		return nil, fmt.Errorf("hand over: bad interface name %q", iface)
	}
	if strings.ContainsAny(mac, " \n\t") {
		return nil, fmt.Errorf("hand over: bad hardware address %q", mac)
	}
	base := "10-overboot-" + iface
	match := "[Match]\nOriginalName=" + iface + "\n"
	if mac != "" {
		match += "MACAddress=" + mac + "\n"
	}
	out := map[string]string{
		path.Join(NetworkdRunDir, base+".link"): "# Written by overboot's boot agent: the root came over this interface.\n" +
			match + "\n[Link]\nNamePolicy=\nName=" + iface + "\n",
	}
	if keep {
		out[path.Join(NetworkdRunDir, base+".network")] = "# Written by overboot's boot agent: the root depends on this interface.\n" +
			"[Match]\nName=" + iface + "\n\n[Network]\nDHCP=ipv4\nKeepConfiguration=yes\n\n[DHCPv4]\nSendRelease=no\n"
		out[path.Join(NMRunConfDir, "10-overboot.conf")] = "# Written by overboot's boot agent: the root depends on this interface.\n" +
			"[keyfile]\nunmanaged-devices=interface-name:" + iface + "\n"
	}
	return out, nil
}
