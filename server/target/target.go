package target

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// TargetConfig describes one target: its LUNs and who may log in.
type TargetConfig struct {
	IQN        string
	LUNs       []Backing // LUN 0, 1, ...
	Initiators []string  // initiator names allowed; empty = any that knows the CHAP secret
	CHAP       CHAP      // required: the initiator proves it knows this secret
	MutualCHAP *CHAP     // optional: the target proves itself to the initiator
	// Exclusive: one session at a time (a machine's private disk). A new
	// login by the same initiator ends its old session (the machine
	// rebooted, or lost its connection and logs in again); another
	// initiator is refused while a session lives. See claim.
	Exclusive bool
}

var iqnRE = regexp.MustCompile(`^(iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9.-]+(:[^\s]+)?|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$`)

func (tc TargetConfig) validate() error {
	if !iqnRE.MatchString(tc.IQN) || len(tc.IQN) > 223 {
		return fmt.Errorf("target name %q: want iqn.YYYY-MM.reversed.domain[:name] (RFC 7143 4.2.7)", tc.IQN)
	}
	if len(tc.LUNs) == 0 || len(tc.LUNs) > 255 {
		return fmt.Errorf("target %s: want 1 to 255 LUNs, have %d", tc.IQN, len(tc.LUNs))
	}
	if err := tc.CHAP.Validate(); err != nil {
		return fmt.Errorf("target %s: CHAP is required: %w", tc.IQN, err)
	}
	if tc.MutualCHAP != nil {
		if err := tc.MutualCHAP.Validate(); err != nil {
			return fmt.Errorf("target %s: mutual CHAP: %w", tc.IQN, err)
		}
		if tc.MutualCHAP.Secret == tc.CHAP.Secret {
			return fmt.Errorf("target %s: the mutual CHAP secret must differ from the initiator's (RFC 7143 12.1.3)", tc.IQN)
		}
	}
	return nil
}

// node is one exported target (an iSCSI target node, RFC 7143 2.1: a
// name, LUNs and who may log in).
type node struct {
	cfg  TargetConfig
	luns []*lun
}

// Limits bound what peers can hold before they log in: any TCP peer can
// connect, and before CHAP nothing tells a machine from an attacker. A
// connection that has logged in (reached Full Feature Phase, of a normal
// or a discovery session) counts against no cap: its peer knew a CHAP
// secret. So the machines' sessions take no room from new logins, and a
// flood of connections that never log in holds at most the caps' worth,
// each for LoginTimeout. A zero (or negative) field takes its default.
type Limits struct {
	// LoginTimeout: a connection not in Full Feature Phase this long
	// after it was accepted is closed. Once logged in, a session may
	// idle as long as it likes. Default 5s.
	LoginTimeout time.Duration
	// PerAddress caps the connections from one IP address that have
	// not logged in yet. Default 8: a machine logs in a few at a time
	// (discovery, its disks), and machines behind one NAT share an
	// address.
	PerAddress int
	// Total caps all the connections that have not logged in yet.
	// Default 1024.
	Total int
}

const (
	defaultLoginTimeout = 5 * time.Second
	defaultPerAddress   = 8
	defaultTotal        = 1024
)

// orDefaults returns l with its unset fields at their defaults. It works
// on a copy: the caller's Limits keep their zeros.
func (l Limits) orDefaults() Limits {
	if l.LoginTimeout <= 0 {
		l.LoginTimeout = defaultLoginTimeout
	}
	if l.PerAddress <= 0 {
		l.PerAddress = defaultPerAddress
	}
	if l.Total <= 0 {
		l.Total = defaultTotal
	}
	return l
}

// Stats are the server's current connection counts.
type Stats struct {
	Connections int // open connections, logged in or not
	LoggedIn    int // of those, in Full Feature Phase (normal and discovery sessions)
}

// Target is the embedded iSCSI target: its nodes (one per exported disk)
// and their sessions. It has no global state and never
// exits the process; it listens where its caller listens.
type Target struct {
	log *slog.Logger

	mu       sync.Mutex // guards targets, sessions, loggingIn, perAddr, limits, nextTSIH and each conn's loggedIn, tgt and authTgt
	targets  map[string]*node
	sessions map[*conn]struct{} // every accepted connection, logged in or not
	// loggingIn and perAddr count the connections not logged in yet
	// (not in Full Feature Phase), those the caps bound: in all and by
	// remote IP address.
	loggingIn int
	perAddr   map[string]int
	limits    Limits // as the caller set them: zero fields mean defaults
	nextTSIH  uint16

	// loginHook, when set, is called at the start of each normal login
	// (see SetLoginHook).
	loginHook atomic.Pointer[func(iqn, initiator string)]

	refusals refusalLog // rate-limits the warnings of refused connections
	// logins rate-limits the lines of failed logins: any peer can fail
	// a login as fast as it can connect.
	logins refusalLog
}

