package initiator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Session is one session of the kernel's initiator: what Attach was asked
// for and what its login made of it. It is what the keeper needs to log
// the session in again (Watcher), CHAP secret included: it travels only
// in memory and over the keeper's inherited pipe.
type Session struct {
	Portal string  `json:"portal"` // host:port
	LUN    int     `json:"lun"`
	Login  Options `json:"login"` // ISID included
	// Recovery is the session's recovery timeout
	// (ISCSI_PARAM_SESS_RECOVERY_TMO, whole seconds): while its
	// connection is down the kernel queues its I/O this long, then fails
	// it. 0 leaves the kernel's default (120 s).
	Recovery time.Duration `json:"recovery"`

	// Set by Attach, and by each recovery.
	SID        uint32     `json:"sid"`
	CID        uint32     `json:"cid"`
	Negotiated Negotiated `json:"negotiated"`
	Device     string     `json:"device"` // /dev/sdX
	// DeviceID is the device's identity as first attached (its VPD page
	// 0x83 designators, hex): a recovery that finds another is refused.
	DeviceID string `json:"device_id,omitempty"`
}

// String names the session for logs, without secrets.
func (s Session) String() string {
	return fmt.Sprintf("session %d (%s lun %d at %s)", s.SID, s.Login.Target, s.LUN, s.Portal)
}

// sessionParams are the parameters the kernel needs for a session after
// each login, initial or not, in the order Attach has always set them.
func sessionParams(o Options, n Negotiated) []paramValue {
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	return []paramValue{
		{ParamTargetName, o.Target},
		{ParamInitiatorName, o.Initiator},
		{ParamMaxRecvDLength, strconv.Itoa(n.MaxRecvDataSegmentLength)},
		{ParamMaxXmitDLength, strconv.Itoa(n.MaxXmitDataSegmentLength)},
		{ParamFirstBurst, strconv.Itoa(n.FirstBurstLength)},
		{ParamMaxBurst, strconv.Itoa(n.MaxBurstLength)},
		{ParamPDUInorderEn, "1"},
		{ParamDataSeqInorderEn, "1"},
		{ParamInitialR2TEn, b(n.InitialR2T)},
		{ParamImmDataEn, b(n.ImmediateData)},
		{ParamExpStatSN, strconv.FormatUint(uint64(n.ExpStatSN), 10)},
		{ParamHdrDgstEn, b(n.HeaderDigest)},
		{ParamDataDgstEn, b(n.DataDigest)},
		// A connection that went quiet is found out within 10 s: the
		// kernel pings after 5 s without a PDU and gives up 5 s later.
		{ParamPingTmo, "5"},
		{ParamRecvTmo, "5"},
	}
}

type paramValue struct {
	p Param
	v string
}

// recoveryParam is the session's recovery timeout as the kernel reads it:
// whole seconds, at least 1.
func recoveryParam(d time.Duration) paramValue {
	return paramValue{ParamSessRecoveryTmo, strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))}
}

// EventKind says what happened to a session.
type EventKind int

const (
	// ConnFailed: the session's connection failed (ISCSI_KEVENT_CONN_ERROR).
	ConnFailed EventKind = iota + 1
	// SessionGone: the kernel destroyed the session
	// (ISCSI_KEVENT_DESTROY_SESSION).
	SessionGone
	// EventsLost: the kernel dropped events (the socket's buffer was
	// full); sessions must be checked.
	EventsLost
)

// Event is a kernel event about a session.
type Event struct {
	Kind     EventKind
	SID, CID uint32
	Err      ConnErr // ConnFailed's reason
	// Seq orders the event in the stream of the kernel's messages, among
	// the replies Kernel.Start returns the position of.
	Seq uint64
}

// Kernel is what recovery drives of the kernel's iSCSI initiator: the
// netlink interface on Linux (OpenNetlink), a fake in tests.
type Kernel interface {
	// Events delivers the kernel's events, in order.
	Events() <-chan Event
	// Stop stops a connection for recovery (STOP_CONN_RECOVER): the
	// kernel drops its socket and holds the session's I/O, up to the
	// session's recovery timeout, until the connection starts again.
	Stop(sid, cid uint32) error
	// Bind gives the connection a new socket, connected to the portal.
	Bind(sid, cid uint32, c *net.TCPConn) error
	// Transport carries login PDUs through the bound connection; a Recv
	// waits at most timeout, and fails when the connection does.
	Transport(sid, cid uint32, timeout time.Duration) Transport
	SetParam(sid, cid uint32, p Param, value string) error
	// Start starts the connection: the session's queued I/O resumes. It
	// returns the reply's position in the event stream (Event.Seq):
	// events before it are about a socket the connection no longer has.
	Start(sid, cid uint32) (seq uint64, err error)
	// SessionFailed reports whether the session is blocked, its
	// connection failed (sysfs: /sys/class/iscsi_session/sessionN/state).
	SessionFailed(sid uint32) (bool, error)
}

// Logf prints a line to a log (the keeper's: the kernel log).
type Logf func(format string, args ...any)

