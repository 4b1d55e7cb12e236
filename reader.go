package redstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// The reader: one goroutine per stream the consumer reads alone (a
// stream no other of its streams shares a hash slot with, and each owned
// partition with WithExclusivePartitions; streams that share a slot have
// a group reader, multireader.go), started by runner.run (by partition
// ownership for exclusive routes) and stopped by Run's context
// (or the partition's). It owns its cursor into the consumer's own pending
// entries and its read size; it takes room and holds what it reads through
// the heldSet, and hands it to dispatch (workers.go). Group creation at the
// start and after NOGROUP lives here too.

// read is one stream's reader: it drains this consumer's own pending
// entries, then reads new ones, taking in no more than there is room for.
//
// A read that fails may have been executed by Redis with its reply lost (a
// timeout, a dropped connection): the entries it delivered are pending for
// this consumer, unseen. So after a failure the reader goes through its own
// pending entries again (reading them by XPENDING and XRANGE, which does
// not count deliveries; entries it already holds are skipped), and after a
// timeout it asks for fewer entries, down to one, until a read succeeds.
func (r *runner) read(ctx context.Context, rt *route, perRead int) {
	redisCtx := context.WithoutCancel(ctx)
	cursor := "0" // after this ID come own pending entries; "" once drained
	attempt := 0
	count := perRead
	drained := func() { r.markDrained(rt) }
	wasPaused := false
	for {
		if paused(rt) {
			wasPaused = true
			if !sleepCtx(ctx, pauseCheck) {
				return
			}
			continue
		}
		if wasPaused {
			// What was let go while paused is pending for this consumer:
			// read it first.
			wasPaused = false
			cursor = "0"
		}
		n := r.held.takeRoom(ctx, count)
		if n == 0 {
			return
		}
		var (
			entries []*entry
			next    string
			err     error
		)
		var since *uint64 // nil: entries read with ">", never held before
		if cursor != "" {
			gen := r.held.beginPendingRead()
			since = &gen
			entries, next, err = r.readPending(redisCtx, rt, cursor, n)
			if err == nil && next == "" {
				cursor = ""
				drained()
			} else if err == nil {
				cursor = next
			}
		} else {
			entries, err = r.readNew(redisCtx, rt, n)
		}
		if err != nil {
			if since != nil {
				r.held.endPendingRead()
			}
			r.held.giveRoom(n)
			attempt++
			if errors.Is(err, errNotLeaseHolder) {
				// The ownership goroutine stops this reader if the lease
				// is lost for good; until then, no entry is read.
				r.log.Debug("redstream: partition lease not held; not reading", slog.String("stream", rt.stream))
				if !sleepCtx(ctx, r.ownStep(r.c.cfg.minIdle)) {
					return
				}
				continue
			}
			// A read blocked when the stream key is deleted gets UNBLOCKED
			// (Redis 7) instead of NOGROUP: the group went with the key.
			if redis.HasErrorPrefix(err, "NOGROUP") || redis.HasErrorPrefix(err, "UNBLOCKED") {
				cursor = "" // the group's pending list went with it
				drained()
				r.markRouteVanished(rt)
				r.recreateGroup(redisCtx, rt.stream)
			} else {
				r.report(&OpError{Op: "read", Stream: rt.stream, Group: r.c.group, Err: err})
				cursor = "0"
				if isTimeout(err) {
					count = max(1, count/2)
				}
			}
			if !sleepCtx(ctx, r.backoff.Delay(attempt)) {
				return
			}
			continue
		}
		attempt = 0
		count = min(perRead, count*2)
		r.held.giveRoom(n - len(entries))
		r.dispatch(ctx, entries, since)
		if since != nil {
			r.held.endPendingRead()
		}
	}
}

// markDrained records that rt's reader has gone through this consumer's
// own pending entries of rt.
func (r *runner) markDrained(rt *route) {
	if !rt.drained.Swap(true) && !rt.exclusive && r.undrained.Add(-1) == 0 {
		close(r.drainedAll)
	}
}

// pauseCheck is how often a paused reader looks whether its stream was
// resumed (the pause watcher polls Redis; this only reads its flag).
const pauseCheck = 20 * time.Millisecond

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readNew reads up to n entries never delivered to the group, waiting up to
// the block time for some to arrive.
func (r *runner) readNew(ctx context.Context, rt *route, n int) ([]*entry, error) {
	if rt.exclusive {
		return r.readFenced(ctx, rt, n)
	}
	return r.readGroup(ctx, rt, ">", n, r.c.cfg.block)
}

