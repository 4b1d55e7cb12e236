package redstreamtest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/redstreamtest"
)

func TestMain(m *testing.M) {
	// A go-redis pool that failed to dial retries in a goroutine that
	// sleeps up to a second, even after Close.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

type Order struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"`
}

// backends runs fn on both backends, in parallel.
func backends(t *testing.T, fn func(t *testing.T, r *redstreamtest.Redis)) {
	redstreamtest.OnEachBackend(t, func(t *testing.T, r *redstreamtest.Redis) {
		t.Parallel()
		fn(t, r)
	})
}

// billing is a handler that refuses negative amounts, drops zero ones and
// records the rest.
type billing struct {
	mu      sync.Mutex
	charged []string
}

func (b *billing) handle(_ context.Context, m *redstream.Message[Order]) error {
	switch {
	case m.Payload.Amount < 0:
		return fmt.Errorf("negative amount: %w", redstream.ErrDeadLetter)
	case m.Payload.Amount == 0:
		return redstream.ErrDrop
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.charged = append(b.charged, m.Payload.ID)
	return nil
}

func (b *billing) ids() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.charged...)
}

func newConsumer(t *testing.T, rdb redis.UniversalClient, stream string, h *billing, opts ...redstream.ConsumerOption) *redstream.Consumer {
	base := []redstream.ConsumerOption{redstream.WithBlock(50 * time.Millisecond)}
	c, err := redstream.NewConsumer(rdb, "billing", append(base, opts...)...)
	require.NoError(t, err)
	require.NoError(t, redstream.Handle(c, stream, h.handle))
	return c
}

func TestPublishAndWaitSettlesEveryOutcome(t *testing.T) {
	backends(t, func(t *testing.T, r *redstreamtest.Redis) {
		rdb, stream := r.Client(), r.Stream(t, "orders:order:created")
		h := &billing{}
		redstreamtest.Start(t, newConsumer(t, rdb, stream, h))

		ids := redstreamtest.PublishAndWait(t, rdb, stream, "billing",
			Order{"o-1", 1200}, Order{"o-2", -5}, Order{"o-3", 0}, Order{"o-4", 300})
		require.Len(t, ids, 4)

		// Once WaitHandled returns, the handler's work and Redis agree.
		assert.ElementsMatch(t, []string{"o-1", "o-4"}, h.ids())
		letters := redstreamtest.DeadLetters(t, rdb, stream)
		require.Len(t, letters, 1)
		assert.Equal(t, ids[1], letters[0].OriginID)
		assert.Equal(t, redstream.ReasonHandler, letters[0].Reason)
		pending, err := rdb.XPending(context.Background(), stream, "billing").Result()
		require.NoError(t, err)
		assert.Zero(t, pending.Count)
		redstreamtest.WaitNoPending(t, rdb, stream, "billing")
		redstreamtest.WaitNoPending(t, rdb, stream, "")
		assert.Len(t, redstreamtest.WaitDeadLetters(t, rdb, stream, 1), 1)
	})
}

func TestWaitHandledWaitsForRetries(t *testing.T) {
	backends(t, func(t *testing.T, r *redstreamtest.Redis) {
		rdb, stream := r.Client(), r.Stream(t, "orders:order:created")
		var mu sync.Mutex
		attempts := map[string]int{}
		c, err := redstream.NewConsumer(rdb, "billing", redstream.WithBlock(50*time.Millisecond),
			redstream.WithRetryBackoff(time.Millisecond, 5*time.Millisecond))
		require.NoError(t, err)
		require.NoError(t, redstream.Handle(c, stream, func(_ context.Context, m *redstream.Message[Order]) error {
			mu.Lock()
			defer mu.Unlock()
			if attempts[m.ID]++; attempts[m.ID] < 3 {
				return errors.New("not yet")
			}
			return nil
		}))
		redstreamtest.Start(t, c)
		ids := redstreamtest.PublishAndWait(t, rdb, stream, "billing", Order{"o-1", 1}, Order{"o-2", 2})
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			assert.Equal(t, 3, attempts[id], id)
		}
		assert.Empty(t, redstreamtest.DeadLetters(t, rdb, stream))
	})
}

func TestWaitHandledOnEntriesPublishedBeforeTheGroup(t *testing.T) {
	backends(t, func(t *testing.T, r *redstreamtest.Redis) {
		rdb, stream := r.Client(), r.Stream(t, "orders:order:created")
		ids := redstreamtest.Publish(t, rdb, stream, Order{"o-1", 1}, Order{"o-2", 2})
		h := &billing{}
		redstreamtest.Start(t, newConsumer(t, rdb, stream, h, redstream.WithGroupStart("0")))
		redstreamtest.WaitHandled(t, rdb, stream, "billing", ids...)
		assert.ElementsMatch(t, []string{"o-1", "o-2"}, h.ids())
	})
}

