package redstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

// When Run returns, its error tells the truth about what it leaves behind:
// nil only when everything it took in was acknowledged, dead-lettered or
// handed over; otherwise a *ShutdownError with the counts.

// downableConsumer returns a consumer of a new stream that talks to Redis
// through a proxy the test can take down, and a direct client.
func downableConsumer(t *testing.T, handler HandlerFunc[Order], opts ...ConsumerOption) (*cutProxy, *Consumer, *redis.Client, string) {
	t.Helper()
	direct := redistest.Client(t)
	proxy := startCutProxy(t, redistest.Addr(t))
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	stream := uniqueStream(t)
	opts = append([]ConsumerOption{WithGroupStart("0"), WithErrorBackoff(5*time.Millisecond, 20*time.Millisecond)}, opts...)
	c := newTestConsumer(t, rdb, "g", opts...)
	require.NoError(t, Handle(c, stream, handler))
	return proxy, c, direct, stream
}

// The input: one entry; Redis becomes unreachable; the handler
// returns nil; Run's context is cancelled. Run returned nil while the
// entry was still pending.
func TestRunErrorAcksGivenUp(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	proxy, c, direct, stream := downableConsumer(t, func(context.Context, *Message[Order]) error {
		close(started)
		<-release
		return nil
	})
	publishOrders(t, direct, stream, 1)
	run := startReady(t, c)
	<-started
	proxy.Down()
	close(release)
	err := run.stop(t)

	require.ErrorIs(t, err, ErrAcksGivenUp)
	assert.NotErrorIs(t, err, ErrShutdownTimeout)
	var stopErr *ShutdownError
	require.ErrorAs(t, err, &stopErr)
	assert.Equal(t, 1, stopErr.AcksGivenUp)
	assert.Equal(t, 1, stopErr.Pending)
	assert.Error(t, stopErr.Err, "the Redis error behind it")
	assert.Equal(t, int64(1), pendingCount(t, direct, stream, "g"), "the entry is still pending, as reported")
}

func TestRunErrorShutdownTimeoutCountsCancelledHandlers(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 2)
	_, c, direct, stream := downableConsumer(t, func(ctx context.Context, _ *Message[Order]) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}, WithConcurrency(2), WithShutdownTimeout(100*time.Millisecond))
	publishOrders(t, direct, stream, 2)
	run := startReady(t, c)
	<-started
	<-started
	err := run.stop(t)

	require.ErrorIs(t, err, ErrShutdownTimeout)
	var stopErr *ShutdownError
	require.ErrorAs(t, err, &stopErr)
	assert.True(t, stopErr.TimedOut)
	assert.Equal(t, 2, stopErr.Cancelled)
	assert.Zero(t, stopErr.AcksGivenUp)
	assert.Equal(t, 2, stopErr.Pending, "both cancelled messages handed over")
	assert.Equal(t, int64(2), pendingCount(t, direct, stream, "g"))
}

// retryWaiting starts a consumer whose one message failed and waits in
// memory for an hour-long retry.
func retryWaiting(t *testing.T) (*cutProxy, *running, *redis.Client, string) {
	t.Helper()
	failed := make(chan struct{}, 1)
	proxy, c, direct, stream := downableConsumer(t, func(context.Context, *Message[Order]) error {
		select {
		case failed <- struct{}{}:
		default:
		}
		return errors.New("boom")
	}, WithRetryBackoff(time.Hour, time.Hour))
	publishOrders(t, direct, stream, 1)
	run := startReady(t, c)
	<-failed
	// The failure is recorded before the retry is scheduled.
	eventually(t, 10*time.Second, func() bool {
		return direct.HLen(context.Background(), attemptsKey(stream, "g")).Val() == 1
	}, "the failed attempt recorded")
	return proxy, run, direct, stream
}

func TestRunErrorNotHandedOver(t *testing.T) {
	t.Parallel()
	proxy, run, direct, stream := retryWaiting(t)
	proxy.Down()
	err := run.stop(t)

	require.ErrorIs(t, err, ErrNotHandedOver)
	var stopErr *ShutdownError
	require.ErrorAs(t, err, &stopErr)
	assert.Equal(t, 1, stopErr.NotHandedOver)
	assert.Equal(t, 1, stopErr.Pending)
	assert.False(t, stopErr.TimedOut)
	assert.Equal(t, int64(1), pendingCount(t, direct, stream, "g"))
}

// With Redis reachable, a retry waiting is handed over and Run returns nil.
func TestRunErrorNilWhenEverythingIsHandedOver(t *testing.T) {
	t.Parallel()
	_, run, direct, stream := retryWaiting(t)
	require.NoError(t, run.stop(t))
	assert.Equal(t, int64(1), pendingCount(t, direct, stream, "g"))
}
