package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

// Operator actions on consumer groups: thin shells over the library's
// AckPending, DeadLetterPending, ClaimPending, CreateGroup, SetGroupID,
// DestroyGroup and DeleteConsumer.

// pendingAction is one of the "pending ack|dead-letter|claim" commands.
type pendingAction struct {
	verb string // for the output: "acknowledged"
	// act runs the action; consumer is the -consumer flag (claim only).
	act func(ctx context.Context, a *app, s, group, consumer string, ids []string) (int, error)
}

const pendingActionAbout = `
IDs are entry IDs as 'redstream pending STREAM GROUP' shows them, at least
one. An ID that is not pending in the group (never delivered to it,
acknowledged or dead-lettered already) is skipped and named in the error,
and the command exits with status 1 after acting on the others. A stream or
group that does not exist is an error (status 1), and nothing is done.`

var pendingAckCommand = newPendingActionCommand("ack", "STREAM -group GROUP ID...",
	"acknowledge pending entries without handling them",
	`Acknowledges pending entries of GROUP on STREAM without handling them, as a
handler returning ErrDrop would: they leave the group's pending entries list
and are never delivered to the group again. Other groups are unaffected, and
the entries stay in the stream. The record of their failed handler
attempts goes with them.`,
	`redstream pending ack orders:order:created -group billing 1700000000000-0
redstream pending ack orders:order:created -group billing 1700000000000-0 1700000000000-1`,
	pendingAction{verb: "acknowledged", act: func(ctx context.Context, a *app, s, group, _ string, ids []string) (int, error) {
		return redstream.AckPending(ctx, a.rdb, s, group, ids...)
	}})

var pendingDeadLetterCommand = newPendingActionCommand("dead-letter", "STREAM -group GROUP ID...",
	"move pending entries to the dead-letter stream",
	`Moves pending entries of GROUP on STREAM to the stream's dead-letter stream,
with reason "operator", by the same atomic step a consumer uses: each entry
is copied with its metadata (the consumer holding it, its delivery count)
and acknowledged in one script, so it is dead-lettered exactly once and
never lost, even when a consumer races with the command. 'redstream dlq
list' shows them, and 'redstream dlq replay' puts them back. An entry
deleted from the stream (trimmed) while pending has nothing left to copy:
it is only cleared from the pending list, and not counted.`,
	`redstream pending dead-letter orders:order:created -group billing 1700000000000-0`,
	pendingAction{verb: "dead-lettered", act: func(ctx context.Context, a *app, s, group, _ string, ids []string) (int, error) {
		return redstream.DeadLetterPending(ctx, a.rdb, s, group, ids...)
	}})

var pendingClaimCommand = newPendingActionCommand("claim", "STREAM -group GROUP -consumer NAME ID...",
	"move pending entries to another consumer",
	`Moves pending entries of GROUP on STREAM to consumer NAME (XCLAIM),
creating it in the group if needed. Their delivery counts and failed
attempts are kept; their idle time starts again at zero. A redstream
consumer of that name reads them when it starts; a running one gets them
from a reaper once they have been idle for MinIdle. A consumer running the
handler of one loses its lease, and its handler is cancelled.`,
	`redstream pending claim orders:order:created -group billing -consumer billing-2 1700000000000-0`,
	pendingAction{verb: "claimed", act: func(ctx context.Context, a *app, s, group, consumer string, ids []string) (int, error) {
		return redstream.ClaimPending(ctx, a.rdb, s, group, consumer, ids...)
	}})

