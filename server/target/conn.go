package target

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/overboot/overboot/internal/iscsiwire"
)

// Our limits, declared at login.
const (
	ourMaxRecvData   = 256 << 10
	ourMaxBurst      = 1 << 20
	ourFirstBurst    = 256 << 10
	loginMaxData     = 8192
	cmdWindow        = 64
	maxWriteTransfer = 16 << 20
)

// What a connection that has not logged in may make us hold.
const (
	// loginMaxText bounds the text of one login request, continued
	// over PDUs with the C bit: ParseText's limit.
	loginMaxText = 64 << 10
	// maxLoginPDUs bounds the login requests of a connection, in all
	// stages: RFC 7143 6.2 lets a target end a negotiation that takes
	// too many exchanges (it should allow six per stage). A login takes
	// four or five; long texts with the C bit a few more.
	maxLoginPDUs = 64
	// loginReadBuf is the read buffer of a connection not logged in
	// yet; a session reads through ffpReadBuf.
	loginReadBuf = 4 << 10
	ffpReadBuf   = 256 << 10
)

// Login status classes and details (RFC 7143 11.13.5).
const (
	loginSuccess         = 0x0000
	loginAuthFailure     = 0x0201
	loginAuthzFailure    = 0x0202
	loginInitiatorError  = 0x0200 // "initiator error": miscellaneous, not to be retried as is
	loginMissingParam    = 0x0207
	loginUnsupportedVers = 0x0205
	loginNoSession       = 0x020a // "session does not exist": a TSIH we do not know
	loginTargetError     = 0x0300
	loginUnavailable     = 0x0301 // "service unavailable": try again later
)

// loginError ends a login with a status.
type loginError struct {
	status uint16
	err    error
}

func (e *loginError) Error() string { return e.err.Error() }

func loginFail(status uint16, format string, args ...any) error {
	return &loginError{status, fmt.Errorf(format, args...)}
}

// params are the negotiated operational parameters.
type params struct {
	digests       Digests
	maxSendData   int // the initiator's MaxRecvDataSegmentLength
	maxBurst      int
	firstBurst    int
	immediateData bool
	initialR2T    bool
}

// conn is one connection (one session: MaxConnections=1).
type conn struct {
	srv  *Target
	nc   net.Conn
	r    *bufio.Reader
	host string // the remote IP address, for the per-address cap

	loggedIn bool // in Full Feature Phase; guarded by srv.mu

	initiator string
	discovery bool
	tgt       *node // the target a normal login names; see authTgt
	isid      [6]byte
	tsih      uint16
	p         params

	// decoy is why a normal login cannot succeed (no such target, or
	// one this initiator may not use), told only when CHAP fails:
	// until then the login looks like any other (see identify).
	decoy error

	// tgt is bound when a normal login's first request arrives;
	// authTgt, for a discovery login, is the target whose CHAP it
	// proves. Both are set under srv.mu: AddTarget and RemoveTarget end
	// the connections bound to the target they replace.
	authTgt *node

	wmu    sync.Mutex // guards the socket's write side and statSN
	statSN uint32

	smu      sync.Mutex // guards expCmdSN
	expCmdSN uint32

	closeOnce sync.Once
	done      chan struct{} // closed when serve has returned: no command of this connection runs any more

	tmu           sync.Mutex // guards tname and discoveryUser
	tname         string
	discoveryUser string
}

func newConn(s *Target, nc net.Conn) *conn {
	return &conn{srv: s, nc: nc, done: make(chan struct{}), r: bufio.NewReaderSize(nc, loginReadBuf), p: params{maxSendData: 8192, maxBurst: 262144, firstBurst: 65536, initialR2T: true, immediateData: true}}
}

func (c *conn) targetName() string {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	return c.tname
}

func (c *conn) close() { c.closeOnce.Do(func() { c.nc.Close() }) }

