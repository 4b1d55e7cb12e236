package redstream

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/redstream/redstream/internal/faultkit"
	"github.com/redstream/redstream/internal/redistest"
)

// seen collects handled message IDs, safe for concurrent handlers.
type seen struct{ s *faultkit.Seen }

func newSeen() *seen { return &seen{faultkit.NewSeen()} }

func (s *seen) add(id string)       { s.s.Add(id) }
func (s *seen) len() int            { return s.s.Len() }
func (s *seen) count(id string) int { return s.s.Count(id) }

func publishOrders(t testing.TB, rdb redis.UniversalClient, stream string, n int) []string {
	t.Helper()
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	ids := make([]string, n)
	for i := range n {
		ids[i], err = p.Publish(context.Background(), Order{ID: strconv.Itoa(i), UserID: "u", Amount: float64(i)})
		require.NoError(t, err)
	}
	return ids
}

func TestRoundTripTypedDecode(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		stream := uniqueStream(t)
		c := newTestConsumer(t, rdb, "billing")
		var (
			mu  sync.Mutex
			got = map[string]*Message[Order]{}
		)
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			mu.Lock()
			defer mu.Unlock()
			got[m.ID] = m
			return nil
		}))
		// The group starts at "$": wait until it exists before publishing.
		r := startReady(t, c)
		require.True(t, groupExists(rdb, stream, "billing"), "Ready means the group exists")
		ids := publishOrders(t, rdb, stream, 20)

		eventually(t, 10*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) == 20
		})
		eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "billing") == 0 }, "all acked")
		require.NoError(t, r.stop(t))

		mu.Lock()
		defer mu.Unlock()
		for i, id := range ids {
			m := got[id]
			require.NotNil(t, m, "id %s", id)
			assert.Equal(t, stream, m.Stream)
			assert.Equal(t, Order{ID: strconv.Itoa(i), UserID: "u", Amount: float64(i)}, m.Payload)
			assert.Equal(t, strconv.Itoa(i), m.Header("orderId"))
			assert.Equal(t, int64(1), m.Deliveries)
			assert.False(t, m.Time().IsZero())
		}
	})
}

func groupExists(rdb redis.UniversalClient, stream, group string) bool {
	ok, err := lookupGroup(context.Background(), rdb, stream, group)
	return err == nil && ok
}

func TestUntypedHandlerGetsAllFields(t *testing.T) {
	_, rdb := newMiniredis(t)
	stream := uniqueStream(t)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	got := make(chan Fields, 1)
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Fields]) error {
		got <- m.Payload
		return nil
	}))
	p, err := NewProducer[Fields](rdb, stream)
	require.NoError(t, err)
	_, err = p.Publish(testCtx(t), Fields{"a": "1", "b": "2"})
	require.NoError(t, err)
	start(t, c)
	select {
	case f := <-got:
		assert.Equal(t, Fields{"a": "1", "b": "2"}, f)
	case <-time.After(10 * time.Second):
		t.Fatal("untyped handler not called")
	}
}

func TestConsumersShareWorkWithoutDuplicates(t *testing.T) {
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	const n = 600
	publishOrders(t, rdb, stream, n)

	handled := newSeen()
	var perConsumer [3]atomic.Int64
	for i := range perConsumer {
		c := newTestConsumer(t, rdb, "workers", WithGroupStart("0"), WithConsumerName("w"+strconv.Itoa(i)), WithBatchSize(10), WithConcurrency(2))
		require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
			handled.add(m.ID)
			perConsumer[i].Add(1)
			// A little work per message, so every consumer gets a share.
			sleepCtx(ctx, time.Millisecond)
			return nil
		}))
		start(t, c)
	}
	eventually(t, 30*time.Second, func() bool { return handled.len() == n })
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "workers") == 0 })
	for id, times := range handled.s.Counts() {
		assert.Equal(t, 1, times, "message %s handled more than once", id)
	}
	total := int64(0)
	for i := range perConsumer {
		got := perConsumer[i].Load()
		assert.Positive(t, got, "consumer w%d got no share", i)
		total += got
	}
	assert.Equal(t, int64(n), total)
}

