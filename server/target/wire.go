package target

import "github.com/overboot/overboot/internal/iscsiwire"

// The wire format lives in internal/iscsiwire, shared with the agent's
// initiator; these aliases keep this package's API self-contained.
type (
	PDU     = iscsiwire.PDU
	Digests = iscsiwire.Digests
	KV      = iscsiwire.KV
	CHAP    = iscsiwire.CHAP
	Secret  = iscsiwire.Secret
)

const (
	OpNOPOut      = iscsiwire.OpNOPOut
	OpSCSICommand = iscsiwire.OpSCSICommand
	OpTaskMgmt    = iscsiwire.OpTaskMgmt
	OpLogin       = iscsiwire.OpLogin
	OpText        = iscsiwire.OpText
	OpDataOut     = iscsiwire.OpDataOut
	OpLogout      = iscsiwire.OpLogout
	OpSNACK       = iscsiwire.OpSNACK

	OpNOPIn        = iscsiwire.OpNOPIn
	OpSCSIResponse = iscsiwire.OpSCSIResponse
	OpTaskMgmtResp = iscsiwire.OpTaskMgmtResp
	OpLoginResp    = iscsiwire.OpLoginResp
	OpTextResp     = iscsiwire.OpTextResp
	OpDataIn       = iscsiwire.OpDataIn
	OpLogoutResp   = iscsiwire.OpLogoutResp
	OpR2T          = iscsiwire.OpR2T
	OpReject       = iscsiwire.OpReject
)

var (
	ReadPDU     = iscsiwire.ReadPDU
	ParseText   = iscsiwire.ParseText
	MarshalText = iscsiwire.MarshalText
	ErrProtocol = iscsiwire.ErrProtocol
	ErrAuth     = iscsiwire.ErrAuth
)
