package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/redstream/redstream"
)

// idList is a repeatable -id flag; each value may also hold several IDs
// separated by commas. Every ID is checked as it is set.
type idList []string

func (l *idList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *idList) Set(value string) error {
	for id := range strings.SplitSeq(value, ",") {
		id = strings.TrimSpace(id)
		if err := parseID("-id", id); err != nil {
			return errors.New("want <milliseconds>-<sequence>, such as 1700000000000-0")
		}
		*l = append(*l, id)
	}
	return nil
}

var dlqListCommand = &command{
	name:     "dlq list",
	synopsis: "STREAM [-n 20] [-newest] [-after ID] [-partitions N] [-json]",
	args:     []string{"STREAM"},
	summary:  "list the dead letters of a stream",
	about: `Lists the dead letters of STREAM, oldest first (or newest first with
-newest): when each was dead-lettered, the ID it had in STREAM, the group and
consumer that held it, how many times it was delivered, the reason
(max-deliveries, crash-loop, handler, decode, trimmed, vanished, operator), the last error and the message's
own fields (truncated; -json shows them whole). The ID in the first column
is the dead letter's own ID, the one 'dlq replay -id' and 'dlq delete -id'
take. When more remain, the last line says how to see the next page.

With -json it prints {"dead_letters": [...], "next": ID} where each dead
letter is {"id", "time", "stream", "origin_id", "group", "consumer",
"deliveries", "reason", "error", "fields", "fields_omitted"} and "next" is
the -after value of the next page ("" after the last one). ` + jsonDoc + `

With -partitions N, STREAM is the base name of a partitioned stream: it lists
the dead letters of each partition STREAM:p0 to STREAM:p<N-1> in turn, at
most -n of each, with a STREAM column first that names the partition; the
dead letter's ID belongs to that partition's dead-letter stream, so 'dlq
replay -id' and 'dlq delete -id' take it with the partition as STREAM, and
so does -after, which pages through one partition. With -json, "stream" is
the partition, "next" is "", and "partitions" lists {"stream",
"dead_letter_key", "dead_letter_length", "next"} for every partition, "next"
being the -after value of that partition's next page.`,
	examples: `redstream dlq list orders:order:created
redstream dlq list orders:order:created -newest -n 5
redstream dlq list orders:order:created -after 1700000000000-3
redstream dlq list orders:order:created -json | jq -r '.dead_letters[] | select(.reason == "decode") | .id'
redstream dlq list orders:order:created -partitions 16 -n 5
redstream dlq list orders:order:created:p3 -after 1700000000000-3`,
	setup: func(fs *flag.FlagSet) runFunc {
		n := countFlag(fs, 20, "dead letters")
		newest := fs.Bool("newest", false, "list the most recent dead letters first")
		after := fs.String("after", "", "start after dead letter `ID` (the next-page cursor)")
		asJSON := fs.Bool("json", false, "print the dead letters as JSON")
		partitions := partitionsVar(fs)
		return func(ctx context.Context, a *app, args []string) error {
			if err := checkCount(*n); err != nil {
				return err
			}
			if *after != "" {
				if err := parseID("-after", *after); err != nil {
					return err
				}
				if *partitions > 0 {
					return usagef("dlq list: -after pages through the dead letters of one partition: name the partition stream (such as %s:p0) instead of giving -partitions", args[0])
				}
			}
			opts := redstream.ListOptions{Count: *n, After: *after, NewestFirst: *newest}
			if *partitions > 0 {
				set, err := a.partitionDeadLetters(ctx, args[0], *partitions)
				if err != nil {
					return err
				}
				return a.listPartitionDeadLetters(ctx, set, opts, *asJSON)
			}
			dlq, err := a.deadLetters(ctx, args[0])
			if err != nil {
				return err
			}
			return a.listDeadLetters(ctx, dlq, args[0], opts, *asJSON)
		}
	},
}

