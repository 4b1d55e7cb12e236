package redstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/faultkit"
	"github.com/redstream/redstream/internal/redistest"
)

// batchLog records what a batch handler was given.
type batchLog struct {
	mu      sync.Mutex
	batches [][]string     // IDs of each call, in call order
	calls   map[string]int // calls per ID
	deliv   map[string][]int64
}

func newBatchLog() *batchLog {
	return &batchLog{calls: map[string]int{}, deliv: map[string][]int64{}}
}

func (l *batchLog) add(msgs []*Message[Order]) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
		l.calls[m.ID]++
		l.deliv[m.ID] = append(l.deliv[m.ID], m.Deliveries)
	}
	l.batches = append(l.batches, ids)
}

func (l *batchLog) snapshot() (batches [][]string, calls map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.batches), maps.Clone(l.calls)
}

func TestBatchOptionsAreValidated(t *testing.T) {
	t.Parallel()
	_, rdb := newMiniredis(t)
	fn := func(context.Context, []*Message[Order]) error { return nil }
	for _, tc := range []struct {
		name string
		reg  func(c *Consumer) error
	}{
		{"maxSize 0", func(c *Consumer) error { return HandleBatch(c, "s:a:b", fn, WithBatch(0, time.Second)) }},
		{"negative maxSize", func(c *Consumer) error { return HandleBatch(c, "s:a:b", fn, WithBatch(-1, time.Second)) }},
		{"negative maxWait", func(c *Consumer) error { return HandleBatch(c, "s:a:b", fn, WithBatch(10, -time.Millisecond)) }},
		{"nil handler", func(c *Consumer) error { return HandleBatch[Order](c, "s:a:b", nil) }},
		{"WithBatch on Handle", func(c *Consumer) error {
			return Handle(c, "s:a:b", func(context.Context, *Message[Order]) error { return nil }, WithBatch(10, time.Second))
		}},
		{"maxSize above in-flight room", func(c *Consumer) error {
			return HandleBatch(c, "s:a:b", fn, WithBatch(DefaultMaxInFlight+1, time.Second))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestConsumer(t, rdb, "g")
			assert.ErrorIs(t, tc.reg(c), ErrInvalidOption)
		})
	}
	c := newTestConsumer(t, rdb, "g")
	require.NoError(t, HandleBatch(c, "s:a:b", fn), "defaults")
	assert.ErrorIs(t, HandleBatch(c, "s:a:b", fn, WithBatch(1, 0)), ErrInvalidOption, "second handler of a stream")
}

func TestBatchFailuresHelpers(t *testing.T) {
	t.Parallel()
	f := NewBatchFailures(3)
	assert.NoError(t, f.Err(), "nothing failed: a nil error")
	var nilF *BatchFailures
	assert.NoError(t, nilF.Err())
	f.Fail(1, ErrDeadLetter)
	f.Fail(2, nil)
	err := f.Err()
	require.Error(t, err)
	assert.Equal(t, 2, f.Failed())
	assert.ErrorIs(t, err, ErrDeadLetter, "errors.Is looks through the messages' errors")
	assert.Contains(t, err.Error(), "2 of 3")

	out := batchOutcomes(fmt.Errorf("wrapped: %w", err), 3)
	assert.NoError(t, out[0])
	assert.ErrorIs(t, out[1], ErrDeadLetter)
	assert.Error(t, out[2])

	// A wrong length fails all, without spreading ErrDeadLetter to all.
	out = batchOutcomes(err, 4)
	for _, e := range out {
		assert.Error(t, e)
		assert.NotErrorIs(t, e, ErrDeadLetter)
	}
	plain := errors.New("db down")
	for _, e := range batchOutcomes(plain, 2) {
		assert.Same(t, plain, e)
	}
}

