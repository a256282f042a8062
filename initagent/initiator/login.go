package initiator

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/overboot/overboot/internal/iscsiwire"
)

// Transport carries login PDUs.
type Transport interface {
	Send(*iscsiwire.PDU) error
	Recv() (*iscsiwire.PDU, error)
}

// Options say whom to log in to and how.
type Options struct {
	Initiator string // our IQN
	Target    string // the target's IQN
	CHAP      iscsiwire.CHAP
	// TargetCHAP, when set, makes the target prove itself (mutual CHAP).
	TargetCHAP *iscsiwire.CHAP
	ISID       [6]byte
	// TSIH, when not 0, continues that session (RFC 7143 6.3.4): its
	// connection failed and this login replaces it. 0 makes a new
	// session, or reinstates the one with this ISID (6.3.5).
	TSIH uint16
	// Digest is "None" (default) or "CRC32C": what we offer first.
	Digest string
}

// Negotiated are the session parameters the kernel needs.
type Negotiated struct {
	TSIH                     uint16
	ExpStatSN                uint32
	HeaderDigest, DataDigest bool
	MaxRecvDataSegmentLength int // ours, declared
	MaxXmitDataSegmentLength int // the target's MaxRecvDataSegmentLength
	MaxBurstLength           int
	FirstBurstLength         int
	ImmediateData            bool
	InitialR2T               bool
}

// LoginError is a login refused by the target, with its status.
type LoginError struct {
	Class, Detail byte
}

func (e *LoginError) Error() string {
	why := map[uint16]string{
		0x0201: "authentication failed: wrong CHAP user or secret",
		0x0202: "authorization failure: this initiator may not use the target (another machine holds it?)",
		0x0203: "target not found",
		0x0205: "unsupported iSCSI version",
		0x0207: "missing parameter",
		0x020a: "session does not exist (the target restarted?)",
		0x0301: "service unavailable: try again",
	}[e.Status()]
	if why == "" {
		why = "refused"
	}
	return fmt.Sprintf("iscsi login: status 0x%02x%02x: %s", e.Class, e.Detail, why)
}

// Status is the login status code: class and detail (RFC 7143 11.13.5).
func (e *LoginError) Status() uint16 { return uint16(e.Class)<<8 | uint16(e.Detail) }

// ErrTargetAuth: mutual CHAP failed, the target is not who it claims.
var ErrTargetAuth = errors.New("the target failed mutual CHAP: not the configured server")

// MinChallenge is the shortest CHAP challenge the initiator answers: a
// target that sends less could collect answers to guess the secret from.
const MinChallenge = 16

// OurMaxRecv is the MaxRecvDataSegmentLength we declare.
const OurMaxRecv = 262144

