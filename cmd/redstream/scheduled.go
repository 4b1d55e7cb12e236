package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/redstream/redstream"
)

var scheduledListCommand = &command{
	name:     "scheduled list",
	synopsis: "STREAM [-n 20] [-json]",
	args:     []string{"STREAM"},
	summary:  "list the messages waiting in a stream's schedule",
	about: `Lists the messages published to STREAM with a delay (WithDelay,
WithDeliverAt) that are still waiting, the first due first: the schedule ID
(the handle 'scheduled cancel' takes), when the message is due (the Redis
server's clock) and in how long, and its fields (truncated; -json shows them
whole). A message is appended to STREAM by a consumer or reaper of the stream
within their poll interval (250ms by default) after it is due. For a
partitioned stream, STREAM is one partition's key (STREAM:p3).

With -json it prints a JSON array of {"id", "due", "fields"}. ` + jsonDoc,
	examples: `redstream scheduled list orders:order:created
redstream scheduled list orders:order:created:p3 -n 100 -json`,
	setup: func(fs *flag.FlagSet) runFunc {
		n := countFlag(fs, 20, "scheduled messages")
		asJSON := fs.Bool("json", false, "print the scheduled messages as a JSON array")
		return func(ctx context.Context, a *app, args []string) error {
			s, err := stream(args[0])
			if err != nil {
				return err
			}
			if err := checkCount(*n); err != nil {
				return err
			}
			return a.scheduledList(ctx, s, *n, *asJSON)
		}
	},
}

var scheduledCancelCommand = &command{
	name:     "scheduled cancel",
	synopsis: "STREAM ID",
	args:     []string{"STREAM", "ID"},
	summary:  "cancel a scheduled message before it is due",
	about: `Cancels the scheduled message ID of STREAM (an ID 'scheduled list' shows,
such as sched-4f1c...): it is never appended to the stream. When it is no
longer waiting (appended already, cancelled before, or unknown), it says so
and exits with status 1. For a partitioned stream, STREAM is the partition's
key.`,
	examples: `redstream scheduled cancel orders:order:created sched-4f1c2a9e0b7d5c3a1e2f4b6d`,
	setup: func(*flag.FlagSet) runFunc {
		return func(ctx context.Context, a *app, args []string) error {
			s, err := stream(args[0])
			if err != nil {
				return err
			}
			rdb, err := a.client(ctx)
			if err != nil {
				return err
			}
			err = redstream.CancelScheduled(ctx, rdb, s, args[1])
			if errors.Is(err, redstream.ErrNotScheduled) {
				return fmt.Errorf("%s is not waiting in the schedule of %s: appended already, cancelled, or unknown", args[1], s)
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "cancelled %s on %s\n", args[1], s)
			return err
		}
	},
}

type scheduledJSON struct {
	ID     string            `json:"id"`
	Due    string            `json:"due"`
	Fields map[string]string `json:"fields"`
}

func (a *app) scheduledList(ctx context.Context, s string, n int, asJSON bool) error {
	rdb, err := a.client(ctx)
	if err != nil {
		return err
	}
	list, err := redstream.ListScheduled(ctx, rdb, s, 0, n)
	if err != nil {
		return err
	}
	if asJSON {
		out := make([]scheduledJSON, len(list))
		for i, m := range list {
			out[i] = scheduledJSON{ID: m.ID, Due: jsonTime(m.Due), Fields: m.Fields}
		}
		return writeJSON(a.stdout, out)
	}
	if len(list) == 0 {
		_, err := fmt.Fprintf(a.stdout, "nothing scheduled for %s\n", s)
		return err
	}
	info, err := redstream.Inspect(ctx, rdb, s)
	total := int64(len(list))
	if err == nil {
		total = info.Scheduled
	}
	now := time.Now()
	t := newTable(a.stdout, "ID", "DUE", "IN", "FIELDS")
	for _, m := range list {
		in := "due"
		if d := m.Due.Sub(now); d > 0 {
			in = fmtDuration(d)
		}
		t.row(m.ID, fmtTime(m.Due), in, fmtScheduledFields(m.Fields))
	}
	if err := t.flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.stdout, "%d of %s of %s, first due first\n", len(list), plural(total, "scheduled message", "scheduled messages"), s)
	return err
}

// fmtScheduledFields shows fields on one line, name=value in name order,
// cut at 80 characters.
func fmtScheduledFields(fields map[string]string) string {
	parts := make([]string, 0, len(fields))
	for _, k := range sortedKeys(fields) {
		parts = append(parts, k+"="+fields[k])
	}
	s := strings.Join(parts, " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// fmtScheduled shows a schedule's size and when its first message is due.
func fmtScheduled(n int64, next time.Time, now time.Time) string {
	switch {
	case n < 0:
		return "? (the Redis user may not read the schedule's keys)"
	case n == 0:
		return "0"
	}
	when := "due now"
	if d := next.Sub(now); d > 0 {
		when = "in " + fmtDuration(d)
	}
	return fmt.Sprintf("%d (first due %s, %s)", n, fmtTime(next), when)
}
