package redstream

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/streamid"
)

// withClock replaces the producer's clock, so that tests can run it ahead
// of or behind the Redis server's.
func withClock(now func() time.Time) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		c.now = now
		return nil
	})
}

// publishModes publish n orders with each way a Producer has.
var publishModes = map[string]func(ctx context.Context, p *Producer[Order], n int) error{
	"Publish": func(ctx context.Context, p *Producer[Order], n int) error {
		for range n {
			if _, err := p.Publish(ctx, Order{ID: "new"}); err != nil {
				return err
			}
		}
		return nil
	},
	"PublishBatch": func(ctx context.Context, p *Producer[Order], n int) error {
		_, err := p.PublishBatch(ctx, make([]Order, n))
		return err
	},
	"PublishAsync": func(ctx context.Context, p *Producer[Order], n int) error {
		futures := make([]*PublishFuture, n)
		for i := range futures {
			f, err := p.PublishAsync(ctx, Order{ID: "new"})
			if err != nil {
				return err
			}
			futures[i] = f
		}
		for _, f := range futures {
			if _, err := f.Result(); err != nil {
				return err
			}
		}
		return nil
	},
}

// addAt appends n entries to stream with IDs from the millisecond of at on.
func addAt(t *testing.T, rdb redis.UniversalClient, stream string, at time.Time, n int) {
	t.Helper()
	ms := at.UnixMilli()
	for i := range n {
		id := strconv.FormatInt(ms+int64(i), 10) + "-0"
		require.NoError(t, rdb.XAdd(testCtx(t), &redis.XAddArgs{Stream: stream, ID: id, Values: []string{"k", "v"}}).Err())
	}
}

// TestMaxAgeUsesServerClock publishes with WithMaxAge from a producer whose
// clock is an hour ahead of or behind the Redis server's. Ahead, a bound
// taken from the producer's clock would trim the entries it just wrote;
// behind, it would never trim. Every partition starts with 300 entries half
// an hour old (three whole macro-nodes of 100, which an approximate trim
// removes) and 5 entries ten seconds old, which must stay.
func TestMaxAgeUsesServerClock(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	const old, recent, rounds = 300, 5, 3
	for _, skew := range []time.Duration{time.Hour, -time.Hour} {
		for mode, publish := range publishModes {
			for _, partitions := range []int{1, 2} {
				t.Run(fmt.Sprintf("skew=%v/%s/partitions=%d", skew, mode, partitions), func(t *testing.T) {
					t.Parallel()
					ctx, stream := testCtx(t), uniqueStream(t)
					opts := []ProducerOption{WithMaxAge(time.Minute), withClock(func() time.Time { return time.Now().Add(skew) })}
					if partitions > 1 {
						opts = append(opts, WithPartitions(partitions))
					}
					p, err := NewProducer[Order](rdb, stream, opts...)
					require.NoError(t, err)
					server, err := rdb.Time(ctx).Result()
					require.NoError(t, err)
					for _, s := range p.Partitions() {
						addAt(t, rdb, s, server.Add(-30*time.Minute), old)
						addAt(t, rdb, s, server.Add(-10*time.Second), recent)
					}
					cutoff := streamid.FromTime(server.Add(-time.Minute)).String()

					// A round publishes one entry to each partition.
					for round := 1; round <= rounds; round++ {
						require.NoError(t, publish(ctx, p, partitions))
						for _, s := range p.Partitions() {
							kept, err := rdb.XRange(ctx, s, cutoff, "+").Result()
							require.NoError(t, err)
							assert.Len(t, kept, recent+round, "%s after round %d: entries younger than MaxAge, the new ones among them, are kept", s, round)
						}
					}
					for _, s := range p.Partitions() {
						stale, err := rdb.XRange(ctx, s, "-", "("+cutoff).Result()
						require.NoError(t, err)
						assert.Zero(t, len(stale), "%s: entries older than MaxAge are trimmed", s)
					}
				})
			}
		}
	}
}