// TestBatchTrickleIsHandedOverAfterMaxWait publishes one message every
// 100 ms to a batch handler with maxWait 50 ms: each is handed over alone,
// about maxWait after it was published.
func TestBatchTrickleIsHandedOverAfterMaxWait(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	const (
		n       = 20
		maxWait = 50 * time.Millisecond
	)
	var (
		mu        sync.Mutex
		sizes     []int
		latencies []time.Duration
	)
	c := newTestConsumer(t, rdb, "g")
	require.NoError(t, HandleBatch(c, stream, func(_ context.Context, msgs []*Message[Order]) error {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(msgs))
		for _, m := range msgs {
			latencies = append(latencies, now.Sub(m.Time()))
		}
		return nil
	}, WithBatch(100, maxWait)))
	startReady(t, c)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	for i := range n {
		_, err := p.Publish(ctx, Order{ID: strconv.Itoa(i)})
		require.NoError(t, err)
		// Not a ticker: one that fell behind would publish two at once.
		require.True(t, sleepCtx(ctx, 100*time.Millisecond))
	}
	eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(latencies) == n })
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })

	mu.Lock()
	defer mu.Unlock()
	// A trickle slower than maxWait goes one message per batch. A reader
	// held up for over 50 ms by a loaded machine reads two at once, which
	// then rightly share a batch: tolerated, rarely.
	single := 0
	for _, s := range sizes {
		if s == 1 {
			single++
		}
		assert.LessOrEqual(t, s, 2, "batch sizes: %v", sizes)
	}
	assert.GreaterOrEqual(t, single, len(sizes)*8/10, "one message per batch: %v", sizes)
	sorted := slices.Sorted(slices.Values(latencies))
	pct := func(p int) time.Duration { return sorted[(len(sorted)-1)*p/100].Round(100 * time.Microsecond) }
	t.Logf("publish to batch handler, maxWait %v, %d messages: p50 %v, p90 %v, p99 %v, max %v", maxWait, n, pct(50), pct(90), pct(99), sorted[len(sorted)-1])
	// The ID's time is truncated to the millisecond: the latency is at
	// least maxWait minus that.
	assert.GreaterOrEqual(t, sorted[0], maxWait-2*time.Millisecond, "a batch waits maxWait for more messages")
	// Generous: a loaded 2-core machine schedules late.
	assert.Less(t, pct(50), maxWait+200*time.Millisecond, "handed over about maxWait after the first message")
}

// batchObserver counts what a batch handler's observer is told.
type batchObserver struct {
	NopObserver
	mu      sync.Mutex
	batches []BatchEvent
	failed  []int
	handled map[string][]error
}

func (o *batchObserver) Handled(ev Event, _ time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.handled == nil {
		o.handled = map[string][]error{}
	}
	o.handled[ev.ID] = append(o.handled[ev.ID], err)
}

func (o *batchObserver) BatchHandled(ev BatchEvent, _ time.Duration, failed int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.batches = append(o.batches, ev)
	o.failed = append(o.failed, failed)
}

// TestBatchWithFailuresAcksTheRestAndRetriesTheFailed hands a 100-message
// batch to a handler that fails 3 of them: the 97 others are acknowledged
// at once, the 3 retried alone until they are dead-lettered after
// MaxDeliveries.
func TestBatchWithFailuresAcksTheRestAndRetriesTheFailed(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	ids := publishOrders(t, rdb, stream, 100)
	failing := map[string]bool{ids[3]: true, ids[50]: true, ids[99]: true}
	const maxDeliveries = 3

	log := newBatchLog()
	obs := &batchObserver{}
	var (
		mwMu    sync.Mutex
		mwSizes []int
	)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMaxDeliveries(maxDeliveries),
		WithRetryBackoff(300*time.Millisecond, 300*time.Millisecond), WithObserver(obs),
		WithMiddleware(func(ctx context.Context, info MessageInfo, next func(context.Context) error) error {
			mwMu.Lock()
			mwSizes = append(mwSizes, info.BatchSize)
			mwMu.Unlock()
			return next(ctx)
		}))
	require.NoError(t, HandleBatch(c, stream, func(_ context.Context, msgs []*Message[Order]) error {
		log.add(msgs)
		f := NewBatchFailures(len(msgs))
		for i, m := range msgs {
			if failing[m.ID] {
				f.Fail(i, fmt.Errorf("order %s rejected", m.Payload.ID))
			}
		}
		return f.Err()
	}, WithBatch(100, time.Second)))
	startReady(t, c)

	// The 97 are acknowledged before the first retry is due.
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 3 }, "97 acknowledged")
	pending, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: "-", End: "+", Count: 10}).Result()
	require.NoError(t, err)
	for _, p := range pending {
		assert.True(t, failing[p.ID], "pending %s is one of the failed", p.ID)
	}

	dlq, err := NewDeadLetters(rdb, stream)
	require.NoError(t, err)
	eventually(t, 15*time.Second, func() bool { n, _ := dlq.Len(ctx); return n == 3 }, "the failing three dead-lettered")
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })

	batches, calls := log.snapshot()
	require.NotEmpty(t, batches)
	assert.Len(t, batches[0], 100, "the first batch is full")
	for _, b := range batches[1:] {
		assert.Len(t, b, 1, "a failed message is retried alone")
	}
	for _, id := range ids {
		if failing[id] {
			assert.Equal(t, maxDeliveries, calls[id], "failed %s handled MaxDeliveries times", id)
			log.mu.Lock()
			assert.Equal(t, []int64{1, 2, 3}, log.deliv[id])
			log.mu.Unlock()
		} else {
			assert.Equal(t, 1, calls[id], "succeeded %s handled once", id)
		}
	}
	letters, _, err := dlq.List(ctx, ListOptions{})
	require.NoError(t, err)
	for _, d := range letters {
		assert.True(t, failing[d.OriginID])
		assert.Equal(t, ReasonMaxDeliveries, d.Reason)
		assert.Contains(t, d.Error, "rejected")
	}

	obs.mu.Lock()
	require.NotEmpty(t, obs.batches)
	assert.Equal(t, 100, obs.batches[0].Size)
	assert.Equal(t, stream, obs.batches[0].Stream)
	assert.Equal(t, 3, obs.failed[0])
	assert.Len(t, obs.handled, 100, "Handled per message")
	assert.Len(t, obs.handled[ids[3]], maxDeliveries)
	obs.mu.Unlock()
	mwMu.Lock()
	assert.Equal(t, 100, mwSizes[0], "middleware wraps the batch once")
	assert.Equal(t, 1, mwSizes[len(mwSizes)-1], "a retry is a batch of one")
	mwMu.Unlock()
}