// readGroup runs one XREADGROUP of up to n entries of rt's stream from id;
// a negative block does not block. Entries read with ">" are on their
// first delivery.
func (r *runner) readGroup(ctx context.Context, rt *route, id string, n int, block time.Duration) ([]*entry, error) {
	sent := monoNow()
	streams, err := xreadGroup(ctx, r.c.rdb, &redis.XReadGroupArgs{
		Group:    r.c.group,
		Consumer: r.c.cfg.name,
		Streams:  []string{rt.stream, id},
		Count:    int64(n),
		Block:    block,
	})
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var entries []*entry
	for _, s := range streams {
		for _, m := range s.Messages {
			// One allocation per entry, not one slice of a read's entries:
			// an entry held long (a retry waiting up to MinIdle) would keep
			// the whole read's payloads alive, past the in-flight bound.
			entries = append(entries, rt.newEntry(m.ID, m.Values, 1))
		}
	}
	stampLeases(entries, sent)
	return entries, nil
}

// readPending reads up to n of this consumer's own pending entries with IDs
// above cursor ("0" for all), with their delivery counts and recorded
// failures, and returns the cursor to go on from ("" when there are no
// more). It reads with XPENDING and XRANGE rather than XREADGROUP from an
// ID, which Redis would count as one more delivery of each entry: a
// consumer restarting, or rereading after a lost reply, must not inflate
// the counts. Entries deleted from the stream come back without values.
// Both commands only read, so a client's retry of them is harmless.
func (r *runner) readPending(ctx context.Context, rt *route, cursor string, n int) ([]*entry, string, error) {
	args, more := r.pendingArgs(rt, cursor, n)
	if !more {
		return nil, "", nil
	}
	sent := monoNow()
	pending, err := r.c.rdb.XPendingExt(ctx, args).Result()
	if err != nil {
		return nil, "", err
	}
	return r.pendingEntries(ctx, rt, pending, sent)
}

// pendingArgs is the XPENDING of up to n of this consumer's own pending
// entries of rt after cursor; false when there can be none.
func (r *runner) pendingArgs(rt *route, cursor string, n int) (*redis.XPendingExtArgs, bool) {
	start, more := "-", true
	if cursor != "0" {
		start, more = startAfter(cursor)
	}
	return &redis.XPendingExtArgs{
		Stream: rt.stream, Group: r.c.group, Consumer: r.c.cfg.name, Start: start, End: "+", Count: int64(n),
	}, more
}

// pendingEntries reads the entries XPENDING listed (readPending).
// sent is when (monoNow) the XPENDING was sent.
func (r *runner) pendingEntries(ctx context.Context, rt *route, pending []redis.XPendingExt, sent int64) ([]*entry, string, error) {
	if len(pending) == 0 {
		return nil, "", nil
	}
	entries := make([]*entry, len(pending))
	for i, p := range pending {
		entries[i] = rt.newEntry(p.ID, nil, max(1, p.RetryCount))
		// Read without a claim: the lease is as old as the entry's idle
		// time (a reaper may take it meanwhile: handOff set it to a year).
		entries[i].leasedAt.Store(sent - int64(p.Idle))
	}
	if err := r.fillEntries(ctx, rt.stream, entries, false); err != nil {
		return nil, "", err
	}
	r.log.Info("redstream: redelivering own pending entries", slog.String("stream", rt.stream), slog.Int("count", len(entries)))
	return entries, pending[len(pending)-1].ID, nil
}

// fillEntries reads, in one round trip, each entry's fields (XRANGE; nil
// when it was deleted from the stream), its recorded handler failures and,
// with counts, its delivery count (XPENDING; 0 when it is not pending for
// this consumer any more).
func (r *runner) fillEntries(ctx context.Context, stream string, entries []*entry, counts bool) error {
	ranges := make([]*redis.XMessageSliceCmd, len(entries))
	var pendings []*redis.XPendingExtCmd
	ids := make([]string, len(entries))
	var attempts *redis.SliceCmd
	_, err := r.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, e := range entries {
			ids[i] = e.id
			if e.values == nil {
				ranges[i] = pipe.XRange(ctx, stream, e.id, e.id)
			}
			if counts {
				pendings = append(pendings, pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: r.c.group, Start: e.id, End: e.id, Count: 1}))
			}
		}
		attempts = pipe.HMGet(ctx, attemptsKey(stream, r.c.group), ids...)
		return nil
	})
	if err != nil {
		return err
	}
	for i, e := range entries {
		if ranges[i] != nil {
			if msgs := ranges[i].Val(); len(msgs) == 1 {
				e.values = msgs[0].Values
			}
		}
		if counts {
			// Not pending for this consumer any more (acknowledged or
			// claimed since): 0, for the caller to drop.
			e.redisDeliveries = 0
			if p := pendings[i].Val(); len(p) == 1 && p[0].Consumer == r.c.cfg.name {
				e.redisDeliveries = max(1, p[0].RetryCount)
			}
		}
		e.attempts = parseAttempts(attempts.Val()[i])
		e.recorded.Store(e.attempts > 0)
	}
	return nil
}

