package initagent

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
)

// Outcome is what the agent does after a failed boot: the lines to print
// and the action, from overboot.onfail and overboot.onfail.delay.
type Outcome struct {
	Lines  []string
	Action boot.Action
	Delay  time.Duration
}

// Decide turns a boot failure into one clear message and the configured
// policy. It reads the policy from the command line even when the command
// line is otherwise invalid, so a typo elsewhere does not change what a
// failing machine does.
func Decide(cmdline string, err error) Outcome {
	action, delay := policy(cmdline)
	o := Outcome{Action: action, Delay: delay}
	phase := Phase("boot")
	var pe *PhaseError
	if errors.As(err, &pe) {
		phase = pe.Phase
	}
	o.Lines = append(o.Lines, fmt.Sprintf("%s in phase %s", MarkerFailed, phase))
	msg := err.Error()
	if pe != nil {
		msg = pe.Err.Error()
	}
	// Multi-error messages (several bad parameters) print one per line.
	for _, l := range strings.Split(msg, "\n") {
		o.Lines = append(o.Lines, "overboot:   "+l)
	}
	if pe != nil && pe.Step != nil {
		o.Lines = append(o.Lines, "overboot:   while: "+pe.Step.String())
	}
	switch action {
	case boot.ActionShell:
		o.Lines = append(o.Lines, "overboot: starting the rescue shell on the console (overboot.onfail=shell); exit it to reboot")
	case boot.ActionPoweroff:
		o.Lines = append(o.Lines, fmt.Sprintf("overboot: powering off in %v (overboot.onfail=poweroff)", delay))
	default:
		o.Lines = append(o.Lines, fmt.Sprintf("overboot: rebooting in %v (overboot.onfail=reboot; overboot.onfail=shell gives a rescue shell instead)", delay))
	}
	return o
}

// policy reads overboot.onfail and overboot.onfail.delay leniently: invalid
// values fall back to the defaults.
func policy(cmdline string) (boot.Action, time.Duration) {
	action, delay := boot.DefaultFailAction, boot.DefaultFailDelay
	for _, a := range boot.SplitCmdline(cmdline) {
		if a.Key == "--" && !a.HasValue {
			break
		}
		switch a.Key {
		case boot.Prefix + "onfail":
			if v, err := boot.ParseAction(a.Value); err == nil {
				action = v
			}
		case boot.Prefix + "onfail.delay":
			if v, err := time.ParseDuration(a.Value); err == nil && v > 0 {
				delay = v
			}
		}
	}
	return action, delay
}
