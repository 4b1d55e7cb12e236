package redstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
)

// Lease fencing of exclusive partitions (WithExclusivePartitions). A
// consumer may read and start handlers of a partition only while it holds
// the partition's lease, and a consumer cut off from Redis (a stalled
// network, a paused process) cannot know when it lost it. Two fences keep
// it from acting on a lease another consumer may hold by now:
//
//   - Reads are checked by Redis: a new entry is read with a script that
//     runs XREADGROUP only if the lease key still names this consumer
//     (fencedread.lua), so a read that reaches Redis late delivers nothing.
//     XREADGROUP cannot block inside a script, so the reader waits for new
//     entries with an XREAD, which delivers nothing, and then reads.
//   - Handlers are checked against a local deadline: the lease is valid
//     until its TTL after the renewal that set it was sent (route.leaseUntil,
//     on the monotonic clock); a worker starts no handler of the partition
//     past it, and leaves the message pending for the partition's owner.
//
// What remains possible: a handler started before the deadline still runs
// after it (its message's own lease is then taken by the next owner's
// claim, and the consumer's lease keeper cancels it, as for any lost
// lease), and an acknowledgement of a message handled in time may reach
// Redis after the next owner claimed the message: the next owner records
// its claims (markClaimed), and an acknowledgement sent within a quarter
// of the lease's TTL of the deadline, or past it, goes by acklapsed.lua,
// which tells the next owner that the message was finished.

// monoBase anchors route.leaseUntil and monoNow on the monotonic clock.
var monoBase = time.Now()

// setLeaseUntil records that rt's lease, renewed by a command sent at sent,
// holds for ttl from then.
func setLeaseUntil(rt *route, sent time.Time, ttl time.Duration) {
	rt.leaseUntil.Store(int64(sent.Add(ttl).Sub(monoBase)))
}

// leaseExpired reports whether rt is exclusive and its lease may have
// expired: nothing of it may be started.
func leaseExpired(rt *route) bool {
	return rt.exclusive && monoNow() >= rt.leaseUntil.Load()
}

// partitionLeaseEnding reports whether rt is exclusive and its lease, of
// ttl, ends within a quarter of ttl after now (monoNow), or has ended: an
// acknowledgement sent now may reach Redis after the next owner took the
// lease and claimed the partition's pending entries. It leaves the same
// quarter of room as an entry's own lease (leaseMayHaveLapsed); a healthy
// owner renews every ttl/3, so its deadline is at least two thirds of ttl
// away.
func partitionLeaseEnding(rt *route, now int64, ttl time.Duration) bool {
	return rt.exclusive && now >= rt.leaseUntil.Load()-int64(ttl/4)
}

// errNotLeaseHolder is what a fenced read finds when the lease names
// another consumer, or none.
var errNotLeaseHolder = errors.New("redstream: partition lease not held: read refused")

// readFenced reads up to n new entries of the exclusive route rt, only
// while this consumer holds its lease; when there are none, it waits up to
// the block time for new ones without reading them, and returns none.
func (r *runner) readFenced(ctx context.Context, rt *route, n int) ([]*entry, error) {
	sent := monoNow()
	res, err := evalOnce(ctx, r.c.rdb, scripts.FencedRead.Hash(), scripts.FencedReadSource(),
		[]string{rt.stream, rt.lease}, r.c.group, r.c.cfg.name, n).Slice()
	if err != nil {
		return nil, err
	}
	if len(res) < 2 {
		return nil, errNotLeaseHolder
	}
	raw, _ := res[1].([]any)
	if len(raw) > 0 {
		entries := make([]*entry, 0, len(raw))
		for _, item := range raw {
			id, values, err := parseEntry(item)
			if err != nil {
				return nil, fmt.Errorf("redstream: fenced read of %s: %w", rt.stream, err)
			}
			entries = append(entries, rt.newEntry(id, values, 1))
		}
		stampLeases(entries, sent)
		return entries, nil
	}
	last, _ := res[2].(string)
	// Delivers nothing: the next fenced read takes what arrived.
	err = r.c.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{rt.stream, last}, Count: 1, Block: r.c.cfg.block}).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	return nil, nil
}

// parseEntry parses one [id, [field, value, ...]] pair of a script's reply.
func parseEntry(item any) (string, map[string]any, error) {
	pair, _ := item.([]any)
	if len(pair) != 2 {
		return "", nil, fmt.Errorf("unexpected entry %v", item)
	}
	id, ok := pair[0].(string)
	if !ok {
		return "", nil, fmt.Errorf("unexpected entry ID %v", pair[0])
	}
	fields, _ := pair[1].([]any)
	values := make(map[string]any, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := fields[i].(string)
		values[name] = fields[i+1]
	}
	return id, values, nil
}
