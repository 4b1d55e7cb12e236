package redstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/faultkit"
	"github.com/redstream/redstream/internal/redistest"
)

// TestNoGroupErrorRate deletes the stream key over and over for about two
// seconds while a consumer reads it and a producer keeps writing to it.
// Each deletion takes the consumer group with it, so the consumer's calls
// fail with NOGROUP (or, for a read blocked at that moment, UNBLOCKED)
// until it creates the group again. It must do so with backoff, not in a
// hot loop: fewer than 20 failed calls in any second, counted by a hook on
// the consumer's client. A vanished stream is not a failed read: the
// consumer recreates the group without reporting read errors. Once the
// deletions stop, new messages are handled and nothing stays pending.
//
// Deleting every 20ms is faster than the consumer's backoff, so nearly
// every call finds the group gone; every 150ms lets reads succeed between
// deletions, resetting the backoff, and catches reads blocked in
// XREADGROUP when the key goes.
func TestNoGroupErrorRate(t *testing.T) {
	t.Parallel()
	for _, every := range []time.Duration{20 * time.Millisecond, 150 * time.Millisecond} {
		t.Run("every"+every.String(), func(t *testing.T) {
			t.Parallel()
			testNoGroupErrorRate(t, every)
		})
	}
}

func testNoGroupErrorRate(t *testing.T, every time.Duration) {
	const ceiling = 20 // failed calls in any one second
	ctx, stream := testCtx(t), uniqueStream(t)

	logs := &faultkit.SyncBuffer{}
	faultkit.DumpOnFailure(t, logs)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	direct := mustRedis(t)
	failures := &faultkit.CallFailures{}
	consumerRDB := redis.NewClient(&redis.Options{Addr: redistest.Addr(t)})
	consumerRDB.AddHook(failures)
	t.Cleanup(func() { _ = consumerRDB.Close() })

	l := faultkit.NewLedger()
	var (
		mu         sync.Mutex
		readErrors []error
	)
	c, err := NewConsumer(consumerRDB, "g",
		WithErrorHandler(func(err error) {
			if op, ok := errors.AsType[*OpError](err); ok && op.Op == "read" {
				mu.Lock()
				readErrors = append(readErrors, err)
				mu.Unlock()
			}
		}),
		WithGroupStart("0"),
		WithMinIdle(time.Second),
		WithReapInterval(200*time.Millisecond),
		WithLogger(logger),
	)
	require.NoError(t, err)
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		l.Handle("c", m.Payload.ID, m.Time())
		return nil
	}))
	run := startReady(t, c)

	p, err := NewProducer[Order](direct, stream)
	require.NoError(t, err)
	pubCtx, stopPublishing := context.WithCancel(ctx)
	defer stopPublishing()
	waitPublisher := publishSteadily(pubCtx, p, l, "m", 1, 2*time.Millisecond)
	eventually(t, 10*time.Second, func() bool { _, _, handled := l.Counts(); return handled >= 20 }, "warm-up")

	// Delete the stream every so often for two seconds.
	from := time.Now()
	deletions := 0
	tick := time.NewTicker(every)
	for time.Since(from) < 2*time.Second {
		<-tick.C
		require.NoError(t, direct.Del(ctx, stream).Err())
		deletions++
	}
	tick.Stop()
	to := time.Now()
	failed, peak := failures.Between(from, to)

	// Afterwards, new messages are handled and nothing stays pending.
	stopPublishing()
	waitPublisher()
	after := make([]string, 20)
	for i := range after {
		after[i] = fmt.Sprintf("after-%d", i)
		_, err := p.Publish(ctx, Order{ID: after[i]})
		require.NoError(t, err)
	}
	for _, key := range after {
		eventually(t, 20*time.Second, func() bool { return l.Times(key) > 0 },
			"%s handled after the deletions stopped", key)
	}
	eventually(t, 20*time.Second, func() bool { return pendingCount(t, direct, stream, "g") == 0 }, "pending list drains")
	select {
	case err := <-run.Done:
		t.Fatalf("Run returned during the deletions: %v", err)
	default:
	}
	assert.NoError(t, run.stop(t))

	published, _, handled := l.Counts()
	t.Logf("deleting every %v: %d deletions in %v; consumer's failed calls during them %d (%.1f/s), peak %d in one second (%s); published %d, handled %d distinct (the rest deleted unread)",
		every, deletions, to.Sub(from).Round(time.Millisecond), failed, float64(failed)/to.Sub(from).Seconds(), peak, failures.Commands(), published, handled)
	assert.Less(t, peak, ceiling, "failed calls per second while the stream keeps vanishing")
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, readErrors, "a deleted stream is recreated, not reported as a failed read")
}
