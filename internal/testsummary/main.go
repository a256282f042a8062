// Command testsummary reads `go test -json` on its standard input and
// writes what a person reads: a line per package that passed, the whole
// output of every test that failed (with its subtests, in order) and of a
// package that failed outside its tests (a build error, a crash), and at
// the end one line of counts, "N passed, M failed, K skipped", naming the
// tests that skipped and why. Tests skipped by testneed.VM (left to the
// QEMU tier) are counted apart. It exits 1 when a test or a package
// failed.
//
//	go test -json ./... 2>&1 | testsummary [-v] [-tier NAME] [-record FILE]
//	testsummary -total FILE...
//
// -v copies all the output as it comes, as go test -v shows it. -record
// writes each test's outcome to FILE; -total reads such files (one per
// tier: make test runs two) and prints the counts of the tests as one: a
// test skipped in one tier and run in another ran.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/overboot/overboot/internal/testneed"
)

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output
}

// outcome is how one test ended.
type outcome struct {
	Package, Test, Action string // Action: pass, fail, skip or left
	Reason                string // for skip and left: what the test said
}

type summary struct {
	out     io.Writer
	verbose bool

	tests    map[string][]string // package+top-level test -> output, subtests included
	own      map[string][]string // package+test -> its own output lines
	running  map[string][]string // package -> top-level tests started, not ended
	open     map[string]bool     // packages started, not ended
	pkgOut   map[string][]string // package -> output outside tests
	outcomes []outcome
	failed   []string // packages that failed
	events   int
}

func newSummary(out io.Writer, verbose bool) *summary {
	return &summary{out: out, verbose: verbose, tests: map[string][]string{}, own: map[string][]string{},
		running: map[string][]string{}, open: map[string]bool{}, pkgOut: map[string][]string{}}
}

func top(test string) string { name, _, _ := strings.Cut(test, "/"); return name }

// line takes one line of input.
func (s *summary) line(l string) {
	var e event
	if !strings.HasPrefix(l, "{") || json.Unmarshal([]byte(l), &e) != nil || e.Action == "" {
		fmt.Fprint(s.out, l) // not an event: go's own messages
		return
	}
	s.events++
	pkg := e.Package
	key := pkg + " " + e.Test
	topKey := pkg + " " + top(e.Test)
	switch {
	case e.Action == "build-output":
		fmt.Fprint(s.out, e.Output)
	case e.Action == "output" && e.Test != "":
		s.tests[topKey] = append(s.tests[topKey], e.Output)
		s.own[key] = append(s.own[key], e.Output)
		if s.verbose {
			fmt.Fprint(s.out, e.Output)
		}
	case e.Action == "output":
		s.pkgOut[pkg] = append(s.pkgOut[pkg], e.Output)
		if s.verbose || strings.HasPrefix(e.Output, "ok  \t") {
			fmt.Fprint(s.out, e.Output)
		}
	case e.Action == "start":
		s.open[pkg] = true
	case e.Action == "run" && e.Test == top(e.Test):
		s.running[pkg] = append(s.running[pkg], e.Test)
	case e.Test != "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
		o := outcome{Package: pkg, Test: e.Test, Action: e.Action}
		if e.Action == "skip" {
			o.Reason = reason(s.own[key])
			if strings.Contains(o.Reason, testneed.LeftToVM) {
				o.Action = "left"
			}
		}
		s.outcomes = append(s.outcomes, o)
		delete(s.own, key)
		if e.Test != top(e.Test) {
			break
		}
		s.running[pkg] = slices.DeleteFunc(s.running[pkg], func(t string) bool { return t == e.Test })
		if e.Action == "fail" && !s.verbose {
			fmt.Fprint(s.out, strings.Join(s.tests[topKey], ""))
		}
		delete(s.tests, topKey)
	case e.Test == "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
		if e.Action == "fail" {
			s.packageFailed(pkg)
		}
		delete(s.pkgOut, pkg)
		delete(s.running, pkg)
		delete(s.open, pkg)
	}
}

// packageFailed shows what a failed package said outside its tests and
// the tests it never finished (a crash, a timeout).
func (s *summary) packageFailed(pkg string) {
	s.failed = append(s.failed, pkg)
	for _, t := range s.running[pkg] {
		s.outcomes = append(s.outcomes, outcome{Package: pkg, Test: t, Action: "fail"})
		if !s.verbose {
			fmt.Fprintf(s.out, "%s did not finish:\n%s", t, strings.Join(s.tests[pkg+" "+t], ""))
		}
	}
	if !s.verbose {
		fmt.Fprint(s.out, strings.Join(s.pkgOut[pkg], ""))
	}
}