// New returns a server with no targets and the default Limits.
func New(log *slog.Logger) *Target {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Target{log: log, targets: map[string]*node{}, sessions: map[*conn]struct{}{}, perAddr: map[string]int{}}
}

// refusalLog rate-limits the warnings of refused connections: a flood of
// connections over a cap must not flood the log too. It allows one line
// per address per Interval, and Burst lines in all per window of
// Interval (a window starts with the first refusal after the previous
// one ended), so that many addresses cannot each log either. A line
// stands for the refusals not logged before it: refuse returns those
// from its address since that address's previous line (this one
// included), and those from other addresses that it forgot (their last
// line is an Interval old) or could not remember (more than MaxAddrs at
// once). No refusal is counted twice or lost: those after the last line
// are in the next.
//
// The zero value works with the defaults and the real clock; it is safe
// for concurrent use.
type refusalLog struct {
	Now      func() time.Time // the clock; nil is time.Now
	Interval time.Duration    // per address: one line per Interval; 0 is 10s
	Burst    int              // in all: lines per Interval; 0 is 10
	MaxAddrs int              // addresses remembered at once; 0 is 1024

	mu      sync.Mutex // guards the fields below
	addrs   map[string]*refusals
	window  time.Time // the start of the current window of Burst lines
	lines   int       // lines in the current window
	dropped int       // refusals not logged from addresses no longer (or not) in addrs
}

// refusals are one address's: when its last line went out (zero if none
// did since it was remembered) and the refusals since, not yet logged.
type refusals struct {
	last    time.Time
	pending int
}

const (
	defaultRefusalInterval = 10 * time.Second
	defaultRefusalBurst    = 10
	defaultRefusalAddrs    = 1024
)

// refuse counts a refusal from addr (an IP address) and reports whether
// to log it; if so, n is the refusals from addr the line stands for (this
// one included) and others those from other addresses that no line
// reported yet.
func (r *refusalLog) refuse(addr string) (log bool, n, others int) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	interval := cmp.Or(r.Interval, defaultRefusalInterval)
	burst := cmp.Or(r.Burst, defaultRefusalBurst)
	maxAddrs := cmp.Or(r.MaxAddrs, defaultRefusalAddrs)
	r.mu.Lock()
	defer r.mu.Unlock()
	t := now() // under the lock: concurrent calls see it go forward
	// recent: a line at last holds back the next until an Interval
	// later (none if the clock was set back).
	recent := func(last time.Time) bool {
		return !last.IsZero() && !t.Before(last) && t.Before(last.Add(interval))
	}
	if r.addrs == nil {
		r.addrs = map[string]*refusals{}
	}
	if !t.Before(r.window.Add(interval)) || t.Before(r.window) {
		// A new window (or a clock set back). An address whose last
		// line is an Interval old (or none) is held back no more:
		// forget it, and keep its refusals not yet logged for the next
		// line. addr's own stay with it: its line reports them.
		r.window, r.lines = t, 0
		for a, e := range r.addrs {
			if a != addr && !recent(e.last) {
				r.dropped += e.pending
				delete(r.addrs, a)
			}
		}
	}
	e := r.addrs[addr]
	if e == nil {
		if len(r.addrs) >= maxAddrs {
			r.dropped++
			return false, 0, 0
		}
		e = &refusals{}
		r.addrs[addr] = e
	}
	e.pending++
	if recent(e.last) || r.lines >= burst {
		return false, 0, 0
	}
	r.lines++
	n, others = e.pending, r.dropped
	e.last, e.pending, r.dropped = t, 0, 0
	return true, n, others
}

// SetLimits sets the connection limits; zero fields mean the defaults.
// Call it before Serve: connections accepted earlier keep their login
// deadline and count against the new caps.
func (s *Target) SetLimits(l Limits) {
	s.mu.Lock()
	s.limits = l
	s.mu.Unlock()
}

// Stats counts the open connections and the logged-in sessions.
func (s *Target) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Connections: len(s.sessions)}
	for c := range s.sessions {
		if c.loggedIn {
			st.LoggedIn++
		}
	}
	return st
}