func newPendingActionCommand(sub, synopsis, summary, about, examples string, pa pendingAction) *command {
	name := "pending " + sub
	return &command{
		name:     name,
		synopsis: synopsis,
		args:     []string{"STREAM", "ID..."},
		variadic: true,
		listed:   synopsis,
		summary:  summary,
		about:    about + "\n" + pendingActionAbout,
		examples: examples,
		setup: func(fs *flag.FlagSet) runFunc {
			group := groupFlag(fs)
			var consumer *string
			if sub == "claim" {
				consumer = fs.String("consumer", "", "the consumer `NAME` to move the entries to (required)")
			}
			return func(ctx context.Context, a *app, args []string) error {
				s, err := stream(args[0])
				if err != nil {
					return err
				}
				if err := needFlag(name, "group", *group); err != nil {
					return err
				}
				to := ""
				if consumer != nil {
					if err := needFlag(name, "consumer", *consumer); err != nil {
						return err
					}
					to = *consumer
				}
				ids := args[1:]
				for _, id := range ids {
					if err := parseID(name+": ID", id); err != nil {
						return err
					}
				}
				if _, err := a.client(ctx); err != nil {
					return err
				}
				n, err := pa.act(ctx, a, s, *group, to, ids)
				var npe *redstream.NotPendingError
				if err != nil && !errors.As(err, &npe) {
					return explain(err, s, *group)
				}
				forWhom := ""
				if to != "" {
					forWhom = " to consumer " + to
				}
				fmt.Fprintf(a.stdout, "%s %d of %s of group %s of %s%s\n", pa.verb, n, plural(int64(len(ids)), "entry", "entries"), *group, s, forWhom)
				return err
			}
		},
	}
}

// groupFlag is the -group flag the operator actions require.
func groupFlag(fs *flag.FlagSet) *string {
	return fs.String("group", "", "the consumer `GROUP` (required)")
}

// needFlag refuses a required flag left empty.
func needFlag(cmd, name, value string) error {
	if value == "" {
		return usagef("%s: -%s is required; see 'redstream %s -h'", cmd, name, cmd)
	}
	return nil
}

// explain words the library's "no such stream" and "no such group" as the
// other commands do.
func explain(err error, s, group string) error {
	switch {
	case errors.Is(err, redstream.ErrNoStream):
		return noStream(s)
	case errors.Is(err, redstream.ErrNoGroup):
		return fmt.Errorf("group %s of stream %s does not exist", group, s)
	}
	return err
}

// position is where a group is put: -id or -time.
type position struct {
	id   *string
	time *string
}

func positionFlags(fs *flag.FlagSet, idUsage string) position {
	return position{
		id:   fs.String("id", "", idUsage),
		time: fs.String("time", "", "deliver the entries added at or after `TIME` (RFC 3339, such as 2024-05-01T12:00:00Z) next"),
	}
}

// resolve returns the position as an ID for the library, and how to say it
// in the output. def is used when neither flag is given ("" = required).
func (p position) resolve(cmd, def string) (string, string, error) {
	switch {
	case *p.id != "" && *p.time != "":
		return "", "", usagef("%s: give -id or -time, not both", cmd)
	case *p.time != "":
		t, err := time.Parse(time.RFC3339Nano, *p.time)
		if err != nil {
			return "", "", usagef("%s: -time %q: want RFC 3339, such as 2024-05-01T12:00:00Z", cmd, *p.time)
		}
		return redstream.GroupStartAt(t), "the entries from " + fmtTime(t) + " on", nil
	case *p.id == "" && def == "":
		return "", "", usagef("%s: give -id ID (or $ or 0) or -time TIME; see 'redstream %s -h'", cmd, cmd)
	}
	id := *p.id
	if id == "" {
		id = def
	}
	switch id {
	case "$":
		return id, "new entries only ($)", nil
	case "0":
		return id, "the whole stream (0)", nil
	}
	if err := parseID(cmd+": -id", id); err != nil {
		return "", "", err
	}
	return id, "the entries after " + id, nil
}

const positionAbout = `-id ID delivers the entries after ID next: "$" only entries added from now
on, "0" the whole stream. -time TIME delivers the entries added at or after
TIME next (by the time in their IDs, to the millisecond; the group is set to
the greatest ID before that millisecond).`

