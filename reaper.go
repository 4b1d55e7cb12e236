package redstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/backoff"
	"github.com/redstream/redstream/internal/scripts"
)

// The reaper: inside a Consumer, one goroutine, started by runner.run
// (its first round once the readers have drained the consumer's own
// pending entries) and stopped by Run's context. It owns its cursors into
// each pending list; what it claims goes through dispatch (workers.go).
// Also the standalone Reaper, which owns nothing but its configuration.

// reap is the reaper inside a Consumer: every reap interval it reclaims, on
// each stream, entries idle longer than MinIdle (their consumer is presumed
// dead), hands them to the workers or dead-letters them when they have been
// delivered MaxDeliveries times, and deletes idle consumers that hold
// nothing. It claims no more than there is room for. Its first round runs
// as soon as the readers have gone through the consumer's own pending
// entries (which it must not claim a second time), not one interval later:
// entries handed over by a consumer that shut down are taken at once.
func (r *runner) reap(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-r.drainedAll:
	}
	// The own-pending drain may hold entries marked idle by this name's
	// last run as it shut down (handOff): renew them before a claim would
	// take them again, which Redis counts as a delivery.
	r.renewOnce()
	ticker := time.NewTicker(r.c.cfg.reapInterval)
	defer ticker.Stop()
	cursors := make(map[*route]string, len(r.routes))
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		for _, rt := range r.routes {
			if paused(rt) {
				continue // nothing of a paused stream is claimed
			}
			if rt.exclusive {
				// Only the partition's owner reclaims on it, and it gives
				// the partition up only once nothing it claimed is held.
				rt.claimMu.Lock()
				if !rt.owned.Load() {
					rt.claimMu.Unlock()
					continue
				}
			}
			if rt.drained.Load() {
				cursors[rt] = r.reapStream(ctx, rt, cursors[rt])
			}
			if rt.exclusive {
				rt.claimMu.Unlock()
			}
			if r.c.cfg.idleConsumerTTL > 0 {
				if _, err := deleteIdleConsumers(ctx, r.c.rdb, rt.stream, r.c.group, r.c.cfg.name, r.c.cfg.idleConsumerTTL, r.log); err != nil {
					r.report(&OpError{Op: "cleanup", Stream: rt.stream, Group: r.c.group, Err: err})
				}
			}
		}
	}
}

// maxClaimsPerRound bounds the XAUTOCLAIM calls of one stream in one round.
const maxClaimsPerRound = 10

// reapStream runs XAUTOCLAIM from cursor until the pending list has been
// walked to its end or there is no more room, and returns the cursor to go
// on from next round: a long pending list is walked whole across rounds,
// not only looked at from its head.
func (r *runner) reapStream(ctx context.Context, rt *route, cursor string) string {
	if cursor == "" {
		cursor = "0-0"
	}
	for range maxClaimsPerRound {
		// Wait for room, not only take what is free: a reader blocked on a
		// quiet stream holds the room its read may fill (all of it when
		// MaxInFlight is not above the batch size) and takes it again as
		// soon as it gives it back, so a reaper that never waited would
		// starve and a dead consumer's entries would stay pending for
		// good. Room given back goes to a waiting reaper first.
		n := r.held.takeRoom(ctx, r.c.cfg.reapBatch)
		if n == 0 {
			return cursor
		}
		since := r.held.beginPendingRead()
		sent := monoNow()
		msgs, next, deleted, err := r.c.rdb.XAutoClaimWithDeleted(context.WithoutCancel(ctx), &redis.XAutoClaimArgs{
			Stream:   rt.stream,
			Group:    r.c.group,
			Consumer: r.c.cfg.name,
			MinIdle:  r.c.cfg.minIdle,
			Start:    cursor,
			Count:    int64(n),
		}).Result()
		if err != nil {
			r.held.endPendingRead()
			r.held.giveRoom(n)
			if !redis.HasErrorPrefix(err, "NOGROUP") { // the reader recreates the group
				r.report(&OpError{Op: "reap", Stream: rt.stream, Group: r.c.group, Err: err})
			}
			return cursor
		}
		if len(deleted) > 0 {
			// Redis 7 has already removed them from the pending list.
			r.log.Warn("redstream: reaper cleared pending entries that were deleted from the stream", slog.String("stream", rt.stream), slog.Int("count", len(deleted)))
		}
		r.held.giveRoom(n - len(msgs))
		ok := len(msgs) == 0 || r.claimed(ctx, rt, msgs, since, sent)
		r.held.endPendingRead()
		if !ok {
			return cursor // retry the same entries next round
		}
		cursor = next
		if cursor == "0-0" {
			return cursor
		}
	}
	return cursor
}

