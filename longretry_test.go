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
)

// healthyRun is one measurement of healthy traffic beside failing traffic.
type healthyRun struct {
	handled int           // key B messages handled
	elapsed time.Duration // until the last one, or the whole window
}

func (h healthyRun) rate() float64 { return float64(h.handled) / h.elapsed.Seconds() }

// measureHealthy publishes n messages alternating between keys A and B,
// then runs a consumer (small in-flight room) whose handler fails every
// other message of key A with fail (nil: none fails), and measures how
// fast key B's messages are handled, over at most window.
func measureHealthy(t *testing.T, rdb *redis.Client, n int, window time.Duration, fail func() error, opts ...ConsumerOption) healthyRun {
	t.Helper()
	ctx, stream := testCtx(t), uniqueStream(t)
	pipe := rdb.Pipeline()
	for i := range n {
		key := "A"
		if i%2 == 1 {
			key = "B"
		}
		vals := []any{KeyField, key, DefaultPayloadField, `{"id":"` + strconv.Itoa(i) + `","userId":"` + key + `"}`}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: vals})
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)

	var (
		mu   sync.Mutex
		last time.Time
		b    int
		done = make(chan struct{})
	)
	c := newTestConsumer(t, rdb, "g", append([]ConsumerOption{WithGroupStart("0"), WithMaxInFlight(20)}, opts...)...)
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		// A millisecond of work per message, as a handler calling a
		// service would spend, so the rate is the workers' and not the
		// reads'.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if m.Payload.UserID == "A" {
			i, _ := strconv.Atoi(m.Payload.ID)
			if fail != nil && i%4 == 0 {
				return fail()
			}
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		b++
		last = time.Now()
		if b == n/2 {
			close(done)
		}
		return nil
	}))
	began := time.Now()
	r := startReady(t, c)
	select {
	case <-done:
	case <-time.After(window):
	}
	mu.Lock()
	run := healthyRun{handled: b, elapsed: window}
	if b == n/2 {
		run.elapsed = last.Sub(began)
	}
	mu.Unlock()
	require.NoError(t, r.stop(t))
	return run
}

// TestLongRetryHealthyTraffic measures healthy traffic (key B) while half
// of key A's messages fail with a one-minute retry, against the same
// traffic with no failures. It logs the figures; it asserts only that
// healthy traffic is not starved, a bound loose enough for a loaded
// machine.
func TestLongRetryHealthyTraffic(t *testing.T) {
	rdb := mustRedis(t)
	const n, window = 8000, 10 * time.Second
	base := measureHealthy(t, rdb, n, window, nil)
	// The default threshold, MinIdle (newTestConsumer keeps retries in
	// memory unless told).
	failing := measureHealthy(t, rdb, n, window, func() error { return RetryAfter(time.Minute, errors.New("downstream down")) }, WithLongRetryAfter(DefaultMinIdle))
	t.Logf("healthy traffic: %d of %d in %v (%.0f msg/s) with no failures; %d of %d in %v (%.0f msg/s) while 50%% of key A fails with RetryAfter(1m): %.0f%%",
		base.handled, n/2, base.elapsed.Round(time.Millisecond), base.rate(),
		failing.handled, n/2, failing.elapsed.Round(time.Millisecond), failing.rate(),
		100*failing.rate()/base.rate())
}

// TestLongRetryHealthyTrafficShortThreshold is the healthy-traffic
// measurement with a short threshold and short retries, so the failing
// messages go through the schedule again and again while the healthy ones
// flow: every healthy message is handled within the window.
func TestLongRetryHealthyTrafficShortThreshold(t *testing.T) {
	rdb := mustRedis(t)
	const n, window = 8000, 10 * time.Second
	opts := []ConsumerOption{WithLongRetryAfter(100 * time.Millisecond), WithSchedulePoll(20 * time.Millisecond)}
	base := measureHealthy(t, rdb, n, window, nil, opts...)
	failing := measureHealthy(t, rdb, n, window, func() error { return RetryAfter(300*time.Millisecond, errors.New("downstream down")) }, opts...)
	t.Logf("healthy traffic: %.0f msg/s with no failures, %.0f msg/s (%.0f%%) while 50%% of key A fails with RetryAfter(300ms), WithLongRetryAfter(100ms)",
		base.rate(), failing.rate(), 100*failing.rate()/base.rate())
	assert.Equal(t, n/2, failing.handled, "every healthy message handled within the window")
}

