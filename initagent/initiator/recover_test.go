package initiator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overboot/overboot/internal/iscsiwire"
	"github.com/overboot/overboot/server/target"
)

// fakeKernel stands in for the kernel's initiator: the connection it is
// given carries the login straight over TCP to a real target; Stop drops
// the socket without closing it, as a network cut leaves it at the target.
type fakeKernel struct {
	events chan Event

	mu      sync.Mutex // guards the fields below
	seq     uint64
	bound   map[connKey]net.Conn
	dropped []net.Conn
	ops     []string
	params  map[Param]string
	failed  map[uint32]bool // SessionFailed
	gone    map[uint32]bool // Stop: no such session
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{events: make(chan Event, 16), bound: map[connKey]net.Conn{}, params: map[Param]string{}, failed: map[uint32]bool{}, gone: map[uint32]bool{}}
}

func (k *fakeKernel) op(s string) {
	k.mu.Lock()
	k.ops = append(k.ops, s)
	k.mu.Unlock()
}

func (k *fakeKernel) send(ev Event) {
	k.mu.Lock()
	k.seq++
	ev.Seq = k.seq
	k.mu.Unlock()
	k.events <- ev
}

func (k *fakeKernel) Events() <-chan Event { return k.events }

func (k *fakeKernel) Stop(sid, cid uint32) error {
	k.op("stop")
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gone[sid] {
		return errSessionGone
	}
	if c := k.bound[connKey{sid, cid}]; c != nil {
		k.dropped = append(k.dropped, c)
		delete(k.bound, connKey{sid, cid})
	}
	return nil
}

func (k *fakeKernel) Bind(sid, cid uint32, c *net.TCPConn) error {
	k.op("bind")
	f, err := c.File() // the caller closes c, as the kernel holds its own
	if err != nil {
		return err
	}
	defer f.Close()
	fc, err := net.FileConn(f)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.bound[connKey{sid, cid}] = fc
	k.mu.Unlock()
	return nil
}

func (k *fakeKernel) Transport(sid, cid uint32, timeout time.Duration) Transport {
	k.mu.Lock()
	defer k.mu.Unlock()
	return &deadlineTCP{TCP: TCP{Conn: k.bound[connKey{sid, cid}]}, timeout: timeout}
}

type deadlineTCP struct {
	TCP
	timeout time.Duration
}

func (t *deadlineTCP) Recv() (*iscsiwire.PDU, error) {
	t.Conn.SetReadDeadline(time.Now().Add(t.timeout))
	return t.TCP.Recv()
}

func (k *fakeKernel) SetParam(sid, cid uint32, p Param, v string) error {
	k.mu.Lock()
	k.params[p] = v
	k.mu.Unlock()
	return nil
}

func (k *fakeKernel) Start(sid, cid uint32) (uint64, error) {
	k.op("start")
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seq++
	return k.seq, nil
}

func (k *fakeKernel) SessionFailed(sid uint32) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.failed[sid], nil
}

func (k *fakeKernel) param(p Param) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.params[p]
}

func (k *fakeKernel) opsSoFar() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return strings.Join(k.ops, " ")
}

// recoveryTarget serves a machine's disk (Exclusive, CHAP) on addr
// ("127.0.0.1:0" for a new one) until stop, which ends every session.
func recoveryTarget(t *testing.T, disk, addr string, edit ...func(*target.TargetConfig)) (string, func()) {
	t.Helper()
	b, err := target.OpenFile(disk, false)
	if err != nil {
		t.Fatal(err)
	}
	s := target.New(nil)
	cfg := target.TargetConfig{IQN: iqn, LUNs: []target.Backing{b}, CHAP: machineCHAP, Initiators: []string{"iqn.2026-11.test:m1"}, Exclusive: true}
	for _, e := range edit {
		e(&cfg)
	}
	if err := s.AddTarget(cfg); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for range 50 { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, ln); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; b.Close() }) }
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func testDisk(t *testing.T) string {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	return disk
}

