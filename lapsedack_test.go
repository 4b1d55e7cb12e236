package redstream

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
	"github.com/redstream/redstream/internal/scripts"
)

// Found reviewing the acknowledgement after a lapsed lease (acklapsed.lua;
// each test failed before its fix). A consumer ("a") stalls (its lease renewals fail)
// longer than MinIdle while its handler runs; another consumer ("b") takes
// the message over. a comes back: its lease keeper's first round succeeds,
// finds the message lost (pending for b) and cancels the handler, and
// counted as a renewal of every lease (a global "renewed at", since
// replaced by each entry's own). The handler, whose work was done (or which
// ignores its context), returns nil. The acknowledger sees a lease
// "renewed" a moment ago and sends a bare XACK: b is never told, finds the
// message pending for no one with its own takeover record, and treats it
// as vanished (dead-lettering a handled message if its run fails).
// The same happens when a's handler returned during the stall but its
// acknowledgement failed and waits in flushAcks' backoff: the lease
// keeper's first successful round comes first and makes the retried
// acknowledgement bare.
func TestAckAfterTheLeaseKeeperFoundTheEntryLostTellsTheTaker(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	stall := &failScript{script: scripts.ClaimOwn}
	rdb.AddHook(stall)
	running, release := make(chan struct{}), make(chan struct{})
	var cause atomic.Value
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"), WithMinIdle(time.Second))
	require.NoError(t, Handle(c, stream, func(ctx context.Context, _ *Message[Order]) error {
		close(running)
		<-ctx.Done() // the work is done; the handler returns nil anyway
		cause.Store(context.Cause(ctx))
		<-release
		return nil
	}))
	startReady(t, c)
	stallWhileTakenOver(t, stall, rdb, stream, id, running, release)
	time.Sleep(800 * time.Millisecond) // a's lease has lapsed, for all a can tell
	stall.on.Store(false)
	eventually(t, 10*time.Second, func() bool { return cause.Load() != nil }, "a's lease keeper finds the message lost")
	require.ErrorIs(t, cause.Load().(error), ErrLeaseLost)
	close(release)
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 }, "a acknowledges it")

	assertBLetsGo(t, rdb, stream, id)
}

// dispatch set leasedAt to the time an entry is
// dispatched, but the own-pending drain (XPENDING + XRANGE) does not reset
// the entry's idle time: an entry left pending by this name's last run
// (crashed, or handed over at shutdown with a year of idle time) is idle
// longer than MinIdle when the restarted consumer drains it, and any other
// consumer's reaper may claim it before this consumer's first renewal. The
// restarted consumer handles it and, its leasedAt "fresh", acknowledges it
// with a bare XACK: the reaper's consumer finds it pending for no one,
// taken by itself, and treats it as vanished.
//
// Here a's lease renewals fail from the start, which only widens the
// window between the drain and a's first renewal (after all streams are
// drained, on the reaper's start) in which b's reaper claims it.
func TestOwnPendingDrainOfAnIdleEntryIsNotAFreshLease(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "g", "0").Err())
	require.Equal(t, []string{id}, deliverTo(t, rdb, stream, "g", "a", 1), "a's last run read it")
	// a's last run handed it over as it shut down (handOff).
	_, err := renewLeases(ctx, rdb, stream, "g", "a", 0, handOffIdle, []string{id})
	require.NoError(t, err)

	stall := &failScript{script: scripts.ClaimOwn}
	stall.on.Store(true)
	rdb.AddHook(stall)
	slowReaper := &failAutoClaimOf{consumer: "a"}
	slowReaper.on.Store(true)
	rdb.AddHook(slowReaper)
	running, release := make(chan struct{}), make(chan struct{})
	c := newTestConsumer(t, rdb, "g", WithConsumerName("a"), WithMinIdle(time.Second))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		close(running)
		<-release
		return nil
	}))
	startReady(t, c)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	<-running // a drained it from its own pending list

	// b's reaper: XAUTOCLAIM with MinIdle takes it (a's drain left it idle).
	claimed, _, err := rdb.XAutoClaimJustID(ctx, &redis.XAutoClaimArgs{Stream: stream, Group: "g", Consumer: "b", MinIdle: time.Second, Start: "0-0", Count: 10}).Result()
	require.NoError(t, err)
	require.Equal(t, []string{id}, claimed, "b's reaper claims it")
	require.NoError(t, markClaimed(ctx, rdb, stream, "g", "b", claimed))

	close(release) // a's handler succeeds at once
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 }, "a acknowledges it")
	stall.on.Store(false)
	slowReaper.on.Store(false)

	assertBLetsGo(t, rdb, stream, id)
}