var dlqReplayCommand = &command{
	name:     "dlq replay",
	synopsis: "STREAM (-id ID ... | -all) [-rate N] [-partitions N]",
	args:     []string{"STREAM"},
	summary:  "put dead letters back on their stream",
	about: `Appends dead letters to STREAM again, as new entries with their original
fields, and removes them from the dead-letter stream, each in one atomic
step: consumer groups handle them again with a fresh delivery count. Fix
the cause first (the handler or the data), or they come back.

Give the dead letters with -id (repeatable, or comma-separated; IDs as
'dlq list' shows them in its first column), or -all for every dead letter
present when the replay starts. -rate limits how many entries a second are
replayed, so a large replay does not flood the consumers. Interrupting it
(Ctrl-C) keeps what was replayed so far.

With -partitions N, STREAM is the base name of a partitioned stream and -all
replays the dead letters of each partition STREAM:p0 to STREAM:p<N-1> in
turn, each back onto its partition, at -rate overall. A dead letter's ID
belongs to one partition's dead-letter stream: to replay some by -id, name
their partition stream as STREAM, as 'dlq list -partitions N' shows it.`,
	examples: `redstream dlq replay orders:order:created -id 1700000000000-0
redstream dlq replay orders:order:created -id 1700000000000-0 -id 1700000000000-1
redstream dlq replay orders:order:created -all -rate 50
redstream dlq replay orders:order:created -partitions 16 -all -rate 50
redstream dlq replay orders:order:created:p3 -id 1700000000000-0`,
	setup: func(fs *flag.FlagSet) runFunc {
		var ids idList
		fs.Var(&ids, "id", "replay dead letter `ID`; repeat for several")
		all := fs.Bool("all", false, "replay every dead letter")
		rate := fs.Float64("rate", 0, "replay at most `N` entries a second (default 0: no limit)")
		partitions := partitionsVar(fs)
		return func(ctx context.Context, a *app, args []string) error {
			if *all == (len(ids) > 0) {
				return usagef("dlq replay: give either -id ID (one or more) or -all")
			}
			if *partitions > 0 && len(ids) > 0 {
				return usagef("dlq replay: a dead letter's ID belongs to one partition: name the partition stream (such as %s:p0) instead of giving -partitions, or replay them all with -all", args[0])
			}
			if *rate != 0 { // 0, the default: no limit
				if err := redstream.CheckReplayRate(*rate); err != nil {
					return usagef("-rate %v: %v (0 for no limit)", *rate, err)
				}
			}
			opts := []redstream.ReplayOption{redstream.ReplayAll()}
			if !*all {
				opts = []redstream.ReplayOption{redstream.ReplayIDs(ids...)}
			}
			if *rate > 0 {
				opts = append(opts, redstream.ReplayRate(*rate))
			}
			set, err := a.deadLetterSet(ctx, args[0], *partitions)
			if err != nil {
				return err
			}
			n, err := set.replay(ctx, opts)
			if n > 0 || err == nil {
				fmt.Fprintf(a.stdout, "replayed %s to %s\n", plural(int64(n), "dead letter", "dead letters"), set.name)
			}
			if err != nil && ctx.Err() != nil {
				return fmt.Errorf("replay interrupted after %s", plural(int64(n), "dead letter", "dead letters"))
			}
			return err
		}
	},
}

var dlqDeleteCommand = &command{
	name:     "dlq delete",
	synopsis: "STREAM -id ID ...",
	args:     []string{"STREAM"},
	summary:  "delete some dead letters for good",
	about: `Deletes the dead letters with the given IDs (as 'dlq list' shows them in its
first column), for messages that must never be replayed. IDs that do not
exist are ignored; the output says how many existed.

For a partitioned stream, a dead letter's ID belongs to one partition's
dead-letter stream: name the partition stream as STREAM, as 'dlq list
-partitions N' shows it. -partitions is refused.`,
	examples: `redstream dlq delete orders:order:created -id 1700000000000-0
redstream dlq delete orders:order:created -id 1700000000000-0,1700000000000-1
redstream dlq delete orders:order:created:p3 -id 1700000000000-0`,
	setup: func(fs *flag.FlagSet) runFunc {
		var ids idList
		fs.Var(&ids, "id", "delete dead letter `ID`; repeat for several")
		// Defined only to refuse it with a message better than "flag
		// provided but not defined".
		partitions := new(int)
		fs.Var((*partitionsFlag)(partitions), "partitions", "not taken: give the partition stream, such as STREAM:p3, as STREAM instead of -partitions `N`")
		return func(ctx context.Context, a *app, args []string) error {
			if *partitions > 0 {
				return usagef("dlq delete: a dead letter's ID belongs to one partition: name the partition stream (such as %s:p%d) instead of giving -partitions", args[0], *partitions-1)
			}
			if len(ids) == 0 {
				return usagef("dlq delete: give the dead letters to delete with -id ID (one or more)")
			}
			dlq, err := a.deadLetters(ctx, args[0])
			if err != nil {
				return err
			}
			n, err := dlq.Delete(ctx, ids...)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "deleted %d of %s of %s\n", n, plural(int64(len(ids)), "dead letter", "dead letters"), args[0])
			return err
		}
	},
}

