package initagent

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/overboot/overboot/boot"
)

// NFSMount mounts an NFS export read-only with the kernel's NFS client
// (fs/nfs), as mount.nfs would: the server's host name resolved to an
// address first (the kernel takes addresses only), and for NFSv4.0 the
// address the client is reached at for callbacks (clientaddr=).
type NFSMount struct {
	Source boot.NFSSource
	Target string
}

func (m NFSMount) String() string {
	return fmt.Sprintf("mount -t nfs -o %s %s %s", strings.Join(NFSOptions(m.Source, netip.Addr{}, netip.Addr{}), ","), NFSDevice(m.Source), m.Target)
}

// Phase implements Step.
func (NFSMount) Phase() Phase { return PhaseLower }

// NFSModules are the modules an NFS lower of version v needs (their
// dependencies, sunrpc, lockd, grace, netfs, fscache, dns_resolver and
// nfs itself, come from modules.dep): nfsv3 or nfsv4, as the nfs module
// asks for them with request_module, which an initramfs without modprobe
// cannot answer.
func NFSModules(version string) []string {
	if version == "3" {
		return []string{boot.ModuleNFSv3}
	}
	return []string{boot.ModuleNFSv4}
}

// NFSDevice is the mount's source as the kernel shows it in /proc/mounts:
// HOST:EXPORT, an IPv6 literal in brackets.
func NFSDevice(s boot.NFSSource) string {
	host := s.Server
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	return host + ":" + s.Export
}

// NFSOptions are the mount options of s, in the text form the kernel's
// NFS client reads (Documentation/filesystems/nfs/nfs.rst, nfs(5)):
// ro, vers, the allowed options of the source, then addr= (server, the
// resolved address; shown as the host when not valid, for -dry-run) and,
// for NFSv4.0, clientaddr= (client). NFSv3 gets nolock: there is no
// rpc.statd in the initramfs, and a read-only root takes no locks.
// Every mount is over TCP unless the source says tcp6, and hard: the
// root's I/O waits for the server rather than failing.
func NFSOptions(s boot.NFSSource, server, client netip.Addr) []string {
	v := s.NFSVersion()
	opts := []string{"ro", "vers=" + v}
	hasProto := false
	for _, o := range s.Options {
		hasProto = hasProto || strings.HasPrefix(o, "proto=")
		opts = append(opts, o)
	}
	if !hasProto {
		opts = append(opts, "proto=tcp")
	}
	if v == "3" {
		opts = append(opts, "nolock")
	}
	opts = append(opts, "hard")
	if server.IsValid() {
		opts = append(opts, "addr="+server.String())
	} else {
		opts = append(opts, "addr="+s.Server)
	}
	if v == "4" {
		if client.IsValid() {
			opts = append(opts, "clientaddr="+client.String())
		} else {
			opts = append(opts, "clientaddr=(this machine's address)")
		}
	}
	return opts
}
