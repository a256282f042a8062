package initagent

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/overboot/overboot/initagent/initiator"
	"github.com/overboot/overboot/initagent/keeper"
)

// LinuxExecutor performs plan steps with real syscalls. It only makes sense
// as PID 1 in an initramfs. Do only dispatches: each concern has its file
// (mount_linux.go, loop_linux.go, modules_linux.go, net_linux.go,
// tpm_linux.go (Attest), download_linux.go, iscsi_linux.go (and Keep), lazy_linux.go, nfs_linux.go,
// verify_linux.go, format_linux.go, files_linux.go, switchroot_linux.go;
// failure_linux.go applies the failure policy).
type LinuxExecutor struct {
	Console  io.Writer
	Progress func(Phase, string) // download progress lines
	Client   *http.Client        // for everything fetched over HTTP (fetch.NewHTTPClient); nil: fetch.DefaultClient()

	iface    string                       // the interface Network configured
	sessions map[string]initiator.Session // by link: what ISCSIAttach and IBFTAttach attached
	keeper   *keeper.Keeper               // started by LazyAttach or Keep
	modules  chan moduleLoad              // a LoadModules in the background; nil without
	// restoreDAD puts back the IPv6 settings Network changed for DHCPv6
	// (optimisticDAD), at the hand-over to the booted system.
	restoreDAD func()
}

// moduleLoad is how a LoadModules step in the background ended.
type moduleLoad struct {
	note string
	err  error
}

// awaitModules waits for the modules loading in the background, once;
// without any, it returns at once.
func (e *LinuxExecutor) awaitModules() (string, error) {
	if e.modules == nil {
		return "", nil
	}
	r := <-e.modules
	e.modules = nil
	return r.note, r.err
}

// Do implements Executor.
func (e *LinuxExecutor) Do(ctx context.Context, s Step) (Result, error) {
	switch s := s.(type) {
	case Mount:
		return noted("", mount(s))
	case Mkdir:
		return noted("", mkdirs(s))
	case LoadModules:
		if !s.Background {
			return noted(loadModules(s))
		}
		if e.modules != nil {
			return Result{}, fmt.Errorf("modules load in the background already")
		}
		e.modules = make(chan moduleLoad, 1)
		go func() {
			note, err := loadModules(s)
			e.modules <- moduleLoad{note, err}
		}()
		return noted("loading in the background", nil)
	case AwaitModules:
		return noted(e.awaitModules())
	case Network:
		if s.Family == 6 && e.restoreDAD == nil {
			// Before the links come up: their link-local addresses are
			// made then. Put back at the hand-over, once the leased
			// address is no longer optimistic.
			e.restoreDAD = optimisticDAD()
		}
		note, iface, err := bringUpNetwork(ctx, s)
		e.iface = iface
		if err != nil && e.modules != nil {
			// No interface, maybe because its driver failed to load.
			if _, merr := e.awaitModules(); merr != nil {
				err = fmt.Errorf("%w (and the modules failed: %w)", err, merr)
			}
		}
		return noted(note, err)
	case FetchDocument:
		doc, err := fetchDocument(ctx, e.Client, s, nil, e.progress)
		if err != nil {
			return Result{}, err
		}
		return Result{Document: &doc}, nil
	case Attest:
		return e.attest(ctx, s)
	case ConsoleLogin:
		doc, err := e.consoleLogin(ctx, s)
		if err != nil {
			return Result{}, err
		}
		return Result{Document: &doc}, nil
	case Download:
		return noted(download(ctx, s, e.Client, e.progress))
	case LoopMount:
		return noted(loopMount(s))
	case NFSMount:
		return noted(nfsMount(ctx, s))
	case LazyAttach:
		return noted(e.lazyAttach(s))
	case ISCSIAttach:
		return noted(e.iscsiAttach(ctx, s))
	case IBFTAttach:
		return noted(e.ibftAttach(ctx, s))
	case Keep:
		return noted(e.keep(s))
	case VerifyDevice:
		return noted(verifyDevice(s))
	case FormatBlank:
		return noted(formatBlank(s))
	case WriteFiles:
		return noted(writeFiles(s))
	case HandOverNetwork:
		if e.restoreDAD != nil {
			e.restoreDAD()
			e.restoreDAD = nil
		}
		return noted(handOverNetwork(s, e.iface))
	case CheckInit:
		return noted("", checkInit(s.Root, s.Init))
	case SwitchRoot:
		return noted("", switchRoot(s.Root, s.Init))
	}
	return Result{}, fmt.Errorf("step %T cannot run here", s)
}

// noted is the Result of a step that leaves a note only.
func noted(note string, err error) (Result, error) { return Result{Note: note}, err }

func (e *LinuxExecutor) progress(p Phase, line string) {
	if e.Progress != nil {
		e.Progress(p, line)
	}
}
