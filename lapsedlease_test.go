package redstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/faultkit"
	"github.com/redstream/redstream/internal/redistest"
)

// A consumer whose lease lapsed (it stalled longer than MinIdle) while it
// held a failed message can find, at its next look, the message pending for
// no one: another consumer reclaimed it and finished it meanwhile. That is
// not a vanished message, which the consumer must dead-letter from memory
// (its group, stream or pending record deleted): dead-lettering it again
// gives a second dead letter of a message already dead-lettered, or a dead
// letter of one already handled (found by the chaos test, a poison message
// dead-lettered twice). Two records tell the two apart: takeovers are
// recorded (taken.go), and whoever finishes an entry deletes its record of
// failed attempts.

// finishOutcomes are the ways finishElsewhere finishes a message: an
// operator's dead-letter move or acknowledgement, both recorded as
// takeovers, and a consumer's acknowledgement with no takeover recorded
// (its record failed to write, or was forgotten after an hour): only the
// failed-attempts record it deletes tells; and an acknowledgement followed
// by a trim that deleted the entry, which must not look like an entry
// trimmed while held (dead-lettered from memory).
var finishOutcomes = []string{"dead-lettered", "acknowledged", "acknowledged without a takeover record", "acknowledged, then trimmed"}

// finishElsewhere makes another consumer ("b") take id over and finish it
// the way the given outcome says.
func finishElsewhere(t *testing.T, rdb redis.UniversalClient, stream, id, outcome string) {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, rdb.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: "g", Consumer: "b", Messages: []string{id}}).Err())
	var n int
	var err error
	switch outcome {
	case "dead-lettered":
		n, err = DeadLetterPending(ctx, rdb, stream, "g", id)
	case "acknowledged":
		n, err = AckPending(ctx, rdb, stream, "g", id)
	case "acknowledged, then trimmed":
		n, err = AckPending(ctx, rdb, stream, "g", id)
		require.NoError(t, rdb.XDel(ctx, stream, id).Err())
	default:
		var acked int64
		acked, err = rdb.XAck(ctx, stream, "g", id).Result()
		n = int(acked)
		require.NoError(t, rdb.HDel(ctx, attemptsKey(stream, "g"), id).Err())
	}
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// attemptRecorded reports whether a failed attempt of id is recorded.
func attemptRecorded(t *testing.T, rdb redis.UniversalClient, stream, id string) bool {
	ok, err := rdb.HExists(testCtx(t), attemptsKey(stream, "g"), id).Result()
	require.NoError(t, err)
	return ok
}

func TestRetryOfAMessageFinishedElsewhereIsNotDeadLetteredAgain(t *testing.T) {
	t.Parallel()
	for _, outcome := range finishOutcomes {
		t.Run(outcome, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Client(t)
			ctx, stream := testCtx(t), uniqueStream(t)
			id := publishOrders(t, rdb, stream, 1)[0]

			logs := &faultkit.SyncBuffer{}
			obs := &vanishWatch{}
			var calls atomic.Int64
			// MinIdle a minute: the retry, a second after the failure,
			// comes long before the lease keeper's next round.
			c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"), WithMinIdle(time.Minute),
				WithObserver(obs), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
			require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
				calls.Add(1)
				return RetryAfter(time.Second, errors.New("fails; retried in a second"))
			}))
			startReady(t, c)
			eventually(t, 10*time.Second, func() bool { return attemptRecorded(t, rdb, stream, id) }, "the failure recorded")
			finishElsewhere(t, rdb, stream, id, outcome)

			eventually(t, 10*time.Second, func() bool {
				n, _ := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
				return strings.Contains(logs.String(), "by another consumer") || n > 1 ||
					(outcome != "dead-lettered" && n > 0)
			}, "the retry finds the message finished")
			want := int64(0)
			if outcome == "dead-lettered" {
				want = 1
			}
			n, err := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
			require.NoError(t, err)
			assert.Equal(t, want, n, "dead letters")
			assert.Equal(t, int64(1), calls.Load(), "handler calls")
			assert.Zero(t, obs.count(), "reported vanished")
			assert.Zero(t, pendingCount(t, rdb, stream, "g"))
		})
	}
}

