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

// failScript makes one script fail on the client it is added to while on
// is set, as a consumer that stalled or lost its connection does: the lease
// keeper's renewals (scripts.ClaimOwn) stop reaching Redis.
type failScript struct {
	script   *redis.Script
	on       atomic.Bool
	once     bool // fail one call, then let the others through
	failed   atomic.Int64
	inFlight atomic.Int64
}

// stall makes the script fail from now on, once the calls already past
// the hook have returned: none of them reaches Redis after stall returns.
func (h *failScript) stall(t *testing.T) {
	h.on.Store(true)
	eventually(t, 10*time.Second, func() bool { return h.inFlight.Load() == 0 }, "the calls in flight return")
}

func (h *failScript) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *failScript) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isScript(cmd, h.script) {
			return next(ctx, cmd)
		}
		h.inFlight.Add(1)
		defer h.inFlight.Add(-1)
		if h.on.Load() && (!h.once || h.on.CompareAndSwap(true, false)) {
			h.failed.Add(1)
			err := errors.New("test: the consumer is stalled")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h *failScript) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// stallWhileTakenOver waits for the consumer's handler to run (running
// closed), stalls the consumer's lease keeper and makes consumer "b" take
// id over, as b's reaper does. A test that fails before it closes release
// has it closed before the consumer is stopped.
func stallWhileTakenOver(t *testing.T, stall *failScript, rdb redis.UniversalClient, stream, id string, running, release chan struct{}) {
	t.Helper()
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	<-running
	stall.stall(t)
	require.NoError(t, rdb.XClaim(testCtx(t), &redis.XClaimArgs{Stream: stream, Group: "g", Consumer: "b", Messages: []string{id}}).Err())
	require.NoError(t, markClaimed(testCtx(t), rdb, stream, "g", "b", []string{id}))
}

// assertBLetsGo asserts that the takeover record names "a" as id's taker
// and that "b", which took id over, finds it lost at its next look (not
// vanished or unrecorded, which would dead-letter a handled message).
func assertBLetsGo(t *testing.T, rdb redis.UniversalClient, stream, id string) {
	t.Helper()
	assert.Equal(t, "a", takerOf(t, rdb, stream, id), "the takeover record")
	res, err := renewLeases(testCtx(t), rdb, stream, "g", "b", 0, 0, []string{id})
	require.NoError(t, err)
	assert.Equal(t, []string{id}, res.lost, "b finds it lost: %+v", res)
}

// takerOf is who the takeover record says took id ("" if no one).
func takerOf(t *testing.T, rdb redis.UniversalClient, stream, id string) string {
	by, err := rdb.HGet(testCtx(t), takenKey(stream, "g"), id).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	require.NoError(t, err)
	return by
}

// A consumer ("a") stalls holding a message; another ("b") takes it over
// and dies in turn; a's reaper takes it back while a still holds it. The
// takeover record must then name a again: if it still names b, and Redis
// forgets the entry (a deleted by hand, XGROUP DELCONSUMER), a finds it
// pending for no one, taken by b, and lets it go as finished elsewhere,
// when a is its only holder: the message is lost. With a named, a finishes
// it from memory, and its failure dead-letters it as vanished.
func TestMessageTakenBackByItsHolderIsNotLetGoWhenItVanishes(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	stall := &failScript{script: scripts.ClaimOwn}
	rdb.AddHook(stall)
	obs := &vanishWatch{}
	running, release := make(chan struct{}), make(chan struct{})
	var cause atomic.Value
	c := newTestConsumer(t, rdb, "g", append(fastReclaim(300*time.Millisecond), WithGroupStart("0"), WithConsumerName("a"), WithObserver(obs))...)
	require.NoError(t, Handle(c, stream, func(ctx context.Context, _ *Message[Order]) error {
		close(running)
		select {
		case <-ctx.Done():
			cause.Store(context.Cause(ctx))
		case <-release:
		}
		return errors.New("fails")
	}))
	startReady(t, c)
	stallWhileTakenOver(t, stall, rdb, stream, id, running, release)
	eventually(t, 10*time.Second, func() bool { return takerOf(t, rdb, stream, id) == "a" },
		"a's reaper takes the message back and records it")
	require.NoError(t, rdb.XGroupDelConsumer(ctx, stream, "g", "a").Err())
	stall.on.Store(false)

	eventually(t, 10*time.Second, func() bool { return obs.count() == 1 || cause.Load() != nil }, "a looks again")
	close(release)
	letters := waitDeadLetters(t, rdb, stream, 1)
	assert.Equal(t, ReasonVanished, letters[0].Reason)
	assert.Nil(t, cause.Load(), "the handler's context cancelled")
}

