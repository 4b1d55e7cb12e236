package redstream

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Bounds of the options and arguments a caller gives: a value past a
// documented maximum is refused, never overflowed into one that runs at
// once or never.

func TestScheduleBeyondMaxDelayRefused(t *testing.T) {
	t.Parallel()
	_, rdb := newMiniredis(t)
	ctx := testCtx(t)
	p, err := NewProducer[Order](rdb, uniqueStream(t))
	require.NoError(t, err)
	for name, opt := range map[string]PublishOption{
		"delay just over":   WithDelay(MaxDelay + time.Millisecond),
		"delay max int":     WithDelay(math.MaxInt64),
		"deliver-at far":    WithDeliverAt(time.Unix(1<<62, 0)),
		"deliver-at beyond": WithDeliverAt(time.Now().Add(MaxDelay + time.Hour)),
	} {
		_, err := p.Publish(ctx, Order{}, opt)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
		_, err = p.PublishBatch(ctx, []Order{{}}, opt)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
	}
}

func TestScheduleAtMaxDelayIsDueThen(t *testing.T) {
	t.Parallel()
	_, rdb := newMiniredis(t)
	ctx := testCtx(t)
	stream := uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	far := time.Now().Add(MaxDelay - time.Hour)
	for _, opt := range []PublishOption{WithDelay(MaxDelay), WithDeliverAt(far)} {
		_, err := p.Publish(ctx, Order{}, opt)
		require.NoError(t, err)
	}
	list, err := ListScheduled(ctx, rdb, stream, 0, 10)
	require.NoError(t, err)
	require.Len(t, list, 2)
	for _, m := range list {
		assert.True(t, m.Due.After(time.Now().Add(MaxDelay-2*time.Hour)), "due %v", m.Due)
	}
	n, err := MoveDue(ctx, rdb, stream)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing due")
}

func TestHugeRetryDelayIsCutToMaxDelay(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{MaxDelay, MaxDelay + time.Millisecond, 1 << 62, math.MaxInt64 - time.Millisecond, math.MaxInt64} {
		call := newScheduleRetryCall("s", "g", "c", "1-1", d, 1, DefaultMinIdle)
		assert.Equal(t, MaxDelay.Milliseconds(), call.args[3], "delay %v in ms", d)
		for name, err := range map[string]error{"RetryAfter": RetryAfter(d, nil), "RateLimited": RateLimited(d, nil)} {
			var re *RetryError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, MaxDelay, re.Delay, "%s(%v)", name, d)
		}
	}
}

// A huge RetryAfter on the long-retry path waits in the schedule, due
// MaxDelay from now, instead of overflowing into a retry at once.
func TestHugeRetryAfterWaitsInSchedule(t *testing.T) {
	t.Parallel()
	rdb, ctx, stream := mustRedis(t), testCtx(t), uniqueStream(t)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithLongRetryAfter(time.Millisecond),
		WithSchedulePoll(10*time.Millisecond), WithMaxDeliveries(3))
	var calls atomic.Int64
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		calls.Add(1)
		return &RetryError{Delay: math.MaxInt64, Err: errors.New("later")}
	}))
	_, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{DefaultPayloadField, `{"id":"1"}`}}).Result()
	require.NoError(t, err)
	r := startReady(t, c)
	var list []ScheduledMessage
	eventually(t, 10*time.Second, func() bool {
		list, err = ListScheduled(ctx, rdb, stream, 0, 10)
		return err == nil && len(list) == 1
	}, "the retry is scheduled")
	// Polls of the schedule pass; none may find the retry due.
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, r.stop(t))
	assert.Equal(t, int64(1), calls.Load(), "handled once")
	assert.True(t, list[0].Due.After(time.Now().Add(MaxDelay-time.Hour)), "due %v", list[0].Due)
	n, err := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "no dead letter")
}

func TestConcurrencyAndInFlightBounds(t *testing.T) {
	t.Parallel()
	_, rdb := newMiniredis(t)
	for name, opt := range map[string]ConsumerOption{
		"concurrency over":   WithConcurrency(ConcurrencyLimit + 1),
		"concurrency maxint": WithConcurrency(math.MaxInt),
		"in-flight over":     WithMaxInFlight(MaxInFlightLimit + 1),
		"in-flight maxint":   WithMaxInFlight(math.MaxInt),
	} {
		_, err := NewConsumer(rdb, "g", opt)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
	}
	_, err := NewConsumer(rdb, "g", WithConcurrency(ConcurrencyLimit), WithMaxInFlight(MaxInFlightLimit))
	assert.NoError(t, err, "the limits themselves")
}

// The room of a consumer costs nothing up front, whatever its size: a
// Run must not spend its start filling it.
func TestHeldSetRoomIsFreeUpFront(t *testing.T) {
	t.Parallel()
	made := make(chan *heldSet, 1)
	go func() { made <- newHeldSet(math.MaxInt) }()
	select {
	case h := <-made:
		ctx := testCtx(t)
		assert.Equal(t, 3, h.takeRoom(ctx, 3))
		h.giveRoom(3)
	case <-time.After(time.Second):
		t.Fatal("newHeldSet(math.MaxInt) still filling its room after 1s")
	}
}