// The same, found by the lease keeper while the message's handler runs:
// the handler's context is cancelled, as for a lease lost to a consumer
// still holding the message, and the consumer does not dead-letter it. On
// its first attempt, with no failure recorded, only the takeover record
// tells: without it the consumer cannot know, and dead-letters the message
// as vanished rather than lose it.
func TestLapsedLeaseFinishedElsewhereCancelsTheHandler(t *testing.T) {
	t.Parallel()
	for _, attempt := range []int64{1, 2} {
		for _, outcome := range finishOutcomes {
			t.Run(fmt.Sprintf("attempt %d %s", attempt, outcome), func(t *testing.T) {
				t.Parallel()
				testLapsedLeaseFinishedElsewhere(t, attempt, outcome)
			})
		}
	}
}

func testLapsedLeaseFinishedElsewhere(t *testing.T, attempt int64, outcome string) {
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	obs := &vanishWatch{}
	var calls atomic.Int64
	running := make(chan struct{})
	var cause atomic.Value
	c := newTestConsumer(t, rdb, "g", append(fastReclaim(300*time.Millisecond), WithGroupStart("0"), WithConsumerName("a"), WithObserver(obs))...)
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		if calls.Add(1) < attempt {
			return errors.New("an earlier attempt fails")
		}
		close(running)
		select {
		case <-ctx.Done():
			cause.Store(context.Cause(ctx))
		case <-time.After(3 * time.Second):
		}
		return errors.New("this attempt fails")
	}))
	startReady(t, c)
	<-running
	require.Equal(t, attempt > 1, attemptRecorded(t, rdb, stream, id), "a failure is recorded before the retry")
	finishElsewhere(t, rdb, stream, id, outcome)

	if attempt == 1 && outcome == "acknowledged without a takeover record" {
		letters := waitDeadLetters(t, rdb, stream, 1)
		assert.Equal(t, ReasonVanished, letters[0].Reason)
		assert.Nil(t, cause.Load(), "the handler's context cancelled")
		return
	}
	eventually(t, 10*time.Second, func() bool { return cause.Load() != nil }, "the handler's context cancelled")
	assert.ErrorIs(t, cause.Load().(error), ErrLeaseLost)
	want := int64(0)
	if outcome == "dead-lettered" {
		want = 1
	}
	// No require in the condition: Never may leave its last call running
	// past the test's end, when ctx is cancelled.
	assert.Never(t, func() bool {
		n, _ := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
		recorded, _ := rdb.HExists(ctx, attemptsKey(stream, "g"), id).Result()
		return n != want || recorded
	}, 500*time.Millisecond, 20*time.Millisecond, "dead-lettered, or its failure recorded again")
	assert.Equal(t, attempt, calls.Load())
	assert.Zero(t, obs.count(), "reported vanished")
}

// A failure is recorded only while the entry is pending: recorded after
// another consumer finished the entry, it would make the entry look never
// finished.
func TestFailedAttemptIsRecordedOnlyWhilePending(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 1)
	id := deliverTo(t, rdb, stream, "g", "a", 1)[0]

	n, err := recordAttempt(ctx, rdb, stream, "g", id, 1)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	require.NoError(t, rdb.XAck(ctx, stream, "g", id).Err())
	require.NoError(t, rdb.HDel(ctx, attemptsKey(stream, "g"), id).Err())
	n, err = recordAttempt(ctx, rdb, stream, "g", id, 2)
	require.NoError(t, err)
	assert.Equal(t, int64(notRecorded), n)
	assert.False(t, attemptRecorded(t, rdb, stream, id))

	n, err = recordAttempt(ctx, rdb, "no-such-stream-"+stream, "g", id, 1)
	require.NoError(t, err)
	assert.Equal(t, int64(notRecorded), n, "no group")
}