func (c *conn) serve(ctx context.Context) {
	defer close(c.done)
	defer c.close()
	log := c.srv.log.With("remote", c.nc.RemoteAddr().String())
	if err := c.login(); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Rate-limited too: a flood from many addresses would
			// write a line per connection.
			c.logFailure(log, "iscsi login timed out", err)
			return
		}
		c.logFailure(log, "iscsi login refused", err)
		return
	}
	if err := c.srv.enterFullFeature(c); err != nil {
		c.logFailure(log, "iscsi login failed", err)
		return
	}
	log.Info("iscsi login", "initiator", c.initiator, "target", c.targetName(), "discovery", c.discovery)
	// The large buffer only now: a connection that never logs in holds
	// the small one. Over it, so what the small one holds is read first.
	c.r = bufio.NewReaderSize(c.r, ffpReadBuf)
	if err := c.fullFeature(ctx); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		log.Info("iscsi session ended", "initiator", c.initiator, "err", err)
	}
}

// logFailure logs a failed login, rate-limited as the refused
// connections are (refusalLog): one line per address per 10s and ten in
// all, each counting the failures it stands for (refused, and
// refused_others for addresses that had no line).
func (c *conn) logFailure(log *slog.Logger, msg string, err error) {
	ok, n, others := c.srv.logins.refuse(c.host)
	if !ok {
		return
	}
	args := []any{"initiator", iscsiwire.Trunc(c.initiator), "err", err, "refused", n}
	if others > 0 {
		args = append(args, "refused_others", others)
	}
	log.Info(msg, args...)
}

// login runs the login phase (RFC 7143 section 6.3) up to full feature.
func (c *conn) login() error {
	var (
		chap    chapState
		stage   = -1
		pending []byte // text of PDUs with the C bit
		kv      = map[string]string{}
		first   = true
	)
	for n := 1; ; n++ {
		p, err := ReadPDU(c.r, Digests{}, loginMaxData)
		if err != nil {
			return err
		}
		if p.Opcode() != OpLogin {
			return fmt.Errorf("opcode 0x%02x during login", p.Opcode())
		}
		// An initiator that has not authenticated holds only so much:
		// refused as an initiator error (status class 2, RFC 7143
		// 11.13.5: "miscellaneous unsuccessful login initiator errors";
		// 0x0302 "out of resources" is class 3, which invites a retry).
		switch {
		case n > maxLoginPDUs:
			return c.loginReject(p, loginFail(loginInitiatorError, "more than %d login requests", maxLoginPDUs))
		case len(pending)+len(p.Data) > loginMaxText:
			return c.loginReject(p, loginFail(loginInitiatorError, "login text of more than %d bytes", loginMaxText))
		}
		transit, cont := p.BHS[1]&0x80 != 0, p.BHS[1]&0x40 != 0
		csg, nsg := int(p.BHS[1]>>2&3), int(p.BHS[1]&3)
		if first {
			copy(c.isid[:], p.BHS[8:14])
			c.tsih = p.Uint16At(14)
			c.statSN = p.ExpStatSN()
			c.expCmdSN = p.CmdSN()
			if p.BHS[3] > 0 { // version-min
				return c.loginReject(p, loginFail(loginUnsupportedVers, "iSCSI version %d", p.BHS[3]))
			}
			first = false
		}
		pending = append(pending, p.Data...)
		if cont {
			// More text follows: acknowledge with an empty response.
			if err := c.loginRespond(p, false, csg, csg, nil, loginSuccess); err != nil {
				return err
			}
			continue
		}
		kvs, err := ParseText(pending)
		pending = nil
		if err != nil {
			return c.loginReject(p, loginFail(loginInitiatorError, "%v", err))
		}
		for _, x := range kvs {
			kv[x.Key] = x.Value
		}
		if stage == -1 {
			if err := c.identify(kvs); err != nil {
				return c.loginReject(p, err)
			}
		}
		stage = csg
		var answer []KV
		switch csg {
		case 0: // security negotiation
			answer, err = c.security(kvs, &chap)
			if err != nil {
				return c.loginReject(p, err)
			}
			if !chap.authed && transit {
				transit = false // stay until CHAP is done
			}
		case 1: // operational negotiation
			if !chap.authed {
				return c.loginReject(p, loginFail(loginAuthFailure, "operational negotiation before authentication: CHAP is required"))
			}
			answer = c.negotiate(kvs)
		default:
			return c.loginReject(p, loginFail(loginInitiatorError, "login stage %d", csg))
		}
		if transit && nsg == 3 && chap.authed {
			continued := false
			if c.discovery {
				err = c.srv.stillCurrent(c)
			} else {
				continued, err = c.srv.claim(c)
			}
			if err != nil {
				return c.loginReject(p, err)
			}
			c.negotiateDefaults(kv)
			if !continued {
				c.srv.mu.Lock()
				c.srv.nextTSIH++
				if c.srv.nextTSIH == 0 {
					c.srv.nextTSIH = 1
				}
				c.tsih = c.srv.nextTSIH
				c.srv.mu.Unlock()
			}
			if err := c.loginRespond(p, true, csg, 3, answer, loginSuccess); err != nil {
				return err
			}
			c.p.digests = negotiatedDigests(kv)
			c.statSN++
			if c.tgt != nil {
				c.tmu.Lock()
				c.tname = c.tgt.cfg.IQN
				c.tmu.Unlock()
			}
			return nil
		}
		if err := c.loginRespond(p, transit, csg, nsg, answer, loginSuccess); err != nil {
			return err
		}
	}
}