func TestAckOnlyAfterSuccess(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		stream := uniqueStream(t)
		ids := publishOrders(t, rdb, stream, 4)
		failID := ids[2]
		var errs atomic.Int64
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithRetryBackoff(time.Hour, time.Hour), WithErrorHandler(func(err error) {
			var op *OpError
			if errors.As(err, &op) && op.Op == "handle" && op.ID == failID {
				errs.Add(1)
			}
		}))
		handled := newSeen()
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			handled.add(m.ID)
			if m.ID == failID {
				return errors.New("payment provider down")
			}
			return nil
		}))
		r := start(t, c)
		eventually(t, 10*time.Second, func() bool { return handled.len() == 4 && errs.Load() == 1 })
		require.NoError(t, r.stop(t))

		pending, err := rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: "-", End: "+", Count: 10}).Result()
		require.NoError(t, err)
		require.Len(t, pending, 1, "only the failed message stays pending")
		assert.Equal(t, failID, pending[0].ID)
		assert.Equal(t, 1, handled.count(failID), "retried only after the backoff")
	})
}

func TestPanicIsRecoveredAndLeavesMessagePending(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		stream := uniqueStream(t)
		ids := publishOrders(t, rdb, stream, 3)
		panicked := make(chan *PanicError, 1)
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithRetryBackoff(time.Hour, time.Hour), WithErrorHandler(func(err error) {
			var p *PanicError
			if errors.As(err, &p) {
				panicked <- p
			}
		}))
		handled := newSeen()
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			if m.ID == ids[0] {
				panic("nil map somewhere")
			}
			handled.add(m.ID)
			return nil
		}))
		r := start(t, c)
		select {
		case p := <-panicked:
			assert.Equal(t, "nil map somewhere", p.Value)
			assert.Contains(t, string(p.Stack), "consumer_test.go", "stack points at the handler")
		case <-time.After(10 * time.Second):
			t.Fatal("panic not reported")
		}
		eventually(t, 10*time.Second, func() bool { return handled.len() == 2 }, "the consumer keeps going after a panic")
		eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 1 })
		require.NoError(t, r.stop(t))
	})
}

func TestGracefulShutdownFinishesInFlightHandlers(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		stream := uniqueStream(t)
		publishOrders(t, rdb, stream, 3)
		started := make(chan struct{}, 3)
		release := make(chan struct{})
		var finished atomic.Int64
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConcurrency(3))
		require.NoError(t, Handle(c, stream, func(ctx context.Context, _ *Message[Order]) error {
			started <- struct{}{}
			<-release
			if ctx.Err() != nil {
				return ctx.Err()
			}
			finished.Add(1)
			return nil
		}))
		r := start(t, c)
		for range 3 {
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("handlers did not start")
			}
		}
		stopped := make(chan error, 1)
		go func() { stopped <- r.stop(t) }()
		select {
		case err := <-stopped:
			t.Fatalf("Run returned (%v) while handlers were still running", err)
		case <-time.After(200 * time.Millisecond):
		}
		close(release)
		require.NoError(t, <-stopped)
		assert.Equal(t, int64(3), finished.Load())
		assert.Zero(t, pendingCount(t, rdb, stream, "g"), "acks are flushed before Run returns")
	})
}

func TestShutdownTimeoutCancelsHandlers(t *testing.T) {
	_, rdb := newMiniredis(t)
	stream := uniqueStream(t)
	publishOrders(t, rdb, stream, 1)
	started := make(chan struct{})
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithShutdownTimeout(100*time.Millisecond))
	require.NoError(t, Handle(c, stream, func(ctx context.Context, _ *Message[Order]) error {
		close(started)
		<-ctx.Done() // a handler that only stops when told to
		return ctx.Err()
	}))
	r := start(t, c)
	<-started
	begin := time.Now()
	err := r.stop(t)
	assert.ErrorIs(t, err, ErrShutdownTimeout)
	assert.Less(t, time.Since(begin), 5*time.Second)
	assert.Equal(t, int64(1), pendingCount(t, rdb, stream, "g"), "a cancelled handler's message stays pending")
}

