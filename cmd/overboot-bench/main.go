// Command overboot-bench runs the benchmarks behind `make bench`: each
// section measures overboot and the reference tool in the same run and
// prints ratios.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
)

func sections() []Section {
	return []Section{mkimageSection(), httpSection(), bootSection(), iscsiSection(), controlSection(), tftpSection(), dhcpSection(), driversSection(), stormSection(), secbootSection(), imageSection(), consoleSection()}
}

func main() {
	work := flag.String("work", "build/bench", "directory for generated inputs, kept between runs")
	buildDir := flag.String("build", "build", "directory with the built binaries")
	only := flag.String("only", "", "comma-separated sections to run (default all)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env := &Env{WorkDir: *work, BuildDir: *buildDir, Log: slog.New(slog.NewTextHandler(os.Stderr, nil)), Out: os.Stdout}
	if err := os.MkdirAll(*work, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "overboot-bench:", err)
		os.Exit(1)
	}
	var all []Result
	failed := false
	for _, s := range sections() {
		if *only != "" && !contains(strings.Split(*only, ","), s.Name) {
			continue
		}
		fmt.Printf("== %s\n", s.Name)
		rs, err := s.Run(ctx, env)
		if err != nil {
			fmt.Fprintf(os.Stderr, "overboot-bench: %s: %v\n", s.Name, err)
			failed = true
		}
		all = append(all, rs...)
	}
	fmt.Println()
	Print(os.Stdout, all)
	if failed {
		os.Exit(1)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
