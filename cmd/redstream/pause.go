package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/redstream/redstream"
)

var pauseCommand = &command{
	name:     "pause",
	synopsis: "STREAM -group GROUP",
	args:     []string{"STREAM"},
	summary:  "pause a group's consumption of a stream",
	about: `Pauses GROUP's consumption of STREAM: within about one block time (1s by
default) every consumer of the group stops starting handlers of the stream,
lets the running ones finish and keeps its leases; what a consumer read but
had not started stays pending for it. The pause lasts until 'redstream
resume', across consumer restarts; 'redstream info' shows it. A missing
stream or group exits 1 (a mistyped name is noticed). For a partitioned
stream, pause each partition.`,
	examples: `redstream pause orders:order:created -group billing`,
	setup: func(fs *flag.FlagSet) runFunc {
		group := groupFlag(fs)
		return func(ctx context.Context, a *app, args []string) error {
			s, group, err := streamAndGroup(args[0], "pause", *group)
			if err != nil {
				return err
			}
			rdb, err := a.client(ctx)
			if err != nil {
				return err
			}
			if err := redstream.Pause(ctx, rdb, s, group); err != nil {
				return explain(err, s, group)
			}
			_, err = fmt.Fprintf(a.stdout, "paused group %s of %s: its consumers start no handlers of it until 'redstream resume'\n", group, s)
			return err
		}
	},
}

var resumeCommand = &command{
	name:     "resume",
	synopsis: "STREAM -group GROUP",
	args:     []string{"STREAM"},
	summary:  "resume a paused group's consumption of a stream",
	about: `Resumes GROUP's consumption of STREAM after 'redstream pause': within about
one block time its consumers read and start handlers again, first what they
had read when paused. Resuming a stream that is not paused is no error.`,
	examples: `redstream resume orders:order:created -group billing`,
	setup: func(fs *flag.FlagSet) runFunc {
		group := groupFlag(fs)
		return func(ctx context.Context, a *app, args []string) error {
			s, group, err := streamAndGroup(args[0], "resume", *group)
			if err != nil {
				return err
			}
			rdb, err := a.client(ctx)
			if err != nil {
				return err
			}
			if err := redstream.Resume(ctx, rdb, s, group); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "resumed group %s of %s\n", group, s)
			return err
		}
	},
}
