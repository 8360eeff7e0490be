// Package cli implements the canopy command line: one file per subcommand,
// each registered in the commands table below.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is one subcommand. Name may hold a space ("event init").
type command struct {
	name    string
	summary string
	// run parses args with its own FlagSet and does the work. It returns
	// errUsage (wrapped) for bad arguments.
	run func(ctx context.Context, env *env, args []string) error
	// hidden leaves the command out of the usage list (internal commands,
	// e.g. a benchmark's load generator process).
	hidden bool
}

// env carries the process's streams to a command.
type env struct {
	stdout, stderr io.Writer
}

// errUsage marks an error caused by bad arguments; Run exits 2 for it.
var errUsage = errors.New("usage")

func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

var commands []command

// register adds a subcommand; each command file calls it from init.
func register(c command) { commands = append(commands, c) }

// Run executes the canopy command line and returns the process exit code:
// 0 on success, 1 on failure, 2 on bad usage.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, rest := lookup(args)
	if c == nil {
		fmt.Fprintf(stderr, "canopy: unknown command %q (see canopy --help)\n", strings.Join(args[:min(2, len(args))], " "))
		return 2
	}
	err := c.run(ctx, e, rest)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "canopy %s: %v\n", c.name, strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	default:
		fmt.Fprintf(stderr, "canopy %s: %v\n", c.name, err)
		return 1
	}
}

// lookup finds the longest command name matching the leading arguments.
func lookup(args []string) (*command, []string) {
	var best *command
	bestWords := 0
	for i := range commands {
		words := strings.Fields(commands[i].name)
		if len(words) > len(args) || len(words) <= bestWords {
			continue
		}
		match := true
		for j, w := range words {
			if args[j] != w {
				match = false
				break
			}
		}
		if match {
			best, bestWords = &commands[i], len(words)
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, args[bestWords:]
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "canopy — the edge and hub of an offline-first event.")
	fmt.Fprintln(w, "\nUsage: canopy <command> [flags]\n\nCommands:")
	sorted := append([]command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		if c.hidden {
			continue
		}
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'canopy <command> --help' for a command's flags.")
}

// newFlagSet returns a FlagSet that reports errors instead of exiting and
// prints its usage to the command's stderr.
func newFlagSet(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("canopy "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: canopy %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and turns flag errors into usage errors. Positional
// arguments beyond maxArgs are rejected.
func parseFlags(fs *flag.FlagSet, args []string, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > maxArgs {
		return usageErrorf("unexpected argument %q", fs.Arg(maxArgs))
	}
	return nil
}
