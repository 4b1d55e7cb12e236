package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/redstream/redstream"
)

var trimCommand = &command{
	name:     "trim",
	synopsis: "STREAM (-safe | -maxlen N | -max-age D) [-allow-unconsumed] [-partitions N]",
	args:     []string{"STREAM"},
	summary:  "remove consumed entries, or trim by length or age",
	about: `Removes entries from the head of STREAM, in one atomic step with the check
of what the consumer groups still need:
  -safe        removes the entries every consumer group has consumed
               (delivered and acknowledged); nothing when the stream has no
               groups.
  -maxlen N    keeps the newest N entries;
  -max-age D   removes entries older than D (by the time in their IDs);
               -maxlen and -max-age may be combined. Without
               -allow-unconsumed they stop at the oldest entry some group
               has not been delivered yet or still has pending.
  -allow-unconsumed
               lets -maxlen and -max-age remove such entries too: they are
               lost for those groups, and counted as dropped.
It prints how many entries were removed, and how many of them were dropped
unconsumed.

With -partitions N, STREAM is the base name of a partitioned stream: each of
its partitions STREAM:p0 to STREAM:p<N-1> is trimmed in turn with the same
policy (-maxlen N keeps the newest N entries of each partition), and the
counts are summed. A Redis failure stops at that partition; what was trimmed
before stays trimmed.

A stream that does not exist (or, with -partitions, none of whose partitions
exists) has nothing to trim: the command says so and exits with status 0,
as the library's Trim returns no error for it and XTRIM removes nothing.`,
	examples: `redstream trim orders:order:created -safe
redstream trim orders:order:created -maxlen 1000000
redstream trim orders:order:created -max-age 168h
redstream trim orders:order:created -max-age 720h -allow-unconsumed
redstream trim orders:order:created -partitions 16 -safe`,
	setup: func(fs *flag.FlagSet) runFunc {
		safe := fs.Bool("safe", false, "remove only entries every group has consumed")
		maxLen := fs.Int64("maxlen", 0, "keep the newest `N` entries")
		maxAge := new(time.Duration)
		durationFlag(fs, maxAge, "max-age", 0, "remove entries older than `D`, such as 72h")
		allow := fs.Bool("allow-unconsumed", false, "let -maxlen and -max-age remove entries a group still needs")
		partitions := partitionsVar(fs)
		return func(ctx context.Context, a *app, args []string) error {
			s, err := stream(args[0])
			if err != nil {
				return err
			}
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			switch {
			case set["maxlen"] && *maxLen <= 0:
				return usagef("trim: -maxlen must be positive, got %d", *maxLen)
			case set["max-age"] && *maxAge <= 0:
				return usagef("trim: -max-age must be positive, got %v", *maxAge)
			case *safe && (set["maxlen"] || set["max-age"]):
				return usagef("trim: -safe goes alone; -maxlen and -max-age are safe already without -allow-unconsumed")
			case !*safe && !set["maxlen"] && !set["max-age"]:
				return usagef("trim: give -safe, -maxlen N or -max-age D; see 'redstream trim -h'")
			case *allow && *safe:
				return usagef("trim: -allow-unconsumed contradicts -safe; it goes with -maxlen or -max-age")
			}
			policy := redstream.TrimPolicy{MaxLen: *maxLen, MaxAge: *maxAge, AllowUnconsumed: *allow}
			if *partitions > 0 {
				return a.trimPartitions(ctx, s, *partitions, policy)
			}
			return a.trim(ctx, s, policy)
		}
	},
}

func (a *app) trim(ctx context.Context, s string, policy redstream.TrimPolicy) error {
	rdb, err := a.client(ctx)
	if err != nil {
		return err
	}
	if err := streamMustExist(ctx, rdb, s); err != nil {
		return a.nothingToTrim(err)
	}
	res, err := redstream.Trim(ctx, rdb, s, policy)
	return a.printTrim(res, err)
}

// trimPartitions trims each of the n partitions of base with policy.
func (a *app) trimPartitions(ctx context.Context, base string, n int, policy redstream.TrimPolicy) error {
	names, err := partitionNames(base, n)
	if err != nil {
		return err
	}
	rdb, err := a.client(ctx)
	if err != nil {
		return err
	}
	// Missing partitions count as empty, as Trim treats a missing stream.
	if err := partitionsMustExist(ctx, rdb, base, names, false); err != nil {
		return a.nothingToTrim(err)
	}
	res, err := redstream.TrimPartitions(ctx, rdb, base, n, policy)
	return a.printTrim(res, err)
}

// nothingToTrim turns a missing stream into a success that says so: Trim
// of a missing stream removes nothing and is no error, and the command
// agrees, while still telling a mistyped name apart from an empty stream.
// Other errors (a key that is not a stream) stay errors.
func (a *app) nothingToTrim(err error) error {
	if !errors.Is(err, redstream.ErrNoStream) {
		return err
	}
	_, werr := fmt.Fprintf(a.stdout, "removed 0 entries (%s)\n", err)
	return werr
}

// printTrim reports what a trim removed, also when it failed part way.
func (a *app) printTrim(res redstream.TrimResult, err error) error {
	if err != nil {
		if res.Removed > 0 {
			fmt.Fprintf(a.stdout, "removed %s before the error\n", plural(res.Removed, "entry", "entries"))
		}
		return err
	}
	fmt.Fprintf(a.stdout, "removed %s\n", plural(res.Removed, "entry", "entries"))
	if res.Dropped > 0 {
		fmt.Fprintf(a.stdout, "dropped %s\n", plural(res.Dropped, "unconsumed entry", "unconsumed entries"))
	}
	return nil
}
