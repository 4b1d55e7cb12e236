package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// command is one subcommand, such as "info" or "dlq list".
type command struct {
	name     string // as typed: "info", "dlq list"
	synopsis string // arguments and flags after the name
	summary  string // one line, for the command list
	about    string // what it does, for its help
	examples string // one example a line
	// args are the names of the positional arguments, all required.
	args []string
	// variadic: the last of args takes one value or more ("ID...").
	variadic bool
	// listed is what the command list shows after the name, when the
	// arguments alone would leave out a required flag.
	listed string
	// setup defines the command's flags on fs and returns the function
	// that runs it with the positional arguments, once fs is parsed.
	setup func(fs *flag.FlagSet) runFunc
}

type runFunc func(ctx context.Context, a *app, args []string) error

// commands are listed in this order by "redstream help".
var commands = []*command{
	infoCommand,
	groupsCommand,
	pendingCommand,
	pendingAckCommand,
	pendingDeadLetterCommand,
	pendingClaimCommand,
	groupCreateCommand,
	groupSetIDCommand,
	groupDestroyCommand,
	consumersDeleteCommand,
	pauseCommand,
	resumeCommand,
	dlqListCommand,
	dlqReplayCommand,
	dlqDeleteCommand,
	dlqPurgeCommand,
	trimCommand,
	tailCommand,
	webCommand,
	scheduledListCommand,
	scheduledCancelCommand,
}

// groupNames are the commands that take a subcommand. "pending" is also a
// command of its own: "pending STREAM GROUP" lists, "pending ack ..." acts.
var groupNames = map[string]bool{"dlq": true, "pending": true, "group": true, "consumers": true, "scheduled": true}

// lookup finds the command named at the start of args and returns the
// arguments that follow its name.
func lookup(args []string) (*command, []string, error) {
	name, rest := args[0], args[1:]
	if groupNames[name] {
		if len(rest) > 0 {
			if c := find(name + " " + rest[0]); c != nil {
				return c, rest[1:], nil
			}
		}
		if c := find(name); c != nil {
			return c, rest, nil
		}
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return nil, nil, usagef("%s needs a subcommand: %s; run 'redstream help %s'", name, strings.Join(subcommands(name), ", "), name)
		}
		name = name + " " + rest[0]
	}
	if c := find(name); c != nil {
		return c, rest, nil
	}
	return nil, nil, usagef("unknown command %q; run 'redstream help' for the list", name)
}

// find returns the command named name, or nil.
func find(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// subcommands lists the subcommands of group.
func subcommands(group string) []string {
	var out []string
	for _, c := range commands {
		if sub, ok := strings.CutPrefix(c.name, group+" "); ok {
			out = append(out, sub)
		}
	}
	return out
}

// isGroupHelp reports whether args ask for a command group's help, such as
// "dlq -h".
func isGroupHelp(args []string) bool {
	return len(args) == 2 && groupNames[args[0]] && find(args[0]) == nil && isHelpFlag(args[1])
}

func isHelpFlag(s string) bool { return s == "-h" || s == "-help" || s == "--help" || s == "--h" }

// runCommand parses the command's flags and arguments and runs it.
func (a *app) runCommand(ctx context.Context, c *command, args []string) error {
	fs := newFlagSet(c)
	runFn := c.setup(fs)
	positional, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usagef("%s: %v; see 'redstream %s -h'", c.name, err, c.name)
	}
	if len(positional) < len(c.args) {
		missing := c.args[len(positional):]
		return usagef("%s: missing %s; usage: redstream %s %s", c.name, strings.Join(missing, " "), c.name, c.synopsis)
	}
	if len(positional) > len(c.args) && !c.variadic {
		return usagef("%s: unexpected argument %q; usage: redstream %s %s", c.name, positional[len(c.args)], c.name, c.synopsis)
	}
	return runFn(ctx, a, positional)
}

func newFlagSet(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("redstream "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported on one line by run
	fs.Usage = func() {}
	return fs
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments ("info STREAM -json"), which flag.Parse alone does
// not. Everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// printTopHelp prints the command list and the global flags.
func printTopHelp(w io.Writer) {
	var b bytes.Buffer
	b.WriteString(`redstream inspects and repairs the Redis streams of redstream producers and
consumers: groups, lag, pending entries, dead letters, trimming; and acts on
stuck work: acknowledges, dead-letters or moves pending entries, creates,
moves or deletes consumer groups, deletes consumers.

Usage:
  redstream [global flags] COMMAND [ARGS] [FLAGS]

Commands:
`)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		listed := c.listed
		if listed == "" {
			listed = strings.Join(c.args, " ")
		}
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, listed, c.summary)
	}
	fmt.Fprintf(tw, "  help [COMMAND]\t%s\n", "this list, or a command's arguments, flags and examples")
	_ = tw.Flush()
	b.WriteString("\nGlobal flags (before COMMAND):\n")
	global := flag.NewFlagSet("redstream", flag.ContinueOnError)
	var conn connFlags
	conn.register(global)
	global.SetOutput(&b)
	global.PrintDefaults()
	b.WriteString(`
Run 'redstream COMMAND -h' for a command's arguments, flags and examples.
Flags take one dash or two (-json or --json) and may follow the arguments.
Errors are one line on stderr; the exit status is 1 for a failure at run time
(Redis unreachable, stream missing) and 2 for a bad command line.

Examples:
  redstream info orders:order:created
  redstream info orders:order:created -partitions 16
  redstream -addr redis.internal:6379 pending orders:order:created billing
  redstream -url rediss://default:PASSWORD@redis.example.com:6380/0 dlq list orders:order:created
  REDIS_URL=redis://localhost:6379 redstream tail orders:order:created
  REDIS_PASSWORD=... redstream pending dead-letter orders:order:created -group billing 1700000000000-0
`)
	_, _ = w.Write(b.Bytes())
}

// printGroupHelp prints the subcommands of a command group such as "dlq".
func printGroupHelp(w io.Writer, group string) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Usage:\n  redstream [global flags] %s SUBCOMMAND STREAM [ARGS] [FLAGS]\n\nSubcommands:\n", group)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		if strings.HasPrefix(c.name, group+" ") {
			fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.synopsis, c.summary)
		}
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "\nRun 'redstream %s SUBCOMMAND -h' for details.\n", group)
	_, _ = w.Write(b.Bytes())
}

// printCommandHelp prints one command's usage, description, flags and
// examples.
func printCommandHelp(w io.Writer, c *command) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Usage:\n  redstream [global flags] %s %s\n\n", c.name, c.synopsis)
	b.WriteString(strings.TrimSpace(c.about))
	b.WriteString("\n")
	fs := newFlagSet(c)
	c.setup(fs)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		b.WriteString("\nFlags:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
	}
	if c.examples != "" {
		b.WriteString("\nExamples:\n")
		for line := range strings.SplitSeq(strings.TrimSpace(c.examples), "\n") {
			b.WriteString("  " + strings.TrimSpace(line) + "\n")
		}
	}
	b.WriteString("\nGlobal flags (-addr, -url, -cluster, -password, -timeout) go before the command; see 'redstream help'.\n")
	_, _ = w.Write(b.Bytes())
}
