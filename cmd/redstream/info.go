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
	synopsis: "STREAM [-partitions N] [-json]",
	args:     []string{"STREAM"},
	summary:  "the stream, its consumer groups and consumers at a glance",
	about: `Shows the stream's length, its first and last entry IDs with the time
encoded in them, the length of its dead-letter stream, how many messages
wait in its schedule (published with a delay) and when the first is due,
and for each consumer group:
  LAG             entries not yet delivered to the group ("≥N" when counting
                  was cut short: at least N)
  PENDING         entries delivered but not acknowledged
  OLDEST PENDING  the lowest pending ID, its AGE (since it was added) and IDLE
                  time (since it was last delivered or its lease renewed)
  LAST DELIVERED  the newest entry delivered to the group
  OWNER           the consumer holding the group's lease on the stream: with
                  WithExclusivePartitions, the one consumer of the group that
                  reads it ("-" when no consumer holds the lease, "?" when
                  the Redis user may not read lease keys)
and for each consumer its pending count, IDLE time (since it last talked to
the group) and INACTIVE time (since its last successful read; "-" before
Redis 7.2). Times are UTC; ages are computed with this machine's clock.

With -partitions N, STREAM is the base name of a partitioned stream (its
producers and consumers use WithPartitions(N)), and the snapshot is the sum
of its partitions STREAM:p0 to STREAM:p<N-1>: lengths, dead letters, and per
group (and consumer) lag and pending; AGE and IDLE are the largest of the
partitions', and IDs and owners are not summed (shown as "-"). A table
follows with each partition's length, dead letters, and each group's lag,
pending and owner ("-" where the partition, or the group in it, does not
exist yet, or for the owner where no consumer holds the lease).

` + jsonDoc + `

Each group's "owner" is the consumer holding its lease, "" when none does.
With -partitions, the JSON object holds the sum, with "" for the IDs, their
times, "dead_letter_key" and each group's "owner", and adds "partitions":
each partition's snapshot in partition order, shaped as without
-partitions, or null for a partition that does not exist yet.`,
	examples: `redstream info orders:order:created
redstream info orders:order:created -json | jq '.groups[] | {name, lag, pending, owner}'
redstream info orders:order:created -partitions 16
redstream info orders:order:created -partitions 16 -json | jq '.partitions[] | {stream, length}'
redstream info orders:order:created -partitions 16 -json | jq '.partitions[] | {stream, owners: [.groups[]? | {name, owner}]}'`,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the snapshot as JSON")
		partitions := partitionsVar(fs)
		return func(ctx context.Context, a *app, args []string) error {
			if *partitions > 0 {
				info, names, err := a.inspectPartitions(ctx, args[0], *partitions)
				if err != nil {
					return err
				}
				owners, err := a.leaseOwners(ctx, info.Partitions...)
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(a.stdout, toPartitionedJSON(info, owners))
				}
				return printPartitionedInfo(a.stdout, info, names, owners)
			}
			info, err := a.inspect(ctx, args[0])
			if err != nil {
				return err
			}
			owners, err := a.leaseOwners(ctx, info)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(a.stdout, toStreamJSON(info, owners[info.Stream]))
			}
			return printInfo(a.stdout, info, owners[info.Stream], time.Now())
		}
	},
}

