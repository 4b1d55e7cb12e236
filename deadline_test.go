package redstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every call that takes a context returns by its deadline, whatever it
// waits for: a lock, room for a publish, a round trip on a stalled network.

// within runs fn and fails the test if it has not returned after limit:
// the calls tested return at their short deadline, and limit only keeps a
// regression from hanging the suite.
func within(t *testing.T, limit time.Duration, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("still waiting after %v: the call ignored its context", limit)
	}
}

func TestDeadlineFlushWithAPublishWaitingForRoom(t *testing.T) {
	t.Parallel()
	proxy, p, direct, stream := proxiedProducer(t, WithMaxPending(1))
	ctx := testCtx(t)
	var err error
	// Connect before the stall.
	_, err = p.Publish(ctx, Order{ID: "warm"})
	require.NoError(t, err)

	proxy.Stall()
	first, err := p.PublishAsync(ctx, Order{ID: "in-flight"})
	require.NoError(t, err)
	waiting := make(chan error, 1)
	go func() {
		// No room until the first is answered: waits.
		_, err := p.PublishAsync(ctx, Order{ID: "waiting"})
		waiting <- err
	}()

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	within(t, 10*time.Second, func() {
		assert.ErrorIs(t, p.Flush(short), context.DeadlineExceeded)
	})
	proxy.Resume()
	require.NoError(t, <-waiting)
	require.NoError(t, p.Flush(ctx))
	_, err = first.Result()
	require.NoError(t, err)
	assert.Equal(t, int64(3), direct.XLen(ctx, stream).Val())
}

func TestDeadlinePublishInAStalledRoundTrip(t *testing.T) {
	t.Parallel()
	proxy, p, direct, stream := proxiedProducer(t)
	ctx := testCtx(t)
	var err error
	_, err = p.Publish(ctx, Order{ID: "warm"})
	require.NoError(t, err)

	proxy.Stall()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	within(t, 10*time.Second, func() {
		_, err = p.Publish(short, Order{ID: "stalled"})
	})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, ErrUncertain, "sent, so it may be written")
	proxy.Resume()
	// The round trip goes on without the caller; what it wrote is the one
	// entry the uncertain publish may have made.
	eventually(t, 10*time.Second, func() bool { return direct.XLen(ctx, stream).Val() == 2 }, "the abandoned XADD completes")

	// Batch and async callers leave by their deadline too.
	proxy.Stall()
	short2, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	within(t, 10*time.Second, func() {
		_, err = p.PublishBatch(short2, []Order{{ID: "b1"}})
	})
	proxy.Resume()
	if err != nil {
		assert.True(t, errors.Is(err, ErrUncertain) || errors.Is(err, context.DeadlineExceeded), "%v", err)
	}
}
