package redstream

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

// Inputs taken from bug reports against other Redis Streams consumers,
// each standing for a kind of fault at the edges of the delivery promise.
// Each test failed on the code before the fix it guards.

// concurrency counts a handler's calls and how many ran at once.
type concurrency struct {
	mu           sync.Mutex
	now, peak    int
	calls        int
	release      chan struct{}
	started      chan struct{}
	startedOnce  sync.Once
	cancelledCtx atomic.Bool
}

func newConcurrency() *concurrency {
	return &concurrency{release: make(chan struct{}), started: make(chan struct{})}
}

// enter notes a call starting; leave, one ending.
func (c *concurrency) enter() {
	c.mu.Lock()
	c.now++
	c.calls++
	c.peak = max(c.peak, c.now)
	c.mu.Unlock()
	c.startedOnce.Do(func() { close(c.started) })
}

func (c *concurrency) leave() {
	c.mu.Lock()
	c.now--
	c.mu.Unlock()
}

// block is a handler's body: it runs until release is closed or ctx
// ends, noting which.
func (c *concurrency) block(ctx context.Context) {
	c.enter()
	defer c.leave()
	select {
	case <-c.release:
	case <-ctx.Done():
		c.cancelledCtx.Store(true)
	}
}

func (c *concurrency) stats() (calls, peak int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls, c.peak
}

// lastDelivered returns the group's last-delivered-id.
func lastDelivered(t testing.TB, rdb redis.UniversalClient, stream, group string) string {
	t.Helper()
	groups, err := rdb.XInfoGroups(context.Background(), stream).Result()
	require.NoError(t, err)
	for _, g := range groups {
		if g.Name == group {
			return g.LastDeliveredID
		}
	}
	t.Fatalf("no group %s on %s", group, stream)
	return ""
}

// Input 1: one entry in its handler; an operator rewinds the group with
// XGROUP SETID 0. The consumer reads the entry again with ">": it must not
// start a second handler while the first runs.
func TestEdgeGroupRewindDoesNotStartASecondHandler(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	cc := newConcurrency()
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("only"))
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		if m.ID != id {
			return nil // the marker
		}
		cc.block(ctx)
		return nil
	}))
	startReady(t, c)
	<-cc.started
	require.NoError(t, rdb.XGroupSetID(ctx, stream, "g", "0").Err())
	// The consumer's next read delivers the entry again, moving the
	// group's last-delivered-id back to it.
	eventually(t, 10*time.Second, func() bool { return lastDelivered(t, rdb, stream, "g") == id }, "entry read again after the rewind")
	// And a read after that one shows the reader went past it.
	marker := publishOrders(t, rdb, stream, 1)[0]
	eventually(t, 10*time.Second, func() bool { return lastDelivered(t, rdb, stream, "g") == marker })
	_, peak := cc.stats()
	assert.Equal(t, 1, peak, "two handlers of one entry at once")
	close(cc.release)
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	calls, peak := cc.stats()
	assert.Equal(t, 1, peak)
	assert.Equal(t, 1, calls, "the entry ran once")
	assert.False(t, cc.cancelledCtx.Load())
}

// Input 1, another of its kind: the entry waits for a retry when the group
// is rewound; the reread must not run it beside the retry.
func TestEdgeGroupRewindDuringRetryRunsItOnce(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	var calls atomic.Int64
	failed := make(chan struct{})
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("only"))
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		if calls.Add(1) == 1 {
			close(failed)
			return RetryAfter(time.Second, errors.New("first attempt fails"))
		}
		return nil
	}))
	startReady(t, c)
	<-failed
	require.NoError(t, rdb.XGroupSetID(ctx, stream, "g", "0").Err())
	eventually(t, 10*time.Second, func() bool { return lastDelivered(t, rdb, stream, "g") == id }, "entry read again after the rewind")
	eventually(t, 10*time.Second, func() bool { return calls.Load() >= 2 && pendingCount(t, rdb, stream, "g") == 0 })
	assert.Never(t, func() bool { return calls.Load() > 2 }, 1500*time.Millisecond, 20*time.Millisecond, "the retry ran beside the reread")
}