// TestLongRetryCountsAttemptsAcrossMoves fails every message of key A with
// a retry longer than the threshold: each goes through the schedule, its
// handler sees attempts 1..MaxDeliveries, and it is dead-lettered once
// after the last, with every attempt counted and its first entry's ID. A
// second group on the stream handles every original message once and
// never a re-appended retry.
func TestLongRetryCountsAttemptsAcrossMoves(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	const failing, healthy, maxDeliveries = 20, 20, 3
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)

	var (
		mu       sync.Mutex
		seen     = map[string][]int64{}  // order ID -> deliveries seen by g1
		firstIDs = map[string]string{}   // order ID -> first entry ID
		retryOf  = map[string][]string{} // order ID -> RetryOf per delivery
		other    = map[string]int{}      // order ID -> runs in g2
		otherBad []string                // re-appended retries g2 was given
	)
	c1 := newTestConsumer(t, rdb, "g1", WithGroupStart("0"), WithMaxDeliveries(maxDeliveries),
		WithLongRetryAfter(100*time.Millisecond), WithSchedulePoll(20*time.Millisecond), WithMaxInFlight(10))
	require.NoError(t, Handle(c1, stream, func(_ context.Context, m *Message[Order]) error {
		mu.Lock()
		defer mu.Unlock()
		if m.Payload.UserID != "A" {
			return nil
		}
		seen[m.Payload.ID] = append(seen[m.Payload.ID], m.Deliveries)
		retryOf[m.Payload.ID] = append(retryOf[m.Payload.ID], m.RetryOf())
		if m.Deliveries == 1 {
			firstIDs[m.Payload.ID] = m.ID
		}
		return RetryAfter(300*time.Millisecond, errors.New("downstream down"))
	}))
	c2 := newTestConsumer(t, rdb, "g2", WithGroupStart("0"))
	require.NoError(t, Handle(c2, stream, func(_ context.Context, m *Message[Order]) error {
		mu.Lock()
		defer mu.Unlock()
		other[m.Payload.ID]++
		if m.Header(RetryGroupField) != "" {
			otherBad = append(otherBad, m.ID)
		}
		return nil
	}))
	for i := range failing + healthy {
		key := "A"
		if i >= failing {
			key = "B"
		}
		_, err := p.Publish(ctx, Order{ID: strconv.Itoa(i), UserID: key}, WithKey(key))
		require.NoError(t, err)
	}
	startReady(t, c1)
	startReady(t, c2)

	dl, err := NewDeadLetters(rdb, stream)
	require.NoError(t, err)
	eventually(t, 30*time.Second, func() bool {
		n, err := dl.Len(ctx)
		return err == nil && n >= failing
	}, "every failing message dead-lettered")
	eventually(t, 10*time.Second, func() bool {
		return pendingCount(t, rdb, stream, "g1") == 0 && pendingCount(t, rdb, stream, "g2") == 0
	}, "nothing left pending in either group")

	letters, _, err := dl.List(ctx, ListOptions{Count: 1000})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, letters, failing, "each failing message dead-lettered once")
	for _, d := range letters {
		id := d.Fields["orderId"]
		assert.Equal(t, "g1", d.Group)
		assert.Equal(t, ReasonMaxDeliveries, d.Reason, id)
		assert.EqualValues(t, maxDeliveries, d.Deliveries, "every attempt counted: %s", id)
		assert.Equal(t, firstIDs[id], d.Fields[RetryOfField], "the dead letter names the first entry: %s", id)
	}
	for i := range failing {
		id := strconv.Itoa(i)
		assert.Equal(t, []int64{1, 2, 3}, seen[id], "attempts seen by the handler: %s", id)
		assert.Equal(t, []string{"", firstIDs[id], firstIDs[id]}, retryOf[id], "retries came from the schedule: %s", id)
	}
	for i := range failing + healthy {
		assert.Equal(t, 1, other[strconv.Itoa(i)], "the other group handles each original once: %d", i)
	}
	assert.Empty(t, otherBad, "the other group never handles a re-appended retry")
	n, err := rdb.ZCard(ctx, scheduledKey(stream)).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "nothing left in the schedule")
	a, err := rdb.HLen(ctx, attemptsKey(stream, "g1")).Result()
	require.NoError(t, err)
	assert.Zero(t, a, "no failed-attempts field left behind")
}