// A consumer ("a") stalls longer than MinIdle while its handler runs;
// another ("b") takes the message over (and, on attempt 2, records a
// failure of it); then a's handler succeeds and a acknowledges it. b must
// learn that the message was finished: with a bare XACK, b finds it
// pending for no one, taken by b itself, and dead-letters a handled
// message as vanished. a's acknowledgement, its lease having perhaps
// lapsed, records a as having taken it back and deletes b's failure
// record, so b's next look finds it lost and lets it go.
func TestAcknowledgementAfterALapsedLeaseTellsTheTaker(t *testing.T) {
	t.Parallel()
	for _, takerFailed := range []bool{false, true} {
		t.Run(map[bool]string{false: "taker still on its first attempt", true: "taker recorded a failure"}[takerFailed], func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Client(t)
			ctx, stream := testCtx(t), uniqueStream(t)
			id := publishOrders(t, rdb, stream, 1)[0]

			stall := &failScript{script: scripts.ClaimOwn}
			rdb.AddHook(stall)
			running, release := make(chan struct{}), make(chan struct{})
			c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"), WithMinIdle(time.Second))
			require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
				close(running)
				<-release
				return nil
			}))
			startReady(t, c)
			stallWhileTakenOver(t, stall, rdb, stream, id, running, release)
			if takerFailed {
				n, err := recordAttempt(ctx, rdb, stream, "g", id, 1)
				require.NoError(t, err)
				require.Equal(t, int64(1), n)
			}
			// More than 3/4 of MinIdle with no lease renewed: a's lease
			// may have lapsed, for all a can tell.
			time.Sleep(800 * time.Millisecond)
			close(release)
			eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 }, "a acknowledges it")
			stall.on.Store(false)

			assert.False(t, attemptRecorded(t, rdb, stream, id), "b's failure record deleted")
			assertBLetsGo(t, rdb, stream, id)
		})
	}
}

// A reaper records its claim after XAUTOCLAIM's reply: if the consumer it
// took the entry from acknowledged it meanwhile (recording that it took it
// back), the reaper's record must not overwrite that one.
func TestAClaimRecordYieldsToTheAcknowledgementOfTheHolder(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "g", "0").Err())
	require.Equal(t, []string{id}, deliverTo(t, rdb, stream, "g", "b", 1), "b claims it")

	acked, err := ackLapsed(ctx, rdb, stream, "g", "a", []string{id}).Int64Slice()
	require.NoError(t, err)
	require.Equal(t, []int64{1}, acked, "a acknowledges it")
	require.NoError(t, markClaimed(ctx, rdb, stream, "g", "b", []string{id}))

	assertBLetsGo(t, rdb, stream, id)
}