func TestRestartDrainsOwnPendingFirst(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		stream := uniqueStream(t)
		ids := publishOrders(t, rdb, stream, 5)

		// First run: every handler fails, so all five stay pending for "w1".
		first := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("w1"))
		var attempts atomic.Int64
		require.NoError(t, Handle(first, stream, func(context.Context, *Message[Order]) error {
			attempts.Add(1)
			return errors.New("db down")
		}))
		r := start(t, first)
		eventually(t, 10*time.Second, func() bool { return attempts.Load() == 5 })
		require.NoError(t, r.stop(t))
		require.Equal(t, int64(5), pendingCount(t, rdb, stream, "g"))

		// Restart under the same name: the pending five come back first,
		// with their delivery counts, then new entries.
		newIDs := publishOrders(t, rdb, stream, 2)
		second := newTestConsumer(t, rdb, "g", WithConsumerName("w1"), WithConcurrency(1))
		var (
			mu    sync.Mutex
			order []string
			deliv = map[string]int64{}
		)
		require.NoError(t, Handle(second, stream, func(_ context.Context, m *Message[Order]) error {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, m.ID)
			deliv[m.ID] = m.Deliveries
			return nil
		}))
		start(t, second)
		eventually(t, 10*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(order) == 7
		})
		eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, append(append([]string{}, ids...), newIDs...), order, "own pending entries first, in order")
		for _, id := range ids {
			assert.Equal(t, int64(2), deliv[id], "redelivery counted")
		}
		for _, id := range newIDs {
			assert.Equal(t, int64(1), deliv[id])
		}
	})
}

func TestNoGroupRecoveryAfterStreamDeleted(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		var readErrs atomic.Int64
		c := newTestConsumer(t, rdb, "g", WithErrorHandler(func(error) { readErrs.Add(1) }))
		handled := newSeen()
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			handled.add(m.Payload.ID)
			return nil
		}))
		start(t, c)
		eventually(t, 5*time.Second, func() bool { return groupExists(rdb, stream, "g") })
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)
		_, err = p.Publish(ctx, Order{ID: "before"})
		require.NoError(t, err)
		eventually(t, 10*time.Second, func() bool { return handled.count("before") == 1 })

		// Delete the stream under the running consumer, then write to it
		// again: the consumer recreates its group and handles the new entry.
		require.NoError(t, rdb.Del(ctx, stream).Err())
		_, err = p.Publish(ctx, Order{ID: "after"})
		require.NoError(t, err)
		eventually(t, 10*time.Second, func() bool { return handled.count("after") == 1 }, "consumer recovered from NOGROUP")
		assert.Less(t, readErrs.Load(), int64(20), "no hot loop on NOGROUP")
	})
}

func TestRunErrors(t *testing.T) {
	_, rdb := newMiniredis(t)
	c := newTestConsumer(t, rdb, "g")
	assert.ErrorIs(t, c.Run(testCtx(t)), ErrNoHandlers)
	select {
	case <-c.Ready():
		t.Fatal("Ready closed although Run failed")
	default:
	}

	c = newTestConsumer(t, rdb, "g")
	stream := uniqueStream(t)
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
	assert.ErrorIs(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }), ErrInvalidOption, "second handler for a stream")
	assert.ErrorIs(t, Handle[Order](c, uniqueStream(t), nil), ErrInvalidOption)
	assert.ErrorIs(t, Handle(c, "a{}b", func(context.Context, *Message[Order]) error { return nil }), ErrInvalidStreamName)
	r := start(t, c)
	eventually(t, 5*time.Second, func() bool { return groupExists(rdb, stream, "g") })
	assert.ErrorIs(t, c.Run(testCtx(t)), ErrAlreadyStarted)
	assert.ErrorIs(t, Handle(c, uniqueStream(t), func(context.Context, *Message[Order]) error { return nil }), ErrInvalidOption, "Handle after Run")
	require.NoError(t, r.stop(t))
	assert.ErrorIs(t, c.Run(testCtx(t)), ErrAlreadyStarted, "a Consumer runs once")
}

func TestRunReturnsErrorForWrongTypeKey(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		require.NoError(t, rdb.Set(ctx, stream, "a string", 0).Err())
		c := newTestConsumer(t, rdb, "g")
		require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
		err := c.Run(ctx)
		var op *OpError
		require.ErrorAs(t, err, &op)
		assert.Equal(t, "create-group", op.Op)
		assert.True(t, redis.HasErrorPrefix(err, "WRONGTYPE"), "%v", err)
	})
}

