package initagent

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overboot/overboot/boot"
)

// Apply carries out a failure outcome. It never returns: PID 1 must not exit.
func Apply(o Outcome, console io.Writer) {
	for _, l := range o.Lines {
		fmt.Fprintln(console, l)
	}
	if o.Action == boot.ActionShell {
		if err := rescueShell(console); err != nil {
			fmt.Fprintf(console, "overboot: no rescue shell: %v; rebooting in %v\n", err, o.Delay)
			time.Sleep(o.Delay)
		} else {
			fmt.Fprintln(console, "overboot: rescue shell exited; rebooting")
		}
		o.Action = boot.ActionReboot
	} else {
		time.Sleep(o.Delay)
	}
	unix.Sync()
	cmd := unix.LINUX_REBOOT_CMD_RESTART
	if o.Action == boot.ActionPoweroff {
		cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
	}
	err := unix.Reboot(cmd)
	fmt.Fprintf(console, "overboot: %s failed: %v; halting here\n", o.Action, err)
	for {
		time.Sleep(time.Hour)
	}
}

// RescueShell is mkimage initramfs's link to the agent, which is the
// rescue shell when called by that name (initagent/rescue).
const RescueShell = "/" + boot.InitramfsShell

func rescueShell(console io.Writer) error {
	if _, err := os.Stat(RescueShell); err != nil {
		return fmt.Errorf("%s is not in this initramfs (it was built with --rescue-shell=false)", RescueShell)
	}
	tty, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer tty.Close()
	cmd := exec.Command(RescueShell)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.Env = append(os.Environ(), "PS1=overboot-rescue# ", "HOME=/", "PATH=/bin:/sbin:/usr/bin:/usr/sbin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	return cmd.Run()
}
