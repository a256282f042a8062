package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildVersion is what the binary knows of its build (runtime/debug's
// build information).
type buildVersion struct {
	Version  string `json:"version"`            // the module's; "(devel)" when the build knows none
	Revision string `json:"revision,omitempty"` // the VCS commit
	Time     string `json:"time,omitempty"`     // its time (RFC 3339)
	Modified *bool  `json:"modified,omitempty"` // the work tree had changes not committed
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// versionOf reads bi (nil: no build information).
func versionOf(bi *debug.BuildInfo) buildVersion {
	v := buildVersion{Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			m := s.Value == "true"
			v.Modified = &m
		}
	}
	return v
}

func currentVersion() buildVersion {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(bi)
}

// moduleVersion is the main module's version, "(devel)" when the build
// knows none.
func moduleVersion() string { return currentVersion().Version }

func (v buildVersion) text(w io.Writer) {
	fmt.Fprintf(w, "overboot %s\n", v.Version)
	switch {
	case v.Revision == "":
		fmt.Fprintln(w, "revision: unknown (built without VCS information: -buildvcs=false, or not in a git clone)")
	case v.Modified != nil && *v.Modified:
		fmt.Fprintf(w, "revision: %s, modified (changes not committed)\n", v.Revision)
	default:
		fmt.Fprintf(w, "revision: %s\n", v.Revision)
	}
	if v.Time != "" {
		fmt.Fprintf(w, "time:     %s\n", v.Time)
	}
	fmt.Fprintf(w, "go:       %s %s\n", v.Go, v.Platform)
}

func versionCmd(sio stdio) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "version",
		Short: "the version of this binary, and the commit it was built from",
		Long: `Prints what runtime/debug's build information holds: the module version,
the VCS revision and its time, whether the work tree had changes not
committed, and the Go version. Built in a git clone, the version is a
pseudo-version from the commit (v0.0.0-TIME-REVISION, +dirty with changes
not committed); without VCS information (-buildvcs=false, a source archive,
a git worktree, whose .git is a file) it is "(devel)" and there is no
revision. overboot --version prints the version alone.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(*cobra.Command, []string) error {
			v := currentVersion()
			return f.print(sio, v, v.text)
		},
	}
	f.addOutput(c)
	c.PreRunE = func(cmd *cobra.Command, _ []string) error { return f.checkOutput(cmd) }
	return c
}