// Input 2: two Consumers in one process without WithConsumerName. The
// second, started while the first handles a message, must not take the
// first one's entry from "its own" pending list.
func TestEdgeDefaultConsumerNamesAreUnique(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	cc := newConcurrency()
	var bHandled atomic.Int64
	handler := func(by string) HandlerFunc[Order] {
		return func(ctx context.Context, m *Message[Order]) error {
			if m.ID != id {
				if by == "b" {
					bHandled.Add(1)
				}
				return nil // a marker
			}
			cc.block(ctx)
			return nil
		}
	}
	a, err := NewConsumer(rdb, "g", WithBlock(50*time.Millisecond), WithGroupStart("0"))
	require.NoError(t, err)
	require.NoError(t, Handle(a, stream, handler("a")))
	startReady(t, a)
	<-cc.started
	defer close(cc.release)

	b, err := NewConsumer(rdb, "g", WithBlock(50*time.Millisecond), WithGroupStart("0"))
	require.NoError(t, err)
	require.NoError(t, Handle(b, stream, handler("b")))
	require.NotEqual(t, a.Name(), b.Name())
	startReady(t, b)
	// b drains its own pending entries before it reads new ones: once it
	// handled a marker, it has been through them.
	eventually(t, 10*time.Second, func() bool {
		publishOrders(t, rdb, stream, 1)
		return bHandled.Load() > 0
	}, "b handles new entries")
	calls, peak := cc.stats()
	assert.Equal(t, 1, calls, "the in-flight entry ran again")
	assert.Equal(t, 1, peak)
}

// Input 3: a message in its handler when its stream key is deleted (what
// eviction, FLUSHALL or a restart without persistence do). The handler is
// not cancelled; if it fails, the message is dead-lettered from memory
// with its reason, and the loss is reported: never dropped silently.
func TestEdgeStreamDeletedUnderAHeldMessage(t *testing.T) {
	t.Parallel()
	for _, outcome := range []string{"fails", "succeeds"} {
		t.Run(outcome, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Client(t)
			ctx, stream := testCtx(t), uniqueStream(t)
			id := publishOrders(t, rdb, stream, 1)[0]

			obs := &vanishWatch{}
			var reported atomic.Bool
			cc := newConcurrency()
			c := newTestConsumer(t, rdb, "g", append(fastReclaim(150*time.Millisecond), WithGroupStart("0"), WithObserver(obs),
				WithErrorHandler(func(err error) {
					if errors.Is(err, ErrVanished) {
						reported.Store(true)
					}
				}))...)
			require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
				cc.enter()
				defer cc.leave()
				<-cc.release
				if ctx.Err() != nil {
					cc.cancelledCtx.Store(true)
				}
				if outcome == "fails" {
					return errors.New("downstream unavailable")
				}
				return nil
			}))
			startReady(t, c)
			<-cc.started
			require.NoError(t, rdb.Del(ctx, stream).Err())
			eventually(t, 10*time.Second, func() bool { return obs.ids() == id && reported.Load() }, "the vanished message is reported")
			close(cc.release)
			if outcome == "fails" {
				letters := waitDeadLetters(t, rdb, stream, 1)
				assert.Equal(t, "vanished", letters[0].Reason)
				assert.Equal(t, id, letters[0].OriginID)
				assert.Contains(t, letters[0].Fields, "payload")
			} else {
				assert.Never(t, func() bool {
					n, _ := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
					return n > 0
				}, 500*time.Millisecond, 20*time.Millisecond)
			}
			assert.False(t, cc.cancelledCtx.Load(), "the handler of a vanished message is not cancelled: no one else has it")
			calls, _ := cc.stats()
			assert.Equal(t, 1, calls)
		})
	}
}

