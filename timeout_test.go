package redstream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// causes records the context.Cause each handler call ended with.
type causes struct {
	mu   sync.Mutex
	seen []error
}

func (c *causes) add(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, err)
}

func (c *causes) list() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.seen...)
}

// waitForEnd is a handler that respects nothing but its context.
func (c *causes) waitForEnd(started chan<- struct{}) HandlerFunc[Order] {
	return func(ctx context.Context, _ *Message[Order]) error {
		if started != nil {
			started <- struct{}{}
		}
		<-ctx.Done()
		c.add(context.Cause(ctx))
		return ctx.Err()
	}
}

func TestHandlerTimeoutRetriesThenDeadLetters(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	seen := &causes{}
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMaxDeliveries(2),
		WithRetryBackoff(time.Millisecond, time.Millisecond), WithHandlerTimeout(100*time.Millisecond))
	require.NoError(t, Handle(c, stream, seen.waitForEnd(nil)))
	run := start(t, c)
	publishOrders(t, rdb, stream, 1)
	d := mustDeadLetters(t, rdb, stream)
	eventually(t, 10*time.Second, func() bool { n, _ := d.Len(ctx); return n == 1 }, "dead-lettered after two timeouts")
	require.NoError(t, run.stop(t))

	got := seen.list()
	require.Len(t, got, 2, "cancelled at the timeout, retried once")
	for _, cause := range got {
		assert.ErrorIs(t, cause, ErrHandlerTimeout)
	}
	letters, _, err := d.List(ctx, ListOptions{})
	require.NoError(t, err)
	assert.Equal(t, ReasonMaxDeliveries, letters[0].Reason)
	assert.Contains(t, letters[0].Error, "handler timeout after 100ms")
}

func TestHandlerTimeoutPerRouteWins(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	stream := uniqueStream(t)
	done := make(chan error, 1)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithHandlerTimeout(20*time.Millisecond))
	require.NoError(t, Handle(c, stream, func(ctx context.Context, _ *Message[Order]) error {
		select {
		case <-time.After(150 * time.Millisecond):
			done <- nil
		case <-ctx.Done():
			done <- context.Cause(ctx)
		}
		return nil
	}, WithHandlerTimeout(0)))
	run := start(t, c)
	publishOrders(t, rdb, stream, 1)
	assert.NoError(t, <-done, "no timeout on this registration")
	require.NoError(t, run.stop(t))
}

func TestHandlerContextCauseAtShutdownTimeout(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	stream := uniqueStream(t)
	seen := &causes{}
	started := make(chan struct{}, 1)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithShutdownTimeout(50*time.Millisecond))
	require.NoError(t, Handle(c, stream, seen.waitForEnd(started)))
	run := start(t, c)
	publishOrders(t, rdb, stream, 1)
	<-started
	assert.ErrorIs(t, run.stop(t), ErrShutdownTimeout)
	require.Len(t, seen.list(), 1)
	assert.ErrorIs(t, seen.list()[0], ErrShutdownTimeout)
}

func TestHandlerContextCauseWhenTheLeaseIsLost(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	seen := &causes{}
	started := make(chan struct{}, 1)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMinIdle(150*time.Millisecond), WithConsumerName("a"))
	require.NoError(t, Handle(c, stream, seen.waitForEnd(started)))
	run := start(t, c)
	id := publishOrders(t, rdb, stream, 1)[0]
	<-started
	// Another consumer takes the message, as a reaper would.
	require.NoError(t, rdb.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: "g", Consumer: "b", Messages: []string{id}}).Err())
	eventually(t, 10*time.Second, func() bool { return len(seen.list()) == 1 }, "the handler's context ends")
	assert.ErrorIs(t, seen.list()[0], ErrLeaseLost)
	require.NoError(t, run.stop(t))
}

func TestHandlerTimeoutRefusesNegative(t *testing.T) {
	_, err := NewConsumer(mustRedis(t), "g", WithHandlerTimeout(-time.Second))
	assert.ErrorIs(t, err, ErrInvalidOption)
	c, err := NewConsumer(mustRedis(t), "g")
	require.NoError(t, err)
	err = Handle(c, "s", func(context.Context, *Message[Order]) error { return nil }, WithHandlerTimeout(-1))
	assert.True(t, errors.Is(err, ErrInvalidOption), "%v", err)
}

func TestHandlerTimeoutAppliesToABatchCall(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	stream := uniqueStream(t)
	seen := make(chan error, 4)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMaxDeliveries(1))
	require.NoError(t, HandleBatch(c, stream, func(ctx context.Context, msgs []*Message[Order]) error {
		<-ctx.Done()
		seen <- context.Cause(ctx)
		return ctx.Err()
	}, WithBatch(10, 20*time.Millisecond), WithHandlerTimeout(50*time.Millisecond)))
	run := start(t, c)
	publishOrders(t, rdb, stream, 3)
	assert.ErrorIs(t, <-seen, ErrHandlerTimeout)
	d := mustDeadLetters(t, rdb, stream)
	eventually(t, 10*time.Second, func() bool { n, _ := d.Len(testCtx(t)); return n == 3 }, "dead-lettered after their one attempt")
	letters, _, err := d.List(testCtx(t), ListOptions{})
	require.NoError(t, err)
	assert.Contains(t, letters[0].Error, "handler timeout after 50ms")
	require.NoError(t, run.stop(t))
}
