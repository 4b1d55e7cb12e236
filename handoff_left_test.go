package redstream

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

// Entries a Run read and let go while it ran, pending under its name
// (not held any more), are handed over at shutdown like those it held:
// idle for a year, for another consumer's reaper at once, not after
// MinIdle.

// requireHandedOver checks that consumer has want entries pending on
// stream, each marked idle by the hand-off.
func requireHandedOver(t *testing.T, rdb redis.UniversalClient, stream, group, consumer string, want int) {
	t.Helper()
	pending, err := rdb.XPendingExt(testCtx(t), &redis.XPendingExtArgs{Stream: stream, Group: group, Consumer: consumer, Start: "-", End: "+", Count: 1000}).Result()
	require.NoError(t, err)
	require.Len(t, pending, want, "entries left pending under %s", consumer)
	for _, p := range pending {
		assert.Greater(t, p.Idle, handOffIdle/2, "entry %s left pending under %s without the hand-off", p.ID, consumer)
	}
}

// TestShutdownHandsOverWhatAPauseLetGo: a paused stream's entries queued
// for the workers are let go as the workers reach them, pending for this
// consumer; the Run that shuts down while paused hands them over.
func TestShutdownHandsOverWhatAPauseLetGo(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	const n = 10
	publishOrders(t, rdb, stream, n)

	gate := make(chan struct{})
	var started atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"), WithConcurrency(1))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		started.Add(1)
		<-gate
		return nil
	}))
	ra := startReady(t, c)
	eventually(t, 10*time.Second, func() bool { return started.Load() == 1 && pendingCount(t, rdb, stream, "g") == n }, "a read every entry and runs the first")
	require.NoError(t, Pause(testCtx(t), rdb, stream, "g"))
	eventually(t, 10*time.Second, c.routes[0].paused.Load, "a sees the pause")
	close(gate)
	require.NoError(t, ra.stop(t))
	assert.Equal(t, int64(1), started.Load(), "nothing started while paused")
	requireHandedOver(t, rdb, stream, "g", "a", n-1)
}

// TestShutdownHandsOverAPausedPartialBatch: the partial batch handed to
// the workers at shutdown is let go because its stream is paused; it is
// handed over.
func TestShutdownHandsOverAPausedPartialBatch(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	const n = 10
	publishOrders(t, rdb, stream, n)

	var batches atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"))
	require.NoError(t, HandleBatch(c, stream, func(context.Context, []*Message[Order]) error {
		batches.Add(1)
		return nil
	}, WithBatch(100, time.Hour)))
	ra := startReady(t, c)
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == n }, "a read every entry into its batch")
	require.NoError(t, Pause(testCtx(t), rdb, stream, "g"))
	eventually(t, 10*time.Second, c.routes[0].paused.Load, "a sees the pause")
	require.NoError(t, ra.stop(t))
	assert.Zero(t, batches.Load(), "no batch ran while paused")
	requireHandedOver(t, rdb, stream, "g", "a", n)
}

// TestShutdownHandsOverAKeysEntriesLetGoBehindALostOne: on an ordered
// route, the entries of a key waiting behind one taken over by another
// consumer are let go, pending for this consumer, so as not to overtake
// it; the shutdown hands them over.
func TestShutdownHandsOverAKeysEntriesLetGoBehindALostOne(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	ids := make([]string, 3)
	for i := range ids {
		ids[i], err = p.Publish(testCtx(t), Order{ID: "o", UserID: "u"}, WithKey("k"))
		require.NoError(t, err)
	}

	var started, ended atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"), WithMinIdle(300*time.Millisecond), WithoutReaper())
	require.NoError(t, Handle(c, stream, func(ctx context.Context, _ *Message[Order]) error {
		started.Add(1)
		<-ctx.Done()
		ended.Add(1)
		return context.Cause(ctx)
	}, WithOrderedKeys()))
	ra := startReady(t, c)
	eventually(t, 10*time.Second, func() bool { return started.Load() == 1 && pendingCount(t, rdb, stream, "g") == 3 }, "a runs the key's first entry, the others wait")
	claimed, err := ClaimPending(testCtx(t), rdb, stream, "g", "b", ids[0])
	require.NoError(t, err)
	require.Equal(t, 1, claimed)
	eventually(t, 10*time.Second, func() bool { return ended.Load() == 1 }, "a's lease keeper finds the first entry lost and cancels its handler")
	require.NoError(t, ra.stop(t))
	assert.Equal(t, int64(1), started.Load(), "the key's later entries did not overtake the lost one")
	requireHandedOver(t, rdb, stream, "g", "a", 2)
}

// TestShutdownHandsOverWhatALostReadReplyDelivered: a read whose reply was
// lost delivered its entries to this consumer, which would read them from
// its own pending list after the error backoff; the shutdown comes first
// and hands them over.
func TestShutdownHandsOverWhatALostReadReplyDelivered(t *testing.T) {
	t.Parallel()
	proxy := startCutProxy(t, redistest.Addr(t))
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	direct := mustRedis(t)
	stream := uniqueStream(t)
	const n = 5
	publishOrders(t, direct, stream, n)

	var started atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"), WithErrorBackoff(time.Minute, time.Minute))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		started.Add(1)
		return nil
	}))
	proxy.CutAfter("xreadgroup", 1)
	ra := startReady(t, c)
	proxy.eventuallyCut(t, 1)
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, direct, stream, "g") == n }, "the lost reply delivered every entry")
	require.NoError(t, ra.stop(t))
	assert.Zero(t, started.Load(), "nothing handled: the reader waited out its backoff")
	requireHandedOver(t, direct, stream, "g", "a", n)
}

// TestOwnPendingPagesAndLeavesAcksGivenUp: the hand-off lists every entry
// pending under the consumer's name, page after page, but those whose
// acknowledgement was given up (Run counts them as such, not twice).
func TestOwnPendingPagesAndLeavesAcksGivenUp(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	const n = 2*leaseBatch + 50
	ids := publishOrders(t, rdb, stream, n)
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "g", "0").Err())
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "a", Streams: []string{stream, ">"}, Count: n, Block: -1}).Err())
	publishOrders(t, rdb, stream, 1) // pending for another consumer: not listed
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "other", Streams: []string{stream, ">"}, Block: -1}).Err())

	c := newTestConsumer(t, rdb, "g", WithConsumerName("a"))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
	r := newRunner(c, c.routes)
	rt := c.routes[0]
	r.acksLeft[heldKey{rt, ids[leaseBatch]}] = struct{}{}
	byRoute := map[*route][]string{}
	r.ownPending(byRoute)
	want := append(append([]string{}, ids[:leaseBatch]...), ids[leaseBatch+1:]...)
	assert.Equal(t, want, byRoute[rt])
}
