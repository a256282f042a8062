package initagent

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/overboot/overboot/boot"
)

// LinuxExecutor performs plan steps with real syscalls. It only makes sense
// as PID 1 in an initramfs. Do only dispatches: each concern has its file
// (mount_linux.go, loop_linux.go, modules_linux.go, net_linux.go,
// download_linux.go, iscsi_linux.go, verify_linux.go, format_linux.go,
// files_linux.go, switchroot_linux.go; failure_linux.go applies the
// failure policy).
type LinuxExecutor struct {
	Console  io.Writer
	Progress func(Phase, string) // download progress lines
	Client   *http.Client        // nil: a default client

	iface string // the interface Network configured
}

// Do implements Executor.
func (e *LinuxExecutor) Do(ctx context.Context, s Step) (string, error) {
	switch s := s.(type) {
	case Mount:
		return "", mount(s)
	case Mkdir:
		return "", mkdirs(s)
	case LoadModules:
		return loadModules(s)
	case Network:
		note, iface, err := bringUpNetwork(ctx, s)
		e.iface = iface
		return note, err
	case Download:
		return download(ctx, s, e.Client, e.progress)
	case LoopMount:
		return loopMount(s)
	case ISCSIAttach:
		return iscsiAttach(ctx, s)
	case IBFTAttach:
		return ibftAttach(ctx, s)
	case VerifyDevice:
		return verifyDevice(s)
	case FormatBlank:
		return formatBlank(s)
	case WriteFiles:
		return writeFiles(s)
	case HandOverNetwork:
		return handOverNetwork(s, e.iface)
	case CheckInit:
		return "", checkInit(s.Root, s.Init)
	case SwitchRoot:
		return "", switchRoot(s.Root, s.Init)
	}
	return "", fmt.Errorf("step %T cannot run here", s)
}

// Document implements Executor.
func (e *LinuxExecutor) Document(ctx context.Context, s FetchDocument) (boot.Document, error) {
	return fetchDocument(ctx, s, e.Client)
}

func (e *LinuxExecutor) progress(p Phase, line string) {
	if e.Progress != nil {
		e.Progress(p, line)
	}
}