// failing is a testing.TB that records the first failure and ends the
// goroutine that reported it, as t.Fatalf does. Its deadline is a second
// away, so the Wait helpers give up after about a second.
type failing struct {
	testing.TB
	mu       sync.Mutex
	failures []string
	deadline time.Time
}

func (f *failing) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *failing) Deadline() (time.Time, bool) { return f.deadline, true }

// fails runs fn on its own goroutine with a failing TB and returns the
// failure it reported, or "" if it returned normally.
func fails(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	f := &failing{TB: t, deadline: time.Now().Add(1100 * time.Millisecond)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the helper neither returned nor failed within 30s")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failures) == 0 {
		return ""
	}
	return f.failures[0]
}

func TestWaitHandledSaysWhatItSaw(t *testing.T) {
	backends(t, func(t *testing.T, r *redstreamtest.Redis) {
		rdb, stream := r.Client(), r.Stream(t, "orders:order:created")
		ctx := context.Background()

		msg := fails(t, func(tb testing.TB) { redstreamtest.WaitHandled(tb, rdb, stream, "billing", "1-0") })
		assert.Contains(t, msg, "stream "+stream+" does not exist")

		ids := redstreamtest.Publish(t, rdb, stream, Order{"o-1", 1}, Order{"o-2", 2})
		msg = fails(t, func(tb testing.TB) { redstreamtest.WaitHandled(tb, rdb, stream, "billing", ids...) })
		assert.Contains(t, msg, `group "billing" does not exist`)

		require.NoError(t, rdb.XGroupCreate(ctx, stream, "billing", "0").Err())
		msg = fails(t, func(tb testing.TB) { redstreamtest.WaitHandled(tb, rdb, stream, "billing", ids...) })
		assert.Contains(t, msg, "0 of 2 handled")
		assert.Contains(t, msg, "not yet read by the group (it has read up to 0-0): "+ids[0]+" "+ids[1])

		// Read one by a consumer that never acknowledges.
		require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: "billing", Consumer: "stuck", Streams: []string{stream, ">"}, Count: 1,
		}).Err())
		msg = fails(t, func(tb testing.TB) { redstreamtest.WaitHandled(tb, rdb, stream, "billing", ids...) })
		assert.Contains(t, msg, "0 of 2 handled")
		assert.Contains(t, msg, "still pending: "+ids[0]+" (consumer stuck, delivered 1 times")
		assert.Contains(t, msg, "not yet read by the group (it has read up to "+ids[0]+"): "+ids[1])
		msg = fails(t, func(tb testing.TB) { redstreamtest.WaitNoPending(tb, rdb, stream, "billing") })
		assert.Contains(t, msg, `group "billing" holds 1 pending, `+ids[0]+" .. "+ids[0]+" (stuck: 1)")

		require.NoError(t, rdb.XAck(ctx, stream, "billing", ids[0]).Err())
		msg = fails(t, func(tb testing.TB) { redstreamtest.WaitHandled(tb, rdb, stream, "billing", ids...) })
		assert.Contains(t, msg, "1 of 2 handled")
		assert.Equal(t, "", fails(t, func(tb testing.TB) { redstreamtest.WaitHandled(tb, rdb, stream, "billing", ids[0]) }))
		assert.Equal(t, "", fails(t, func(tb testing.TB) { redstreamtest.WaitNoPending(tb, rdb, stream, "billing") }))

		msg = fails(t, func(tb testing.TB) { redstreamtest.WaitNoPending(tb, rdb, stream, "nobody") })
		assert.Contains(t, msg, `group "nobody" does not exist`)
		msg = fails(t, func(tb testing.TB) { redstreamtest.WaitDeadLetters(tb, rdb, stream, 1) })
		assert.Contains(t, msg, "0 there")
		msg = fails(t, func(tb testing.TB) { redstreamtest.WaitHandled(tb, rdb, stream, "billing", "oops") })
		assert.Contains(t, msg, `entry ID "oops"`)
	})
}

func TestWaitNoPendingOnAMissingStream(t *testing.T) {
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	redstreamtest.WaitNoPending(t, r.Client(), r.Stream(t, "nothing:here:yet"), "")
	assert.Empty(t, redstreamtest.DeadLetters(t, r.Client(), "nothing:here:yet"))
}

func TestAdvanceLetsTheReaperTakeOverADeadConsumersEntries(t *testing.T) {
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	rdb, stream := r.Client(), r.Stream(t, "orders:order:created")
	ctx := context.Background()
	ids := redstreamtest.Publish(t, rdb, stream, Order{"o-1", 1}, Order{"o-2", 2})
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "billing", "0").Err())
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: "billing", Consumer: "dead", Streams: []string{stream, ">"},
	}).Err())

	h := &billing{}
	c := newConsumer(t, rdb, stream, h, redstream.WithMinIdle(time.Minute), redstream.WithReapInterval(10*time.Millisecond))
	redstreamtest.Start(t, c)
	// The clock stands still: however often the reaper looks, the
	// entries are not idle yet.
	assert.Never(t, func() bool { return len(h.ids()) > 0 }, 100*time.Millisecond, 10*time.Millisecond)
	before := r.Now()
	r.Advance(t, 2*time.Minute)
	assert.Equal(t, 2*time.Minute, r.Now().Sub(before))
	redstreamtest.WaitHandled(t, rdb, stream, "billing", ids...)
	assert.ElementsMatch(t, []string{"o-1", "o-2"}, h.ids())
}

