package initagent

import (
	"time"

	"golang.org/x/sys/unix"
)

// Uptime returns the time since boot (CLOCK_BOOTTIME), which is what the
// kernel's own console timestamps count.
func Uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
