package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var pendingCommand = &command{
	name:     "pending",
	synopsis: "STREAM GROUP [-n 20] [-consumer NAME] [-json]",
	args:     []string{"STREAM", "GROUP"},
	summary:  "the oldest pending entries of a consumer group",
	about: `Lists the entries that GROUP was delivered but has not acknowledged, oldest
first (XPENDING), with the consumer holding each, its AGE (from its ID), its
IDLE time (since it was last delivered or its lease renewed) and how many
times it was delivered. An entry idle for long is held by a consumer that
may be dead; one delivered many times is failing.

With -json it prints a JSON array of {"id", "time", "consumer", "idle_ms",
"deliveries"}. ` + jsonDoc + `

To act on pending entries: 'redstream pending ack', 'pending dead-letter'
and 'pending claim' (see 'redstream help pending ack'). A stream named
"ack", "dead-letter" or "claim" is listed with 'redstream pending -- ack GROUP'.`,
	examples: `redstream pending orders:order:created billing
redstream pending orders:order:created billing -n 100 -consumer billing-7f9c
redstream pending orders:order:created billing -json`,
	setup: func(fs *flag.FlagSet) runFunc {
		n := countFlag(fs, 20, "entries")
		consumer := fs.String("consumer", "", "only entries held by consumer `NAME`")
		asJSON := fs.Bool("json", false, "print the entries as a JSON array")
		return func(ctx context.Context, a *app, args []string) error {
			s, err := stream(args[0])
			if err != nil {
				return err
			}
			group := args[1]
			if group == "" {
				return usagef("pending: GROUP is empty")
			}
			if err := checkCount(*n); err != nil {
				return err
			}
			return a.pending(ctx, s, group, *consumer, *n, *asJSON)
		}
	},
}

type pendingJSON struct {
	ID         string `json:"id"`
	Time       string `json:"time"`
	Consumer   string `json:"consumer"`
	IdleMs     int64  `json:"idle_ms"`
	Deliveries int64  `json:"deliveries"`
}

func (a *app) pending(ctx context.Context, s, group, consumer string, n int, asJSON bool) error {
	rdb, err := a.client(ctx)
	if err != nil {
		return err
	}
	if err := streamMustExist(ctx, rdb, s); err != nil {
		return err
	}
	summary, err := rdb.XPending(ctx, s, group).Result()
	if err != nil {
		return pendingErr(s, group, err)
	}
	entries, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: s, Group: group, Start: "-", End: "+", Count: int64(n), Consumer: consumer,
	}).Result()
	if err != nil {
		return pendingErr(s, group, err)
	}
	if asJSON {
		out := make([]pendingJSON, len(entries))
		for i, e := range entries {
			out[i] = pendingJSON{ID: e.ID, Time: jsonIDTime(e.ID), Consumer: e.Consumer, IdleMs: e.Idle.Milliseconds(), Deliveries: e.RetryCount}
		}
		return writeJSON(a.stdout, out)
	}
	total := summary.Count
	whose := "group " + group
	if consumer != "" {
		total = summary.Consumers[consumer]
		whose = "consumer " + consumer + " of group " + group
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintf(a.stdout, "nothing pending for %s\n", whose)
		return err
	}
	now := time.Now()
	t := newTable(a.stdout, "ID", "TIME", "AGE", "CONSUMER", "IDLE", "DELIVERIES")
	for _, e := range entries {
		tm, _ := idTime(e.ID)
		age := "-"
		if !tm.IsZero() {
			age = fmtDuration(now.Sub(tm))
		}
		t.row(e.ID, fmtTime(tm), age, e.Consumer, fmtDuration(e.Idle), strconv.FormatInt(e.RetryCount, 10))
	}
	if err := t.flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.stdout, "%d of %s of %s, oldest first\n", len(entries), plural(total, "pending entry", "pending entries"), whose)
	return err
}

func pendingErr(s, group string, err error) error {
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return fmt.Errorf("group %s of stream %s does not exist", group, s)
	}
	return fmt.Errorf("pending entries of %s group %s: %w", s, group, err)
}