// claimed handles entries the reaper took over: each holds one room token.
// It reports false, having given the tokens back, when the takeover could
// not be recorded or their delivery counts or recorded failures could not
// be read: they stay pending (now this consumer's) and are claimed again
// once idle, rather than handled unrecorded or with a wrong count.
// sent is when (monoNow) the claim was sent.
func (r *runner) claimed(ctx context.Context, rt *route, msgs []redis.XMessage, since uint64, sent int64) bool {
	// Recorded, for the consumer they were taken from, should it look
	// again: it lets them go instead of finishing them from memory. Those
	// this consumer holds already too: it stalled, another consumer took
	// them over and stalled or died in turn, and this one took them back;
	// should Redis forget them (this consumer deleted), a record naming the
	// other would make this one, their only holder, let them go. Only the
	// IDs still pending for this consumer are recorded (markClaimed).
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	// A claim that could not be recorded is not handled: the consumer it
	// was taken from would find it pending for no one, unrecorded, and
	// run it again from memory. It stays pending (this consumer's) and is
	// claimed again, and recorded, once idle.
	if err := markClaimed(context.WithoutCancel(ctx), r.c.rdb, rt.stream, r.c.group, r.c.cfg.name, ids); err != nil {
		r.held.giveRoom(len(msgs))
		r.report(&OpError{Op: "reap", Stream: rt.stream, Group: r.c.group, Err: err})
		return false
	}
	entries := make([]*entry, 0, len(msgs))
	for _, m := range msgs {
		if r.held.holds(heldKey{rt, m.ID}) {
			r.held.giveRoom(1) // already this consumer's: see above
			continue
		}
		entries = append(entries, rt.newEntry(m.ID, m.Values, 0))
	}
	if len(entries) == 0 {
		return true
	}
	if err := r.fillEntries(context.WithoutCancel(ctx), rt.stream, entries, true); err != nil {
		r.held.giveRoom(len(entries))
		r.report(&OpError{Op: "reap", Stream: rt.stream, Group: r.c.group, Err: err})
		return false
	}
	entries = slices.DeleteFunc(entries, func(e *entry) bool {
		if e.redisDeliveries == 0 { // finished or taken since the claim
			r.held.giveRoom(1)
			return true
		}
		return false
	})
	r.log.Info("redstream: reclaimed idle pending entries", slog.String("stream", rt.stream), slog.Int("count", len(entries)))
	if obs := r.c.cfg.observer; obs != nil {
		obs.Claimed(rt.stream, r.c.group, len(entries))
	}
	stampLeases(entries, sent)
	r.dispatch(ctx, entries, &since)
	return true
}

// deleteIdleConsumers deletes the group's consumers (other than self) idle
// longer than ttl that hold no pending entries, each checked and deleted in
// one script. Consumers that still hold entries are left: their entries are
// reclaimed once idle, and the consumer is deleted on a later round.
func deleteIdleConsumers(ctx context.Context, rdb redis.UniversalClient, stream, group, self string, ttl time.Duration, log *slog.Logger) (int, error) {
	redisCtx := context.WithoutCancel(ctx)
	consumers, err := rdb.XInfoConsumers(redisCtx, stream, group).Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "NOGROUP") {
			return 0, nil
		}
		return 0, err
	}
	deleted := 0
	for _, c := range consumers {
		if c.Name == self || c.Idle < ttl || c.Pending > 0 {
			continue
		}
		n, err := scripts.DelConsumer.Run(redisCtx, rdb, []string{stream}, group, c.Name).Int()
		if err != nil {
			return deleted, err
		}
		if n == 1 {
			deleted++
			log.Info("redstream: deleted idle consumer", slog.String("stream", stream), slog.String("idle_consumer", c.Name), slog.Duration("idle", c.Idle))
		}
	}
	return deleted, nil
}