// takenBy returns who the taken record says took id over, and whether it
// says so at all.
func takenBy(t *testing.T, rdb redis.UniversalClient, stream, id string) (string, bool) {
	by, err := rdb.HGet(testCtx(t), takenKey(stream, "g"), id).Result()
	if errors.Is(err, redis.Nil) {
		return "", false
	}
	require.NoError(t, err)
	return by, true
}

// Every takeover is recorded: a consumer's reaper claiming a dead
// consumer's message (by the claimer's name), an operator's claim (by the
// consumer it went to), acknowledgement and dead-letter move (by ""), and a
// standalone Reaper's dead-letter move (by ""). What a consumer reads and
// finishes itself is not.
func TestTakeoversAreRecorded(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 6)
	dead := deliverTo(t, rdb, stream, "g", "dead", 5)

	n, err := ClaimPending(ctx, rdb, stream, "g", "heir", dead[1])
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = AckPending(ctx, rdb, stream, "g", dead[2])
	require.NoError(t, err)
	_, err = DeadLetterPending(ctx, rdb, stream, "g", dead[3])
	require.NoError(t, err)
	_, err = recordAttempt(ctx, rdb, stream, "g", dead[4], 5)
	require.NoError(t, err)
	require.NoError(t, rdb.Do(ctx, "XCLAIM", stream, "g", "dead", 0, dead[4], "IDLE", time.Minute.Milliseconds(), "RETRYCOUNT", 5, "JUSTID").Err())
	rp, err := NewReaper(rdb, "g", []string{stream}, WithMinIdle(30*time.Second), WithMaxDeliveries(5))
	require.NoError(t, err)
	stats, err := rp.ReapOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, stats.DeadLettered)
	for id, want := range map[string]string{dead[1]: "heir", dead[2]: "", dead[3]: "", dead[4]: ""} {
		by, ok := takenBy(t, rdb, stream, id)
		assert.True(t, ok, "takeover of %s recorded", id)
		assert.Equal(t, want, by, "taker of %s", id)
	}

	handled := startCounting(t, rdb, stream, "a", 100*time.Millisecond)
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 && handled.Load() == 3 },
		"the dead consumer's and the heir's messages reclaimed, and the one never delivered read")
	for _, id := range dead[:2] {
		by, ok := takenBy(t, rdb, stream, id)
		assert.True(t, ok, "takeover of %s recorded", id)
		assert.Equal(t, "a", by, "taker of %s", id)
	}
	all, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	_, ok := takenBy(t, rdb, stream, all[5].ID)
	assert.False(t, ok, "a message read and finished by its consumer is no takeover")
	ttl, err := rdb.PTTL(ctx, takenAgesKey(stream, "g")).Result()
	require.NoError(t, err)
	assert.InDelta(t, takenFor.Seconds(), ttl.Seconds(), 60, "the record expires an hour after its last write")
}

// A message whose consumer is deleted (XGROUP DELCONSUMER) while its
// handler runs, and whose handler then asks for a long retry (one moved to
// the stream's schedule), is pending for no one: it must be dead-lettered
// from memory, not dropped because the schedule refused it.
func TestLongRetryOfAVanishedMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	running, release := make(chan struct{}), make(chan struct{})
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("doomed"), WithMinIdle(time.Minute), WithLongRetryAfter(time.Minute))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		close(running)
		<-release
		return RetryAfter(time.Hour, errors.New("fails after its consumer was deleted"))
	}))
	startReady(t, c)
	<-running
	require.NoError(t, rdb.XGroupDelConsumer(ctx, stream, "g", "doomed").Err())
	close(release)
	letters := waitDeadLetters(t, rdb, stream, 1)
	assert.Equal(t, ReasonVanished, letters[0].Reason)
	assert.Equal(t, id, letters[0].OriginID)
	n, err := rdb.ZCard(ctx, scheduledKey(stream)).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "scheduled")
}