func TestRunBeforeRedisIsReachableEndsWithContext(t *testing.T) {
	// Nothing listens on this address: the start is retried with backoff
	// until ctx ends, and Run returns the failure that kept it from
	// starting.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	var failures atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithErrorHandler(func(error) { failures.Add(1) }))
	require.NoError(t, Handle(c, uniqueStream(t), func(context.Context, *Message[Order]) error { return nil }))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := c.Run(ctx)
	require.ErrorIs(t, err, ErrNotReady)
	var opErr *OpError
	require.ErrorAs(t, err, &opErr, "the failure that kept it from starting")
	assert.Contains(t, err.Error(), "connection refused")
	assert.Positive(t, failures.Load())
	assert.Less(t, failures.Load(), int64(20), "backoff, not a hot loop")
}

func TestConsumerOptionErrors(t *testing.T) {
	_, rdb := newMiniredis(t)
	cases := map[string]ConsumerOption{
		"empty name":        WithConsumerName(""),
		"zero concurrency":  WithConcurrency(0),
		"zero batch":        WithBatchSize(0),
		"zero in-flight":    WithMaxInFlight(0),
		"tiny block":        WithBlock(time.Microsecond),
		"negative shutdown": WithShutdownTimeout(-1),
		"bad group start":   WithGroupStart("latest"),
		"bad backoff":       WithErrorBackoff(time.Second, time.Millisecond),
		"nil codec":         WithCodec(nil),
	}
	for name, opt := range cases {
		_, err := NewConsumer(rdb, "g", opt)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
	}
	_, err := NewConsumer(nil, "g")
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewConsumer(rdb, "")
	assert.ErrorIs(t, err, ErrInvalidOption)

	c, err := NewConsumer(rdb, "g")
	require.NoError(t, err)
	assert.Regexp(t, `^.+-\d+$`, c.Name(), "default name is hostname-pid")
	assert.Equal(t, "g", c.Group())
}

func TestInFlightIsBounded(t *testing.T) {
	_, rdb := newMiniredis(t)
	stream := uniqueStream(t)
	publishOrders(t, rdb, stream, 200)
	release := make(chan struct{})
	var inHandler atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConcurrency(4), WithMaxInFlight(10), WithBatchSize(50))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		inHandler.Add(1)
		<-release
		return nil
	}))
	start(t, c)
	eventually(t, 5*time.Second, func() bool { return inHandler.Load() == 4 })
	// With handlers stuck, the consumer holds at most 10 messages: the
	// group's pending list (delivered, not acked) stops growing there.
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 10 })
	assert.Never(t, func() bool { return pendingCount(t, rdb, stream, "g") > 10 }, 200*time.Millisecond, 10*time.Millisecond)
	close(release)
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 && inHandler.Load() == 200 })
}

func TestNoGoroutineLeakAfterRun(t *testing.T) {
	// Not parallel: goleak compares against the goroutines of this test
	// only, taken after the shared redis-server (and its waiter) started.
	rdb := redistest.Client(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	stream := uniqueStream(t)
	publishOrders(t, rdb, stream, 50)
	for range 5 {
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
		var n atomic.Int64
		require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { n.Add(1); return nil }))
		require.NoError(t, Handle(c, stream+":other", func(context.Context, *Message[Order]) error { return errors.New("x") }))
		r := start(t, c)
		eventually(t, 10*time.Second, func() bool { return groupExists(rdb, stream+":other", "g") })
		require.NoError(t, r.stop(t))
	}
}

func TestShutdownWaitsNoLongerThanBlock(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	const block = 2 * time.Second
	c := newTestConsumer(t, rdb, "g", WithBlock(block))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
	r := start(t, c)
	eventually(t, 5*time.Second, func() bool { return groupExists(rdb, stream, "g") })
	time.Sleep(100 * time.Millisecond) // let the reader enter its blocking read
	begin := time.Now()
	require.NoError(t, r.stop(t))
	// The bound is the block time; the margin absorbs a loaded CI machine.
	assert.Less(t, time.Since(begin), block+time.Second)
}