// attachFake logs session 1 in through k as Attach would.
func attachFake(t *testing.T, k *fakeKernel, portal string, edit ...func(*Options)) Session {
	t.Helper()
	s := Session{Portal: portal, Login: Options{Initiator: "iqn.2026-11.test:m1", Target: iqn, CHAP: machineCHAP, ISID: [6]byte{0x80, 0, 0x23, 0x42, 0, 1}}, SID: 1, Recovery: time.Minute}
	for _, e := range edit {
		e(&s.Login)
	}
	c, err := net.Dial("tcp", portal)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Bind(s.SID, s.CID, c.(*net.TCPConn)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	n, err := Login(k.Transport(s.SID, s.CID, 10*time.Second), s.Login)
	if err != nil {
		t.Fatal(err)
	}
	s.Negotiated = n
	if _, err := k.Start(s.SID, s.CID); err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	k.ops = nil
	k.mu.Unlock()
	return s
}

// logBuf collects a Watcher's lines.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// wait waits for a line containing text.
func (l *logBuf) wait(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(l.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", text, l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startWatcher(t *testing.T, k Kernel) (*Watcher, *logBuf, context.Context) {
	t.Helper()
	log := &logBuf{}
	w := NewWatcher(k, log.logf)
	w.backoff = func(int) time.Duration { return 50 * time.Millisecond }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w, log, ctx
}

func checkNoSecret(t *testing.T, log *logBuf) {
	t.Helper()
	if strings.Contains(log.String(), string(machineCHAP.Secret)) {
		t.Errorf("the CHAP secret is in the log:\n%s", log)
	}
}

// TestWatcherContinuesSession: a connection fails while the target still
// holds it (a network cut): the watcher stops the kernel's connection,
// binds a new socket, continues the session with its ISID and TSIH, sets
// the parameters and starts it; the target has closed the old connection.
func TestWatcherContinuesSession(t *testing.T) {
	portal, _ := recoveryTarget(t, testDisk(t), "127.0.0.1:0")
	k := newFakeKernel()
	s := attachFake(t, k, portal)
	w, log, ctx := startWatcher(t, k)
	w.Watch(ctx, s)
	k.send(Event{Kind: ConnFailed, SID: 1, Err: 1022})
	log.wait(t, "logged in again after")
	if got, want := k.opsSoFar(), "stop bind start"; got != want {
		t.Errorf("kernel operations %q, want %q", got, want)
	}
	if !strings.Contains(log.String(), "session continued") {
		t.Errorf("the session was not continued:\n%s", log)
	}
	for _, p := range []Param{ParamTargetName, ParamExpStatSN, ParamMaxXmitDLength, ParamHdrDgstEn, ParamPingTmo} {
		if k.param(p) == "" {
			t.Errorf("%v not set after the login", p)
		}
	}
	w.mu.Lock()
	tsih := w.sessions[1].s.Negotiated.TSIH
	w.mu.Unlock()
	if tsih != s.Negotiated.TSIH {
		t.Errorf("TSIH %d after recovery, want %d", tsih, s.Negotiated.TSIH)
	}
	k.mu.Lock()
	old := k.dropped[0]
	k.mu.Unlock()
	old.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := old.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the target kept the old connection: %v", err)
	}
	checkNoSecret(t, log)
}

// TestWatcherMutualCHAPDigests: a session logged in with mutual CHAP and
// CRC32C digests (as a firmware's iBFT may ask) is logged in again the
// same way: the target proves itself again, the digests stay on, and
// neither secret reaches the log.
func TestWatcherMutualCHAPDigests(t *testing.T) {
	portal, _ := recoveryTarget(t, testDisk(t), "127.0.0.1:0", func(c *target.TargetConfig) { c.MutualCHAP = &serverCHAP })
	k := newFakeKernel()
	s := attachFake(t, k, portal, func(o *Options) { o.TargetCHAP, o.Digest = &serverCHAP, "CRC32C" })
	if !s.Negotiated.HeaderDigest || !s.Negotiated.DataDigest {
		t.Fatalf("the first login negotiated no digests: %+v", s.Negotiated)
	}
	w, log, ctx := startWatcher(t, k)
	w.Watch(ctx, s)
	k.send(Event{Kind: ConnFailed, SID: 1, Err: 1022})
	log.wait(t, "logged in again after")
	if h, d := k.param(ParamHdrDgstEn), k.param(ParamDataDgstEn); h != "1" || d != "1" {
		t.Errorf("digests after the recovery: header %q, data %q; want 1 and 1", h, d)
	}
	checkNoSecret(t, log)
	if strings.Contains(log.String(), string(serverCHAP.Secret)) {
		t.Errorf("the target's CHAP secret is in the log:\n%s", log)
	}
}

// TestWatcherServerRestart: the target goes away and comes back a new
// process: connecting fails meanwhile, then the old TSIH is "session does
// not exist" and the session is reinstated with TSIH 0.
func TestWatcherServerRestart(t *testing.T) {
	disk := testDisk(t)
	portal, stop := recoveryTarget(t, disk, "127.0.0.1:0")
	k := newFakeKernel()
	s := attachFake(t, k, portal)
	w, log, ctx := startWatcher(t, k)
	w.Watch(ctx, s)
	stop()
	k.send(Event{Kind: ConnFailed, SID: 1, Err: 1020})
	log.wait(t, "attempt 1: connect to "+portal)
	recoveryTarget(t, disk, portal)
	log.wait(t, "logged in again after")
	for _, want := range []string{"the target closed the connection (1020)", "no longer knows session", "session reinstated"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	checkNoSecret(t, log)
}

// TestWatcherFoundFailed: a session whose connection failed before the
// watch began (its event unseen) is recovered when it is watched.
func TestWatcherFoundFailed(t *testing.T) {
	portal, _ := recoveryTarget(t, testDisk(t), "127.0.0.1:0")
	k := newFakeKernel()
	s := attachFake(t, k, portal)
	k.failed[1] = true
	w, log, ctx := startWatcher(t, k)
	w.Watch(ctx, s)
	log.wait(t, "logged in again after")
	if !strings.Contains(log.String(), "found failed") {
		t.Errorf("the log does not say why:\n%s", log)
	}
}

// TestWatcherEvents: which events start a recovery.
func TestWatcherEvents(t *testing.T) {
	k := newFakeKernel()
	w := NewWatcher(k, nil)
	ctx := context.Background()
	w.sessions[1] = &watched{s: Session{SID: 1, CID: 0, Portal: "127.0.0.1:1"}, upSeq: 10}
	w.sessions[2] = &watched{s: Session{SID: 2, CID: 0, Portal: "127.0.0.1:1"}, recovering: true}
	for _, tc := range []struct {
		name string
		ev   Event
		want bool // session 1 recovers
	}{
		{"another session's", Event{Kind: ConnFailed, SID: 3, Seq: 20}, false},
		{"another connection's", Event{Kind: ConnFailed, SID: 1, CID: 1, Seq: 20}, false},
		{"before the connection started", Event{Kind: ConnFailed, SID: 1, Seq: 9}, false},
		{"after", Event{Kind: ConnFailed, SID: 1, Seq: 11}, true},
	} {
		w.handle(ctx, tc.ev)
		w.mu.Lock()
		got := w.sessions[1].recovering
		w.sessions[1].recovering = false
		w.mu.Unlock()
		if got != tc.want {
			t.Errorf("%s: recovering %v, want %v", tc.name, got, tc.want)
		}
	}
	w.handle(ctx, Event{Kind: SessionGone, SID: 2})
	w.mu.Lock()
	_, still := w.sessions[2]
	w.mu.Unlock()
	if still {
		t.Errorf("a destroyed session is still watched")
	}
}

// TestWatcherSessionGone: a session the kernel no longer has is dropped.
func TestWatcherSessionGone(t *testing.T) {
	k := newFakeKernel()
	k.gone[1] = true
	w, log, ctx := startWatcher(t, k)
	w.Watch(ctx, Session{SID: 1, Portal: "127.0.0.1:1"})
	k.send(Event{Kind: ConnFailed, SID: 1, Err: 1011})
	log.wait(t, "no longer watched")
	w.mu.Lock()
	n := len(w.sessions)
	w.mu.Unlock()
	if n != 0 {
		t.Errorf("%d sessions still watched", n)
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for a := 1; a <= 5; a++ {
		got = append(got, backoff(a))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("backoff %v, want %v", got, want)
	}
}

func TestRecoveryParam(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{2 * time.Minute, "120"}, {1500 * time.Millisecond, "2"}, {time.Millisecond, "1"}} {
		if got := recoveryParam(tc.d); got.p != ParamSessRecoveryTmo || got.v != tc.want {
			t.Errorf("%v: %v=%s, want %s", tc.d, got.p, got.v, tc.want)
		}
	}
}

// TestSessionJSON: the agent hands sessions to the keeper as JSON over a
// pipe; a recovery logs in with what arrives, so mutual CHAP's target
// secret and the digest choice must survive the trip (the secrets' String
// redacts, their JSON must not).
func TestSessionJSON(t *testing.T) {
	in := Session{Portal: "10.0.2.100:3260", LUN: 1, Recovery: 90 * time.Second, SID: 3, CID: 0, Device: "/dev/sda",
		Login:      Options{Initiator: "iqn.2026-11.test:m1", Target: iqn, CHAP: machineCHAP, TargetCHAP: &serverCHAP, ISID: [6]byte{0x80, 1, 2, 3, 4, 5}, TSIH: 7, Digest: "CRC32C"},
		Negotiated: Negotiated{TSIH: 7, HeaderDigest: true, DataDigest: true, MaxRecvDataSegmentLength: 262144}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Session
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %#v\nwant %#v", out, in)
	}
	if out.Login.TargetCHAP.Secret != serverCHAP.Secret || out.Login.CHAP.Secret != machineCHAP.Secret {
		t.Errorf("secrets lost on the way to the keeper")
	}
}

// TestWatcherRefusesImpostor: after the connection fails, whoever answers
// at the portal serves the machine's target name and accepts its CHAP
// (it learned the secret) but cannot prove itself with the target's
// secret: the watcher never starts the connection (the kernel's queued
// I/O stays held, none reaches the impostor), and logs why; when the real
// target is back, the session resumes.
func TestWatcherRefusesImpostor(t *testing.T) {
	disk := testDisk(t)
	portal, stop := recoveryTarget(t, disk, "127.0.0.1:0", func(c *target.TargetConfig) { c.MutualCHAP = &serverCHAP })
	k := newFakeKernel()
	s := attachFake(t, k, portal, func(o *Options) { o.TargetCHAP = &serverCHAP })
	w, log, ctx := startWatcher(t, k)
	w.Watch(ctx, s)
	stop()
	impostorCHAP := iscsiwire.CHAP{User: serverCHAP.User, Secret: "impostor-secret!"}
	_, stopImpostor := recoveryTarget(t, testDisk(t), portal, func(c *target.TargetConfig) { c.MutualCHAP = &impostorCHAP })
	k.send(Event{Kind: ConnFailed, SID: 1, Err: 1020})
	log.wait(t, "failed mutual CHAP")
	for strings.Count(k.opsSoFar(), "bind") < 3 { // a few attempts
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(k.opsSoFar(), "start") {
		t.Fatalf("the connection was started against the impostor: %s", k.opsSoFar())
	}
	stopImpostor()
	recoveryTarget(t, disk, portal, func(c *target.TargetConfig) { c.MutualCHAP = &serverCHAP })
	log.wait(t, "logged in again after")
}

// TestWatcherRefusesOtherDevice: a target that passes the login but
// serves another device than the one first attached (its VPD 0x83 differs)
// is refused: the connection is stopped again and the session no longer
// watched, so the kernel fails its I/O at the recovery timeout.
func TestWatcherRefusesOtherDevice(t *testing.T) {
	portal, _ := recoveryTarget(t, testDisk(t), "127.0.0.1:0")
	k := newFakeKernel()
	s := attachFake(t, k, portal)
	s.DeviceID = "0103000860aabbccddeeff00"
	w, log, ctx := startWatcher(t, k)
	w.SetIdentify(func(Session) (string, error) { return "0103000860ffffffffffff00", nil })
	w.Watch(ctx, s)
	k.send(Event{Kind: ConnFailed, SID: 1, Err: 1022})
	log.wait(t, "not the one first attached")
	log.wait(t, "no longer watched")
	if got := k.opsSoFar(); got != "stop bind start stop" {
		t.Errorf("kernel operations %q, want the connection stopped again after the check", got)
	}
	w.mu.Lock()
	_, still := w.sessions[1]
	w.mu.Unlock()
	if still {
		t.Error("the session is still watched")
	}
}

func TestParseVPD83(t *testing.T) {
	page := []byte{0, 0x83, 0, 12, 0x01, 0x03, 0x00, 8, 0x60, 1, 2, 3, 4, 5, 6, 7}
	if id, err := parseVPD83(page); err != nil || id != "010300086001020304050607" {
		t.Errorf("parse: %q %v", id, err)
	}
	for _, bad := range [][]byte{nil, {0, 0x80, 0, 0}, {0, 0x83, 0, 40, 1, 2}, {0, 0x83, 0, 0}} {
		if _, err := parseVPD83(bad); err == nil {
			t.Errorf("%x parsed", bad)
		}
	}
}