// Input 3, more of its kind: an operator deletes the consumer (XGROUP
// DELCONSUMER, which drops its pending entries) while it holds a message
// in its handler, and while one waits for a retry.
func TestEdgeConsumerDeletedUnderHeldMessages(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	ids := publishOrders(t, rdb, stream, 2)

	obs := &vanishWatch{}
	release := make(chan struct{})
	var calls sync.Map
	started := make(chan struct{}, 2)
	c := newTestConsumer(t, rdb, "g", append(fastReclaim(150*time.Millisecond), WithGroupStart("0"), WithConsumerName("doomed"), WithObserver(obs))...)
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		n, _ := calls.LoadOrStore(m.ID, new(atomic.Int64))
		k := n.(*atomic.Int64).Add(1)
		if m.ID == ids[0] {
			started <- struct{}{}
			<-release
			return errors.New("fails after its consumer was deleted")
		}
		if k == 1 {
			started <- struct{}{}
			return RetryAfter(time.Hour, errors.New("waits for a retry"))
		}
		return nil
	}))
	startReady(t, c)
	<-started
	<-started
	require.NoError(t, rdb.XGroupDelConsumer(ctx, stream, "g", "doomed").Err())
	eventually(t, 10*time.Second, func() bool { return obs.count() >= 1 }, "reported")
	close(release)
	letters := waitDeadLetters(t, rdb, stream, 1)
	assert.Equal(t, "vanished", letters[0].Reason)
	assert.Equal(t, ids[0], letters[0].OriginID)
	// The one waiting an hour for its retry is not forgotten either: it is
	// dead-lettered when its retry comes, or handed over at shutdown.
	n, _ := calls.Load(ids[1])
	assert.Equal(t, int64(1), n.(*atomic.Int64).Load())
}

// vanishWatch records the Vanished events.
type vanishWatch struct {
	NopObserver
	mu   sync.Mutex
	seen []string
}

func (v *vanishWatch) Vanished(ev Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen = append(v.seen, ev.ID)
}

func (v *vanishWatch) ids() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.seen) == 0 {
		return ""
	}
	return v.seen[0]
}

func (v *vanishWatch) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.seen)
}

// Input 4: a healthy message buffered, never started, by three consumers
// killed in a row has a Redis delivery count of 4. With MaxDeliveries 3 it
// must still reach its handler, once: only handler attempts count.
func TestEdgeDeliveriesWithoutHandlerDoNotDeadLetter(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]
	deliverTo(t, rdb, stream, "g", "killed-1", 1)
	for _, name := range []string{"killed-2", "killed-3", "killed-4"} {
		require.NoError(t, rdb.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: "g", Consumer: name, Messages: []string{id}}).Err())
	}
	require.NoError(t, rdb.Do(ctx, "XCLAIM", stream, "g", "killed-4", 0, id, "IDLE", 3600000, "JUSTID").Err())

	var deliveries atomic.Int64
	c := newTestConsumer(t, rdb, "g", append(fastReclaim(150*time.Millisecond), WithMaxDeliveries(3), WithConsumerName("survivor"))...)
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		deliveries.Store(m.Deliveries)
		return nil
	}))
	startReady(t, c)
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	n, err := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "a message no handler saw was dead-lettered")
	assert.Equal(t, int64(1), deliveries.Load(), "the handler's first attempt")
}

// Input 4, more of its kind: a consumer restarting drains its own pending
// entries; reading them must not count as deliveries, so restarts in a
// row do not push healthy messages towards the dead-letter stream.
func TestEdgeOwnPendingDrainDoesNotCountDeliveries(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	ids := publishOrders(t, rdb, stream, 5)
	deliverTo(t, rdb, stream, "g", "w1", 5)

	// Three restarts of w1 that each stop before handling anything: their
	// handlers are cancelled by the shutdown timeout.
	for range 3 {
		c := newTestConsumer(t, rdb, "g", WithConsumerName("w1"), WithMaxDeliveries(2), WithShutdownTimeout(0))
		var started atomic.Int64
		require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
			started.Add(1)
			<-ctx.Done()
			return ctx.Err()
		}))
		r := startReady(t, c)
		eventually(t, 10*time.Second, func() bool { return started.Load() == int64(len(ids)) })
		require.ErrorIs(t, r.stop(t), ErrShutdownTimeout)
	}
	p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: "-", End: "+", Count: 10}).Result()
	require.NoError(t, err)
	for _, e := range p {
		assert.Equal(t, int64(1), e.RetryCount, "own-pending drain counted a delivery of %s", e.ID)
	}

	handled := newSeen()
	c := newTestConsumer(t, rdb, "g", WithConsumerName("w1"), WithMaxDeliveries(2))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		handled.add(m.ID)
		return nil
	}))
	startReady(t, c)
	eventually(t, 10*time.Second, func() bool { return handled.len() == len(ids) })
	n, err := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
	require.NoError(t, err)
	assert.Zero(t, n)
}