// Reaper is a standalone reaper for a consumer group, for a process that
// does not consume (an operator's job, say). It dead-letters pending entries
// idle for MinIdle whose handler failed MaxDeliveries times (the consumer
// died before it could dead-letter them) or that Redis delivered more than
// MaxDeliveries + [CrashLoopDeliveries] times (consumers died holding
// them), and deletes idle consumers that hold nothing. It does not take over entries below the delivery limit: the
// reapers inside the group's consumers do, because only they can handle
// them. Create it with [NewReaper]; it is safe for concurrent use, and
// several reapers (standalone or in consumers) may run on one group: the
// dead-letter script moves each entry once.
type Reaper struct {
	rdb     redis.UniversalClient
	group   string
	streams []string
	cfg     reaperConfig
	log     *slog.Logger
}

// ReapStats counts what one reaper round did.
type ReapStats struct {
	// DeadLettered entries were moved to their dead-letter stream.
	DeadLettered int
	// Deleted entries were gone from the stream (trimmed while pending) and
	// were cleared from the pending list.
	Deleted int
	// ConsumersDeleted idle consumers holding nothing were removed.
	ConsumersDeleted int
}

// NewReaper returns a standalone reaper of group on streams. It accepts the
// [ReclaimOption] options (MinIdle, interval, batch, max deliveries, idle
// consumer TTL, error handler, periodic trim) and the [Option] options
// ([WithLogger], [WithObserver]); it decodes no payload, so it takes no
// [PayloadOption]. The error wraps
// [ErrInvalidOption] or [ErrInvalidStreamName].
func NewReaper(rdb redis.UniversalClient, group string, streams []string, opts ...ReaperOption) (*Reaper, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalidOption)
	}
	if group == "" {
		return nil, fmt.Errorf("%w: empty group name", ErrInvalidOption)
	}
	if len(streams) == 0 {
		return nil, fmt.Errorf("%w: no streams", ErrInvalidOption)
	}
	for _, s := range streams {
		if err := ValidateStream(s); err != nil {
			return nil, err
		}
	}
	cfg, err := newReaperConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Reaper{
		rdb: rdb, group: group, streams: append([]string(nil), streams...), cfg: cfg,
		log: cfg.logger.With(slog.String("group", group)),
	}, nil
}

// Run reaps every reap interval, and appends due scheduled messages
// ([WithDelay]) every schedule poll ([WithSchedulePoll]), until ctx ends,
// then returns nil. Redis failures are logged, passed to the error
// callback and retried next round.
func (rp *Reaper) Run(ctx context.Context) error {
	defer rp.startMover(ctx)()
	if rp.cfg.trim != nil {
		var trimmer sync.WaitGroup
		defer trimmer.Wait()
		trimCtx, stop := context.WithCancel(ctx)
		defer stop()
		trimmer.Go(func() {
			trimLoop(trimCtx, rp.rdb, rp.streams, *rp.cfg.trim, rp.cfg.trimEvery, rp.log, rp.cfg.observer, func(err *OpError) {
				if rp.cfg.onError != nil {
					rp.cfg.onError(err)
				}
			})
		})
	}
	ticker := time.NewTicker(rp.cfg.reapInterval)
	defer ticker.Stop()
	errBackoff := backoff.Policy{Base: rp.cfg.errorBackoffMin, Max: rp.cfg.errorBackoffMax}
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		if _, err := rp.ReapOnce(ctx); err != nil {
			failures++
			if !sleepCtx(ctx, errBackoff.Delay(failures)) {
				return nil
			}
			continue
		}
		failures = 0
	}
}