var dlqPurgeCommand = &command{
	name:     "dlq purge",
	synopsis: "STREAM [-yes] [-partitions N]",
	args:     []string{"STREAM"},
	summary:  "delete every dead letter of a stream",
	about: `Deletes the whole dead-letter stream of STREAM. Without -yes it deletes
nothing: it says how many dead letters would go and exits with status 2.
When there is nothing to delete (the dead-letter stream is empty or does
not exist, even if STREAM does not either) it says so and exits with
status 0, with or without -yes.

With -partitions N, STREAM is the base name of a partitioned stream and the
dead-letter streams of all its partitions STREAM:p0 to STREAM:p<N-1> go.`,
	examples: `redstream dlq purge orders:order:created        # how many would go
redstream dlq purge orders:order:created -yes
redstream dlq purge orders:order:created -partitions 16 -yes`,
	setup: func(fs *flag.FlagSet) runFunc {
		yes := fs.Bool("yes", false, "really delete them")
		partitions := partitionsVar(fs)
		return func(ctx context.Context, a *app, args []string) error {
			set, err := a.deadLetterSet(ctx, args[0], *partitions)
			if errors.Is(err, redstream.ErrNoStream) {
				_, err = fmt.Fprintf(a.stdout, "no dead letters to purge: %v\n", err)
				return err
			}
			if err != nil {
				return err
			}
			if !*yes {
				n, err := set.len(ctx)
				if err != nil {
					return err
				}
				if n == 0 {
					_, err := fmt.Fprintf(a.stdout, "no dead letters to purge for %s (%s)\n", set.name, set.keys())
					return err
				}
				return usagef("dlq purge: would delete %s of %s (%s); add -yes to delete them", plural(n, "dead letter", "dead letters"), set.name, set.keys())
			}
			n, err := set.purge(ctx)
			if n > 0 || err == nil {
				fmt.Fprintf(a.stdout, "purged %s of %s (%s)\n", plural(n, "dead letter", "dead letters"), set.name, set.keys())
			}
			return err
		}
	},
}

// deadLetters returns the dead-letter manager of the named stream, after
// checking that the stream or its dead-letter stream exists: a mistyped
// name fails instead of showing an empty list.
func (a *app) deadLetters(ctx context.Context, name string) (*redstream.DeadLetters, error) {
	s, err := stream(name)
	if err != nil {
		return nil, err
	}
	rdb, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	typ, err := keyType(ctx, rdb, s)
	if err != nil {
		return nil, err
	}
	if typ == "none" {
		n, err := rdb.Exists(ctx, redstream.DeadLetterKey(s)).Result()
		if err != nil {
			return nil, fmt.Errorf("dead-letter stream of %s: %w", s, err)
		}
		if n == 0 {
			return nil, noStream(s)
		}
	} else if err := mustBeStream(s, typ); err != nil {
		return nil, err
	}
	return redstream.NewDeadLetters(rdb, s)
}

type deadLetterJSON struct {
	ID            string            `json:"id"`
	Time          string            `json:"time"`
	Stream        string            `json:"stream"`
	OriginID      string            `json:"origin_id"`
	Group         string            `json:"group"`
	Consumer      string            `json:"consumer"`
	Deliveries    int64             `json:"deliveries"`
	Reason        string            `json:"reason"`
	Error         string            `json:"error"`
	Fields        map[string]string `json:"fields"`
	FieldsOmitted int64             `json:"fields_omitted"`
}