// failAutoClaimOf fails, while on is set, the XAUTOCLAIMs of one consumer:
// its reaper's first round has not reached Redis yet.
type failAutoClaimOf struct {
	consumer string
	on       atomic.Bool
}

func (h *failAutoClaimOf) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *failAutoClaimOf) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if h.on.Load() && cmd.Name() == "xautoclaim" && len(args) > 3 && args[3] == h.consumer {
			err := errors.New("test: the reaper's round is behind")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h *failAutoClaimOf) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Exclusive partitions. A consumer ("z") owns a partition and
// runs a handler on X when its whole process stalls longer than MinIdle.
// "b" takes the partition's lease and claimLeftovers moves X to b with
// XCLAIM, ignoring idle time and writing no takeover record; b handles X
// and acknowledges it. z comes back: its lease keeper finds X pending for
// no one, no takeover recorded, no failed attempt recorded: "unrecorded",
// so vanished. z's handler, whose downstream call broke in the stall, then
// fails, and z dead-letters as vanished a message b handled successfully.
// (Had z's handler succeeded instead, before its lease keeper looked, its
// acknowledgement would have been the lapsed kind; the partition takeover
// itself never tells z anything.)
func TestPartitionTakeoverIsRecordedForTheStalledOwner(t *testing.T) {
	t.Parallel()
	ctx, stream := testCtx(t), uniqueStream(t)
	direct := redistest.Client(t)
	proxy := startCutProxy(t, redistest.Addr(t))
	viaProxy := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { viaProxy.Close() })
	id := publishOrders(t, direct, stream, 1)[0]
	holder := func() string { return direct.Get(ctx, leaseKey(stream, "g")).Val() }
	opts := []ConsumerOption{WithMinIdle(300 * time.Millisecond), WithGroupStart("0")}

	running, release := make(chan struct{}), make(chan struct{})
	obs := &vanishWatch{}
	z := newTestConsumer(t, viaProxy, "g", append(opts, WithConsumerName("z"), WithObserver(obs))...)
	var cause atomic.Value
	require.NoError(t, Handle(z, stream, func(ctx context.Context, _ *Message[Order]) error {
		close(running)
		select {
		case <-ctx.Done():
			cause.Store(context.Cause(ctx))
			<-release
		case <-release:
		}
		return errors.New("downstream call broke during the stall")
	}, WithExclusivePartitions()))
	var handledByB atomic.Int64
	b := newTestConsumer(t, direct, "g", append(opts, WithConsumerName("b"))...)
	require.NoError(t, Handle(b, stream, func(context.Context, *Message[Order]) error {
		handledByB.Add(1)
		return nil
	}, WithExclusivePartitions()))

	startReady(t, z)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	<-running
	proxy.StallRequests()
	startReady(t, b)
	eventually(t, 10*time.Second, func() bool { return holder() == "b" }, "b takes the lease once z's expires")
	eventually(t, 10*time.Second, func() bool { return handledByB.Load() == 1 && pendingCount(t, direct, stream, "g") == 0 },
		"b handles and acknowledges X")
	proxy.Resume()

	eventually(t, 10*time.Second, func() bool { return obs.count() == 1 || cause.Load() != nil }, "z's lease keeper looks again")
	close(release)
	// Absence: give z's settle two seconds to dead-letter it.
	var letters []DeadLetter
	for deadline := time.Now().Add(2 * time.Second); len(letters) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var err error
		letters, _, err = mustDeadLetters(t, direct, stream).List(ctx, ListOptions{})
		require.NoError(t, err)
	}
	assert.Empty(t, letters, "a message b handled is dead-lettered (z saw %s vanished: %q)", id, obs.ids())
}