// Recovery pacing: attempts begin 1 s apart and slow to one every 5 s;
// each step (connect, each login response) waits at most its timeout; a
// failure that persists is logged again every 30 s.
const (
	firstBackoff  = time.Second
	maxBackoff    = 5 * time.Second
	dialTimeout   = 5 * time.Second
	loginTimeout  = 15 * time.Second
	repeatLogEach = 30 * time.Second
)

// Watcher keeps sessions alive the way iscsid does (open-iscsi's
// session_conn_error and session_conn_reopen): when the kernel reports a
// connection failed, it stops the connection for recovery, connects to
// the portal again (retrying while the server is away), binds the new
// socket to the same kernel connection, logs in with the session's ISID
// and TSIH and the same CHAP (TSIH 0, session reinstatement, when the
// target no longer knows the session, as after a restart), sets the
// negotiated parameters and starts the connection: the I/O the kernel
// held resumes, none failed if this took less than the session's
// recovery timeout.
type Watcher struct {
	k    Kernel
	logf Logf

	backoff func(attempt int) time.Duration // tests make it short
	// identify reads a session's device identity after a recovery's
	// login (the keeper's: SG_IO on the device it opened before
	// switch_root); nil checks nothing.
	identify func(Session) (string, error)

	mu       sync.Mutex // guards sessions and each watched's fields
	sessions map[uint32]*watched
}

// watched is a session and its recovery's state.
type watched struct {
	s          Session
	recovering bool
	upSeq      uint64 // Start's position: earlier events are stale
}

// NewWatcher returns a Watcher of no session yet; logf nil logs nothing.
func NewWatcher(k Kernel, logf Logf) *Watcher {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Watcher{k: k, logf: logf, backoff: backoff, sessions: map[uint32]*watched{}}
}

// SetIdentify makes each recovery check the device it reaches against
// the session's DeviceID with identify (see Session.DeviceID).
func (w *Watcher) SetIdentify(identify func(Session) (string, error)) { w.identify = identify }

// errWrongDevice: the target that took the recovery's login serves
// another device than the one first attached.
var errWrongDevice = errors.New("the device behind the target is not the one first attached")

func backoff(attempt int) time.Duration {
	d := firstBackoff << min(attempt-1, 8)
	return min(d, maxBackoff)
}

// Watch adds a session. One whose connection already failed (before the
// watch began, its event unseen) is recovered now.
func (w *Watcher) Watch(ctx context.Context, s Session) {
	w.mu.Lock()
	ws := &watched{s: s}
	w.sessions[s.SID] = ws
	w.mu.Unlock()
	w.logf("watching %s: a failed connection is logged in again; I/O waits up to %v", s, orKernelDefault(s.Recovery))
	if failed, err := w.k.SessionFailed(s.SID); err == nil && failed {
		w.start(ctx, ws, "found failed")
	}
}

func orKernelDefault(d time.Duration) time.Duration {
	if d == 0 {
		return 120 * time.Second
	}
	return d
}

// Run follows the kernel's events until ctx ends or the events stop.
func (w *Watcher) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.k.Events():
			if !ok {
				return errors.New("iscsi: the kernel's event stream ended")
			}
			w.handle(ctx, ev)
		}
	}
}

func (w *Watcher) handle(ctx context.Context, ev Event) {
	w.mu.Lock()
	switch ev.Kind {
	case EventsLost:
		var all []*watched
		for _, ws := range w.sessions {
			all = append(all, ws)
		}
		w.mu.Unlock()
		w.logf("the kernel dropped iSCSI events: checking every session")
		for _, ws := range all {
			if failed, err := w.k.SessionFailed(ws.s.SID); err == nil && failed {
				w.start(ctx, ws, "found failed")
			}
		}
		return
	case SessionGone:
		if ws := w.sessions[ev.SID]; ws != nil {
			delete(w.sessions, ev.SID)
			w.mu.Unlock()
			w.logf("%s: the kernel ended it; no longer watched", ws.s)
			return
		}
	case ConnFailed:
		ws := w.sessions[ev.SID]
		// While a recovery runs, its own attempts see their failures;
		// an error older than the connection's start is about a socket
		// it no longer has.
		if ws != nil && ws.s.CID == ev.CID && !ws.recovering && ev.Seq > ws.upSeq {
			w.mu.Unlock()
			w.start(ctx, ws, ev.Err.String())
			return
		}
	}
	w.mu.Unlock()
}

// start runs a recovery of ws unless one runs.
func (w *Watcher) start(ctx context.Context, ws *watched, why string) {
	w.mu.Lock()
	if ws.recovering {
		w.mu.Unlock()
		return
	}
	ws.recovering = true
	s := ws.s
	w.mu.Unlock()
	go w.recover(ctx, ws, s, why)
}

// errSessionGone: the kernel no longer has the session.
var errSessionGone = errors.New("the kernel has no such session")