// TestTrimMaxAgeUsesServerClock runs Trim against a server whose clock is
// two hours behind this process's: entries are aged by the server's.
func TestTrimMaxAgeUsesServerClock(t *testing.T) {
	mr, rdb := newMiniredis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	server := time.Now().Add(-2 * time.Hour)
	mr.SetTime(server)
	addAt(t, rdb, stream, server.Add(-30*time.Minute), 20)
	addAt(t, rdb, stream, server.Add(-10*time.Second), 5)

	res, err := Trim(ctx, rdb, stream, TrimPolicy{MaxAge: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, int64(20), res.Removed, "entries older than a minute by the server's clock go, the others stay")
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
}

// TestServerClockAgeBound checks the bound's arithmetic on a clock the test
// moves: the last ID's millisecond, plus the time since, less MaxAge, never
// past the last ID.
func TestServerClockAgeBound(t *testing.T) {
	base, elapsed := time.Now(), time.Duration(0)
	c := &serverClock{now: func() time.Time { return base.Add(elapsed) }}
	assert.Empty(t, c.ageBound(time.Minute), "no ID yet: no bound")
	c.observe("1000000-7")
	cases := []struct {
		elapsed, maxAge time.Duration
		want            string
	}{
		{0, time.Second, "999000-0"},
		{400 * time.Millisecond, time.Second, "999400-0"},
		{time.Second, time.Second, "1000000-0"},
		{time.Hour, time.Second, "1000000-0"}, // idle: not past the last ID
		{0, time.Hour, ""},                    // before the epoch: nothing to trim
	}
	for _, tc := range cases {
		elapsed = tc.elapsed
		assert.Equal(t, tc.want, c.ageBound(tc.maxAge), "%v after the ID, MaxAge %v", tc.elapsed, tc.maxAge)
	}
	c.seed(time.UnixMilli(5_000_000))
	elapsed = 0
	assert.Equal(t, "999000-0", c.ageBound(time.Second), "TIME does not override an ID")
}

// holdXAdd is a hook that holds every XADD until release is closed, and
// counts the TIME commands.
type holdXAdd struct {
	release chan struct{}
	times   atomic.Int64
}

func (h *holdXAdd) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *holdXAdd) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		switch cmd.Name() {
		case "xadd":
			<-h.release
		case "time":
			h.times.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *holdXAdd) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() == "xadd" {
			<-h.release
		}
		return next(ctx, cmds)
	}
}

// TestMaxAgeWithoutTime publishes with WithMaxAge as a Redis user whose ACL
// allows XADD but not TIME: the publishes made before an ID is back go out
// untrimmed, TIME is tried once, and the next publishes trim by the IDs.
func TestMaxAgeWithoutTime(t *testing.T) {
	t.Parallel()
	admin := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	name, pass := "clock-"+randomSecret(t)[:8], randomSecret(t)
	require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", name, "reset", "on", ">"+pass, "resetchannels", "-@all", "~"+stream, "+xadd").Err())
	t.Cleanup(func() { _ = admin.Do(context.Background(), "ACL", "DELUSER", name).Err() })
	user := redis.NewClient(&redis.Options{Addr: admin.Options().Addr, Username: name, Password: pass, DisableIdentity: true})
	t.Cleanup(func() { _ = user.Close() })
	hook := &holdXAdd{release: make(chan struct{})}
	user.AddHook(hook)

	server, err := admin.Time(ctx).Result()
	require.NoError(t, err)
	addAt(t, admin, stream, server.Add(-30*time.Minute), 300)
	var logs strings.Builder
	p, err := NewProducer[Order](user, stream, WithMaxAge(time.Minute), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	futures := make([]*PublishFuture, 3)
	for i := range futures {
		futures[i], err = p.PublishAsync(ctx, Order{ID: strconv.Itoa(i)})
		require.NoError(t, err, "a clock that cannot be read does not fail the publish")
	}
	close(hook.release)
	for _, f := range futures {
		_, err = f.Result()
		require.NoError(t, err)
	}
	assert.Equal(t, int64(1), hook.times.Load(), "TIME is tried once")
	assert.Equal(t, 1, strings.Count(logs.String(), "reading the server's clock failed"), "logged once:\n%s", logs.String())
	n, err := admin.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(303), n, "the publishes sent before an ID was back do not trim")

	_, err = p.Publish(ctx, Order{ID: "next"})
	require.NoError(t, err)
	n, err = admin.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(4), n, "the next publish trims by the IDs that came back")
}