// Input 4, the guard: a message that kills its consumer every time (no
// handler outcome is ever recorded) still ends in the dead-letter stream,
// after MaxDeliveries + CrashLoopDeliveries deliveries, with its reason.
func TestEdgeCrashLoopGuard(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]
	deliverTo(t, rdb, stream, "g", "killed", 1)
	require.NoError(t, rdb.Do(ctx, "XCLAIM", stream, "g", "killed", 0, id, "IDLE", 3600000, "RETRYCOUNT", 3+CrashLoopDeliveries, "JUSTID").Err())

	var calls atomic.Int64
	c := newTestConsumer(t, rdb, "g", append(fastReclaim(150*time.Millisecond), WithMaxDeliveries(3))...)
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		calls.Add(1)
		return nil
	}))
	startReady(t, c)
	letters := waitDeadLetters(t, rdb, stream, 1)
	assert.Equal(t, ReasonCrashLoop, letters[0].Reason)
	assert.Zero(t, calls.Load())
}

// Input 4, failures recorded: a handler that fails once per consumer, on
// consumers that stop after each failure, is dead-lettered after
// MaxDeliveries failures in total, not MaxDeliveries per consumer.
func TestEdgeFailedAttemptsSurviveTheConsumer(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 1)
	const max = 3
	var seen []int64
	for i := range max {
		failed := make(chan struct{})
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("c"+strconv.Itoa(i)), WithMaxDeliveries(max), WithRetryBackoff(time.Hour, time.Hour))
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			seen = append(seen, m.Deliveries)
			close(failed)
			return errors.New("fails")
		}))
		r := startReady(t, c)
		<-failed
		require.NoError(t, r.stop(t))
	}
	assert.Equal(t, []int64{1, 2, 3}, seen, "each consumer sees the attempt number")
	letters, _, err := mustDeadLetters(t, rdb, stream).List(ctx, ListOptions{})
	require.NoError(t, err)
	require.Len(t, letters, 1)
	assert.Equal(t, ReasonMaxDeliveries, letters[0].Reason)
}

// Input 5: a Redis out of memory (noeviction) refuses XGROUP CREATE before
// it would answer BUSYGROUP. A consumer of a group that exists must start
// anyway and drain it: reading and acknowledging is what frees memory.
func TestEdgeConsumerStartsOnAFullRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, stream := testCtx(t), uniqueStream(t)
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, stream, "g", "0").Err())
	publishOrders(t, rdb, stream, 20)
	used, err := rdb.MemoryUsage(ctx, stream).Result()
	require.NoError(t, err)
	require.Positive(t, used)
	info, err := rdb.Info(ctx, "memory").Result()
	require.NoError(t, err)
	require.NoError(t, rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err())
	require.NoError(t, rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(usedMemory(t, info), 10)).Err())
	t.Cleanup(func() { _ = rdb.ConfigSet(context.Background(), "maxmemory", "0").Err() })
	err = rdb.XGroupCreateMkStream(ctx, stream, "g", "0").Err()
	require.Error(t, err)
	require.True(t, redis.HasErrorPrefix(err, "OOM"), "the server refuses writes: %v", err)

	handled := newSeen()
	c := newTestConsumer(t, rdb, "g", WithConsumerName("drainer"))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		handled.add(m.ID)
		return nil
	}))
	r := startReady(t, c)
	eventually(t, 20*time.Second, func() bool { return handled.len() == 20 }, "drained on a full Redis")
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 }, "acknowledged on a full Redis")
	require.NoError(t, r.stop(t))
}