// recover logs s in again, trying until it works, the session is gone or
// ctx ends.
func (w *Watcher) recover(ctx context.Context, ws *watched, s Session, why string) {
	t0 := time.Now()
	w.logf("%s: connection failed: %s; logging in again (I/O waits up to %v)", s, why, orKernelDefault(s.Recovery))
	tsih := s.Negotiated.TSIH
	var lastMsg string
	var lastLog time.Time
	timedOut := false
	for attempt := 1; ; attempt++ {
		n, seq, err := w.attempt(ctx, s, tsih)
		if err == nil {
			how := "continued"
			if tsih == 0 {
				how = "reinstated"
			}
			w.mu.Lock()
			ws.s.Negotiated = n
			ws.upSeq = seq
			ws.recovering = false
			w.mu.Unlock()
			w.logf("%s: logged in again after %.1fs (attempt %d, session %s): its I/O resumes", s, time.Since(t0).Seconds(), attempt, how)
			return
		}
		if errors.Is(err, errSessionGone) || errors.Is(err, errWrongDevice) {
			w.mu.Lock()
			delete(w.sessions, s.SID)
			w.mu.Unlock()
			w.logf("%s: %v; no longer watched: its I/O fails after the recovery timeout", s, err)
			return
		}
		var le *LoginError
		if tsih != 0 && errors.As(err, &le) && continuationRefused(le) {
			// The target does not know the session (it restarted):
			// reinstate it (RFC 7143 6.3.5), at once.
			w.logf("%s: the target no longer knows session 0x%04x (%v): logging in with TSIH 0", s, tsih, err)
			tsih = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if msg := err.Error(); msg != lastMsg || time.Since(lastLog) >= repeatLogEach {
			w.logf("%s: attempt %d: %v", s, attempt, err)
			lastMsg, lastLog = msg, time.Now()
		}
		if !timedOut && s.Recovery > 0 && time.Since(t0) > s.Recovery {
			timedOut = true
			w.logf("%s: still no connection after %v: the kernel now fails its I/O; still trying", s, s.Recovery)
		}
		select {
		case <-time.After(w.backoff(attempt)):
		case <-ctx.Done():
			return
		}
	}
}

// continuationRefused reports whether a login that continued a session
// (non-zero TSIH) failed in a way a new session may not: "session does
// not exist" (0x020a), or another initiator error of a target that does
// not take continuations, but not the ones that concern the initiator
// whatever its TSIH (authentication, authorization, no such target).
func continuationRefused(le *LoginError) bool {
	if le.Class != 2 {
		return false
	}
	switch le.Status() {
	case 0x0201, 0x0202, 0x0203, 0x0204:
		return false
	}
	return true
}

// attempt is one try at logging s in again with tsih: stop, connect,
// bind, log in, set the parameters, start.
func (w *Watcher) attempt(ctx context.Context, s Session, tsih uint16) (Negotiated, uint64, error) {
	// Stop first, every time: it clears the kernel's record of the
	// failure (a bind is refused until then) and drops the socket of an
	// attempt that failed half-way.
	if err := w.k.Stop(s.SID, s.CID); err != nil {
		if errors.Is(err, errSessionGone) {
			return Negotiated{}, 0, err
		}
		return Negotiated{}, 0, fmt.Errorf("stop the connection for recovery: %w", err)
	}
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", s.Portal)
	if err != nil {
		return Negotiated{}, 0, fmt.Errorf("connect to %s: %w", s.Portal, err)
	}
	err = w.k.Bind(s.SID, s.CID, c.(*net.TCPConn))
	c.Close() // the kernel holds its own reference
	if err != nil {
		return Negotiated{}, 0, fmt.Errorf("bind the new connection: %w", err)
	}
	o := s.Login
	o.TSIH = tsih
	n, err := Login(w.k.Transport(s.SID, s.CID, loginTimeout), o)
	if err != nil {
		return Negotiated{}, 0, fmt.Errorf("login to %s: %w", s.Login.Target, err)
	}
	for _, p := range sessionParams(o, n) {
		if err := w.k.SetParam(s.SID, s.CID, p.p, p.v); err != nil {
			return Negotiated{}, 0, fmt.Errorf("set %v: %w", p.p, err)
		}
	}
	seq, err := w.k.Start(s.SID, s.CID)
	if err != nil {
		return Negotiated{}, 0, fmt.Errorf("start the connection: %w", err)
	}
	if w.identify != nil && s.DeviceID != "" {
		// The target proved itself with mutual CHAP (when the session
		// has a target secret); this is the device's own word, read
		// through the restarted connection.
		id, err := w.identify(s)
		switch {
		case err != nil:
			w.logf("%s: cannot read the device's identity after the login: %v; not checked", s, err)
		case id != s.DeviceID:
			w.k.Stop(s.SID, s.CID)
			return Negotiated{}, 0, fmt.Errorf("%w (VPD 0x83 %s, was %s)", errWrongDevice, short(id), short(s.DeviceID))
		}
	}
	return n, seq, nil
}

// short is the start of a long hex identity, for logs.
func short(id string) string {
	if len(id) > 24 {
		return id[:24] + "..."
	}
	return id
}