// A group rewound (SetGroupID) within the hour a takeover is remembered:
// an entry that b took over and finished is delivered again, to c, which
// then stalls and is deleted by hand (XGROUP DELCONSUMER). c finds the
// entry pending for no one, and the stale record of b's takeover told it
// to let the entry go as finished elsewhere: the rewind's delivery was
// lost. A rewind now forgets the group's takeover record; moving forward
// keeps it (nothing is delivered again).
func TestRewoundGroupForgetsItsTakeoverRecord(t *testing.T) {
	for _, tc := range []struct {
		to      string
		forgets bool
	}{{"0", true}, {"$", false}} {
		t.Run("to "+tc.to, func(t *testing.T) {
			t.Parallel()
			rdb, stream, id := heldByA(t)
			ctx := testCtx(t)
			claimed, err := claimTo(ctx, rdb, stream, "g", "b", []string{id})
			require.NoError(t, err)
			require.Equal(t, []string{id}, claimed)
			require.NoError(t, rdb.XAck(ctx, stream, "g", id).Err(), "b finishes it")
			require.Equal(t, "b", takerOf(t, rdb, stream, id))

			require.NoError(t, SetGroupID(ctx, rdb, stream, "g", tc.to))
			if !tc.forgets {
				assert.Equal(t, "b", takerOf(t, rdb, stream, id), "kept")
				return
			}
			assert.Empty(t, takerOf(t, rdb, stream, id), "forgotten")
			require.Equal(t, []string{id}, deliverTo(t, rdb, stream, "g", "c", 1), "delivered again")
			require.NoError(t, rdb.XGroupDelConsumer(ctx, stream, "g", "c").Err())
			res, err := renewLeases(ctx, rdb, stream, "g", "c", 0, 0, []string{id})
			require.NoError(t, err)
			assert.Empty(t, res.lost, "c lets the rewind's delivery go: %+v", res)
			assert.Equal(t, []string{id}, append(res.unrecorded, res.vanished...), "c finishes it from memory: %+v", res)
		})
	}
}

// heldByA publishes one entry to a new stream and delivers it to consumer
// "a" of group "g", on the shared server: a consumer that then stalls (or
// dies) holding it.
func heldByA(t *testing.T) (rdb *redis.Client, stream, id string) {
	t.Helper()
	rdb = redistest.Client(t)
	stream = uniqueStream(t)
	id = publishOrders(t, rdb, stream, 1)[0]
	require.NoError(t, rdb.XGroupCreate(testCtx(t), stream, "g", "0").Err())
	require.Equal(t, []string{id}, deliverTo(t, rdb, stream, "g", "a", 1))
	return rdb, stream, id
}

// A reaper takes a stalled consumer's ("a") message with XAUTOCLAIM and
// records the takeover with a second call (markClaimed). When that call
// failed (a dropped connection, Redis restarting), the reaper reported it
// and handled the message anyway: a, looking again, found it pending for
// no one and unrecorded, and ran it again from memory (a "vanished" dead
// letter if that run failed). A claim it could not record is now left
// pending (this consumer's), and claimed again, recorded, once idle.
// (Found by a review of the one-step records of the operator actions.)
func TestReaperClaimItCouldNotRecordIsNotHandled(t *testing.T) {
	t.Parallel()
	rdb, stream, id := heldByA(t)
	ctx := testCtx(t)
	fail := &failScript{script: scripts.MarkTaken, once: true}
	fail.on.Store(true)
	bRdb := redistest.Client(t)
	bRdb.AddHook(fail)
	calls := startCounting(t, bRdb, stream, "b", 200*time.Millisecond)
	eventually(t, 10*time.Second, func() bool { return calls.Load() == 1 && pendingCount(t, rdb, stream, "g") == 0 },
		"b's reaper takes it over and b handles it")
	require.Equal(t, int64(1), fail.failed.Load(), "the first record failed")

	res, err := renewLeases(ctx, rdb, stream, "g", "a", 0, 0, []string{id})
	require.NoError(t, err)
	assert.Equal(t, []string{id}, res.lost, "a lets it go, where it ran it again from memory: %+v", res)
}

// startCounting starts a consumer named name of group "g" on stream, with
// a reaper of MinIdle minIdle, whose handler counts its calls and succeeds.
func startCounting(t *testing.T, rdb redis.UniversalClient, stream, name string, minIdle time.Duration) *atomic.Int64 {
	t.Helper()
	var calls atomic.Int64
	c := newTestConsumer(t, rdb, "g", append(fastReclaim(minIdle), WithConsumerName(name))...)
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		calls.Add(1)
		return nil
	}))
	startReady(t, c)
	return &calls
}
