package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

const jsonDoc = `With -json, durations are integers in milliseconds under keys ending in
"_ms" (-1 when Redis does not report it), times are RFC 3339 strings in UTC
with milliseconds ("" when there is none), IDs are strings ("" when there is
none), and lists are never null. Keys are snake_case and only ever added to.`

var infoCommand = &command{
	name:     "info",
	synopsis: "STREAM [-json]",
	args:     []string{"STREAM"},
	summary:  "the stream, its consumer groups and consumers at a glance",
	about: `Shows the stream's length, its first and last entry IDs with the time
encoded in them, the length of its dead-letter stream, and for each
consumer group:
  LAG             entries not yet delivered to the group ("≥N" when counting
                  was cut short: at least N)
  PENDING         entries delivered but not acknowledged
  OLDEST PENDING  the lowest pending ID, its AGE (since it was added) and IDLE
                  time (since it was last delivered or its lease renewed)
  LAST DELIVERED  the newest entry delivered to the group
and for each consumer its pending count, IDLE time (since it last talked to
the group) and INACTIVE time (since its last successful read; "-" before
Redis 7.2). Times are UTC; ages are computed with this machine's clock.

` + jsonDoc,
	examples: `redstream info orders:order:created
redstream info orders:order:created -json | jq '.groups[] | {name, lag, pending}'`,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the snapshot as JSON")
		return func(ctx context.Context, a *app, args []string) error {
			info, err := a.inspect(ctx, args[0])
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(a.stdout, toStreamJSON(info))
			}
			return printInfo(a.stdout, info, time.Now())
		}
	},
}

var groupsCommand = &command{
	name:     "groups",
	synopsis: "STREAM [-json]",
	args:     []string{"STREAM"},
	summary:  "consumer groups: lag, pending, oldest pending entry",
	about: `Shows the consumer groups of STREAM, as in 'redstream info' but without the
stream summary and the consumers.

With -json it prints a JSON array of groups, each shaped as in
'redstream info -json'. ` + jsonDoc,
	examples: `redstream groups orders:order:created
redstream groups orders:order:created -json`,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the groups as a JSON array")
		return func(ctx context.Context, a *app, args []string) error {
			info, err := a.inspect(ctx, args[0])
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(a.stdout, toStreamJSON(info).Groups)
			}
			return printGroups(a.stdout, info.Groups)
		}
	},
}

// inspect validates the stream name and returns its snapshot, turning a
// missing stream into a plain message.
func (a *app) inspect(ctx context.Context, name string) (*redstream.StreamInfo, error) {
	s, err := stream(name)
	if err != nil {
		return nil, err
	}
	rdb, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	info, err := redstream.Inspect(ctx, rdb, s)
	switch {
	case err == nil:
		return info, nil
	case errors.Is(err, redstream.ErrNoStream):
		return nil, noStream(s)
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return nil, streamMustExist(ctx, rdb, s)
	default:
		return nil, err
	}
}

func printInfo(w io.Writer, info *redstream.StreamInfo, now time.Time) error {
	t := newTable(w, "stream", info.Stream)
	t.row("length", strconv.FormatInt(info.Length, 10))
	t.row("first entry", fmtIDWithTime(info.FirstID, now))
	t.row("last entry", fmtIDWithTime(info.LastID, now))
	if info.LastGeneratedID != info.LastID && info.LastGeneratedID != "" && info.LastGeneratedID != "0-0" {
		t.row("last generated ID", fmtIDWithTime(info.LastGeneratedID, now))
	}
	t.row("dead letters", fmt.Sprintf("%d (%s)", info.DeadLetterLength, redstream.DeadLetterKey(info.Stream)))
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := printGroups(w, info.Groups); err != nil {
		return err
	}
	n := 0
	for _, g := range info.Groups {
		n += len(g.Consumers)
	}
	if n == 0 {
		return nil
	}
	fmt.Fprintln(w)
	ct := newTable(w, "GROUP", "CONSUMER", "PENDING", "IDLE", "INACTIVE")
	for _, g := range info.Groups {
		for _, c := range g.Consumers {
			ct.row(g.Name, c.Name, strconv.FormatInt(c.Pending, 10), fmtDuration(c.Idle), fmtDuration(c.Inactive))
		}
	}
	return ct.flush()
}