// AddTarget adds or replaces a target; replacing ends its sessions and
// the logins in flight on it: a login checks CHAP against the target it
// named when it began, so one that outlived a replacement would prove
// the old secret (see claim).
func (s *Target) AddTarget(tc TargetConfig) error {
	if err := tc.validate(); err != nil {
		return err
	}
	t := &node{cfg: tc}
	for i, b := range tc.LUNs {
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", tc.IQN, i)))
		l := &lun{b: b, serial: fmt.Sprintf("%x", sum[:8])}
		copy(l.naa[:], sum[8:16])
		l.naa[0] = 0x60 | l.naa[0]&0x0f // NAA 6 (IEEE registered extended) form
		t.luns = append(t.luns, l)
	}
	s.mu.Lock()
	victims := s.boundLocked(s.targets[tc.IQN])
	s.targets[tc.IQN] = t
	s.mu.Unlock()
	for _, c := range victims {
		c.close()
	}
	return nil
}

// RemoveTarget forgets the target and ends its sessions and the logins
// in flight on it.
func (s *Target) RemoveTarget(iqn string) {
	s.mu.Lock()
	victims := s.boundLocked(s.targets[iqn])
	delete(s.targets, iqn)
	s.mu.Unlock()
	for _, c := range victims {
		c.close()
	}
}

// boundLocked lists the connections bound to t: its sessions, the
// logins in flight that named it, and the discovery sessions and logins
// that proved its CHAP. s.mu is held.
func (s *Target) boundLocked(t *node) []*conn {
	if t == nil {
		return nil
	}
	var out []*conn
	for c := range s.sessions {
		if c.tgt == t || c.authTgt == t {
			out = append(out, c)
		}
	}
	return out
}

// bindTarget binds a normal login to the target it names, if it exists
// and allows the initiator. Under s.mu: AddTarget and RemoveTarget see
// the binding and end the login, or the login sees their change.
func (s *Target) bindTarget(c *conn, iqn string) (found, allowed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targets[iqn]
	if t == nil {
		return false, false
	}
	if !t.allows(c.initiator) {
		return true, false
	}
	c.tgt = t
	return true, true
}

// currentLocked reports whether the target c's login is bound to (a
// discovery login: whose CHAP it proves) is still the one exported under
// its name, not replaced or removed since. s.mu is held.
func (s *Target) currentLocked(c *conn) bool {
	t := c.tgt
	if c.discovery {
		t = c.authTgt
	}
	return t != nil && s.targets[t.cfg.IQN] == t
}

// stillCurrent is currentLocked for a discovery login about to end: a
// refusal is "service unavailable" (0x0301), as in claim.
func (s *Target) stillCurrent(c *conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.currentLocked(c) {
		return loginFail(loginUnavailable, "the target whose CHAP the login proved was replaced or removed during the login")
	}
	return nil
}

// EndSessions closes every session logged in to iqn.
func (s *Target) EndSessions(iqn string) {
	s.mu.Lock()
	var victims []*conn
	for c := range s.sessions {
		if c.targetName() == iqn {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.close()
	}
}

// Session describes a logged-in session.
type Session struct {
	Target, Initiator, Remote string
}

// Sessions lists the normal sessions.
func (s *Target) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Session
	for c := range s.sessions {
		if n := c.targetName(); n != "" {
			out = append(out, Session{Target: n, Initiator: c.initiator, Remote: c.nc.RemoteAddr().String()})
		}
	}
	slices.SortFunc(out, func(a, b Session) int {
		if a.Target != b.Target {
			if a.Target < b.Target {
				return -1
			}
			return 1
		}
		return 0
	})
	return out
}

// visible lists the targets an initiator may see in discovery: those it
// is allowed on whose CHAP user is the one it authenticated as.
func (s *Target) visible(initiator, chapUser string) []*node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.visibleLocked(initiator, chapUser)
}

func (s *Target) visibleLocked(initiator, chapUser string) []*node {
	var out []*node
	for _, t := range s.targets {
		if t.allows(initiator) && t.cfg.CHAP.User == chapUser {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *node) int {
		switch {
		case a.cfg.IQN < b.cfg.IQN:
			return -1
		case a.cfg.IQN > b.cfg.IQN:
			return 1
		}
		return 0
	})
	return out
}

// bindDiscovery picks the target whose CHAP a discovery login must
// prove (the first the initiator may see with that CHAP user) and binds
// the login to it, as bindTarget does; nil if there is none.
func (s *Target) bindDiscovery(c *conn, chapUser string) *node {
	s.mu.Lock()
	defer s.mu.Unlock()
	vis := s.visibleLocked(c.initiator, chapUser)
	if len(vis) == 0 {
		return nil
	}
	c.authTgt = vis[0]
	return vis[0]
}

