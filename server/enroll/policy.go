package enroll

import (
	"fmt"

	"github.com/overboot/overboot/server/config"
	"github.com/overboot/overboot/server/state"
)

// Step is what a request for a profile's script leads to.
type Step int

// Steps.
const (
	// Enter: the policy admits the request itself (open, open-insecure,
	// login): record an admission to the profile under this policy
	// (within the profile's quota), then serve it.
	Enter Step = iota
	// Boot: the machine holds a valid admission to the profile: serve it.
	Boot
	// Ask: record a request for approval from this address and answer a
	// waiting script.
	Ask
	// Conflict: the machine is approved for the profile at another
	// address: refuse, record the request (flagged) for the
	// administrator to see, change nothing else.
	Conflict
)

// Decision is what Decide says of one request.
type Decision struct {
	Step Step
	Pin  bool   // Boot of an admission imported without an address: pin this one
	Why  string // for Ask and Conflict: the waiting script's text and the log's
}

// Decide applies a profile's enrolment policy to a request for its
// script from address by the machine mac, given the machine's admission
// to that profile (nil: none). An admission counts only under the policy
// that granted it: a machine admitted by an open profile, or by this
// profile before its policy changed, is not admitted by approve. Under
// approve a machine boots only from the address its approval pinned; a
// request from anywhere else changes nothing of it (a MAC address is a
// name, and anyone can say it).
func Decide(policy config.Enroll, mac string, adm *state.Admission, address string) Decision {
	valid := adm != nil && adm.Policy == string(policy)
	if policy != config.EnrollApprove {
		if valid {
			return Decision{Step: Boot}
		}
		return Decision{Step: Enter}
	}
	switch {
	case !valid:
		return Decision{Step: Ask, Why: fmt.Sprintf("machine %s waits for approval (overboot machine approve %s --address %s)", mac, mac, address)}
	case adm.Address == "":
		return Decision{Step: Boot, Pin: true}
	case adm.Address == address:
		return Decision{Step: Boot}
	}
	return Decision{Step: Conflict, Why: fmt.Sprintf("machine %s is approved at another address, not at %s: refused (an administrator can move it: overboot machine approve %s --address %s)", mac, address, mac, address)}
}

// Quota is a profile's quotas, with their defaults, as the store counts
// them.
func Quota(p *config.Profile) state.Quota {
	return state.Quota{Machines: p.MachinesQuota(), Disks: p.DisksQuota(), DiskBytes: p.DiskBytesQuota()}
}

// Standing is a machine's standing in the profile it last booted, as the
// status page and the admin commands show it.
type Standing struct {
	// Enrolment: the policy that admitted it (open, open-insecure,
	// login), approved, pending (it asked and waits), or none.
	Enrolment string `json:"enrolment"`
	Pinned    string `json:"pinned,omitempty"` // the address its approval pinned
	// Conflicts: requests naming it from another address than the one
	// it is approved at (each refused and changing nothing).
	Conflicts []state.Request `json:"conflicts,omitempty"`
}

// StandingOf reads m's standing from its admissions and requests (any
// machine's may be given: only m's count).
func StandingOf(m state.Machine, adms []state.Admission, reqs []state.Request) Standing {
	var s Standing
	for _, a := range adms {
		if a.MAC == m.MAC && a.Profile == m.Profile {
			s.Enrolment = a.Policy
			if a.Policy == state.PolicyApprove {
				s.Enrolment, s.Pinned = "approved", a.Address
			}
		}
	}
	for _, q := range reqs {
		switch {
		case q.MAC != m.MAC:
		case q.Conflict:
			s.Conflicts = append(s.Conflicts, q)
		case s.Enrolment == "" || q.Profile == m.Profile:
			s.Enrolment = "pending"
		}
	}
	if s.Enrolment == "" {
		s.Enrolment = "none"
	}
	return s
}