func printGroups(w io.Writer, groups []redstream.GroupInfo) error {
	if len(groups) == 0 {
		_, err := fmt.Fprintln(w, "no consumer groups")
		return err
	}
	t := newTable(w, "GROUP", "LAG", "PENDING", "OLDEST PENDING", "AGE", "IDLE", "LAST DELIVERED", "CONSUMERS")
	for _, g := range groups {
		lag := strconv.FormatInt(g.Lag, 10)
		if !g.LagKnown {
			lag = "≥" + lag
		}
		age, idle := "-", "-"
		if g.OldestPendingID != "" {
			age, idle = fmtDuration(g.OldestPendingAge), fmtDuration(g.OldestPendingIdle)
		}
		t.row(g.Name, lag, strconv.FormatInt(g.Pending, 10), dash(g.OldestPendingID), age, idle,
			dash(g.LastDeliveredID), strconv.Itoa(len(g.Consumers)))
	}
	return t.flush()
}

// streamJSON is the stable JSON shape of a [redstream.StreamInfo].
type streamJSON struct {
	Stream           string      `json:"stream"`
	Length           int64       `json:"length"`
	FirstID          string      `json:"first_id"`
	FirstTime        string      `json:"first_time"`
	LastID           string      `json:"last_id"`
	LastTime         string      `json:"last_time"`
	LastGeneratedID  string      `json:"last_generated_id"`
	DeadLetterKey    string      `json:"dead_letter_key"`
	DeadLetterLength int64       `json:"dead_letter_length"`
	Groups           []groupJSON `json:"groups"`
}

type groupJSON struct {
	Name            string `json:"name"`
	LastDeliveredID string `json:"last_delivered_id"`
	// Lag is a lower bound when LagKnown is false.
	Lag             int64  `json:"lag"`
	LagKnown        bool   `json:"lag_known"`
	Pending         int64  `json:"pending"`
	OldestPendingID string `json:"oldest_pending_id"`
	// The oldest pending entry's age and idle time; 0 when nothing is pending.
	OldestPendingAgeMs  int64          `json:"oldest_pending_age_ms"`
	OldestPendingIdleMs int64          `json:"oldest_pending_idle_ms"`
	Consumers           []consumerJSON `json:"consumers"`
}

type consumerJSON struct {
	Name    string `json:"name"`
	Pending int64  `json:"pending"`
	IdleMs  int64  `json:"idle_ms"`
	// InactiveMs is -1 before Redis 7.2.
	InactiveMs int64 `json:"inactive_ms"`
}

func toStreamJSON(info *redstream.StreamInfo) streamJSON {
	out := streamJSON{
		Stream:           info.Stream,
		Length:           info.Length,
		FirstID:          info.FirstID,
		FirstTime:        jsonIDTime(info.FirstID),
		LastID:           info.LastID,
		LastTime:         jsonIDTime(info.LastID),
		LastGeneratedID:  info.LastGeneratedID,
		DeadLetterKey:    redstream.DeadLetterKey(info.Stream),
		DeadLetterLength: info.DeadLetterLength,
		Groups:           make([]groupJSON, 0, len(info.Groups)),
	}
	for _, g := range info.Groups {
		gj := groupJSON{
			Name:                g.Name,
			LastDeliveredID:     g.LastDeliveredID,
			Lag:                 g.Lag,
			LagKnown:            g.LagKnown,
			Pending:             g.Pending,
			OldestPendingID:     g.OldestPendingID,
			OldestPendingAgeMs:  g.OldestPendingAge.Milliseconds(),
			OldestPendingIdleMs: g.OldestPendingIdle.Milliseconds(),
			Consumers:           make([]consumerJSON, 0, len(g.Consumers)),
		}
		for _, c := range g.Consumers {
			inactive := c.Inactive.Milliseconds()
			if c.Inactive < 0 {
				inactive = -1
			}
			gj.Consumers = append(gj.Consumers, consumerJSON{Name: c.Name, Pending: c.Pending, IdleMs: c.Idle.Milliseconds(), InactiveMs: inactive})
		}
		out.Groups = append(out.Groups, gj)
	}
	return out
}
