package vmtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// GaneshaMountPort is the fixed port of ganesha's MOUNT service when it
// serves NFSv3, so that a client given port=2049,mountport=20048 needs no
// rpcbind.
const GaneshaMountPort = 20048

// Ganesha is Debian's nfs-ganesha (packages nfs-ganesha, nfs-ganesha-vfs),
// a user-space NFS server (the kernels these tests run on have no nfsd),
// serving one directory read-only in a test's namespace until the test
// ends.
//
// It runs as pid 1 of a PID namespace of its own, inside the network
// namespace, in a private mount namespace with its own tmpfs on /run
// (nothing of the machine's /run is seen or touched: no D-Bus, no
// rpcbind socket). With NFSv3 an rpcbind (package rpcbind) runs there
// too, started first, as ganesha's child: ganesha registers NFS and MOUNT
// with it over /run/rpcbind.sock, clients ask it on port 111 of the
// namespace. When the test ends ganesha is killed, the kernel kills
// everything else in its PID namespace, and the test fails if a process
// it started is still there.
type Ganesha struct {
	Dir    string // what it serves
	Pseudo string // the export's path in NFSv4's pseudo file system, e.g. /root
	Addr   string // host:2049 in the namespace
	V3     bool   // NFSv3 served too (with rpcbind)
	ns     *NetNS
	log    string
	procs  []proc // started, as seen once it was up
}

// A proc is a process ganesha's start made: its pid and start time
// (field 22 of /proc/PID/stat, telling it from a later process with the
// same pid).
type proc struct {
	pid   int
	ppid  int
	comm  string
	start string
}

// GaneshaConfig is the configuration StartGanesha writes: one export of
// dir at pseudo, read-only, root not squashed, over TCP, NFSv4 with
// numeric owners (the agent has no idmapd: "0" must mean root), no grace
// period, recovery state in state; with v3, NFSv3 too, its MOUNT service
// on GaneshaMountPort, mounted by the pseudo path as NFSv4 is
// (Mount_Path_Pseudo: the same nfs:// URL for both; without it NFSv3
// mounts name the directory, Path, and pseudo's is refused). No NLM (clients mount with nolock) and no RQUOTA.
func GaneshaConfig(dir, pseudo, bind, state string, v3 bool) string {
	protocols, mnt := "4", ""
	if v3 {
		protocols, mnt = "3, 4", fmt.Sprintf("\n\tMNT_Port = %d;\n\tMount_Path_Pseudo = true;", GaneshaMountPort)
	}
	return fmt.Sprintf(`NFS_CORE_PARAM {
	Protocols = %[5]s;
	NFS_Port = 2049;%[6]s
	Bind_Addr = %[3]s;
	Enable_NLM = false;
	Enable_RQUOTA = false;
}
NFSV4 {
	RecoveryBackend = fs;
	RecoveryRoot = %[4]s;
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
	Path = %[1]s;
	Pseudo = %[2]s;
	Access_Type = RO;
	Squash = No_Root_Squash;
	Protocols = %[5]s;
	Transports = TCP;
	SecType = sys;
	FSAL {
		Name = VFS;
	}
}
`, dir, pseudo, bind, state, protocols, mnt)
}

// ganeshaScript is what runs as pid 1 of the new PID namespace (inside
// ip netns exec, whose mount namespace is already the process's own):
// mounts made private, a tmpfs on /run, rpcbind (RPCBIND) started and
// waited for, then ganesha in its place (exec: ganesha is pid 1, and when
// it dies the kernel kills the rest). $1 is ganesha.nfsd, the rest its
// arguments.
const ganeshaScript = `set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 overboot-test-run /run
if [ "$RPCBIND" ]; then
	mkdir -p /run/rpcbind
	"$RPCBIND" -f -w &
	i=0
	while [ ! -S /run/rpcbind.sock ]; do
		i=$((i + 1))
		if [ $i -gt 600 ] || ! kill -0 $! 2>/dev/null; then echo "rpcbind did not come up" >&2; exit 1; fi
		sleep 0.1
	done
fi
exec "$@"
`

// StartGanesha serves dir at pseudo over NFSv4 on ns's bridge address,
// port 2049, and waits until it accepts connections; it fails the test
// with ganesha's log when it exits or does not come up in a minute.
func StartGanesha(t *testing.T, ns *NetNS, dir, pseudo string) *Ganesha {
	t.Helper()
	return startGanesha(t, ns, dir, pseudo, false)
}

