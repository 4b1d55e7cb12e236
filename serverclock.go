package redstream

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/streamid"
)

// The producer's view of the Redis server's clock, for WithMaxAge: the
// age bound of a trim at write is computed from it, never from the
// producer's own clock. No goroutines; safe for concurrent use.

// seedClocks reads the server's clock (TIME) for the streams' clocks, so
// that the first publish to a stream trims too: once per server, or per
// node on a cluster, and once per producer. When that fails (an ACL
// without +time, say) it logs, and the publishes to a stream do not trim
// until an ID comes back from it; it is not tried again. After the first
// call it costs an atomic load.
func (p *Producer[T]) seedClocks(ctx context.Context) {
	if p.clocks == nil || p.clocksSeeded.Load() {
		return
	}
	p.seedMu.Lock()
	defer p.seedMu.Unlock()
	if p.clocksSeeded.Load() {
		return
	}
	times := make(map[redis.Cmdable]time.Time)
	for part, c := range p.clocks {
		node, err := clockNode(ctx, p.rdb, p.streams[part])
		t, seen := times[node]
		if err == nil && !seen {
			t, err = node.Time(ctx).Result()
			times[node] = t
		}
		if err != nil {
			if ctx.Err() != nil {
				return // the next publish tries again
			}
			p.cfg.logger.Warn("redstream: WithMaxAge: reading the server's clock failed; publishing without the age trim until entry IDs come back",
				slog.String("stream", p.streams[part]), slog.Any("error", err))
			break
		}
		c.seed(t)
	}
	p.clocksSeeded.Store(true)
}

// clockNode returns the client whose TIME is the clock of the node holding
// key: on a cluster, the key's primary; otherwise rdb (a ring asks one of
// its shards).
func clockNode(ctx context.Context, rdb redis.UniversalClient, key string) (redis.Cmdable, error) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.MasterForKey(ctx, key)
	}
	return rdb, nil
}

// serverTime returns the time of the node holding key, by its clock.
func serverTime(ctx context.Context, rdb redis.UniversalClient, key string) (time.Time, error) {
	node, err := clockNode(ctx, rdb, key)
	if err != nil {
		return time.Time{}, err
	}
	return node.Time(ctx).Result()
}

// learnClock tells partition part's server clock the ID Redis returned for
// a publish ("" for none). An ID given with WithID is the caller's, maybe
// from the producer's clock: it does not count.
func (p *Producer[T]) learnClock(part int, explicitID, id string) {
	if p.clocks != nil && explicitID == "" && id != "" {
		p.clocks[part].observe(id)
	}
}

// serverClock tells the time of the Redis server that holds one stream, for
// [WithMaxAge]: the millisecond part of the last ID Redis generated for the
// stream, plus the time elapsed since on the producer's monotonic clock.
// The producer's wall clock never enters it: entry IDs come from the
// server's clock, and a bound from a producer clock ahead of it would trim
// the entry just written, one behind it would trim nothing. Its methods are
// safe for concurrent use.
type serverClock struct {
	now func() time.Time

	mu sync.Mutex
	ms uint64    // the millisecond part of the last ID
	at time.Time // when that ID came back; zero before any
}

// observe records id, an ID Redis generated. Concurrent round trips may
// report theirs out of order: an older ID makes the clock late by about
// a round trip, which trims a little less.
func (c *serverClock) observe(id string) {
	parsed, err := streamid.Parse(id)
	if err != nil {
		return
	}
	at := c.now()
	c.mu.Lock()
	c.ms, c.at = parsed.Ms, at
	c.mu.Unlock()
}

// seed records t, the server's TIME, unless an ID came back meanwhile. The
// entries written after it have IDs from t on, so its bound is as safe as
// an ID's.
func (c *serverClock) seed(t time.Time) {
	at := c.now()
	c.mu.Lock()
	if c.at.IsZero() && t.UnixMilli() > 0 {
		c.ms, c.at = uint64(t.UnixMilli()), at
	}
	c.mu.Unlock()
}

// ageBound returns the MINID that trims entries older than maxAge by the
// server's clock, or "" when there is nothing to trim or the clock is not
// known. The bound never passes the millisecond of the last ID (or of
// TIME), which later entries' IDs are not below, so whatever happens to
// either clock (a server clock set back, an explicit ID ahead of it that
// Redis then generates IDs after) no entry written since is trimmed; a
// producer idle for longer than maxAge so trims a little less at its next
// publish.
func (c *serverClock) ageBound(maxAge time.Duration) string {
	c.mu.Lock()
	ms, at := c.ms, c.at
	c.mu.Unlock()
	if at.IsZero() {
		return ""
	}
	left := (maxAge - c.now().Sub(at)).Milliseconds()
	switch {
	case left <= 0:
		return streamid.ID{Ms: ms}.String()
	case uint64(left) >= ms:
		return ""
	}
	return streamid.ID{Ms: ms - uint64(left)}.String()
}
