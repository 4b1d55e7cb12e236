package redstream

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
	"github.com/redstream/redstream/internal/slot"
)

// WithExclusivePartitions makes each stream of the registration (each
// partition, with [WithPartitions]) read by one consumer of the group at a
// time, as Kafka assigns partitions: the consumers of the group that handle
// it with this option share its partitions out among themselves, each
// reading only its own, and hand a partition over when one joins or leaves.
// With [WithOrderedKeys] this keeps one key's messages in order across the
// whole group, not only within one consumer.
//
// How: every consumer announces itself in a member set every MinIdle/3
// ([WithMinIdle]); the members, sorted by name, take partitions in turn
// (partition i goes to member i mod count). A consumer reads a partition only
// while it holds the partition's lease, a key that expires after MinIdle
// unless renewed. A consumer that gives a partition up stops reading it,
// finishes (or leaves pending, at shutdown) what it holds of it, retries
// included, and only then releases the lease; the next owner takes it then
// and first claims what consumers no longer in the member set left pending
// there, handling it, in order, before new entries. A consumer that crashes
// loses its leases after MinIdle.
//
// Every consumer of the group that handles these streams must use this
// option, with stable names ([WithConsumerName]) so that a restart does not
// look like a new member. Consumers beyond the number of partitions stand by.
// A consumer cut off from Redis for longer than MinIdle loses its leases;
// until it notices, it and the next owner may both run the partition's
// messages.
func WithExclusivePartitions() HandleOption {
	return handleOption(func(c *handleConfig) error {
		c.exclusive = true
		return nil
	})
}

// leaseKey is the key of stream's lease in group, in stream's hash slot.
func leaseKey(stream, group string) string {
	return slotted(stream) + ":redstream-lease:" + group
}

// membersKey is the key of the member set of group's consumers of the
// registration whose first stream is stream.
func membersKey(stream, group string) string {
	return slotted(stream) + ":redstream-members:" + group
}

// slotted returns stream as the start of a key in its hash slot.
func slotted(stream string) string {
	if _, ok := slot.Tag(stream); ok {
		return stream
	}
	return "{" + stream + "}"
}

// owned is a partition this consumer holds the lease of, with its reader.
type owned struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the reader has returned
	// leaving is set once the partition is to be given up: the reader is
	// stopped, and the lease goes once nothing of it is held.
	leaving bool
}