// TestLongRetryOrderedKeysStayInMemory: on a route with WithOrderedKeys a
// long retry waits in memory, pending, so the key's later message runs
// only after it, and nothing goes to the schedule.
func TestLongRetryOrderedKeysStayInMemory(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		order []string
	)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithLongRetryAfter(100*time.Millisecond), WithSchedulePoll(20*time.Millisecond))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, m.Payload.ID+"@"+strconv.FormatInt(m.Deliveries, 10))
		if m.Payload.ID == "1" && m.Deliveries == 1 {
			return RetryAfter(500*time.Millisecond, errors.New("not yet"))
		}
		if m.RetryOf() != "" {
			return errors.New("an ordered route's retry went through the schedule")
		}
		return nil
	}, WithOrderedKeys()))
	for i := 1; i <= 2; i++ {
		_, err := p.Publish(ctx, Order{ID: strconv.Itoa(i)}, WithKey("k"))
		require.NoError(t, err)
	}
	startReady(t, c)
	eventually(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 1
	})
	n, err := rdb.ZCard(ctx, scheduledKey(stream)).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "the ordered route's retry is not in the schedule")
	assert.EqualValues(t, 2, pendingCount(t, rdb, stream, "g"), "the failing message and the one behind it stay pending")
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"1@1", "1@2", "2@1"}, order, "the key's later message waited for the retry")
}

func TestWithLongRetryAfterOption(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{})
	t.Cleanup(func() { _ = rdb.Close() })
	_, err := NewConsumer(rdb, "g", WithLongRetryAfter(-time.Second))
	assert.ErrorIs(t, err, ErrInvalidOption)
	cfg, err := newConsumerConfig(nil)
	require.NoError(t, err)
	assert.Equal(t, DefaultMinIdle, cfg.longRetryAfter, "default: MinIdle")
	cfg, err = newConsumerConfig([]ConsumerOption{WithMinIdle(time.Minute)})
	require.NoError(t, err)
	assert.Equal(t, time.Minute, cfg.longRetryAfter, "default follows WithMinIdle")
	cfg, err = newConsumerConfig([]ConsumerOption{WithLongRetryAfter(0)})
	require.NoError(t, err)
	assert.Zero(t, cfg.longRetryAfter, "0 keeps retries in memory")
}

// TestScheduleRetryScript runs the retry script on its own: it moves an
// entry pending for the consumer (acknowledged, its attempts field gone,
// one record in the schedule that the mover appends with the retry
// fields), and does nothing to an entry acknowledged meanwhile or pending
// for another consumer.
func TestScheduleRetryScript(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, stream, "g", "$").Err())
	add := func(v string) string {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", v, "orderId", "x"}}).Result()
		require.NoError(t, err)
		_, err = rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{stream, ">"}, Count: 1}).Result()
		require.NoError(t, err)
		return id
	}
	scheduled := func() int64 {
		n, err := rdb.ZCard(ctx, scheduledKey(stream)).Result()
		require.NoError(t, err)
		return n
	}

	acked := add("acked")
	require.NoError(t, rdb.XAck(ctx, stream, "g", acked).Err())
	res, _, _, err := scheduleRetry(ctx, rdb, stream, "g", "c", acked, time.Millisecond, 1)
	require.NoError(t, err)
	assert.Equal(t, retryNotPending, res)
	assert.Zero(t, scheduled(), "nothing scheduled for an entry acknowledged meanwhile")

	theirs := add("theirs")
	res, _, _, err = scheduleRetry(ctx, rdb, stream, "g", "someone-else", theirs, time.Millisecond, 1)
	require.NoError(t, err)
	assert.Equal(t, retryNotOwner, res)
	assert.Zero(t, scheduled(), "nothing scheduled for another consumer's entry")
	require.NoError(t, rdb.XAck(ctx, stream, "g", theirs).Err())

	mine := add("mine")
	// Another consumer recorded more failures than this one counted: the
	// higher count goes with the retry.
	_, err = recordAttempt(ctx, rdb, stream, "g", mine, 3)
	require.NoError(t, err)
	res, counted, due, err := scheduleRetry(ctx, rdb, stream, "g", "c", mine, 50*time.Millisecond, 2)
	require.NoError(t, err)
	assert.Equal(t, retryScheduled, res)
	assert.EqualValues(t, 3, counted)
	assert.False(t, due.IsZero())
	assert.EqualValues(t, 1, scheduled())
	assert.Zero(t, pendingCount(t, rdb, stream, "g"), "acknowledged with the move")
	left, err := rdb.HExists(ctx, attemptsKey(stream, "g"), mine).Result()
	require.NoError(t, err)
	assert.False(t, left, "its failed-attempts field deleted with the move")
	// Recorded as taken (a consumer that lost every reply of the move lets
	// its in-memory retry go), for retryRecordFor only: a record dated
	// back so that it is forgotten then, not after a takeover's hour (long
	// retries can be many).
	assert.Equal(t, "", takerOf(t, rdb, stream, mine), "recorded, by no consumer")
	assert.Equal(t, 1, int(rdb.HLen(ctx, takenKey(stream, "g")).Val()))
	at, err := rdb.ZScore(ctx, takenAgesKey(stream, "g"), mine).Result()
	require.NoError(t, err)
	now, err := rdb.Time(ctx).Result()
	require.NoError(t, err)
	forgottenIn := time.Duration(int64(at)-now.UnixMilli())*time.Millisecond + takenFor
	assert.InDelta(t, retryRecordFor(DefaultMinIdle).Seconds(), forgottenIn.Seconds(), 5, "forgotten after retryRecordFor, not takenFor")

	eventually(t, 5*time.Second, func() bool {
		n, err := MoveDue(ctx, rdb, stream)
		return err == nil && n == 1
	})
	entries, err := rdb.XRange(ctx, stream, "("+mine, "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	v := entries[0].Values
	assert.Equal(t, "mine", v["payload"])
	assert.Equal(t, "g", v[RetryGroupField])
	assert.Equal(t, mine, v[RetryOfField])
	assert.Equal(t, "3", v[AttemptsField])
	assert.NotContains(t, v, ScheduleIDField, "a retry is not a scheduled publish")
}

