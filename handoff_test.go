package redstream

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

// TestShutdownHandsOverHeldEntries: a consumer holding 200 entries that
// wait for a retry shuts down; another consumer of the group takes them
// over at once (its reaper's first round), not after MinIdle. The time it
// took is logged, for the record; the test checks only that every entry is
// handled by the other consumer, once.
func TestShutdownHandsOverHeldEntries(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	const n = 200
	publishOrders(t, rdb, stream, n)

	var failed atomic.Int64
	a := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"), WithMaxInFlight(256), WithMinIdle(2*time.Second))
	require.NoError(t, Handle(a, stream, func(context.Context, *Message[Order]) error {
		failed.Add(1)
		return RetryAfter(time.Hour, errors.New("not now"))
	}))
	ra := startReady(t, a)
	eventually(t, 20*time.Second, func() bool { return failed.Load() == n }, "a holds every entry, waiting for its retry")
	require.NoError(t, ra.stop(t))
	stopped := time.Now()

	handled := newSeen()
	var last atomic.Int64
	b := newTestConsumer(t, rdb, "g", WithConsumerName("b"), WithMaxInFlight(256), WithMinIdle(2*time.Second), WithReapInterval(250*time.Millisecond))
	require.NoError(t, Handle(b, stream, func(_ context.Context, m *Message[Order]) error {
		handled.add(m.ID)
		last.Store(time.Now().UnixNano())
		return nil
	}))
	startReady(t, b)
	eventually(t, 30*time.Second, func() bool { return handled.len() == n }, "b handles what a left")
	t.Logf("hand-off: another consumer handled %d held entries %v after the first one shut down (MinIdle 2s, reap interval 250ms)",
		n, time.Duration(last.Load()-stopped.UnixNano()).Round(time.Millisecond))
	for id, c := range handled.s.Counts() {
		require.Equal(t, 1, c, id)
	}
}
