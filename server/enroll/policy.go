package enroll

import (
	"fmt"

	"github.com/overboot/overboot/server/state"
)

// Admission is what an approve-policy machine may do now.
type Admission struct {
	Boot bool   // admitted: it gets its script (and its disk)
	Pin  bool   // admitted on first use of an approval that pinned no address: pin this one
	Why  string // why not, for the waiting script and the log
}

// Admit applies the approve policy to a machine as stored (after
// state.DB.SeeMachine recorded this request) asking from address. A
// pending machine waits. An approved machine boots only from the address
// its approval pinned: asked from anywhere else it is pending again (a
// MAC address is a name, and anyone can say it). A machine approved before
// it had an address (imported from an older data directory) pins the
// first one it asks from.
func Admit(m state.Machine, address string) Admission {
	switch {
	case m.Enrolment == state.Pending:
		return Admission{Why: fmt.Sprintf("machine %s waits for approval (overboot machine approve %s)", m.MAC, m.MAC)}
	case m.Address == "":
		return Admission{Boot: true, Pin: true}
	case m.Address == address:
		return Admission{Boot: true}
	}
	return Admission{Why: fmt.Sprintf("machine %s was approved at %s and now asks from %s: it waits for approval again (overboot machine approve %s)", m.MAC, m.Address, address, m.MAC)}
}