// identify checks the first PDU's InitiatorName, SessionType and
// TargetName.
func (c *conn) identify(kvs []KV) error {
	name, ok := iscsiwire.Lookup(kvs, "InitiatorName")
	if !ok || name == "" {
		return loginFail(loginMissingParam, "no InitiatorName")
	}
	c.initiator = name
	st, _ := iscsiwire.Lookup(kvs, "SessionType")
	switch st {
	case "Discovery":
		c.discovery = true
		return nil
	case "", "Normal":
	default:
		return loginFail(loginInitiatorError, "SessionType %q", iscsiwire.Trunc(st))
	}
	tn, ok := iscsiwire.Lookup(kvs, "TargetName")
	if !ok {
		return loginFail(loginMissingParam, "no TargetName")
	}
	// Which targets exist, and whom they admit, is not for an initiator
	// that has not authenticated to learn: target names carry user names
	// and MAC addresses, and disk numbers are small. A target we do not
	// have, or one this initiator may not use, gets the same CHAP
	// exchange as the right one (a decoy challenge: same algorithm, same
	// length) and fails where a wrong secret fails, at the response, as
	// an authentication failure (0x0201), whatever the response.
	if h := c.srv.loginHook.Load(); h != nil {
		(*h)(tn, name)
	}
	switch found, allowed := c.srv.bindTarget(c, tn); {
	case !found:
		c.decoy = loginFail(loginAuthFailure, "no target %s", iscsiwire.Trunc(tn))
	case !allowed:
		c.decoy = loginFail(loginAuthFailure, "initiator %s may not log in to %s", iscsiwire.Trunc(name), iscsiwire.Trunc(tn))
	}
	return nil
}

// chapState is a login's CHAP: the algorithm and challenge the target
// sent, and whether the initiator has proved its secret.
type chapState struct {
	alg       string // CHAP_A: iscsiwire.ChapMD5 or ChapSHA256
	id        byte
	challenge []byte // nil: none outstanding
	authed    bool
}