// ensureGroup creates the group on stream (and the stream if missing),
// retrying failures that may pass until ctx ends, when it returns the last
// failure wrapped in ErrNotReady.
//
// A group that exists already needs no write: when XGROUP CREATE fails
// (a Redis out of memory refuses it before it would answer BUSYGROUP; a
// user may lack the permission), the group is looked up instead, so a
// consumer can start and drain a full Redis, which is what frees memory.
// Creating first keeps the usual start at one round trip.
func (r *runner) ensureGroup(ctx context.Context, stream string) error {
	redisCtx := context.WithoutCancel(ctx)
	for attempt := 1; ; attempt++ {
		err := createGroup(redisCtx, r.c.rdb, stream, r.c.group, r.c.cfg.groupStart)
		if err == nil {
			return nil
		}
		if exists, lookErr := lookupGroup(redisCtx, r.c.rdb, stream, r.c.group); lookErr == nil && exists {
			r.log.Info("redstream: consumer group exists; starting without creating it", slog.String("stream", stream), slog.Any("create_error", err))
			return nil
		}
		opErr := &OpError{Op: "create-group", Stream: stream, Group: r.c.group, Err: err}
		if isPermanent(err) {
			return opErr
		}
		r.report(opErr)
		if !sleepCtx(ctx, r.backoff.Delay(attempt)) {
			return fmt.Errorf("%w: %w", ErrNotReady, opErr)
		}
	}
}

// lookupGroup reports whether stream has group, reading only.
func lookupGroup(ctx context.Context, rdb redis.UniversalClient, stream, group string) (bool, error) {
	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "ERR no such key") {
			return false, nil
		}
		return false, err
	}
	for _, g := range groups {
		if g.Name == group {
			return true, nil
		}
	}
	return false, nil
}

// createGroup creates group on stream at start, creating the stream too;
// a group that exists already is no error.
func createGroup(ctx context.Context, rdb redis.UniversalClient, stream, group, start string) error {
	err := rdb.XGroupCreateMkStream(ctx, stream, group, start).Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return err
	}
	return nil
}

// recreateGroup creates the group again after NOGROUP: the stream was
// deleted (or the group destroyed) under a running consumer. The new group
// starts at "0", so entries written to a recreated stream since then are
// not skipped.
func (r *runner) recreateGroup(ctx context.Context, stream string) {
	err := createGroup(ctx, r.c.rdb, stream, r.c.group, "0")
	if err != nil {
		r.report(&OpError{Op: "create-group", Stream: stream, Group: r.c.group, Err: err})
		return
	}
	r.log.Warn("redstream: consumer group was missing (NOGROUP); created it again", slog.String("stream", stream))
}

// isPermanent reports whether err is a Redis refusal that retrying will not
// change, as opposed to a network failure or a server that is loading.
func isPermanent(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	for _, transient := range []string{"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "MOVED", "ASK", "OOM"} {
		if redis.HasErrorPrefix(err, transient) {
			return false
		}
	}
	return true
}

// warnCapacity logs setups where readers, each blocking a connection and
// holding in-flight room while it waits, can starve one another: more
// readers than in-flight room, or than the client's pool. The readers
// are one per group of streams (multireader.go), and one per exclusive
// partition.
func (c *Consumer) warnCapacity(log *slog.Logger, routes []*route) {
	readers := len(readerGroups(c.rdb, routes))
	for _, rt := range routes {
		if rt.exclusive {
			readers++
		}
	}
	if readers > c.cfg.maxInFlight {
		log.Warn("redstream: more readers (streams a consumer cannot read together) than in-flight room: readers blocked on quiet streams hold the room the others need; raise WithMaxInFlight",
			slog.Int("readers", readers), slog.Int("max_in_flight", c.cfg.maxInFlight))
	}
	if rc, ok := c.rdb.(*redis.Client); ok && rc.Options().PoolSize < readers+2 {
		log.Warn("redstream: the client's pool is smaller than the consumer's readers (one blocked connection each) plus acknowledgements; raise redis.Options.PoolSize",
			slog.Int("readers", readers), slog.Int("pool_size", rc.Options().PoolSize))
	}
}
