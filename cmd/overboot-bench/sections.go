package main

// The benchmark's sections measure overboot side by side with the
// reference tools (mksquashfs, nginx, tgtd, dracut) in the same run, and
// report ratios. Each section lives in its own file and returns Results;
// main runs the sections and prints one table. Nothing here asserts
// timings: the figures are for people to read and compare with the goals.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Env is what a section gets: where to keep work files between runs, where
// the built binaries are, and where to print progress.
type Env struct {
	WorkDir  string // cache for generated inputs (trees, images); kept between runs
	BuildDir string // build/: overboot, overboot-init, ...
	Log      *slog.Logger
	Out      io.Writer // progress and per-section detail
}

// Result is one compared figure.
type Result struct {
	Section string
	Metric  string  // what was measured, with its unit
	Ours    float64 // overboot's figure
	Ref     float64 // the reference tool's figure
	RefName string  // e.g. "mksquashfs", "nginx"
	Better  string  // "lower" or "higher": which direction is better
	Goal    string  // the goal as the issue states it, e.g. "<= 1.05x"
	Note    string
}

// Ratio is Ours/Ref.
func (r Result) Ratio() float64 {
	if r.Ref == 0 {
		return 0
	}
	return r.Ours / r.Ref
}

// Section is one group of measurements.
type Section struct {
	Name string
	Run  func(ctx context.Context, env *Env) ([]Result, error)
}

// Print writes results as an aligned table.
func Print(w io.Writer, rs []Result) {
	fmt.Fprintf(w, "%-10s %-44s %14s %14s %-11s %7s  %s\n", "section", "metric", "overboot", "reference", "ref tool", "ratio", "goal")
	fmt.Fprintln(w, strings.Repeat("-", 120))
	for _, r := range rs {
		if r.RefName == "" || r.RefName == "-" {
			// A figure of ours alone (no tool does the same job to compare).
			fmt.Fprintf(w, "%-10s %-44s %14.3f %14s %-11s %7s  %s %s\n", r.Section, r.Metric, r.Ours, "-", "-", "-", r.Goal, r.Note)
			continue
		}
		fmt.Fprintf(w, "%-10s %-44s %14.3f %14.3f %-11s %6.3fx  %s %s\n", r.Section, r.Metric, r.Ours, r.Ref, r.RefName, r.Ratio(), r.Goal, r.Note)
	}
}
