package redstream

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/keys"
	"github.com/redstream/redstream/internal/scripts"
)

// Partition ownership (WithExclusivePartitions): one goroutine, started by
// runner.run when a registration is exclusive and stopped after the last
// acknowledgements, owns the map of owned partitions (runner.owned), the
// member-set heartbeats and the partition leases, and starts and stops the
// readers of the partitions it takes.

// WithExclusivePartitions makes each stream of the registration (each
// partition, with [WithPartitions]) read by one consumer of the group at a
// time, as Kafka assigns partitions: the consumers of the group that handle
// it with this option share its partitions out among themselves, each
// reading only its own, and hand a partition over when one joins or leaves.
// With [WithOrderedKeys] this keeps one key's messages in order across the
// whole group, not only within one consumer.
//
// How: every consumer announces itself in a member set (about every block
// time, [WithBlock]; the set uses the Redis server's clock); the members,
// sorted by name, take partitions in turn (partition i goes to member i mod
// count). A consumer reads a partition only while it holds the partition's
// lease, a key that expires after MinIdle ([WithMinIdle]) unless renewed
// (every MinIdle/3, also while the consumer drains at shutdown). A consumer
// that gives a partition up stops reading it, finishes what it holds of it
// and only then releases the lease; the next owner takes it then (within
// about two block times with the defaults) and first claims what other
// consumers left pending there, handling it, in order, before new entries.
// A consumer that crashes loses its leases after MinIdle.
//
// What a consumer holds of a partition it gives up and has not started
// running, messages waiting for a retry and those held back behind them
// ([WithOrderedKeys]), it lets go at once, pending: the next owner claims
// them with the rest, in order, and runs the retries without waiting for
// their backoffs. Messages buffered or in a handler are finished first.
//
// Every consumer of the group that handles these streams must use this
// option, with stable names ([WithConsumerName]) so that a restart does not
// look like a new member. Consumers beyond the number of partitions stand by.
// A consumer cut off from Redis (a stalled network, a paused process)
// cannot know when it lost a lease. Its reads of new entries are fenced by
// Redis (a script reads only while the lease key names it, so a read that
// arrives late delivers nothing), and it starts no handler of the
// partition past the lease time after its last renewal was sent; those
// messages stay pending for the owner. A handler started in time may still
// run on until its message is claimed by the next owner (its context is
// then cancelled). Idle, an exclusive reader waits for new entries with an
// XREAD and then reads them, one more round trip than a plain reader.
func WithExclusivePartitions() HandleOption {
	return handleOption(func(c *handleConfig) error {
		c.exclusive = true
		return nil
	})
}

// leaseKey is the key of stream's lease in group, in stream's hash slot.
func leaseKey(stream, group string) string { return keys.Lease(stream, group) }

// membersKey is the key of the member set of group's consumers of the
// registration whose first stream is stream.
func membersKey(stream, group string) string {
	return slotted(stream) + ":redstream-members:" + group
}

// slotted returns stream as the start of a key in its hash slot.
func slotted(stream string) string { return keys.Slotted(stream) }

// owned is a partition this consumer holds the lease of, with its reader.
type owned struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the reader has returned
	// leaving is set once the partition is to be given up: the reader is
	// stopped, and the lease goes once nothing of it is held.
	leaving bool
	// renewed is when the lease was last taken or renewed.
	renewed time.Time
}

// ownStep bounds how long a hand-over waits on this consumer: how often it
// looks at partitions it is giving up or wants but finds taken.
func (r *runner) ownStep(ttl time.Duration) time.Duration {
	return max(min(ttl/3, r.c.cfg.block), 10*time.Millisecond)
}

// own runs the partition assignment of exclusive routes. Until ctx ends it
// takes and gives up partitions as the member set changes, starting and
// stopping their readers; after that, while the consumer drains, it only
// renews its leases and its membership; when stop is closed (the last
// acknowledgements are sent) it leaves the member sets and releases its
// leases.
func (r *runner) own(ctx context.Context, stop <-chan struct{}, perRead int) {
	var groups [][]*route // exclusive routes, by registration
	for _, rt := range r.routes {
		if !rt.exclusive {
			continue
		}
		if len(groups) > 0 && groups[len(groups)-1][0].members == rt.members {
			groups[len(groups)-1] = append(groups[len(groups)-1], rt)
			continue
		}
		groups = append(groups, []*route{rt})
	}
	ttl := r.c.cfg.minIdle
	renewEvery := max(ttl/3, 10*time.Millisecond)
	// The member set is read every step, so that joins and departures are
	// seen within about the block time; leases are renewed every MinIdle/3.
	ticker := time.NewTicker(r.ownStep(ttl))
	defer ticker.Stop()
	readerDone := make(chan struct{}, 1)
	members := make([][]string, len(groups)) // nil: unknown
	var lastRenew time.Time
	redisCtx := context.WithoutCancel(ctx)
	for {
		renew := time.Since(lastRenew) >= renewEvery
		if renew {
			lastRenew = time.Now()
		}
		for i, routes := range groups {
			m, err := r.heartbeat(redisCtx, routes[0].members, ttl)
			if err != nil {
				r.report(&OpError{Op: "lease", Stream: routes[0].stream, Group: r.c.group, Err: err})
			}
			members[i] = m // on error, nil: keep what is held, change nothing
			if renew {
				r.renewPartitions(redisCtx, routes, ttl, renewEvery)
			}
		}
		if ctx.Err() == nil {
			for i, routes := range groups {
				if members[i] != nil {
					r.assign(ctx, routes, members[i], ttl, perRead, readerDone)
				}
			}
		}
		done := ctx.Done()
		if ctx.Err() != nil {
			done = nil
		}
		select {
		case <-stop:
			r.releaseLeases()
			return
		case <-done:
		case <-ticker.C:
		case <-readerDone:
		}
	}
}