// Login runs the login phase: security (CHAP) then operational
// negotiation, ending in full feature phase.
func Login(t Transport, o Options) (Negotiated, error) {
	if o.Digest == "" {
		o.Digest = "None"
	}
	n := Negotiated{TSIH: o.TSIH}
	if o.TargetCHAP != nil && o.TargetCHAP.Secret == o.CHAP.Secret {
		// Either side's answer would then serve as the other's
		// (RFC 7143 12.1.3).
		return n, fmt.Errorf("iscsi login: the target's CHAP secret is the initiator's own: refused")
	}
	itt := uint32(0)
	var statSN uint32
	exchange := func(csg, nsg int, transit bool, kvs []iscsiwire.KV) ([]iscsiwire.KV, error) {
		p := &iscsiwire.PDU{Data: iscsiwire.MarshalText(kvs)}
		p.BHS[0] = iscsiwire.OpLogin | 0x40
		p.BHS[1] = byte(csg << 2)
		if transit {
			p.BHS[1] |= 0x80 | byte(nsg)
		}
		copy(p.BHS[8:14], o.ISID[:])
		p.PutUint16At(14, n.TSIH)
		p.SetITT(itt)
		p.PutUint32At(28, statSN)
		itt++
		if err := t.Send(p); err != nil {
			return nil, err
		}
		r, err := t.Recv()
		if err != nil {
			return nil, err
		}
		if r.Opcode() != iscsiwire.OpLoginResp {
			return nil, fmt.Errorf("iscsi login: opcode 0x%02x in answer", r.Opcode())
		}
		if r.BHS[36] != 0 {
			return nil, &LoginError{r.BHS[36], r.BHS[37]}
		}
		statSN = r.Uint32At(24) + 1
		n.TSIH = r.Uint16At(14)
		n.ExpStatSN = statSN
		return iscsiwire.ParseText(r.Data)
	}
	kvs, err := exchange(0, 0, false, []iscsiwire.KV{
		{Key: "InitiatorName", Value: o.Initiator},
		{Key: "SessionType", Value: "Normal"},
		{Key: "TargetName", Value: o.Target},
		{Key: "AuthMethod", Value: "CHAP"},
	})
	if err != nil {
		return n, err
	}
	if m, _ := iscsiwire.Lookup(kvs, "AuthMethod"); m != "CHAP" {
		return n, fmt.Errorf("iscsi login: the target chose AuthMethod %q, not CHAP", m)
	}
	kvs, err = exchange(0, 0, false, []iscsiwire.KV{{Key: "CHAP_A", Value: iscsiwire.ChapMD5}})
	if err != nil {
		return n, err
	}
	idS, _ := iscsiwire.Lookup(kvs, "CHAP_I")
	chS, _ := iscsiwire.Lookup(kvs, "CHAP_C")
	id, err1 := strconv.Atoi(idS)
	challenge, err2 := iscsiwire.DecodeBinary(chS)
	if a, _ := iscsiwire.Lookup(kvs, "CHAP_A"); a != iscsiwire.ChapMD5 || err1 != nil || err2 != nil || id < 0 || id > 255 {
		return n, fmt.Errorf("iscsi login: bad CHAP challenge from the target")
	}
	if len(challenge) < MinChallenge {
		return n, fmt.Errorf("iscsi login: the target's CHAP challenge has %d bytes, fewer than %d: refused", len(challenge), MinChallenge)
	}
	answer := []iscsiwire.KV{
		{Key: "CHAP_N", Value: o.CHAP.User},
		{Key: "CHAP_R", Value: iscsiwire.EncodeBinary(iscsiwire.ChapResponse(byte(id), o.CHAP.Secret, challenge))},
	}
	var myID byte
	var myChallenge []byte
	if o.TargetCHAP != nil {
		if myID, myChallenge, err = iscsiwire.NewChallenge(); err != nil {
			return n, err
		}
		answer = append(answer, iscsiwire.KV{Key: "CHAP_I", Value: strconv.Itoa(int(myID))}, iscsiwire.KV{Key: "CHAP_C", Value: iscsiwire.EncodeBinary(myChallenge)})
	}
	kvs, err = exchange(0, 1, true, answer)
	if err != nil {
		return n, err
	}
	if o.TargetCHAP != nil {
		name, _ := iscsiwire.Lookup(kvs, "CHAP_N")
		resp, _ := iscsiwire.Lookup(kvs, "CHAP_R")
		if resp == iscsiwire.EncodeBinary(iscsiwire.ChapResponse(myID, o.CHAP.Secret, myChallenge)) {
			// Our own answer sent back: a reflection, not a proof.
			return n, fmt.Errorf("%w: it answered with the initiator's own response", ErrTargetAuth)
		}
		if err := iscsiwire.VerifyCHAP(*o.TargetCHAP, myID, myChallenge, name, resp); err != nil {
			return n, fmt.Errorf("%w: %v", ErrTargetAuth, err)
		}
	}
	offer := o.Digest
	if offer == "CRC32C" {
		offer = "CRC32C,None"
	}
	kvs, err = exchange(1, 3, true, []iscsiwire.KV{
		{Key: "HeaderDigest", Value: offer},
		{Key: "DataDigest", Value: offer},
		{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(OurMaxRecv)},
		{Key: "MaxBurstLength", Value: "1048576"},
		{Key: "FirstBurstLength", Value: "262144"},
		{Key: "ImmediateData", Value: "Yes"},
		{Key: "InitialR2T", Value: "No"},
		{Key: "MaxOutstandingR2T", Value: "1"},
		{Key: "MaxConnections", Value: "1"},
		{Key: "DataPDUInOrder", Value: "Yes"},
		{Key: "DataSequenceInOrder", Value: "Yes"},
		{Key: "ErrorRecoveryLevel", Value: "0"},
		{Key: "DefaultTime2Wait", Value: "2"},
		{Key: "DefaultTime2Retain", Value: "0"},
	})
	if err != nil {
		return n, err
	}
	n.MaxRecvDataSegmentLength = OurMaxRecv
	n.MaxXmitDataSegmentLength, n.MaxBurstLength, n.FirstBurstLength = 8192, 262144, 65536
	n.ImmediateData, n.InitialR2T = true, true
	for _, kv := range kvs {
		num, _ := strconv.Atoi(kv.Value)
		switch kv.Key {
		case "HeaderDigest":
			n.HeaderDigest = kv.Value == "CRC32C"
		case "DataDigest":
			n.DataDigest = kv.Value == "CRC32C"
		case "MaxRecvDataSegmentLength":
			if num >= 512 {
				n.MaxXmitDataSegmentLength = num
			}
		case "MaxBurstLength":
			n.MaxBurstLength = num
		case "FirstBurstLength":
			n.FirstBurstLength = num
		case "ImmediateData":
			n.ImmediateData = kv.Value == "Yes"
		case "InitialR2T":
			n.InitialR2T = kv.Value == "Yes"
		}
		if kv.Value == "Reject" || kv.Value == "NotUnderstood" {
			if strings.HasSuffix(kv.Key, "Digest") {
				return n, fmt.Errorf("iscsi login: the target rejected %s=%s", kv.Key, offer)
			}
		}
	}
	return n, nil
}