// TestBatchHandlerErrorOutcomes checks a plain error, ErrDeadLetter and a
// panic, each applied to the whole batch.
func TestBatchHandlerErrorOutcomes(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	ids := publishOrders(t, rdb, stream, 5)
	logs := &faultkit.SyncBuffer{}
	faultkit.DumpOnFailure(t, logs)
	obs := &batchObserver{}
	var calls atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithObserver(obs),
		WithRetryBackoff(20*time.Millisecond, 20*time.Millisecond),
		WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	require.NoError(t, HandleBatch(c, stream, func(_ context.Context, msgs []*Message[Order]) error {
		switch calls.Add(1) {
		case 1:
			panic("boom")
		default:
			return nil
		}
	}, WithBatch(5, time.Second)))
	startReady(t, c)
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 && calls.Load() == 6 })

	obs.mu.Lock()
	for _, id := range ids {
		require.Len(t, obs.handled[id], 2)
		var panicErr *PanicError
		assert.ErrorAs(t, obs.handled[id][0], &panicErr, "every message of a panicking batch fails with the panic")
		assert.NoError(t, obs.handled[id][1])
	}
	obs.mu.Unlock()
	assert.Equal(t, 1, countSubstr(logs.String(), "stack="), "one stack logged per panic:\n%s", logs.String())

	// ErrDeadLetter returned for the batch dead-letters every message.
	stream2 := uniqueStream(t)
	publishOrders(t, rdb, stream2, 4)
	c2 := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	require.NoError(t, HandleBatch(c2, stream2, func(context.Context, []*Message[Order]) error {
		return fmt.Errorf("schema mismatch: %w", ErrDeadLetter)
	}, WithBatch(4, time.Second)))
	start(t, c2)
	dlq, err := NewDeadLetters(rdb, stream2)
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() bool { n, _ := dlq.Len(ctx); return n == 4 })
}

func countSubstr(s, sub string) int {
	n := 0
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			n++
		}
	}
	return n
}