var groupCreateCommand = &command{
	name:     "group create",
	synopsis: "STREAM -group GROUP [-id ID|$|0 | -time RFC3339]",
	listed:   "STREAM -group GROUP",
	args:     []string{"STREAM"},
	summary:  "create a consumer group at a position",
	about: `Creates consumer group GROUP on STREAM, at -id ($ by default) or -time.
Consumers create their groups themselves when they start; this positions
one before any consumer runs, say to process a stream's history from a
given time. Unlike a consumer it does not create a missing stream (status
1), so a mistyped name is noticed; a group that exists is left as it is
(status 1).

` + positionAbout,
	examples: `redstream group create orders:order:created -group audit -id 0
redstream group create orders:order:created -group audit -time 2024-05-01T00:00:00Z`,
	setup: func(fs *flag.FlagSet) runFunc {
		group := groupFlag(fs)
		pos := positionFlags(fs, "deliver the entries after `ID` next: $ (the default) for new entries only, 0 for the whole stream")
		return func(ctx context.Context, a *app, args []string) error {
			s, group, err := streamAndGroup(args[0], "group create", *group)
			if err != nil {
				return err
			}
			id, shown, err := pos.resolve("group create", "$")
			if err != nil {
				return err
			}
			rdb, err := a.client(ctx)
			if err != nil {
				return err
			}
			if err := redstream.CreateGroup(ctx, rdb, s, group, id); err != nil {
				if errors.Is(err, redstream.ErrGroupExists) {
					return fmt.Errorf("group %s of stream %s exists already; move it with 'redstream group setid'", group, s)
				}
				return explain(err, s, group)
			}
			_, err = fmt.Fprintf(a.stdout, "created group %s of %s: it is delivered %s\n", group, s, shown)
			return err
		}
	},
}

var groupSetIDCommand = &command{
	name:     "group setid",
	synopsis: "STREAM -group GROUP (-id ID|$|0 | -time RFC3339) [-yes]",
	listed:   "STREAM -group GROUP -id ID|-time T",
	args:     []string{"STREAM"},
	summary:  "rewind or fast-forward a consumer group",
	about: `Moves consumer group GROUP of STREAM (XGROUP SETID) so that it is delivered
the entries after -id, or from -time on, next. Rewinding delivers again
entries the group has handled; moving forward skips entries it was not
delivered: they are never handled by this group. Its pending entries stay
pending, and running consumers go on reading from the new position.

Without -yes it changes nothing: it says where the group is and where it
would go, and exits with status 2.

` + positionAbout,
	examples: `redstream group setid orders:order:created -group billing -time 2024-05-01T12:00:00Z
redstream group setid orders:order:created -group billing -time 2024-05-01T12:00:00Z -yes
redstream group setid orders:order:created -group billing -id '$' -yes   # skip the backlog`,
	setup: func(fs *flag.FlagSet) runFunc {
		group := groupFlag(fs)
		pos := positionFlags(fs, "deliver the entries after `ID` next: $ to skip to the end, 0 for the whole stream")
		yes := fs.Bool("yes", false, "really move the group")
		return func(ctx context.Context, a *app, args []string) error {
			s, group, err := streamAndGroup(args[0], "group setid", *group)
			if err != nil {
				return err
			}
			id, shown, err := pos.resolve("group setid", "")
			if err != nil {
				return err
			}
			rdb, err := a.confirmed(ctx, *yes, s, group, func(g *redstream.GroupInfo) error {
				return usagef("group setid: would move group %s of %s, now past %s with %s, to deliver %s; add -yes to move it",
					group, s, dash(g.LastDeliveredID), plural(g.Pending, "pending entry", "pending entries"), shown)
			})
			if err != nil {
				return err
			}
			if err := redstream.SetGroupID(ctx, rdb, s, group, id); err != nil {
				return explain(err, s, group)
			}
			_, err = fmt.Fprintf(a.stdout, "moved group %s of %s: it is delivered %s\n", group, s, shown)
			return err
		}
	},
}

var groupDestroyCommand = &command{
	name:     "group destroy",
	synopsis: "STREAM -group GROUP [-yes]",
	listed:   "STREAM -group GROUP",
	args:     []string{"STREAM"},
	summary:  "delete a consumer group and its pending entries list",
	about: `Deletes consumer group GROUP of STREAM with its consumers and its pending
entries list: the group's pending entries are never delivered to it again.
The stream's entries stay. Running consumers of the group recreate it at
their start position when they next read: stop them first. To keep the
pending entries, dead-letter them first ('redstream pending dead-letter').

Without -yes it deletes nothing: it says what would go and exits with
status 2.`,
	examples: `redstream group destroy orders:order:created -group old-billing
redstream group destroy orders:order:created -group old-billing -yes`,
	setup: func(fs *flag.FlagSet) runFunc {
		group := groupFlag(fs)
		yes := fs.Bool("yes", false, "really delete the group")
		return func(ctx context.Context, a *app, args []string) error {
			s, group, err := streamAndGroup(args[0], "group destroy", *group)
			if err != nil {
				return err
			}
			rdb, err := a.confirmed(ctx, *yes, s, group, func(g *redstream.GroupInfo) error {
				return usagef("group destroy: would delete group %s of %s with %s and %s; add -yes to delete it",
					group, s, plural(int64(len(g.Consumers)), "consumer", "consumers"), plural(g.Pending, "pending entry", "pending entries"))
			})
			if err != nil {
				return err
			}
			pending, err := redstream.DestroyGroup(ctx, rdb, s, group)
			if err != nil {
				return explain(err, s, group)
			}
			_, err = fmt.Fprintf(a.stdout, "deleted group %s of %s and its %s\n", group, s, plural(pending, "pending entry", "pending entries"))
			return err
		}
	},
}