// A consumer at both limits handles a message and stops promptly.
func TestConsumerAtLimitsRunsAndStops(t *testing.T) {
	t.Parallel()
	rdb, ctx, stream := mustRedis(t), testCtx(t), uniqueStream(t)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConcurrency(ConcurrencyLimit), WithMaxInFlight(MaxInFlightLimit))
	var calls atomic.Int64
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		calls.Add(1)
		return nil
	}))
	_, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{DefaultPayloadField, `{"id":"1"}`}}).Result()
	require.NoError(t, err)
	r := startReady(t, c)
	eventually(t, 5*time.Second, func() bool { return calls.Load() == 1 }, "handled")
	began := time.Now()
	require.NoError(t, r.stop(t))
	assert.Less(t, time.Since(began), 2*time.Second, "Run returned promptly")
}

// A listing asked for more than there is returns all there is, however
// large the count (a count+1 once overflowed into a Redis error).
func TestListingsTakeAnyCount(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		dl, err := NewDeadLetters(rdb, stream)
		require.NoError(t, err)
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)
		for range 3 {
			_, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: DeadLetterKey(stream), Values: []any{"payload", "1"}}).Result()
			require.NoError(t, err)
			_, err = p.Publish(ctx, Order{}, WithDelay(time.Hour))
			require.NoError(t, err)
		}
		for _, n := range []int{4, math.MaxInt - 1, math.MaxInt} {
			for _, newest := range []bool{false, true} {
				l, next, err := dl.List(ctx, ListOptions{Count: n, NewestFirst: newest})
				require.NoError(t, err, "List Count %d newest-first %v", n, newest)
				assert.Len(t, l, 3, "List Count %d newest-first %v", n, newest)
				assert.Empty(t, next)
			}
			list, err := ListScheduled(ctx, rdb, stream, 0, n)
			require.NoError(t, err, "ListScheduled n %d", n)
			assert.Len(t, list, 3, "ListScheduled n %d", n)
			list, err = ListScheduled(ctx, rdb, stream, n, n)
			require.NoError(t, err, "ListScheduled offset %d", n)
			assert.Empty(t, list, "ListScheduled offset %d", n)
		}
	})
}

func TestRateLimitWindowBounds(t *testing.T) {
	t.Parallel()
	_, rdb := newMiniredis(t)
	c, err := NewConsumer(rdb, "g")
	require.NoError(t, err)
	h := func(ctx context.Context, m *Message[Order]) error { return nil }
	tests := []struct {
		rate  float64
		burst int
		want  string // in the error; "" for none
	}{
		{5000, 5, ""},
		{1000, 1, ""},
		{1.0 / (99 * 365 * 24 * 3600), 1, ""},
		{5000, 1, "under 1ms"},
		{1e-12, 1, "over MaxDelay"},
		{1, math.MaxInt, "over MaxDelay"},
		{math.SmallestNonzeroFloat64, math.MaxInt, "over MaxDelay"},
	}
	for _, tt := range tests {
		err := Handle(c, uniqueStream(t)+":"+time.Now().String(), h, WithRateLimit(tt.rate, tt.burst))
		if tt.want == "" {
			assert.NoError(t, err, "WithRateLimit(%v, %d)", tt.rate, tt.burst)
			continue
		}
		assert.ErrorIs(t, err, ErrInvalidOption, "WithRateLimit(%v, %d)", tt.rate, tt.burst)
		assert.ErrorContains(t, err, tt.want, "WithRateLimit(%v, %d)", tt.rate, tt.burst)
	}
}

// An error about MinIdle names the option the caller gave, not one left
// at its default.
func TestMinIdleErrorsNameWhatWasGiven(t *testing.T) {
	t.Parallel()
	_, rdb := newMiniredis(t)
	tests := []struct {
		name string
		opts []ReclaimOption
		want string // in the error; "" for none
	}{
		{"beyond MaxDelay", []ReclaimOption{WithMinIdle(math.MaxInt64)}, "WithMinIdle(2562047h47m16.854775807s): must be from 30ms to MaxDelay"},
		{"over the default TTL", []ReclaimOption{WithMinIdle(48 * time.Hour)}, "WithMinIdle(48h0m0s) is longer than the default IdleConsumerTTL (24h0m0s)"},
		{"TTL given shorter", []ReclaimOption{WithIdleConsumerTTL(time.Second)}, "WithIdleConsumerTTL(1s) is shorter than MinIdle (30s)"},
		{"TTL off", []ReclaimOption{WithMinIdle(48 * time.Hour), WithIdleConsumerTTL(0)}, ""},
		{"TTL raised", []ReclaimOption{WithMinIdle(48 * time.Hour), WithIdleConsumerTTL(72 * time.Hour)}, ""},
	}
	for _, tt := range tests {
		var (
			copts []ConsumerOption
			ropts []ReaperOption
		)
		for _, o := range tt.opts {
			copts, ropts = append(copts, o), append(ropts, o)
		}
		_, cerr := NewConsumer(rdb, "g", copts...)
		_, rerr := NewReaper(rdb, "g", []string{"s"}, ropts...)
		for _, err := range []error{cerr, rerr} {
			if tt.want == "" {
				assert.NoError(t, err, tt.name)
				continue
			}
			assert.ErrorIs(t, err, ErrInvalidOption, tt.name)
			assert.ErrorContains(t, err, tt.want, tt.name)
		}
	}
}