var groupsCommand = &command{
	name:     "groups",
	synopsis: "STREAM [-partitions N] [-json]",
	args:     []string{"STREAM"},
	summary:  "consumer groups: lag, pending, oldest pending entry",
	about: `Shows the consumer groups of STREAM, as in 'redstream info' but without the
stream summary and the consumers. OWNER is the consumer holding the group's
lease on the stream ("-" when none does; see 'redstream help info').

With -partitions N, STREAM is the base name of a partitioned stream, and the
groups are summed over its partitions as 'redstream info -partitions N' sums
them; a sum has no owner ("-"): each partition's is in the partition table
of 'redstream info -partitions N'.

With -json it prints a JSON array of groups, each shaped as in
'redstream info -json'. ` + jsonDoc,
	examples: `redstream groups orders:order:created
redstream groups orders:order:created -json
redstream groups orders:order:created -partitions 16`,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the groups as a JSON array")
		partitions := partitionsVar(fs)
		return func(ctx context.Context, a *app, args []string) error {
			var info *redstream.StreamInfo
			var owners map[string]string // by group; none for a sum
			if *partitions > 0 {
				p, _, err := a.inspectPartitions(ctx, args[0], *partitions)
				if err != nil {
					return err
				}
				info = &p.Total
			} else {
				var err error
				if info, err = a.inspect(ctx, args[0]); err != nil {
					return err
				}
				all, err := a.leaseOwners(ctx, info)
				if err != nil {
					return err
				}
				owners = all[info.Stream]
			}
			if *asJSON {
				return writeJSON(a.stdout, toStreamJSON(info, owners).Groups)
			}
			return printGroups(a.stdout, info.Groups, owners)
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

// inspectPartitions validates the base name and returns the summed snapshot
// of its n partitions and their names, turning a stream none of whose
// partitions exists into a plain message.
func (a *app) inspectPartitions(ctx context.Context, base string, n int) (*redstream.PartitionedInfo, []string, error) {
	names, err := partitionNames(base, n)
	if err != nil {
		return nil, nil, err
	}
	rdb, err := a.client(ctx)
	if err != nil {
		return nil, nil, err
	}
	info, err := redstream.InspectPartitions(ctx, rdb, base, n)
	switch {
	case err == nil:
		return info, names, nil
	case errors.Is(err, redstream.ErrNoStream):
		return nil, nil, noPartitions(ctx, rdb, base, names)
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		// Name the partition that is not a stream.
		if typeErr := partitionsMustExist(ctx, rdb, base, names, false); typeErr != nil {
			return nil, nil, typeErr
		}
		return nil, nil, err
	default:
		return nil, nil, err
	}
}

// printInfo prints a stream's snapshot; owners holds, by group, the
// consumer holding the stream's lease.
func printInfo(w io.Writer, info *redstream.StreamInfo, owners map[string]string, now time.Time) error {
	t := newTable(w, "stream", info.Stream)
	t.row("length", strconv.FormatInt(info.Length, 10))
	t.row("first entry", fmtIDWithTime(info.FirstID, now))
	t.row("last entry", fmtIDWithTime(info.LastID, now))
	if info.LastGeneratedID != info.LastID && info.LastGeneratedID != "" && info.LastGeneratedID != "0-0" {
		t.row("last generated ID", fmtIDWithTime(info.LastGeneratedID, now))
	}
	t.row("dead letters", fmt.Sprintf("%d (%s)", info.DeadLetterLength, redstream.DeadLetterKey(info.Stream)))
	t.row("scheduled", fmtScheduled(info.Scheduled, info.NextDue, now))
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return printGroupsAndConsumers(w, info.Groups, owners)
}

// printGroupsAndConsumers prints the groups table and, when the groups
// have consumers, the consumers table.
func printGroupsAndConsumers(w io.Writer, groups []redstream.GroupInfo, owners map[string]string) error {
	if err := printGroups(w, groups, owners); err != nil {
		return err
	}
	n := 0
	for _, g := range groups {
		n += len(g.Consumers)
	}
	if n == 0 {
		return nil
	}
	fmt.Fprintln(w)
	ct := newTable(w, "GROUP", "CONSUMER", "PENDING", "IDLE", "INACTIVE")
	for _, g := range groups {
		for _, c := range g.Consumers {
			ct.row(g.Name, c.Name, strconv.FormatInt(c.Pending, 10), fmtDuration(c.Idle), fmtDuration(c.Inactive))
		}
	}
	return ct.flush()
}

// printGroups prints the groups table; owners holds, by group, the consumer
// holding the lease (nil for a sum over partitions, which has none).
func printGroups(w io.Writer, groups []redstream.GroupInfo, owners map[string]string) error {
	if len(groups) == 0 {
		_, err := fmt.Fprintln(w, "no consumer groups")
		return err
	}
	t := newTable(w, "GROUP", "LAG", "PENDING", "OLDEST PENDING", "AGE", "IDLE", "LAST DELIVERED", "CONSUMERS", "OWNER", "PAUSED")
	for _, g := range groups {
		age, idle := "-", "-"
		// A sum over partitions has no oldest pending ID, but its age.
		if g.OldestPendingID != "" || g.Pending > 0 {
			age, idle = fmtDuration(g.OldestPendingAge), fmtDuration(g.OldestPendingIdle)
		}
		paused := "no"
		switch {
		case g.Paused:
			paused = "since-" + g.PausedSince.Format(time.RFC3339)
		case !g.PausedKnown:
			paused = "?"
		}
		t.row(g.Name, fmtLag(&g), strconv.FormatInt(g.Pending, 10), dash(g.OldestPendingID), age, idle,
			dash(g.LastDeliveredID), strconv.Itoa(len(g.Consumers)), dash(owners[g.Name]), paused)
	}
	return t.flush()
}

// fmtLag shows a group's lag, marked "≥" when it is a lower bound.
func fmtLag(g *redstream.GroupInfo) string {
	lag := strconv.FormatInt(g.Lag, 10)
	if !g.LagKnown {
		lag = "≥" + lag
	}
	return lag
}

// printPartitionedInfo prints the summed snapshot of a partitioned stream
// as printInfo prints a stream, then a table of its partitions, names, with
// the owners of their leases.
func printPartitionedInfo(w io.Writer, p *redstream.PartitionedInfo, names []string, owners leaseOwners) error {
	total := &p.Total
	missing := 0
	deadKeys := make([]string, len(names))
	for i, name := range names {
		if p.Partitions[i] == nil {
			missing++
		}
		deadKeys[i] = redstream.DeadLetterKey(name)
	}
	parts := fmt.Sprintf("%d (%s)", len(names), span(names))
	if missing > 0 {
		parts += fmt.Sprintf(", %d not created yet", missing)
	}
	t := newTable(w, "stream", total.Stream)
	t.row("partitions", parts)
	t.row("length", strconv.FormatInt(total.Length, 10))
	t.row("dead letters", fmt.Sprintf("%d (%s)", total.DeadLetterLength, span(deadKeys)))
	t.row("scheduled", fmtScheduled(total.Scheduled, total.NextDue, time.Now()))
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := printGroupsAndConsumers(w, total.Groups, nil); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return printPartitionTable(w, p, names, owners)
}

// printPartitionTable prints a row per partition: its length, dead letters,
// and three columns per group of the sum, lag, pending and owner.
func printPartitionTable(w io.Writer, p *redstream.PartitionedInfo, names []string, owners leaseOwners) error {
	header := []string{"PARTITION", "LENGTH", "DEAD LETTERS"}
	for _, g := range p.Total.Groups {
		header = append(header, g.Name+" LAG", g.Name+" PENDING", g.Name+" OWNER")
	}
	t := newTable(w, header...)
	for i, name := range names {
		info := p.Partitions[i]
		cells := []string{name, "-", "-"}
		if info != nil {
			cells = []string{name, strconv.FormatInt(info.Length, 10), strconv.FormatInt(info.DeadLetterLength, 10)}
		}
		for _, tg := range p.Total.Groups {
			g := findGroup(info, tg.Name)
			if g == nil {
				cells = append(cells, "-", "-", "-")
				continue
			}
			cells = append(cells, fmtLag(g), strconv.FormatInt(g.Pending, 10), dash(owners[name][g.Name]))
		}
		t.row(cells...)
	}
	return t.flush()
}

// findGroup returns the group of info (which may be nil) named name, or nil.
func findGroup(info *redstream.StreamInfo, name string) *redstream.GroupInfo {
	if info == nil {
		return nil
	}
	for i := range info.Groups {
		if info.Groups[i].Name == name {
			return &info.Groups[i]
		}
	}
	return nil
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
	// Scheduled messages waiting, and when the first is due ("" if none).
	Scheduled int64  `json:"scheduled"`
	NextDue   string `json:"next_due"`
}

// partitionedJSON is the stable JSON shape of a
// [redstream.PartitionedInfo]: the sum, with the keys of streamJSON (and
// no owners), and each partition's snapshot (null for one that does not
// exist).
type partitionedJSON struct {
	streamJSON
	Partitions []*streamJSON `json:"partitions"`
}

func toPartitionedJSON(p *redstream.PartitionedInfo, owners leaseOwners) partitionedJSON {
	out := partitionedJSON{streamJSON: toStreamJSON(&p.Total, nil), Partitions: make([]*streamJSON, len(p.Partitions))}
	// Each partition has its own dead-letter stream; the base name has none.
	out.DeadLetterKey = ""
	for i, info := range p.Partitions {
		if info != nil {
			j := toStreamJSON(info, owners[info.Stream])
			out.Partitions[i] = &j
		}
	}
	return out
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
	OldestPendingAgeMs  int64 `json:"oldest_pending_age_ms"`
	OldestPendingIdleMs int64 `json:"oldest_pending_idle_ms"`
	// Owner is the consumer holding the group's lease on the stream, "" when
	// none does (and in a sum over partitions).
	Owner string `json:"owner"`
	// Paused is true while the group's consumption is paused ("pause").
	Paused      bool           `json:"paused"`
	PausedSince string         `json:"paused_since,omitempty"`
	Consumers   []consumerJSON `json:"consumers"`
}

type consumerJSON struct {
	Name    string `json:"name"`
	Pending int64  `json:"pending"`
	IdleMs  int64  `json:"idle_ms"`
	// InactiveMs is -1 before Redis 7.2.
	InactiveMs int64 `json:"inactive_ms"`
}

// toStreamJSON shapes a stream's snapshot; owners holds, by group, the
// consumer holding the stream's lease.
func toStreamJSON(info *redstream.StreamInfo, owners map[string]string) streamJSON {
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
		Scheduled:        info.Scheduled,
		NextDue:          jsonTime(info.NextDue),
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
			Owner:               owners[g.Name],
			Paused:              g.Paused,
			Consumers:           make([]consumerJSON, 0, len(g.Consumers)),
		}
		if g.Paused {
			gj.PausedSince = g.PausedSince.Format(time.RFC3339)
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