// own runs the partition assignment of exclusive routes until ctx ends;
// it starts and stops their readers with feeders. The leases still held
// when it returns are released by releaseLeases, after the workers are done.
func (r *runner) own(ctx context.Context, feeders *sync.WaitGroup, perRead int) {
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
	ticker := time.NewTicker(max(ttl/3, 10*time.Millisecond))
	defer ticker.Stop()
	for {
		for _, routes := range groups {
			r.assign(ctx, routes, ttl, feeders, perRead)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// assign brings one registration's leases in line with the member set.
func (r *runner) assign(ctx context.Context, routes []*route, ttl time.Duration, feeders *sync.WaitGroup, perRead int) {
	redisCtx := context.WithoutCancel(ctx)
	members, err := r.heartbeat(redisCtx, routes[0].members, ttl)
	if err != nil {
		r.report(&OpError{Op: "lease", Stream: routes[0].stream, Group: r.c.group, Err: err})
		members = nil // renew what is held, take nothing new
	}
	me := slices.Index(members, r.c.cfg.name)
	for i, rt := range routes {
		mine := me >= 0 && i%len(members) == me
		o := r.owned[rt]
		switch {
		case o == nil && mine && ctx.Err() == nil:
			r.takePartition(ctx, rt, members, ttl, feeders, perRead)
		case o == nil:
		case o.leaving || !mine:
			r.leavePartition(redisCtx, rt, o, ttl)
		default:
			held, err := r.lease(redisCtx, rt, "take", ttl)
			if err != nil {
				r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
				continue
			}
			if !held {
				r.log.Warn("redstream: partition lease lost to another consumer; stopped reading it", slog.String("stream", rt.stream))
				o.cancel()
				rt.owned.Store(false)
				delete(r.owned, rt)
			}
		}
	}
}

// takePartition takes rt's lease if it is free, claims what departed
// members left pending on it, and starts its reader.
func (r *runner) takePartition(ctx context.Context, rt *route, members []string, ttl time.Duration, feeders *sync.WaitGroup, perRead int) {
	redisCtx := context.WithoutCancel(ctx)
	held, err := r.lease(redisCtx, rt, "take", ttl)
	if err != nil {
		r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
		return
	}
	if !held {
		return // its last owner has not let go yet
	}
	if err := r.claimFromDeparted(redisCtx, rt, members); err != nil {
		r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
		_, _ = r.lease(redisCtx, rt, "release", ttl)
		return
	}
	rt.drained.Store(false) // the new reader drains its own pending first
	readCtx, cancel := context.WithCancel(ctx)
	o := &owned{cancel: cancel, done: make(chan struct{})}
	r.owned[rt] = o
	rt.owned.Store(true)
	r.log.Info("redstream: took a partition", slog.String("stream", rt.stream))
	feeders.Go(func() {
		defer close(o.done)
		r.read(readCtx, rt, perRead)
	})
}

// leavePartition stops reading rt and, once its reader has returned and
// nothing of rt is held, releases its lease; until then it keeps the lease.
func (r *runner) leavePartition(ctx context.Context, rt *route, o *owned, ttl time.Duration) {
	if !o.leaving {
		o.leaving = true
		o.cancel()
		rt.owned.Store(false)
	}
	select {
	case <-o.done:
	default:
		_, _ = r.lease(ctx, rt, "take", ttl)
		return
	}
	if r.holds(rt) {
		_, _ = r.lease(ctx, rt, "take", ttl)
		return
	}
	if _, err := r.lease(ctx, rt, "release", ttl); err != nil {
		r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
		return
	}
	delete(r.owned, rt)
	r.log.Info("redstream: gave up a partition", slog.String("stream", rt.stream))
}

// holds reports whether the consumer holds any message of rt.
func (r *runner) holds(rt *route) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.held {
		if k.route == rt {
			return true
		}
	}
	return false
}

// releaseLeases gives up every lease still held and leaves the member
// sets: Run is ending and its workers are done.
func (r *runner) releaseLeases() {
	ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
	defer cancel()
	left := map[string]bool{}
	for _, rt := range r.routes {
		if !rt.exclusive {
			continue
		}
		if !left[rt.members] {
			left[rt.members] = true
			if err := r.c.rdb.ZRem(ctx, rt.members, r.c.cfg.name).Err(); err != nil {
				r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
			}
		}
		if _, ok := r.owned[rt]; !ok {
			continue
		}
		if _, err := r.lease(ctx, rt, "release", 0); err != nil {
			r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
		}
		rt.owned.Store(false)
		delete(r.owned, rt)
	}
}

// heartbeat announces this consumer in the member set at key for ttl,
// drops members whose announcement expired, and returns the live members,
// sorted.
func (r *runner) heartbeat(ctx context.Context, key string, ttl time.Duration) ([]string, error) {
	now := time.Now()
	var members *redis.StringSliceCmd
	_, err := r.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.ZAdd(ctx, key, redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: r.c.cfg.name})
		pipe.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
		pipe.PExpire(ctx, key, 10*ttl)
		members = pipe.ZRange(ctx, key, 0, -1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	names := members.Val()
	slices.Sort(names)
	return names, nil
}

// lease runs the lease script on rt's lease with op "take" or "release",
// reporting whether this consumer holds (or held) it.
func (r *runner) lease(ctx context.Context, rt *route, op string, ttl time.Duration) (bool, error) {
	n, err := scripts.Lease.Run(ctx, r.c.rdb, []string{rt.lease}, r.c.cfg.name, op, max(ttl.Milliseconds(), 1)).Int()
	return n == 1, err
}

// claimBatch caps the entries claimed from a departed member per call.
const claimBatch = 500

// claimFromDeparted moves to this consumer the entries of rt pending for
// consumers that are not live members: they held the partition before and
// crashed, and their entries come before anything new.
func (r *runner) claimFromDeparted(ctx context.Context, rt *route, members []string) error {
	summary, err := r.c.rdb.XPending(ctx, rt.stream, r.c.group).Result()
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return nil
	}
	if err != nil {
		return err
	}
	for name, count := range summary.Consumers {
		if count == 0 || name == r.c.cfg.name || slices.Contains(members, name) {
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
			claimed, err := r.c.rdb.XClaimJustID(ctx, &redis.XClaimArgs{Stream: rt.stream, Group: r.c.group, Consumer: r.c.cfg.name, Messages: ids}).Result()
			if err != nil {
				return err
			}
			r.log.Info("redstream: claimed a departed consumer's entries with its partition", slog.String("stream", rt.stream), slog.String("from", name), slog.Int("count", len(claimed)))
			if len(pending) < claimBatch {
				break
			}
		}
	}
	return nil
}