// renewPartitions extends the leases this consumer holds among routes. A
// lease found taken by another consumer, or not renewed for so long that it
// may have expired before the next try, is given up: its reader stops, and
// the partition is taken again (if it falls to this consumer) only once
// nothing of it is held.
func (r *runner) renewPartitions(ctx context.Context, routes []*route, ttl, renewEvery time.Duration) {
	for _, rt := range routes {
		o := r.owned[rt]
		if o == nil {
			continue
		}
		sent := time.Now()
		lapsed := leaseExpired(rt)
		held, err := r.lease(ctx, rt, "take", ttl)
		switch {
		case err == nil && held && !lapsed:
			o.renewed = sent
			setLeaseUntil(rt, sent, ttl)
			continue
		case err == nil && held && !o.leaving:
			// Taken again after it may have expired: another consumer may
			// have held it meanwhile, and what this one let go past the
			// deadline is pending under its name. Start afresh: give the
			// partition up, and take it again once nothing of it is held.
			r.log.Warn("redstream: partition lease renewed after it may have expired; restarting the partition", slog.String("stream", rt.stream))
			o.renewed = sent
		case err == nil && o.leaving:
			continue // lost already, or given up: released once drained
		case err == nil:
			r.log.Warn("redstream: partition lease lost to another consumer; stopped reading it", slog.String("stream", rt.stream))
			r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: errLeaseLost})
		default:
			r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
			if time.Since(o.renewed) < ttl-renewEvery || o.leaving {
				continue
			}
			r.log.Warn("redstream: partition lease could not be renewed in time; stopped reading it", slog.String("stream", rt.stream))
		}
		if !o.leaving {
			r.stopOwning(rt, o)
		}
	}
}

var errLeaseLost = errors.New("redstream: partition lease taken by another consumer")

// assign takes the partitions of one registration that fall to this
// consumer among members, and gives up the others it holds.
func (r *runner) assign(ctx context.Context, routes []*route, members []string, ttl time.Duration, perRead int, readerDone chan<- struct{}) {
	me := slices.Index(members, r.c.cfg.name)
	for i, rt := range routes {
		mine := me >= 0 && i%len(members) == me
		o := r.owned[rt]
		switch {
		case o == nil && mine:
			r.takePartition(ctx, rt, ttl, perRead, readerDone)
		case o != nil && (o.leaving || !mine):
			r.leavePartition(context.WithoutCancel(ctx), rt, o)
		}
	}
}

// takePartition takes rt's lease if it is free, claims what other
// consumers left pending on it, and starts its reader.
func (r *runner) takePartition(ctx context.Context, rt *route, ttl time.Duration, perRead int, readerDone chan<- struct{}) {
	redisCtx := context.WithoutCancel(ctx)
	sent := time.Now()
	held, err := r.lease(redisCtx, rt, "take", ttl)
	if err != nil {
		r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
		return
	}
	if !held {
		return // its last owner has not let go yet: tried again next step
	}
	setLeaseUntil(rt, sent, ttl)
	if err := r.claimLeftovers(redisCtx, rt); err != nil {
		r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
		_, _ = r.lease(redisCtx, rt, "release", ttl)
		return
	}
	rt.drained.Store(false) // the new reader drains its own pending first
	readCtx, cancel := context.WithCancel(ctx)
	o := &owned{cancel: cancel, done: make(chan struct{}), renewed: time.Now()}
	r.readersMu.Lock()
	if r.readersClosed {
		r.readersMu.Unlock()
		cancel()
		_, _ = r.lease(redisCtx, rt, "release", ttl)
		return
	}
	r.ownReaders.Add(1)
	r.readersMu.Unlock()
	r.owned[rt] = o
	rt.owned.Store(true)
	r.log.Info("redstream: took a partition", slog.String("stream", rt.stream))
	go func() {
		defer r.ownReaders.Done()
		defer close(o.done)
		r.read(readCtx, rt, perRead)
		select {
		case readerDone <- struct{}{}:
		default:
		}
	}()
}