// measurePaced runs a consumer (small in-flight room) while messages
// alternating between keys A and B are published at rate per second for
// d; the handler fails every other message of key A with fail (nil: none
// fails). It returns key B's messages published and those handled by d
// and a short grace after it.
func measurePaced(t *testing.T, rdb *redis.Client, rate int, d time.Duration, fail func() error, opts ...ConsumerOption) (published, handled int) {
	t.Helper()
	ctx, stream := testCtx(t), uniqueStream(t)
	var b atomic.Int64
	c := newTestConsumer(t, rdb, "g", append([]ConsumerOption{WithMaxInFlight(20)}, opts...)...)
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if m.Payload.UserID == "A" {
			i, _ := strconv.Atoi(m.Payload.ID)
			if fail != nil && i%4 == 0 {
				return fail()
			}
			return nil
		}
		b.Add(1)
		return nil
	}))
	r := startReady(t, c)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.After(d)
	for i := 0; ; i++ {
		select {
		case <-end:
		case <-tick.C:
			key := "A"
			if i%2 == 1 {
				key = "B"
				published++
			}
			vals := []any{KeyField, key, DefaultPayloadField, `{"id":"` + strconv.Itoa(i) + `","userId":"` + key + `"}`}
			require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: vals}).Err())
			continue
		}
		break
	}
	grace := time.NewTimer(250 * time.Millisecond)
	<-grace.C
	handled = int(b.Load())
	require.NoError(t, r.stop(t))
	return published, handled
}

// TestLongRetryHealthyTrafficPaced measures healthy traffic arriving at a
// steady rate, the consumer keeping up, while half of key A's messages
// fail with a one-minute retry: with retries in memory
// (WithLongRetryAfter(0), the behaviour before long retries) and with the
// default threshold. It logs the figures and asserts a generous bound.
func TestLongRetryHealthyTrafficPaced(t *testing.T) {
	rdb := mustRedis(t)
	const rate, d = 1000, 3 * time.Second
	fail := func() error { return RetryAfter(time.Minute, errors.New("downstream down")) }
	basePub, base := measurePaced(t, rdb, rate, d, nil)
	memPub, mem := measurePaced(t, rdb, rate, d, fail, WithLongRetryAfter(0))
	longPub, long := measurePaced(t, rdb, rate, d, fail, WithLongRetryAfter(DefaultMinIdle))
	pct := func(h, p int) float64 { return 100 * float64(h) / float64(p) }
	t.Logf("healthy traffic at %d msg/s (key B half of it) for %v: no failures %d/%d (%.0f%%); retries in memory %d/%d (%.0f%%, %.0f msg/s); long retries %d/%d (%.0f%%, %.0f msg/s)",
		rate, d, base, basePub, pct(base, basePub),
		mem, memPub, pct(mem, memPub), float64(mem)/d.Seconds(),
		long, longPub, pct(long, longPub), float64(long)/d.Seconds())
	assert.GreaterOrEqual(t, pct(long, longPub), 0.5*pct(base, basePub), "healthy traffic keeps flowing beside long retries")
}