// TestBatchOrderedKeys: a batch holds at most one message per key, and a
// key's messages are handled in stream order, a failed one holding its
// key's later ones back while it is retried.
func TestBatchOrderedKeys(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	const keys, perKey = 5, 20
	p, err := NewProducer[Order](rdb, stream, WithPartitions(2), WithKeyFunc(func(o Order) string { return o.UserID }))
	require.NoError(t, err)
	for i := range perKey {
		for k := range keys {
			_, err := p.Publish(ctx, Order{ID: strconv.Itoa(i), UserID: "k" + strconv.Itoa(k)})
			require.NoError(t, err)
		}
	}
	var (
		mu       sync.Mutex
		order    = map[string][]int{} // handled order per key
		failedOn = map[string]bool{}
		sizes    []int
		bad      []string
	)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConcurrency(4),
		WithRetryBackoff(20*time.Millisecond, 20*time.Millisecond))
	require.NoError(t, HandleBatch(c, stream, func(_ context.Context, msgs []*Message[Order]) error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(msgs))
		seen := map[string]bool{}
		f := NewBatchFailures(len(msgs))
		for i, m := range msgs {
			if seen[m.Key()] {
				bad = append(bad, fmt.Sprintf("key %s twice in one batch", m.Key()))
			}
			seen[m.Key()] = true
			if m.Stream != msgs[0].Stream {
				bad = append(bad, "a batch mixes partitions")
			}
			n, _ := strconv.Atoi(m.Payload.ID)
			// The 5th message of each key fails once.
			if n == 5 && !failedOn[m.Key()] {
				failedOn[m.Key()] = true
				f.Fail(i, errors.New("first try fails"))
				continue
			}
			order[m.Key()] = append(order[m.Key()], n)
		}
		return f.Err()
	}, WithPartitions(2), WithOrderedKeys(), WithBatch(10, 20*time.Millisecond)))
	start(t, c)
	eventually(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, ns := range order {
			total += len(ns)
		}
		return total == keys*perKey
	})
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, bad)
	for k, ns := range order {
		assert.True(t, slices.IsSorted(ns), "key %s in order: %v", k, ns)
		assert.Len(t, ns, perKey)
	}
	assert.Greater(t, slices.Max(sizes), 1, "different keys share batches: %v", sizes)
}

// TestBatchLongBatchIsNotStolenAndRoomIsBounded runs batches longer than
// MinIdle next to a consumer whose reaper runs often: none of their
// messages is taken over; and no more messages are in handlers than
// WithMaxInFlight allows.
func TestBatchLongBatchIsNotStolenAndRoomIsBounded(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	const (
		minIdle     = 200 * time.Millisecond
		maxInFlight = 12
	)
	var inHandlers, most atomic.Int64
	byA, byB := newBatchLog(), newBatchLog()
	a := newTestConsumer(t, rdb, "g", append(fastReclaim(minIdle), WithGroupStart("0"), WithConsumerName("a"),
		WithConcurrency(3), WithMaxInFlight(maxInFlight))...)
	require.NoError(t, HandleBatch(a, stream, func(ctx context.Context, msgs []*Message[Order]) error {
		n := inHandlers.Add(int64(len(msgs)))
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		sleepCtx(ctx, 3*minIdle)
		inHandlers.Add(-int64(len(msgs)))
		byA.add(msgs)
		return ctx.Err()
	}, WithBatch(5, 10*time.Millisecond)))
	ids := publishOrders(t, rdb, stream, 30)
	start(t, a)
	eventually(t, 5*time.Second, func() bool { return inHandlers.Load() > 0 })
	// b's reaper runs every 50ms against a 200ms MinIdle; b shares the
	// stream's new entries with a, but must take nothing a holds.
	b := newTestConsumer(t, rdb, "g", append(fastReclaim(minIdle), WithGroupStart("0"), WithConsumerName("b"))...)
	require.NoError(t, HandleBatch(b, stream, func(_ context.Context, msgs []*Message[Order]) error {
		byB.add(msgs)
		return nil
	}))
	start(t, b)
	eventually(t, 20*time.Second, func() bool {
		_, ca := byA.snapshot()
		_, cb := byB.snapshot()
		return len(ca)+len(cb) == len(ids)
	})
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	_, ca := byA.snapshot()
	_, cb := byB.snapshot()
	for _, id := range ids {
		assert.Equal(t, 1, ca[id]+cb[id], "%s handled once, by a (%d) or b (%d)", id, ca[id], cb[id])
	}
	assert.GreaterOrEqual(t, len(ca), maxInFlight, "a's long batches were not taken over")
	assert.LessOrEqual(t, most.Load(), int64(maxInFlight), "messages in handlers within WithMaxInFlight")
	assert.Greater(t, most.Load(), int64(5), "batches run side by side")
}

// TestBatchShutdownHandsThePartialBatchToTheHandler stops a consumer whose
// batch waits for more messages: the handler gets it at once and Run
// returns nil with nothing pending.
func TestBatchShutdownHandsThePartialBatchToTheHandler(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	publishOrders(t, rdb, stream, 7)
	log := newBatchLog()
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	require.NoError(t, HandleBatch(c, stream, func(_ context.Context, msgs []*Message[Order]) error {
		log.add(msgs)
		return nil
	}, WithBatch(50, time.Hour)))
	r := start(t, c)
	rt := c.routes[0]
	eventually(t, 10*time.Second, func() bool {
		rt.batch.mu.Lock()
		defer rt.batch.mu.Unlock()
		return len(rt.batch.buf) == 7
	}, "the batch waits for more")
	stopped := time.Now()
	require.NoError(t, r.stop(t))
	assert.Less(t, time.Since(stopped), 10*time.Second)
	batches, _ := log.snapshot()
	require.Len(t, batches, 1)
	assert.Len(t, batches[0], 7)
	assert.Zero(t, pendingCount(t, rdb, stream, "g"))
}

