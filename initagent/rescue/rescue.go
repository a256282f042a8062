package rescue

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// Name is the name the agent's binary answers to as the shell.
const Name = "sh"

// Main runs the shell as sh would with args (its arguments, without the
// program name): "-c COMMAND", a script file, or the commands on stdin,
// with a prompt (PS1, default "# ") when interactive. It returns the exit
// status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, interactive bool) int {
	fs := flag.NewFlagSet(Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	command := fs.String("c", "", "run `command` and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// $1... are the arguments after the script (or after -c's $0).
	params := []string{"--"}
	if fs.NArg() > 1 {
		params = append(params, fs.Args()[1:]...)
	}
	// When the commands themselves come from stdin, the runner must not
	// read it too unless it is a file they share (the console): given
	// any other reader, the runner copies it to a pipe in the
	// background, and that copy raced the parser for the same bytes
	// (the commands then read as empty, about one run in ten).
	cmdStdin := stdin
	if _, file := stdin.(*os.File); !file && *command == "" && fs.NArg() == 0 {
		cmdStdin = nil
	}
	runner, err := interp.New(interp.StdIO(cmdStdin, stdout, stderr), interp.Params(params...))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", Name, err)
		return 2
	}
	switch {
	case *command != "":
		err = run(runner, strings.NewReader(*command), "-c")
	case fs.NArg() > 0:
		var f *os.File
		if f, err = os.Open(fs.Arg(0)); err == nil {
			err = run(runner, f, fs.Arg(0))
			f.Close()
		}
	case interactive:
		err = loop(runner, stdin, stdout, stderr)
	default:
		err = run(runner, stdin, "")
	}
	return status(err, stderr)
}

// run parses the whole of r, then runs it.
func run(runner *interp.Runner, r io.Reader, name string) error {
	prog, err := syntax.NewParser().Parse(r, name)
	if err != nil {
		return err
	}
	return runner.Run(context.Background(), prog)
}

// loop reads and runs one statement at a time, with a prompt, until exit
// or the end of stdin. A failing command prints its error and the loop
// goes on, as a shell's does.
func loop(runner *interp.Runner, stdin io.Reader, stdout, stderr io.Writer) error {
	prompt := func() {
		ps1 := "# "
		if v := runner.Vars["PS1"]; v.IsSet() {
			ps1 = v.String()
		}
		fmt.Fprint(stdout, ps1)
	}
	parser := syntax.NewParser()
	prompt()
	var last error
	err := parser.Interactive(stdin, func(stmts []*syntax.Stmt) bool {
		if parser.Incomplete() {
			fmt.Fprint(stdout, "> ")
			return true
		}
		for _, s := range stmts {
			last = runner.Run(context.Background(), s)
			if runner.Exited() {
				return false
			}
			if _, ok := interp.IsExitStatus(last); !ok && last != nil {
				fmt.Fprintf(stderr, "%s: %v\n", Name, last)
			}
		}
		prompt()
		return true
	})
	if err != nil {
		return err
	}
	if runner.Exited() {
		return last
	}
	fmt.Fprintln(stdout)
	return nil
}

// status is err as an exit status, printing an error that is not one: 2
// for a syntax error, as sh has it, else 1.
func status(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	if s, ok := interp.IsExitStatus(err); ok {
		return int(s)
	}
	fmt.Fprintf(stderr, "%s: %v\n", Name, err)
	var perr syntax.ParseError
	if errors.As(err, &perr) {
		return 2
	}
	return 1
}