// ReapOnce runs one round over every stream: it walks each pending list
// whole and returns what it did. Errors are also reported to the error
// callback; the round goes on with the next stream.
func (rp *Reaper) ReapOnce(ctx context.Context) (ReapStats, error) {
	var stats ReapStats
	var errs []error
	for _, stream := range rp.streams {
		if err := rp.reapStream(ctx, stream, &stats); err != nil {
			errs = append(errs, rp.fail("reap", stream, err))
		}
		if rp.cfg.idleConsumerTTL > 0 {
			n, err := deleteIdleConsumers(ctx, rp.rdb, stream, rp.group, "", rp.cfg.idleConsumerTTL, rp.log)
			stats.ConsumersDeleted += n
			if err != nil {
				errs = append(errs, rp.fail("cleanup", stream, err))
			}
		}
	}
	return stats, errors.Join(errs...)
}

func (rp *Reaper) fail(op, stream string, err error) error {
	opErr := &OpError{Op: op, Stream: stream, Group: rp.group, Err: err}
	refreshTopology(rp.rdb, err)
	rp.log.Warn("redstream: "+op+" failed", slog.String("stream", stream), slog.Any("error", err))
	if rp.cfg.onError != nil {
		rp.cfg.onError(opErr)
	}
	return opErr
}

// attempts returns the failed handler attempts recorded for the pending
// entries Redis delivered MaxDeliveries times or more (only those can have
// failed that often), by ID.
func (rp *Reaper) attempts(ctx context.Context, stream string, pending []redis.XPendingExt) (map[string]int64, error) {
	var ids []string
	for _, p := range pending {
		if p.RetryCount >= int64(rp.cfg.maxDeliveries) {
			ids = append(ids, p.ID)
		}
	}
	out := make(map[string]int64, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	vals, err := rp.rdb.HMGet(ctx, attemptsKey(stream, rp.group), ids...).Result()
	if err != nil {
		return nil, err
	}
	for i, v := range vals {
		out[ids[i]] = parseAttempts(v)
	}
	return out, nil
}

// reapStream walks the pending entries idle at least MinIdle and
// dead-letters those whose handler failed MaxDeliveries times, and those
// Redis delivered more than MaxDeliveries + CrashLoopDeliveries times.
func (rp *Reaper) reapStream(ctx context.Context, stream string, stats *ReapStats) error {
	start := "-"
	for ctx.Err() == nil {
		pending, err := rp.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: stream, Group: rp.group, Idle: rp.cfg.minIdle,
			Start: start, End: "+", Count: int64(rp.cfg.reapBatch),
		}).Result()
		if err != nil {
			if redis.HasErrorPrefix(err, "NOGROUP") {
				return nil
			}
			return err
		}
		attempts, err := rp.attempts(ctx, stream, pending)
		if err != nil {
			return err
		}
		for _, p := range pending {
			var reason string
			switch {
			case attempts[p.ID] >= int64(rp.cfg.maxDeliveries):
				reason = ReasonMaxDeliveries
			case p.RetryCount > int64(rp.cfg.maxDeliveries+CrashLoopDeliveries):
				reason = ReasonCrashLoop
			default:
				continue
			}
			// The script checks again that the entry is still pending,
			// still the same consumer's and still idle.
			res, dlID, err := deadLetterMove(ctx, rp.rdb, stream, rp.group, p.Consumer, p.ID, reason, "", rp.cfg.minIdle, p.RetryCount, byOther, nil)
			if err != nil {
				return err
			}
			switch res {
			case moved:
				stats.DeadLettered++
				rp.log.Warn("redstream: message dead-lettered", slog.String("stream", stream), slog.String("id", p.ID),
					slog.String("reason", reason), slog.Int64("deliveries", p.RetryCount), slog.Int64("failed_attempts", attempts[p.ID]), slog.String("dead_letter_id", dlID))
				if obs := rp.cfg.observer; obs != nil {
					obs.DeadLettered(Event{Stream: stream, Group: rp.group, Consumer: p.Consumer, ID: p.ID, Deliveries: p.RetryCount}, reason)
				}
			case movedGone:
				stats.Deleted++
			}
		}
		if len(pending) < rp.cfg.reapBatch {
			return ctx.Err()
		}
		var more bool
		if start, more = startAfter(pending[len(pending)-1].ID); !more {
			return ctx.Err()
		}
	}
	return ctx.Err()
}