// TestHelperBatchConsumer is not a test: TestBatchKilledMidBatchIsRedeliveredElsewhere
// runs the test binary with it as a consumer process that it SIGKILLs in
// the middle of a batch.
func TestHelperBatchConsumer(t *testing.T) {
	addr, stream := os.Getenv("REDSTREAM_BATCH_HELPER_ADDR"), os.Getenv("REDSTREAM_BATCH_HELPER_STREAM")
	if addr == "" {
		t.Skip("helper process only")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	c, err := NewConsumer(rdb, "g", WithGroupStart("0"), WithConsumerName("doomed"), WithMinIdle(300*time.Millisecond), WithBlock(50*time.Millisecond))
	if err != nil {
		panic(err)
	}
	_ = HandleBatch(c, stream, func(ctx context.Context, msgs []*Message[Order]) error {
		rdb.Set(ctx, stream+":batch", len(msgs), 0)
		select {} // hang until killed
	}, WithBatch(10, time.Second))
	_ = c.Run(context.Background())
}

func TestBatchKilledMidBatchIsRedeliveredElsewhere(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	ids := publishOrders(t, rdb, stream, 10)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBatchConsumer$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REDSTREAM_BATCH_HELPER_ADDR="+rdb.Options().Addr, "REDSTREAM_BATCH_HELPER_STREAM="+stream)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, 20*time.Second, func() bool { return rdb.Get(context.Background(), stream+":batch").Val() == "10" }, "child handles a batch of 10")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	assert.Equal(t, int64(10), pendingCount(t, rdb, stream, "g"), "the killed batch is pending")

	log := newBatchLog()
	b := newTestConsumer(t, rdb, "g", append(fastReclaim(300*time.Millisecond), WithConsumerName("survivor"))...)
	require.NoError(t, HandleBatch(b, stream, func(_ context.Context, msgs []*Message[Order]) error {
		log.add(msgs)
		return nil
	}, WithBatch(10, 50*time.Millisecond)))
	start(t, b)
	eventually(t, 10*time.Second, func() bool { _, calls := log.snapshot(); return len(calls) == 10 })
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	_, calls := log.snapshot()
	for _, id := range ids {
		assert.Equal(t, 1, calls[id], "%s handled once by the survivor", id)
	}
}

// TestBatchLostLeaseCancelsTheBatch: when another consumer takes one
// message of a running batch, the batch's context is cancelled; the taken
// message is left to its new owner, and the others are retried here.
func TestBatchLostLeaseCancelsTheBatch(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	ids := publishOrders(t, rdb, stream, 3)
	started := make(chan struct{})
	cancelled := make(chan struct{})
	log := newBatchLog()
	a := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"), WithMinIdle(90*time.Millisecond),
		WithoutReaper(), WithRetryBackoff(20*time.Millisecond, 20*time.Millisecond))
	var calls atomic.Int64
	require.NoError(t, HandleBatch(a, stream, func(ctx context.Context, msgs []*Message[Order]) error {
		if calls.Add(1) > 1 {
			log.add(msgs)
			return nil
		}
		close(started)
		<-ctx.Done() // the lease renewal finds a message taken and cancels
		close(cancelled)
		return ctx.Err()
	}, WithBatch(3, time.Second)))
	start(t, a)
	<-started
	claimed, err := rdb.XClaimJustID(ctx, &redis.XClaimArgs{Stream: stream, Group: "g", Consumer: "b", Messages: []string{ids[1]}}).Result()
	require.NoError(t, err)
	require.Equal(t, []string{ids[1]}, claimed)
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("batch context not cancelled after one of its leases was lost")
	}
	// The other two are retried and handled here; b's stays b's.
	eventually(t, 10*time.Second, func() bool { _, c := log.snapshot(); return c[ids[0]] == 1 && c[ids[2]] == 1 })
	eventually(t, 5*time.Second, func() bool {
		p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: "-", End: "+", Count: 10}).Result()
		return err == nil && len(p) == 1 && p[0].ID == ids[1] && p[0].Consumer == "b"
	}, "only b's message is pending, for b")
	_, c := log.snapshot()
	assert.Zero(t, c[ids[1]], "the taken message is not handled again here")
}