// usedMemory parses used_memory from INFO memory.
func usedMemory(t testing.TB, info string) int64 {
	t.Helper()
	const field = "used_memory:"
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

// Input 2, an explicit name: a second live consumer under a name that one
// of the group already runs under is refused; once the first stops (and
// releases the name), the name is free at once.
func TestEdgeConsumerNameInUseIsRefused(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	noop := func(context.Context, *Message[Order]) error { return nil }
	first := newTestConsumer(t, rdb, "g", WithConsumerName("x"), WithMinIdle(300*time.Millisecond))
	require.NoError(t, Handle(first, stream, noop))
	r := startReady(t, first)

	second := newTestConsumer(t, rdb, "g", WithConsumerName("x"), WithMinIdle(300*time.Millisecond))
	require.NoError(t, Handle(second, stream, noop))
	err := second.Run(testCtx(t))
	require.ErrorIs(t, err, ErrConsumerNameInUse)
	assert.Contains(t, err.Error(), `"x"`)

	other := newTestConsumer(t, rdb, "other-group", WithConsumerName("x"), WithMinIdle(300*time.Millisecond))
	require.NoError(t, Handle(other, stream, noop))
	startReady(t, other) // names are per group

	require.NoError(t, r.stop(t))
	third := newTestConsumer(t, rdb, "g", WithConsumerName("x"), WithMinIdle(time.Minute))
	require.NoError(t, Handle(third, stream, noop))
	startReady(t, third) // with a minute's lease time, only a released lease lets it start
}

// Input 2: the name's lease of a consumer that died (not released) is
// waited for, then taken; a context that ends meanwhile makes Run return
// ErrNotReady.
func TestEdgeConsumerNameOfADeadConsumerIsTakenOver(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	noop := func(context.Context, *Message[Order]) error { return nil }
	key := nameLeaseKey(stream, "g", "x")
	require.NoError(t, rdb.Set(ctx, key, "x#dead", time.Minute).Err())

	waiting := newTestConsumer(t, rdb, "g", WithConsumerName("x"), WithMinIdle(time.Minute))
	require.NoError(t, Handle(waiting, stream, noop))
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err := waiting.Run(short)
	require.ErrorIs(t, err, ErrNotReady)
	assert.ErrorContains(t, err, "waiting for the lease")

	require.NoError(t, rdb.PExpire(ctx, key, 300*time.Millisecond).Err())
	c := newTestConsumer(t, rdb, "g", WithConsumerName("x"), WithMinIdle(time.Second))
	require.NoError(t, Handle(c, stream, noop))
	startReady(t, c)
	holder, err := rdb.Get(ctx, key).Result()
	require.NoError(t, err)
	assert.NotEqual(t, "x#dead", holder)
}

// Input 3, another of its kind: an entry deleted while held, whose pending
// record a reaper's XAUTOCLAIM then cleared (Redis 7 drops the pending
// records of deleted entries it meets, however recently delivered), is
// pending for no one;
// it is still a trimmed entry, not a vanished stream, and is dead-lettered
// as such when its handler fails.
func TestEdgeTrimmedEntryClearedByAnotherReaper(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]
	publishOrders(t, rdb, stream, 1) // keeps the stream (and its max-deleted-entry-id) alive

	obs := &vanishWatch{}
	release, started := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c := newTestConsumer(t, rdb, "g", append(fastReclaim(time.Minute), WithGroupStart("0"), WithObserver(obs), WithConsumerName("holder"))...)
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		if m.ID != id {
			return nil
		}
		once.Do(func() { close(started) })
		<-release
		return errors.New("fails after the trim")
	}))
	startReady(t, c)
	<-started
	require.NoError(t, rdb.XDel(ctx, stream, id).Err())
	// Unless the consumer's own first reaper round was quicker.
	require.NoError(t, rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: stream, Group: "g", Consumer: "other", Start: "0"}).Err())
	p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: id, End: id, Count: 1}).Result()
	require.NoError(t, err)
	require.Empty(t, p, "the pending record was cleared")
	close(release)
	letters := waitDeadLetters(t, rdb, stream, 1)
	assert.Equal(t, ReasonTrimmed, letters[0].Reason)
	assert.Zero(t, obs.count(), "not reported as vanished")
}