func (t *node) allows(initiator string) bool {
	return len(t.cfg.Initiators) == 0 || slices.Contains(t.cfg.Initiators, initiator)
}

// Serve accepts connections on ln until ctx is done, then closes every
// session.
func (s *Target) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer func() {
		s.mu.Lock()
		var all []*conn
		for c := range s.sessions {
			all = append(all, c)
		}
		s.mu.Unlock()
		for _, c := range all {
			c.close()
		}
		wg.Wait()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Out of file descriptors (EMFILE) and the like pass: wait
			// and accept again, as net/http does, rather than stop
			// serving every machine's disk.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("iscsi: accept failed, retrying", "err", err, "in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				continue
			}
			return err
		}
		backoff = 0
		c, over, allowed := s.admit(nc)
		if c == nil {
			// Closed before reading a byte: a peer over a cap holds
			// nothing but the accept. A flood would flood the log as
			// well: its warnings are rate-limited (refusalLog).
			if ok, n, others := s.refusals.refuse(remoteHost(nc.RemoteAddr())); ok {
				args := []any{"remote", nc.RemoteAddr().String(), "limit", over, "max", allowed, "refused", n}
				if others > 0 {
					args = append(args, "refused_others", others)
				}
				s.log.Warn("iscsi connection refused: over the limit", args...)
			}
			nc.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serve(ctx)
			s.release(c)
		}()
	}
}

// admit registers a new connection and starts its login deadline, or
// returns nil and the cap it is over ("per address" or "total") when it
// would exceed one. The caps count the connections not logged in yet:
// sessions take no slot, and idle connections free theirs after
// LoginTimeout.
func (s *Target) admit(nc net.Conn) (c *conn, over string, allowed int) {
	host := remoteHost(nc.RemoteAddr())
	s.mu.Lock()
	defer s.mu.Unlock()
	lim := s.limits.orDefaults()
	switch {
	case s.perAddr[host] >= lim.PerAddress:
		return nil, "per address", lim.PerAddress
	case s.loggingIn >= lim.Total:
		return nil, "total", lim.Total
	}
	// The deadline counts from the accept, across every login PDU: a
	// peer trickling bytes cannot stretch it. serve lifts it once the
	// login completes.
	nc.SetDeadline(time.Now().Add(lim.LoginTimeout))
	c = newConn(s, nc)
	c.host = host
	s.sessions[c] = struct{}{}
	s.loggingIn++
	s.perAddr[host]++
	return c, "", 0
}

// release forgets a connection that has ended.
func (s *Target) release(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, c)
	if !c.loggedIn {
		s.uncount(c)
	}
}

// uncount takes c out of the counts of connections not logged in yet,
// once: when it logs in or, if it never did, when it ends. s.mu is held.
func (s *Target) uncount(c *conn) {
	s.loggingIn--
	if s.perAddr[c.host]--; s.perAddr[c.host] <= 0 {
		delete(s.perAddr, c.host)
	}
}

// enterFullFeature marks c logged in: its login deadline no longer
// applies (a session may idle), it counts against no cap any more, and
// Stats counts it as logged in.
func (s *Target) enterFullFeature(c *conn) error {
	if err := c.nc.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("lift the login deadline: %w", err)
	}
	s.mu.Lock()
	c.loggedIn = true
	s.uncount(c)
	s.mu.Unlock()
	return nil
}