// leavePartition stops reading rt and, once its reader has returned and
// nothing of rt is held, releases its lease; until then the lease is kept
// (and renewed with the others).
func (r *runner) leavePartition(ctx context.Context, rt *route, o *owned) {
	if !o.leaving {
		r.stopOwning(rt, o)
	}
	select {
	case <-o.done:
	default:
		return
	}
	// The reaper claims and dispatches under claimMu: none of its claims
	// can slip between this check and the release.
	if !rt.claimMu.TryLock() {
		return
	}
	defer rt.claimMu.Unlock()
	if r.held.holdsRoute(rt) {
		return
	}
	if _, err := r.lease(ctx, rt, "release", 0); err != nil {
		r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
		return
	}
	delete(r.owned, rt)
	r.log.Info("redstream: gave up a partition", slog.String("stream", rt.stream))
}

// stopOwning starts giving rt up: its reader stops, and what waits in the
// consumer (a retry, messages held back behind it) is let go, pending, for
// the next owner to claim at once, so the hand-over does not wait for
// retry backoffs; what is buffered or in a handler still finishes.
func (r *runner) stopOwning(rt *route, o *owned) {
	o.leaving = true
	o.cancel()
	rt.owned.Store(false)
	select {
	case r.leftRoutes <- rt:
	default: // the retry scheduler has a request for rt already
	}
}

// givenUp reports whether rt is an exclusive route this consumer is not
// (or no longer) reading: what of it would wait is let go instead.
func givenUp(rt *route) bool { return rt.exclusive && !rt.owned.Load() }

// releaseLeases leaves the member sets and gives up every lease still
// held: Run is ending, its workers are done and its last acknowledgements
// sent.
func (r *runner) releaseLeases() {
	left := map[string]bool{}
	for _, rt := range r.routes {
		if !rt.exclusive {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
		if !left[rt.members] {
			left[rt.members] = true
			if err := r.c.rdb.ZRem(ctx, rt.members, r.c.cfg.name).Err(); err != nil {
				r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
			}
		}
		if _, ok := r.owned[rt]; ok {
			if _, err := r.lease(ctx, rt, "release", 0); err != nil {
				r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
			}
			rt.owned.Store(false)
			delete(r.owned, rt)
		}
		cancel()
	}
}

// heartbeat announces this consumer in the member set at key for ttl (on
// the server's clock), drops members whose announcement expired, and
// returns the live members, sorted.
func (r *runner) heartbeat(ctx context.Context, key string, ttl time.Duration) ([]string, error) {
	names, err := scripts.Members.Run(ctx, r.c.rdb, []string{key}, r.c.cfg.name, max(ttl.Milliseconds(), 1)).StringSlice()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// lease runs the lease script on rt's lease with op "take" or "release",
// reporting whether this consumer holds (or held) it.
func (r *runner) lease(ctx context.Context, rt *route, op string, ttl time.Duration) (bool, error) {
	n, err := scripts.Lease.Run(ctx, r.c.rdb, []string{rt.lease}, r.c.cfg.name, op, max(ttl.Milliseconds(), 1)).Int()
	return n == 1, err
}

// claimBatch caps the entries claimed from another consumer per call.
const claimBatch = 500

// claimLeftovers moves to this consumer every entry of rt pending for
// another consumer: holding the lease, this consumer is rt's only reader,
// and a previous owner hands a partition over only once it holds nothing
// of it, so what is left belongs to one that crashed, or shut down with
// retries or held-back messages pending. They come before anything new.
func (r *runner) claimLeftovers(ctx context.Context, rt *route) error {
	summary, err := r.c.rdb.XPending(ctx, rt.stream, r.c.group).Result()
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return nil
	}
	if err != nil {
		return err
	}
	for name, count := range summary.Consumers {
		if count == 0 || name == r.c.cfg.name {
			continue
		}
		for {
			pending, err := r.c.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: rt.stream, Group: r.c.group, Consumer: name, Start: "-", End: "+", Count: claimBatch}).Result()
			if err != nil {
				return err
			}
			if len(pending) == 0 {
				break
			}
			ids := make([]string, len(pending))
			for i, p := range pending {
				ids[i] = p.ID
			}
			// Recorded in the same step, for the owner they were taken
			// from, should it look again (a stalled owner): it lets them go.
			claimed, err := claimTo(ctx, r.c.rdb, rt.stream, r.c.group, r.c.cfg.name, ids)
			if err != nil {
				return err
			}
			r.log.Info("redstream: claimed entries left pending on a partition it took", slog.String("stream", rt.stream), slog.String("from", name), slog.Int("count", len(claimed)))
			if len(pending) < claimBatch {
				break
			}
		}
	}
	return nil
}
