package initagent

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/initiator"
	"github.com/overboot/overboot/initagent/keeper"
	"github.com/overboot/overboot/internal/iscsiwire"
)

// iscsiAttach logs in through the kernel initiator and links the device.
func (e *LinuxExecutor) iscsiAttach(ctx context.Context, s ISCSIAttach) (string, error) {
	src := s.Source
	if src.CHAP == nil {
		return "", fmt.Errorf("iscsi %s: no CHAP credentials in the boot document", src.Target)
	}
	a, err := login(ctx, src, s.Recovery)
	if err != nil {
		return "", err
	}
	e.attached(s.Link, a)
	os.Remove(s.Link)
	if err := os.Symlink(a.Device, s.Link); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s lun %d is %s (session %d)", src.Target, src.LUN, a.Device, a.SID), nil
}

// ibftAttach logs in to the disk the firmware booted from and links the
// root partition.
func (e *LinuxExecutor) ibftAttach(ctx context.Context, s IBFTAttach) (string, error) {
	src, err := initiator.ParseIBFT(os.DirFS(s.Dir))
	if err != nil {
		return "", err
	}
	a, err := login(ctx, src, s.Recovery)
	if err != nil {
		return "", err
	}
	e.attached(s.Link, a)
	// sd disks name their partitions sdX1, sdX2, ...; the kernel reads
	// the partition table while attaching the disk.
	part := fmt.Sprintf("%s%d", a.Device, s.Partition)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(part); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s has no partition %d (%s): check overboot.root=ibft:N against the disk's partition table", a.Device, s.Partition, part)
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.Remove(s.Link)
	if err := os.Symlink(part, s.Link); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s lun %d at %s is %s (session %d), root %s", src.Target, src.LUN, src.Portal, a.Device, a.SID, part), nil
}

// login attaches an iSCSI LUN through the kernel initiator.
func login(ctx context.Context, src boot.ISCSISource, recovery time.Duration) (initiator.Session, error) {
	o := initiator.Options{Initiator: src.Initiator, Target: src.Target}
	if src.CHAP == nil {
		return initiator.Session{}, fmt.Errorf("iscsi %s: no CHAP credentials", src.Target)
	}
	o.CHAP = iscsiwire.CHAP{User: src.CHAP.User, Secret: iscsiwire.Secret(src.CHAP.Secret)}
	if src.CHAP.TargetUser != "" {
		o.TargetCHAP = &iscsiwire.CHAP{User: src.CHAP.TargetUser, Secret: iscsiwire.Secret(src.CHAP.TargetSecret)}
	}
	return initiator.Attach(ctx, initiator.Session{Portal: src.Portal, LUN: src.LUN, Login: o, Recovery: recovery}, 20*time.Second)
}

// attached records a session for Keep.
func (e *LinuxExecutor) attached(link string, s initiator.Session) {
	if e.sessions == nil {
		e.sessions = map[string]initiator.Session{}
	}
	e.sessions[link] = s
}

// keep hands the sessions attached at s.Links to the keeper: the one a
// lazy root started, or a new one; then lets it go, as nothing else will
// be attached.
func (e *LinuxExecutor) keep(s Keep) (string, error) {
	var sessions []initiator.Session
	var names []string
	for _, l := range s.Links {
		a, ok := e.sessions[l]
		if !ok {
			return "", fmt.Errorf("keep: no iSCSI session was attached at %s", l)
		}
		sessions = append(sessions, a)
		names = append(names, fmt.Sprintf("session %d", a.SID))
	}
	how := "handed to the keeper"
	if e.keeper == nil {
		k, err := keeper.Start(keeper.Config{ISCSI: sessions}, nil)
		if err != nil {
			return "", err
		}
		e.keeper = k
		how = "watched by a new keeper"
	} else if err := e.keeper.Watch(sessions); err != nil {
		return "", err
	}
	e.keeper.Release()
	return fmt.Sprintf("%s %s (pid %d)", strings.Join(names, ", "), how, e.keeper.Pid()), nil
}