var consumersDeleteCommand = &command{
	name:     "consumers delete",
	synopsis: "STREAM -group GROUP -consumer NAME [-to HEIR]",
	listed:   "STREAM -group GROUP -consumer NAME",
	args:     []string{"STREAM"},
	summary:  "delete a consumer, moving its pending entries first",
	about: `Deletes consumer NAME from GROUP of STREAM without dropping what it holds:
its pending entries are first moved (claimed) to consumer HEIR, keeping
their delivery counts, and the consumer is deleted only once it holds
nothing, checked and deleted in one step. Without -to, HEIR is the group's
most recently active other consumer (lowest idle time, as 'redstream info'
shows it); if the group has no other consumer, name one with -to (any name:
a redstream consumer of that name reads them when it starts, and reapers
take them once they have been idle for MinIdle). A consumer holding nothing
is deleted at once.

A consumer that keeps reading while it is deleted is alive: after a few
rounds the command gives up with status 1, having moved what it could.
Stop it first.`,
	examples: `redstream consumers delete orders:order:created -group billing -consumer billing-7f9c
redstream consumers delete orders:order:created -group billing -consumer billing-7f9c -to billing-2`,
	setup: func(fs *flag.FlagSet) runFunc {
		group := groupFlag(fs)
		consumer := fs.String("consumer", "", "the consumer `NAME` to delete (required)")
		heir := fs.String("to", "", "the consumer `HEIR` that takes its pending entries (default: the most recently active other consumer)")
		return func(ctx context.Context, a *app, args []string) error {
			s, group, err := streamAndGroup(args[0], "consumers delete", *group)
			if err != nil {
				return err
			}
			if err := needFlag("consumers delete", "consumer", *consumer); err != nil {
				return err
			}
			if *heir == *consumer {
				return usagef("consumers delete: -to names the consumer being deleted; name another")
			}
			rdb, err := a.client(ctx)
			if err != nil {
				return err
			}
			to, moved, err := redstream.DeleteConsumer(ctx, rdb, s, group, *consumer, *heir)
			if moved > 0 {
				fmt.Fprintf(a.stdout, "moved %s of consumer %s to %s\n", plural(int64(moved), "pending entry", "pending entries"), *consumer, to)
			}
			if err != nil {
				if errors.Is(err, redstream.ErrNoConsumer) {
					return fmt.Errorf("consumer %s of group %s of stream %s does not exist", *consumer, group, s)
				}
				return explain(err, s, group)
			}
			_, err = fmt.Fprintf(a.stdout, "deleted consumer %s from group %s of %s\n", *consumer, group, s)
			return err
		}
	},
}

// streamAndGroup validates the STREAM argument and the -group flag.
func streamAndGroup(name, cmd, group string) (string, string, error) {
	s, err := stream(name)
	if err != nil {
		return "", "", err
	}
	return s, group, needFlag(cmd, "group", group)
}

// confirmed connects to Redis for a command that changes group and needs
// -yes. Without it, it returns refuse's error (a usage error saying what
// the command would do to the group as it is now), or the error that says
// the stream or group does not exist.
func (a *app) confirmed(ctx context.Context, yes bool, s, group string, refuse func(*redstream.GroupInfo) error) (redis.UniversalClient, error) {
	rdb, err := a.client(ctx)
	if err != nil || yes {
		return rdb, err
	}
	info, err := redstream.Inspect(ctx, rdb, s)
	if err != nil {
		return nil, explain(err, s, group)
	}
	for i := range info.Groups {
		if info.Groups[i].Name == group {
			return nil, refuse(&info.Groups[i])
		}
	}
	return nil, explain(redstream.ErrNoGroup, s, group)
}