// reason is what a skipped test logged: its log lines ("    file.go:12:
// msg"), joined.
func reason(lines []string) string {
	var r []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") || l == "" {
			continue
		}
		r = append(r, l)
	}
	return strings.Join(r, " ")
}

// counts are the outcomes by kind.
type counts struct{ pass, fail, skip, left int }

func count(outs []outcome) counts {
	var c counts
	for _, o := range outs {
		switch o.Action {
		case "pass":
			c.pass++
		case "fail":
			c.fail++
		case "skip":
			c.skip++
		case "left":
			c.left++
		}
	}
	return c
}

// report prints the counts line, the skipped and the failed tests.
func report(w io.Writer, title string, outs []outcome, failedPkgs []string) {
	c := count(outs)
	left := ""
	if c.left > 0 {
		left = fmt.Sprintf("; %d left to the QEMU tier (make vmtest)", c.left)
	}
	for _, o := range outs {
		if o.Action == "skip" {
			fmt.Fprintf(w, "SKIP %s %s: %s\n", short(o.Package), o.Test, o.Reason)
		}
	}
	for _, o := range outs {
		if o.Action == "fail" {
			fmt.Fprintf(w, "FAIL %s %s\n", short(o.Package), o.Test)
		}
	}
	for _, p := range failedPkgs {
		fmt.Fprintf(w, "FAIL %s (the package)\n", short(p))
	}
	fmt.Fprintf(w, "%s: %d passed, %d failed, %d skipped (tests and subtests)%s\n", title, c.pass, c.fail, c.skip, left)
}

// short is a package path without the module's.
func short(pkg string) string {
	if rest, ok := strings.CutPrefix(pkg, module+"/"); ok {
		return "./" + rest
	}
	return pkg
}

const module = "github.com/overboot/overboot"

// record writes the outcomes, one a line: action, package, test, reason.
func record(path string, outs []outcome) error {
	var b strings.Builder
	for _, o := range outs {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\n", o.Action, o.Package, o.Test, strings.ReplaceAll(o.Reason, "\t", " "))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// total merges recorded tiers: a test failed if it failed in any, passed
// if it passed in one, else it skipped (or was left to a tier not run).
func total(paths []string) ([]outcome, error) {
	rank := map[string]int{"fail": 3, "pass": 2, "skip": 1, "left": 0}
	best := map[string]outcome{}
	var order []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		for l := range strings.Lines(string(b)) {
			f := strings.SplitN(strings.TrimSuffix(l, "\n"), "\t", 4)
			if len(f) != 4 {
				return nil, fmt.Errorf("%s: bad line %q", p, l)
			}
			o := outcome{Action: f[0], Package: f[1], Test: f[2], Reason: f[3]}
			k := o.Package + " " + o.Test
			prev, seen := best[k]
			if !seen {
				order = append(order, k)
			}
			if !seen || rank[o.Action] > rank[prev.Action] {
				best[k] = o
			}
		}
	}
	var out []outcome
	for _, k := range order {
		o := best[k]
		if o.Action == "left" { // no tier ran it
			o.Action, o.Reason = "skip", "the QEMU tier did not run: "+o.Reason
		}
		out = append(out, o)
	}
	return out, nil
}

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// run is the command: its exit status is 1 when a test or a package
// failed, 2 on bad usage.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("testsummary", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "copy all the output as it comes (go test -v)")
	tier := fs.String("tier", "tests", "the name the counts line starts with")
	rec := fs.String("record", "", "write each test's outcome to this file, for -total")
	tot := fs.Bool("total", false, "print the counts of the files named as arguments (from -record), taken as one run")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *tot {
		outs, err := total(fs.Args())
		if err != nil {
			fmt.Fprintln(stderr, "testsummary:", err)
			return 2
		}
		report(stdout, *tier, outs, nil)
		if count(outs).fail > 0 {
			return 1
		}
		return 0
	}
	s := newSummary(stdout, *verbose)
	r := bufio.NewReader(stdin)
	for {
		l, err := r.ReadString('\n')
		if l != "" {
			s.line(l)
		}
		if err != nil {
			break
		}
	}
	if s.events == 0 {
		fmt.Fprintln(stderr, "testsummary: no go test -json events on stdin")
		return 1
	}
	for pkg := range s.open { // the input ended before the package
		s.pkgOut[pkg] = append(s.pkgOut[pkg], "testsummary: the output of "+pkg+" ends before its result\n")
		s.packageFailed(pkg)
	}
	report(stdout, *tier, s.outcomes, s.failed)
	if *rec != "" {
		if err := record(*rec, s.outcomes); err != nil {
			fmt.Fprintln(stderr, "testsummary:", err)
			return 2
		}
	}
	if count(s.outcomes).fail > 0 || len(s.failed) > 0 {
		return 1
	}
	return 0
}