// security runs AuthMethod and CHAP.
func (c *conn) security(kvs []KV, st *chapState) ([]KV, error) {
	var answer []KV
	if m, ok := iscsiwire.Lookup(kvs, "AuthMethod"); ok {
		if !strings.Contains(","+m+",", ",CHAP,") {
			return nil, loginFail(loginAuthFailure, "AuthMethod %q: this target requires CHAP", iscsiwire.Trunc(m))
		}
		answer = append(answer, KV{Key: "AuthMethod", Value: "CHAP"})
		if !c.discovery {
			answer = append(answer, KV{Key: "TargetPortalGroupTag", Value: "1"})
		}
	}
	if a, ok := iscsiwire.Lookup(kvs, "CHAP_A"); ok {
		// SHA-256 when the initiator offers it (Linux's iscsid can),
		// else MD5 (iPXE, libiscsi, iscsid by default).
		alg, ok := iscsiwire.ChooseChapAlgorithm(a)
		if !ok {
			return nil, loginFail(loginAuthFailure, "CHAP_A %q: only SHA-256 (%s) and MD5 (%s) are supported", iscsiwire.Trunc(a), iscsiwire.ChapSHA256, iscsiwire.ChapMD5)
		}
		id, challenge, err := iscsiwire.NewChallengeAlg(alg)
		if err != nil {
			return nil, loginFail(loginTargetError, "%v", err)
		}
		st.alg, st.id, st.challenge = alg, id, challenge
		answer = append(answer, KV{Key: "CHAP_A", Value: alg}, KV{Key: "CHAP_I", Value: strconv.Itoa(int(id))}, KV{Key: "CHAP_C", Value: iscsiwire.EncodeBinary(challenge)})
	}
	if r, ok := iscsiwire.Lookup(kvs, "CHAP_R"); ok {
		if st.challenge == nil {
			return nil, loginFail(loginAuthFailure, "CHAP_R before a challenge")
		}
		user, _ := iscsiwire.Lookup(kvs, "CHAP_N")
		creds, mutual, cerr := c.credentials(user)
		// Checked even when credentials refuse (a decoy): the same work
		// whatever the case.
		verr := iscsiwire.VerifyCHAPAlg(st.alg, creds, st.id, st.challenge, user, r)
		if cerr != nil {
			return nil, cerr
		}
		if verr != nil {
			return nil, &loginError{loginAuthFailure, verr}
		}
		if ci, ok := iscsiwire.Lookup(kvs, "CHAP_I"); ok { // mutual CHAP
			cc, _ := iscsiwire.Lookup(kvs, "CHAP_C")
			ch, err := iscsiwire.DecodeBinary(cc)
			n, ierr := strconv.Atoi(ci)
			switch {
			case mutual == nil:
				return nil, loginFail(loginAuthFailure, "mutual CHAP asked for, none configured for %s", iscsiwire.Trunc(user))
			case err != nil || ierr != nil || n < 0 || n > 255 || len(ch) == 0:
				return nil, loginFail(loginAuthFailure, "bad CHAP_I/CHAP_C")
			case string(ch) == string(st.challenge):
				return nil, loginFail(loginAuthFailure, "CHAP_C reflects our challenge")
			}
			resp, err := iscsiwire.ChapResponseAlg(st.alg, byte(n), mutual.Secret, ch)
			if err != nil {
				return nil, loginFail(loginTargetError, "%v", err)
			}
			answer = append(answer, KV{Key: "CHAP_N", Value: mutual.User}, KV{Key: "CHAP_R", Value: iscsiwire.EncodeBinary(resp)})
		}
		st.authed = true
		st.challenge = nil
	}
	return answer, nil
}

// credentials returns the CHAP the initiator must prove: the target's,
// or for discovery those of any target the initiator may use with that
// CHAP user. A decoy login gets a random secret and its refusal.
func (c *conn) credentials(user string) (CHAP, *CHAP, error) {
	if c.decoy != nil {
		b := make([]byte, 32)
		rand.Read(b)
		return CHAP{User: user, Secret: Secret(b)}, nil, c.decoy
	}
	if !c.discovery {
		return c.tgt.cfg.CHAP, c.tgt.cfg.MutualCHAP, nil
	}
	t := c.srv.bindDiscovery(c, user)
	if t == nil {
		return CHAP{}, nil, loginFail(loginAuthFailure, "no target for initiator %s with CHAP user %q", iscsiwire.Trunc(c.initiator), iscsiwire.Trunc(user))
	}
	c.tmu.Lock()
	c.discoveryUser = user
	c.tmu.Unlock()
	return t.cfg.CHAP, t.cfg.MutualCHAP, nil
}