// StartGaneshaV3 is StartGanesha serving NFSv3 as well (and NFSv4), with
// an rpcbind of its own that NFS and MOUNT (port GaneshaMountPort) are
// registered with.
func StartGaneshaV3(t *testing.T, ns *NetNS, dir, pseudo string) *Ganesha {
	t.Helper()
	return startGanesha(t, ns, dir, pseudo, true)
}

func startGanesha(t *testing.T, ns *NetNS, dir, pseudo string, v3 bool) *Ganesha {
	t.Helper()
	bin, err := exec.LookPath("ganesha.nfsd")
	if err != nil {
		t.Fatalf("ganesha.nfsd (packages nfs-ganesha, nfs-ganesha-vfs) is needed: %v", err)
	}
	rpcbind := ""
	if v3 {
		if rpcbind, err = exec.LookPath("rpcbind"); err != nil {
			t.Fatalf("rpcbind (package rpcbind) is needed for NFSv3: %v", err)
		}
	}
	work := t.TempDir()
	state := filepath.Join(work, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(work, "ganesha.conf")
	if err := os.WriteFile(conf, []byte(GaneshaConfig(dir, pseudo, ns.Addr, state, v3)), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &Ganesha{Dir: dir, Pseudo: pseudo, Addr: net.JoinHostPort(ns.Addr, "2049"), V3: v3, ns: ns, log: filepath.Join(work, "ganesha.log")}
	// -F: in the foreground, so the test owns the process.
	argv := ns.Exec("sh", "-c", ganeshaScript, "ganesha", bin, "-F", "-f", conf, "-L", g.log, "-p", filepath.Join(work, "ganesha.pid"), "-N", "NIV_EVENT")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "RPCBIND="+rpcbind)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	// A process left behind would hold the output pipe: Wait gives up
	// on it, and the check below names the process.
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// pid 1 of its PID namespace: when it goes, the kernel kills
		// and reaps the rest before Wait returns.
		cmd.Process.Kill()
		<-exited
		for _, p := range g.procs {
			if p.alive() {
				t.Errorf("%s (pid %d), started for nfs-ganesha, is still running after the test", p.comm, p.pid)
			}
		}
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
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nfs-ganesha does not accept connections on %s after a minute (%v):\n%s", g.Addr, err, g.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	g.procs = procTree(cmd.Process.Pid)
	var names []string
	for _, p := range g.procs {
		names = append(names, p.comm)
	}
	want := "ganesha.nfsd"
	if v3 {
		want += " rpcbind"
	}
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("processes started for nfs-ganesha: %q, want %q", got, want)
	}
	return g
}

// StopRpcbind kills the rpcbind of an NFSv3 ganesha once NFS and MOUNT
// are registered, and waits until nothing answers on port 111: a client
// then reaches NFSv3 only at ports it was given.
func (g *Ganesha) StopRpcbind(t *testing.T) {
	t.Helper()
	var rb *proc
	for i := range g.procs {
		if g.procs[i].comm == "rpcbind" {
			rb = &g.procs[i]
		}
	}
	if rb == nil {
		t.Fatal("StopRpcbind: this ganesha has no rpcbind (StartGaneshaV3 starts one)")
	}
	if err := syscall.Kill(rb.pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill rpcbind (pid %d): %v", rb.pid, err)
	}
	addr := net.JoinHostPort(g.ns.Addr, "111")
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := g.ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rpcbind killed, but %s still answers (%v)", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Log is ganesha's log so far.
func (g *Ganesha) Log() string {
	b, _ := os.ReadFile(g.log)
	return string(b)
}

// procTree is pid and its descendants, parents first (from every
// /proc/PID/stat: the kernel may have no /proc/PID/task/TID/children).
func procTree(pid int) []proc {
	root, ok := readProc(pid)
	if !ok {
		return nil
	}
	children := map[int][]proc{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(n); ok {
			children[p.ppid] = append(children[p.ppid], p)
		}
	}
	ps := []proc{root}
	for i := 0; i < len(ps); i++ {
		ps = append(ps, children[ps[i].pid]...)
	}
	return ps
}

// readProc reads pid's parent, name and start time from /proc/PID/stat.
func readProc(pid int) (proc, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return proc{}, false
	}
	// After "pid (comm) ": state is field 3, start time field 22.
	f := strings.Fields(s[end+1:])
	if len(f) < 20 {
		return proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return proc{pid: pid, ppid: ppid, comm: s[open+1 : end], start: f[19]}, true
}

// alive says whether p is still there: the same pid with the same start
// time, a zombie included (not yet reaped).
func (p proc) alive() bool {
	q, ok := readProc(p.pid)
	return ok && q.start == p.start
}
