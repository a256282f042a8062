package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overboot/overboot/internal/testneed"
)

// stream writes go test -json events: each e is action, package, test,
// output.
func stream(t *testing.T, events ...[4]string) string {
	t.Helper()
	var b strings.Builder
	for _, e := range events {
		m := map[string]string{"Action": e[0], "Package": e[1]}
		if e[2] != "" {
			m["Test"] = e[2]
		}
		if e[3] != "" {
			m["Output"] = e[3]
		}
		j, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(j, '\n'))
	}
	return b.String()
}

const (
	pa = module + "/a"
	pb = module + "/b"
)

// a run: a test passes with output, one fails in a subtest, one skips,
// one is left to the QEMU tier; package b crashes in a test.
func sample(t *testing.T) string {
	return stream(t,
		[4]string{"start", pa, "", ""},
		[4]string{"run", pa, "TestOK", ""},
		[4]string{"output", pa, "TestOK", "=== RUN   TestOK\n"},
		[4]string{"output", pa, "TestOK", "    a_test.go:3: quiet when it passes\n"},
		[4]string{"pass", pa, "TestOK", ""},
		[4]string{"run", pa, "TestSub", ""},
		[4]string{"output", pa, "TestSub", "=== RUN   TestSub\n"},
		[4]string{"run", pa, "TestSub/x", ""},
		[4]string{"output", pa, "TestSub/x", "    a_test.go:4: y broke\n"},
		[4]string{"output", pa, "TestSub/x", "--- FAIL: TestSub/x (0.00s)\n"},
		[4]string{"fail", pa, "TestSub/x", ""},
		[4]string{"output", pa, "TestSub", "--- FAIL: TestSub (0.00s)\n"},
		[4]string{"fail", pa, "TestSub", ""},
		[4]string{"run", pa, "TestSkip", ""},
		[4]string{"output", pa, "TestSkip", "=== RUN   TestSkip\n"},
		[4]string{"output", pa, "TestSkip", "    a_test.go:5: needs foo\n"},
		[4]string{"output", pa, "TestSkip", "--- SKIP: TestSkip (0.00s)\n"},
		[4]string{"skip", pa, "TestSkip", ""},
		[4]string{"run", pa, "TestBoot", ""},
		[4]string{"output", pa, "TestBoot", "    a_test.go:9: " + testneed.LeftToVM + ": boots QEMU\n"},
		[4]string{"skip", pa, "TestBoot", ""},
		[4]string{"output", pa, "", "FAIL\n"},
		[4]string{"output", pa, "", "FAIL\t" + pa + "\t0.1s\n"},
		[4]string{"fail", pa, "", ""},
		[4]string{"start", pb, "", ""},
		[4]string{"run", pb, "TestCrash", ""},
		[4]string{"output", pb, "TestCrash", "=== RUN   TestCrash\n"},
		[4]string{"output", pb, "TestCrash", "panic: test timed out after 1s\n"},
		[4]string{"output", pb, "", "FAIL\t" + pb + "\t1.0s\n"},
		[4]string{"fail", pb, "", ""},
	)
}

func TestSummary(t *testing.T) {
	var out, errs bytes.Buffer
	rec := filepath.Join(t.TempDir(), "unit.tsv")
	if code := run([]string{"-tier", "unit", "-record", rec}, strings.NewReader(sample(t)), &out, &errs); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	got := out.String()
	for _, want := range []string{
		"=== RUN   TestSub\n    a_test.go:4: y broke\n--- FAIL: TestSub/x (0.00s)\n--- FAIL: TestSub (0.00s)\n", // in full, in order
		"FAIL\t" + pa + "\t0.1s\n",
		"TestCrash did not finish:\n=== RUN   TestCrash\npanic: test timed out after 1s\n",
		"SKIP ./a TestSkip: a_test.go:5: needs foo\n",
		"FAIL ./a TestSub/x\nFAIL ./a TestSub\nFAIL ./b TestCrash\nFAIL ./a (the package)\nFAIL ./b (the package)\n",
		"unit: 1 passed, 3 failed, 1 skipped (tests and subtests); 1 left to the QEMU tier (make vmtest)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "quiet when it passes") || strings.Contains(got, "SKIP ./a TestBoot") {
		t.Errorf("output shows a passing test's log or the test left to the QEMU tier as skipped:\n%s", got)
	}

	// The QEMU tier ran TestBoot and TestSkip: in all, nothing skipped.
	vm := filepath.Join(t.TempDir(), "vmtest.tsv")
	vmRun := stream(t,
		[4]string{"start", pa, "", ""},
		[4]string{"pass", pa, "TestBoot", ""},
		[4]string{"pass", pa, "TestSkip", ""},
		[4]string{"pass", pa, "", ""},
	)
	out.Reset()
	if code := run([]string{"-record", vm}, strings.NewReader(vmRun), &out, &errs); code != 0 {
		t.Errorf("a passing run: exit status %d:\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"-total", "-tier", "make test", rec, vm}, nil, &out, &errs); code != 1 {
		t.Errorf("-total with a failure: exit status %d", code)
	}
	if want := "make test: 3 passed, 3 failed, 0 skipped (tests and subtests)"; !strings.Contains(out.String(), want) {
		t.Errorf("-total:\n%s\nwant %q", out.String(), want)
	}
	out.Reset()
	run([]string{"-total", rec}, nil, &out, &errs)
	if want := "SKIP ./a TestBoot: the QEMU tier did not run: "; !strings.Contains(out.String(), want) {
		t.Errorf("-total of the unit tier alone:\n%s\nwant %q", out.String(), want)
	}
}

func TestSummaryVerbose(t *testing.T) {
	var out, errs bytes.Buffer
	run([]string{"-v"}, strings.NewReader(sample(t)), &out, &errs)
	if got := out.String(); strings.Count(got, "y broke") != 1 || !strings.Contains(got, "quiet when it passes") {
		t.Errorf("-v shows every line once:\n%s", got)
	}
}

func TestSummaryNoEvents(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(nil, strings.NewReader("go: something went wrong\n"), &out, &errs); code != 1 || out.String() != "go: something went wrong\n" {
		t.Errorf("no events: exit status %d, output %q", code, out.String())
	}
}
