package redstream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is an Observer that counts what it sees.
type recorder struct {
	NopObserver
	mu                                   sync.Mutex
	published, delivered, handled, fails int
	acked, claimed                       int
	retried                              []time.Duration
	deadLettered                         []string
	trimmed                              int64
	maxAge                               time.Duration
	handlerTime                          time.Duration
}

func (r *recorder) Published(_ string, n int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.published += n
	}
}
func (r *recorder) Delivered(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered++
	r.maxAge = max(r.maxAge, ev.Age)
}
func (r *recorder) Handled(_ Event, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handled++
	r.handlerTime += took
	if err != nil {
		r.fails++
	}
}
func (r *recorder) Acked(_, _ string, n int) { r.mu.Lock(); r.acked += n; r.mu.Unlock() }
func (r *recorder) Claimed(_, _ string, n int) {
	r.mu.Lock()
	r.claimed += n
	r.mu.Unlock()
}
func (r *recorder) Retried(_ Event, d time.Duration) {
	r.mu.Lock()
	r.retried = append(r.retried, d)
	r.mu.Unlock()
}
func (r *recorder) DeadLettered(_ Event, reason string) {
	r.mu.Lock()
	r.deadLettered = append(r.deadLettered, reason)
	r.mu.Unlock()
}
func (r *recorder) Trimmed(_ string, removed, _ int64) {
	r.mu.Lock()
	r.trimmed += removed
	r.mu.Unlock()
}

func TestObserverSeesTheLifecycle(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	obs := &recorder{}
	p, err := NewProducer[Order](rdb, stream, WithObserver(obs))
	require.NoError(t, err)
	for _, id := range []string{"ok", "flaky", "poison"} {
		_, err := p.Publish(ctx, Order{ID: id})
		require.NoError(t, err)
	}
	_, err = p.PublishBatch(ctx, []Order{{ID: "b1"}, {ID: "b2"}})
	require.NoError(t, err)

	var flakyCalls atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithObserver(obs),
		WithRetryBackoff(10*time.Millisecond, 10*time.Millisecond), WithTrim(TrimPolicy{}, 30*time.Millisecond))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		switch m.Payload.ID {
		case "flaky":
			if flakyCalls.Add(1) == 1 {
				return errors.New("once")
			}
		case "poison":
			return ErrDeadLetter
		}
		time.Sleep(time.Millisecond)
		return nil
	}))
	start(t, c)
	eventually(t, 10*time.Second, func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.acked == 4 && len(obs.deadLettered) == 1 && obs.trimmed == 5
	})
	obs.mu.Lock()
	defer obs.mu.Unlock()
	assert.Equal(t, 5, obs.published)
	assert.Equal(t, 6, obs.delivered, "5 entries, flaky twice")
	assert.Equal(t, 6, obs.handled)
	assert.Equal(t, 2, obs.fails, "flaky once, poison once")
	require.Len(t, obs.retried, 1)
	assert.InDelta(t, 7.5*float64(time.Millisecond), float64(obs.retried[0]), 2.5*float64(time.Millisecond))
	assert.Equal(t, []string{ReasonHandler}, obs.deadLettered)
	assert.Positive(t, obs.maxAge, "end-to-end latency from the entry ID")
	assert.GreaterOrEqual(t, obs.handlerTime, 4*time.Millisecond, "handler durations")
}

func TestObserverSeesClaims(t *testing.T) {
	rdb := mustRedis(t)
	stream := uniqueStream(t)
	publishOrders(t, rdb, stream, 2)
	deliverTo(t, rdb, stream, "g", "dead", 2)
	obs := &recorder{}
	c := newTestConsumer(t, rdb, "g", append(fastReclaim(100*time.Millisecond), WithObserver(obs))...)
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
	start(t, c)
	eventually(t, 10*time.Second, func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.claimed == 2 && obs.acked == 2 })
}

type ctxKey struct{}

func TestMiddlewareAndContextHeadersCarryATrace(t *testing.T) {
	_, rdb := newMiniredis(t)
	stream := uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream, WithContextHeaders(func(ctx context.Context, set func(string, string)) {
		if trace, ok := ctx.Value(ctxKey{}).(string); ok {
			set("traceparent", trace)
		}
	}))
	require.NoError(t, err)
	ctx := context.WithValue(context.Background(), ctxKey{}, "00-abc-def-01")
	_, err = p.Publish(ctx, Order{ID: "traced"})
	require.NoError(t, err)
	_, err = p.Publish(context.Background(), Order{ID: "panics"})
	require.NoError(t, err)

	var (
		mu     sync.Mutex
		order  []string
		traces = map[string]string{}
		errs   = map[string]error{}
	)
	outer := func(ctx context.Context, info MessageInfo, next func(context.Context) error) error {
		mu.Lock()
		order = append(order, "outer")
		mu.Unlock()
		return next(context.WithValue(ctx, ctxKey{}, info.Header("traceparent")))
	}
	inner := func(ctx context.Context, info MessageInfo, next func(context.Context) error) error {
		mu.Lock()
		order = append(order, "inner")
		mu.Unlock()
		err := next(ctx)
		mu.Lock()
		errs[info.ID] = err
		mu.Unlock()
		assert.Equal(t, stream, info.Stream)
		assert.Equal(t, "g", info.Group)
		assert.Equal(t, int64(1), info.Deliveries)
		return err
	}
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConcurrency(1), WithMiddleware(outer), WithMiddleware(inner), WithRetryBackoff(time.Hour, time.Hour))
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		if m.Payload.ID == "panics" {
			panic("boom")
		}
		mu.Lock()
		traces[m.Payload.ID] = ctx.Value(ctxKey{}).(string)
		mu.Unlock()
		return nil
	}))
	start(t, c)
	eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 2 })
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, "00-abc-def-01", traces["traced"], "header injected at publish, extracted by the middleware")
	assert.Equal(t, []string{"outer", "inner", "outer", "inner"}, order, "the first middleware runs outermost")
	var panicErr *PanicError
	for _, err := range errs {
		if err != nil {
			assert.ErrorAs(t, err, &panicErr, "a handler panic reaches the middleware as an error")
		}
	}
	assert.NotNil(t, panicErr)
}