type deadLettersJSON struct {
	DeadLetters []deadLetterJSON `json:"dead_letters"`
	Next        string           `json:"next"`
}

func (a *app) listDeadLetters(ctx context.Context, dlq *redstream.DeadLetters, s string, opts redstream.ListOptions, asJSON bool) error {
	letters, next, err := dlq.List(ctx, opts)
	if err != nil {
		return err
	}
	if next != "" {
		// List offers a next page whenever this one is full; say "more"
		// only if there is one.
		if more, err := hasMore(ctx, dlq, next, opts.NewestFirst); err != nil {
			return err
		} else if !more {
			next = ""
		}
	}
	if asJSON {
		out := deadLettersJSON{DeadLetters: make([]deadLetterJSON, len(letters)), Next: next}
		for i := range letters {
			out.DeadLetters[i] = toDeadLetterJSON(&letters[i])
		}
		return writeJSON(a.stdout, out)
	}
	if len(letters) == 0 {
		more := ""
		if opts.After != "" {
			more = " after " + opts.After
		}
		_, err := fmt.Fprintf(a.stdout, "no dead letters%s for %s (%s)\n", more, s, dlq.Key())
		return err
	}
	t := newTable(a.stdout, deadLetterHeader...)
	for i := range letters {
		t.row(deadLetterCells(&letters[i])...)
	}
	if err := t.flush(); err != nil {
		return err
	}
	total, err := dlq.Len(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%d of %s of %s (%s), %s\n", len(letters), plural(total, "dead letter", "dead letters"), s, dlq.Key(), listOrder(opts))
	if next != "" {
		a.printMore(s, opts, next)
	}
	return nil
}

// printMore says how to list the page after next.
func (a *app) printMore(s string, opts redstream.ListOptions, next string) {
	newest := ""
	if opts.NewestFirst {
		newest = " -newest"
	}
	fmt.Fprintf(a.stdout, "more: redstream dlq list %s%s -n %d -after %s\n", s, newest, opts.Count, next)
}

func listOrder(opts redstream.ListOptions) string {
	if opts.NewestFirst {
		return "newest first"
	}
	return "oldest first"
}

// deadLetterHeader heads the columns of deadLetterCells.
var deadLetterHeader = []string{"ID", "DEAD-LETTERED", "ORIGIN ID", "GROUP", "CONSUMER", "DELIVERIES", "REASON", "ERROR", "FIELDS"}

// deadLetterCells is a dead letter's row in a listing.
func deadLetterCells(d *redstream.DeadLetter) []string {
	fields := fmtFields(d.Fields, sortedKeys(d.Fields))
	if d.FieldsOmitted > 0 {
		fields = fmt.Sprintf("(%d fields omitted)", d.FieldsOmitted)
	}
	return []string{d.ID, fmtTime(d.Time), dash(d.OriginID), dash(d.Group), dash(d.Consumer), strconv.FormatInt(d.Deliveries, 10),
		dash(d.Reason), dash(truncate(oneLineText(d.Error), 50)), truncate(fields, 60)}
}

func toDeadLetterJSON(d *redstream.DeadLetter) deadLetterJSON {
	return deadLetterJSON{
		ID: d.ID, Time: jsonTime(d.Time), Stream: d.Stream, OriginID: d.OriginID,
		Group: d.Group, Consumer: d.Consumer, Deliveries: d.Deliveries, Reason: d.Reason,
		Error: d.Error, Fields: d.Fields, FieldsOmitted: d.FieldsOmitted,
	}
}

// hasMore reports whether a dead letter follows cursor in the listing order.
func hasMore(ctx context.Context, dlq *redstream.DeadLetters, cursor string, newestFirst bool) (bool, error) {
	letters, _, err := dlq.List(ctx, redstream.ListOptions{Count: 1, After: cursor, NewestFirst: newestFirst})
	if err != nil {
		return false, err
	}
	return len(letters) > 0, nil
}

// oneLineText folds an error text onto one line for a table cell.
func oneLineText(s string) string { return strings.Join(strings.Fields(s), " ") }