// negotiate answers operational keys (RFC 7143 section 13).
func (c *conn) negotiate(kvs []KV) []KV {
	var out []KV
	for _, x := range kvs {
		k, v := x.Key, x.Value
		switch k {
		case "HeaderDigest", "DataDigest":
			out = append(out, KV{Key: k, Value: chooseDigest(v)})
		case "MaxRecvDataSegmentLength":
			// Declarative: what we may send. Ours is declared below.
		case "MaxBurstLength":
			out = append(out, KV{Key: k, Value: strconv.Itoa(minNum(v, ourMaxBurst))})
		case "FirstBurstLength":
			out = append(out, KV{Key: k, Value: strconv.Itoa(minNum(v, ourFirstBurst))})
		case "ImmediateData":
			out = append(out, KV{Key: k, Value: and(v)})
		case "InitialR2T":
			out = append(out, KV{Key: k, Value: v}) // OR with our No
		case "MaxOutstandingR2T", "MaxConnections":
			out = append(out, KV{Key: k, Value: "1"})
		case "DataPDUInOrder", "DataSequenceInOrder":
			out = append(out, KV{Key: k, Value: "Yes"})
		case "ErrorRecoveryLevel", "DefaultTime2Retain":
			out = append(out, KV{Key: k, Value: "0"})
		case "DefaultTime2Wait":
			out = append(out, KV{Key: k, Value: "2"})
		case "IFMarker", "OFMarker":
			out = append(out, KV{Key: k, Value: "No"})
		case "InitiatorName", "InitiatorAlias", "TargetName", "SessionType", "AuthMethod":
		default:
			if !strings.HasPrefix(k, "X-") && !strings.HasPrefix(k, "X#") {
				out = append(out, KV{Key: k, Value: "NotUnderstood"})
			}
		}
	}
	return append(out, KV{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(ourMaxRecvData)})
}

func chooseDigest(offer string) string {
	for _, d := range strings.Split(offer, ",") {
		if d == "None" || d == "CRC32C" {
			return d
		}
	}
	return "Reject"
}

func minNum(v string, ours int) int {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return ours
	}
	return min(n, ours)
}

func and(v string) string {
	if v == "Yes" {
		return "Yes"
	}
	return "No"
}

// negotiateDefaults records the outcome of negotiation from every key
// the initiator sent.
func (c *conn) negotiateDefaults(kv map[string]string) {
	if v, ok := kv["MaxRecvDataSegmentLength"]; ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 512 {
			c.p.maxSendData = min(n, iscsiwire.MaxDataSegment)
		}
	}
	if v, ok := kv["MaxBurstLength"]; ok {
		c.p.maxBurst = minNum(v, ourMaxBurst)
	}
	if v, ok := kv["FirstBurstLength"]; ok {
		c.p.firstBurst = minNum(v, ourFirstBurst)
	}
	if v, ok := kv["ImmediateData"]; ok {
		c.p.immediateData = v == "Yes"
	}
	if v, ok := kv["InitialR2T"]; ok {
		c.p.initialR2T = v == "Yes"
	}
}

func negotiatedDigests(kv map[string]string) Digests {
	return Digests{Header: chooseDigest(kv["HeaderDigest"]) == "CRC32C", Data: chooseDigest(kv["DataDigest"]) == "CRC32C"}
}

func (c *conn) loginRespond(req *PDU, transit bool, csg, nsg int, kvs []KV, status uint16) error {
	r := &PDU{Data: MarshalText(kvs)}
	r.BHS[0] = OpLoginResp
	b1 := byte(csg << 2)
	if transit {
		b1 |= 0x80 | byte(nsg)
	}
	r.BHS[1] = b1
	copy(r.BHS[8:14], c.isid[:])
	r.PutUint16At(14, c.tsih)
	r.SetITT(req.ITT())
	r.BHS[36], r.BHS[37] = byte(status>>8), byte(status)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	r.PutUint32At(24, c.statSN)
	r.PutUint32At(28, c.expCmdSN)
	r.PutUint32At(32, c.expCmdSN+cmdWindow-1)
	wire, err := r.Marshal(Digests{})
	if err != nil {
		return err
	}
	_, err = c.nc.Write(wire)
	return err
}

// loginReject answers a failed login with its status and returns the
// error.
func (c *conn) loginReject(req *PDU, err error) error {
	status := uint16(loginInitiatorError)
	var le *loginError
	if errors.As(err, &le) {
		status = le.status
	}
	c.loginRespond(req, false, int(req.BHS[1]>>2&3), 0, nil, status)
	return err
}