// remoteHost is the IP address a connection comes from, the key of the
// per-address cap. IPv4 through an IPv6 listener counts as IPv4.
func remoteHost(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap().String()
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

// reinstateWait bounds how long a login that replaces a session waits for
// the old connection's commands to finish (a write still in progress must
// land before the initiator's retry of it, or after: never over a newer
// write). It stays well inside the default LoginTimeout.
const reinstateWait = 3 * time.Second

// claim decides, once the initiator has authenticated and before its
// login response goes out, which sessions of the target this login
// replaces (RFC 7143 6.3.4 and 6.3.5), and closes them:
//
//   - a non-zero TSIH continues that session of the same initiator and
//     ISID (the initiator lost its connection; the target may still think
//     it alive, as after a network cut): the old connection is closed
//     and the session keeps its TSIH (continued is true). No such session
//     (a target that restarted) is "session does not exist" (0x020a): the
//     initiator then logs in with TSIH 0;
//   - TSIH 0 with the ISID of a live session of the same initiator is
//     session reinstatement: the old session is closed, a new one made;
//   - on an Exclusive target (one machine's disk), a session of another
//     initiator refuses the login, and one of the same initiator with
//     another ISID is closed: the machine booted again (a reset leaves its
//     old connection open here until TCP gives up, and iPXE's sanboot
//     session is still open when the booted system logs in with its own
//     ISID).
//
// The replaced connections' commands have ended when claim returns, or
// the login is refused as "service unavailable" (0x0301), to be retried.
// So is a login whose target was replaced or removed since it began.
func (s *Target) claim(c *conn) (continued bool, err error) {
	s.mu.Lock()
	if !s.currentLocked(c) {
		// Replaced (a new CHAP secret) or removed since the login
		// began: its CHAP proved a secret that may be revoked. AddTarget
		// ends such logins; this catches one it raced. A retry logs in
		// to the target as it is now. (No target at all, a decoy login,
		// never gets here: its CHAP fails.)
		s.mu.Unlock()
		return false, loginFail(loginUnavailable, "the login's target was replaced or removed during the login")
	}
	iqn := c.tgt.cfg.IQN
	var old []*conn
	for o := range s.sessions {
		if o == c || o.targetName() != iqn {
			continue
		}
		same := o.initiator == c.initiator && o.isid == c.isid
		switch {
		case same && c.tsih != 0 && o.tsih == c.tsih:
			continued = true
			old = append(old, o)
		case same && c.tsih == 0:
			old = append(old, o)
		case !c.tgt.cfg.Exclusive:
			// A shared target takes any number of sessions.
		case o.initiator != c.initiator:
			s.mu.Unlock()
			return false, loginFail(loginAuthzFailure, "target %s is in use by %s", iqn, o.initiator)
		default:
			old = append(old, o)
		}
	}
	if c.tsih != 0 && !continued {
		s.mu.Unlock()
		return false, loginFail(loginNoSession, "no session 0x%04x with ISID %x of %s on %s", c.tsih, c.isid, c.initiator, iqn)
	}
	// The target is this connection's from here, before its login
	// response goes out: a second initiator's claim racing this one sees
	// it (it used to be set after the response, and both got in).
	c.tmu.Lock()
	c.tname = iqn
	c.tmu.Unlock()
	s.mu.Unlock()
	if len(old) == 0 {
		return continued, nil
	}
	how := "reinstated"
	if continued {
		how = "continued"
	}
	timeout := time.NewTimer(reinstateWait)
	defer timeout.Stop()
	for _, o := range old {
		s.log.Info("iscsi: a new login replaces a session", "target", iqn, "initiator", c.initiator, "isid", fmt.Sprintf("%x", c.isid), "old_isid", fmt.Sprintf("%x", o.isid), "session", how, "old_remote", o.nc.RemoteAddr().String())
		o.close()
	}
	for _, o := range old {
		select {
		case <-o.done:
		case <-timeout.C:
			return false, loginFail(loginUnavailable, "the session it replaces on %s still has commands running after %v", iqn, reinstateWait)
		}
	}
	return continued, nil
}

// SetLoginHook sets hook, called with the target and initiator names of
// every normal login before the target is looked up, so its caller can
// export (or withdraw) that target first: a server exports a disk whose
// machine booted through another server when the machine logs in. It
// runs before CHAP, for any peer: it must only make the targets match
// what its caller already decided, never trust the names, and be quick
// (the login waits; LoginTimeout still bounds it). nil removes it.
func (s *Target) SetLoginHook(hook func(iqn, initiator string)) {
	if hook == nil {
		s.loginHook.Store(nil)
		return
	}
	s.loginHook.Store(&hook)
}

// RemoveIdle removes the target iqn if no session is logged in to it,
// ending the logins in flight on it, and reports true; with sessions it
// changes nothing and returns them. Checked and removed under one lock,
// so no login slips in between.
func (s *Target) RemoveIdle(iqn string) ([]Session, bool) {
	s.mu.Lock()
	var busy []Session
	for c := range s.sessions {
		if c.targetName() == iqn {
			busy = append(busy, Session{Target: iqn, Initiator: c.initiator, Remote: c.nc.RemoteAddr().String()})
		}
	}
	if len(busy) > 0 {
		s.mu.Unlock()
		return busy, false
	}
	victims := s.boundLocked(s.targets[iqn])
	delete(s.targets, iqn)
	s.mu.Unlock()
	for _, c := range victims {
		c.close()
	}
	return nil, true
}

// HasTarget reports whether iqn is exported with exactly these CHAP
// credentials and this one allowed initiator.
func (s *Target) HasTarget(iqn string, chap CHAP, initiator string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.targets[iqn]
	return t != nil && t.cfg.CHAP == chap && len(t.cfg.Initiators) == 1 && t.cfg.Initiators[0] == initiator
}
