package vmtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Ganesha is Debian's nfs-ganesha (packages nfs-ganesha, nfs-ganesha-vfs),
// a user-space NFS server (the kernels these tests run on have no nfsd),
// serving one directory read-only in a test's namespace until the test
// ends. NFSv4 only: NFSv3 needs ganesha to register with an rpcbind,
// whose socket (/run/rpcbind.sock) is the machine's, not the namespace's.
type Ganesha struct {
	Dir    string // what it serves
	Pseudo string // the export's path in NFSv4's pseudo file system, e.g. /root
	Addr   string // host:2049 in the namespace
	log    string
}

// GaneshaConfig is the configuration StartGanesha writes: one export of
// dir at pseudo, read-only, root not squashed, NFSv4 over TCP with
// numeric owners (the agent has no idmapd: "0" must mean root), no grace
// period, recovery state in state.
func GaneshaConfig(dir, pseudo, bind, state string) string {
	return fmt.Sprintf(`NFS_CORE_PARAM {
	Protocols = 4;
	NFS_Port = 2049;
	Bind_Addr = %s;
	Enable_NLM = false;
	Enable_RQUOTA = false;
}
NFSV4 {
	RecoveryBackend = fs;
	RecoveryRoot = %s;
	Graceless = true;
	Lease_Lifetime = 10;
	Allow_Numeric_Owners = true;
	Only_Numeric_Owners = true;
}
NFS_KRB5 {
	Active_krb5 = false;
}
EXPORT {
	Export_Id = 1;
	Path = %s;
	Pseudo = %s;
	Access_Type = RO;
	Squash = No_Root_Squash;
	Protocols = 4;
	Transports = TCP;
	SecType = sys;
	FSAL {
		Name = VFS;
	}
}
`, bind, state, dir, pseudo)
}

// StartGanesha serves dir at pseudo on ns's bridge address, port 2049,
// and waits until it accepts connections; it fails the test with
// ganesha's log when it exits or does not come up in a minute.
func StartGanesha(t *testing.T, ns *NetNS, dir, pseudo string) *Ganesha {
	t.Helper()
	bin, err := exec.LookPath("ganesha.nfsd")
	if err != nil {
		t.Fatalf("ganesha.nfsd (packages nfs-ganesha, nfs-ganesha-vfs) is needed: %v", err)
	}
	work := t.TempDir()
	state := filepath.Join(work, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(work, "ganesha.conf")
	if err := os.WriteFile(conf, []byte(GaneshaConfig(dir, pseudo, ns.Addr, state)), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &Ganesha{Dir: dir, Pseudo: pseudo, Addr: net.JoinHostPort(ns.Addr, "2049"), log: filepath.Join(work, "ganesha.log")}
	// -F: in the foreground, so the test owns the process.
	argv := ns.Exec(bin, "-F", "-f", conf, "-L", g.log, "-p", filepath.Join(work, "ganesha.pid"), "-N", "NIV_EVENT")
	cmd := exec.Command(argv[0], argv[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("nfs-ganesha:\n%s%s", out.String(), g.Log())
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("nfs-ganesha exited (%v):\n%s%s", err, out.String(), g.Log())
		default:
		}
		err := ns.Do(func() error {
			c, err := net.DialTimeout("tcp", g.Addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("nfs-ganesha does not accept connections on %s after a minute (%v):\n%s", g.Addr, err, g.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Log is ganesha's log so far.
func (g *Ganesha) Log() string {
	b, _ := os.ReadFile(g.log)
	return string(b)
}