func TestAdvanceExpiresKeys(t *testing.T) {
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	ctx := context.Background()
	require.NoError(t, r.Client().Set(ctx, "lease", "x", time.Second).Err())
	r.Advance(t, 0)
	assert.Equal(t, int64(1), r.Client().Exists(ctx, "lease").Val())
	r.Advance(t, 2*time.Second)
	assert.Zero(t, r.Client().Exists(ctx, "lease").Val())
	msg := fails(t, func(tb testing.TB) { r.Advance(tb, -time.Second) })
	assert.Contains(t, msg, "only moves forward")
}

func TestAdvanceNeedsMiniredisWhateverTheBackend(t *testing.T) {
	r := redstreamtest.New(t) // real or fallen back to miniredis: the same answer
	msg := fails(t, func(tb testing.TB) { r.Advance(tb, time.Second) })
	assert.Contains(t, msg, "Advance needs a Redis made with redstreamtest.New(t, redstreamtest.Miniredis())")
	assert.True(t, r.Now().IsZero())
}

func TestNewPicksTheBackend(t *testing.T) {
	mini := redstreamtest.New(t, redstreamtest.RealRedis(), redstreamtest.Miniredis())
	assert.False(t, mini.Real())
	require.NotNil(t, mini.MiniredisServer())
	assert.Equal(t, mini.MiniredisServer().Addr(), mini.Addr())
	assert.NoError(t, mini.Client().Ping(context.Background()).Err())

	srv := redstreamtest.New(t, redstreamtest.Miniredis(), redstreamtest.RealRedis())
	assert.True(t, srv.Real())
	assert.Nil(t, srv.MiniredisServer())
	assert.NoError(t, srv.Client().Ping(context.Background()).Err())
	info, err := srv.Client().Info(context.Background(), "server").Result()
	require.NoError(t, err)
	assert.Contains(t, info, "redis_version", "a real server, not miniredis")
}

// Not parallel: it sets REDIS_ADDR for the process.
func TestSharedServerGetsItsKeysDeleted(t *testing.T) {
	own := redstreamtest.New(t, redstreamtest.RealRedis())
	t.Setenv(redstreamtest.EnvAddr, own.Addr())
	ctx := context.Background()

	var stream string
	t.Run("user", func(t *testing.T) {
		r := redstreamtest.New(t)
		require.True(t, r.Real())
		require.Equal(t, own.Addr(), r.Addr())
		stream = r.Stream(t, "orders:order:created")
		assert.True(t, strings.HasPrefix(stream, "orders:order:created:TestSharedServerGetsItsKeysDeleted.user:"), stream)
		assert.NotEqual(t, stream, r.Stream(t, "orders:order:created"))
		tagged := r.Stream(t, "orders:{eu}:created")
		h := &billing{}
		c := newConsumer(t, r.Client(), stream, h)
		require.NoError(t, redstream.Handle(c, tagged, h.handle))
		redstreamtest.Start(t, c)
		redstreamtest.PublishAndWait(t, r.Client(), stream, "billing", Order{"o-1", 1}, Order{"o-2", -1})
		redstreamtest.PublishAndWait(t, r.Client(), tagged, "billing", Order{"o-3", 1}, Order{"o-4", -1})
		require.Len(t, redstreamtest.DeadLetters(t, r.Client(), tagged), 1)
		require.NoError(t, r.Client().Set(ctx, "unrelated", "kept", 0).Err())
	})
	keys, err := own.Client().Keys(ctx, "*").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"unrelated"}, keys)
}

func TestStartFailsWhenRunReturnsEarly(t *testing.T) {
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	c, err := redstream.NewConsumer(r.Client(), "billing") // no handler: Run refuses
	require.NoError(t, err)
	msg := fails(t, func(tb testing.TB) { redstreamtest.Start(tb, c) })
	assert.Contains(t, msg, "consumer Run returned before it was ready")
}

func TestStopReturnsRunsError(t *testing.T) {
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	rdb, stream := r.Client(), r.Stream(t, "orders:order:created")
	stop := redstreamtest.Start(t, newConsumer(t, rdb, stream, &billing{}))
	assert.NoError(t, stop())
	assert.NoError(t, stop(), "a second stop returns the same")
}

func TestPublishOfNothing(t *testing.T) {
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	assert.Nil(t, redstreamtest.Publish[Order](t, r.Client(), "orders:order:created"))
	redstreamtest.WaitHandled(t, r.Client(), "orders:order:created", "billing")
}
