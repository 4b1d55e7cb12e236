package redstream

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
	"github.com/redstream/redstream/internal/scripts"
)

// Scripts whose reply is lost after Redis ran them (a cut connection): a
// consumer must not act twice on what one run did. Found reviewing the
// takeover record (taken.go).

// isScript reports whether cmd runs script (EVALSHA, or its EVAL fallback).
func isScript(cmd redis.Cmder, script *redis.Script) bool {
	args := cmd.Args()
	if len(args) < 2 {
		return false
	}
	switch cmd.Name() {
	case "evalsha", "evalsha_ro":
		return args[1] == script.Hash()
	case "eval", "eval_ro":
		src, ok := args[1].(string)
		if !ok {
			return false
		}
		sum := sha1.Sum([]byte(src))
		return hex.EncodeToString(sum[:]) == script.Hash()
	}
	return false
}

// loseReply runs one script on the client it is added to and then loses
// its first reply, or its first times replies (an i/o timeout after Redis
// ran it), as a cut connection does; it counts the script's calls that
// returned.
type loseReply struct {
	script *redis.Script
	times  int64 // replies to lose; 0 is 1
	losses atomic.Int64
	lost   atomic.Bool
	done   atomic.Int64
}

func (h *loseReply) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *loseReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isScript(cmd, h.script) {
			return next(ctx, cmd)
		}
		err := next(ctx, cmd)
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			return err // go-redis sends it again with EVAL
		}
		defer h.done.Add(1)
		if err == nil && h.losses.Add(1) <= max(h.times, 1) {
			h.lost.Store(true)
			err = errors.New("i/o timeout (test: the reply was lost)")
			cmd.SetErr(err)
		}
		return err
	}
}

func (h *loseReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A consumer's dead-letter move is now a holder's move (mover "1") for
// every reason, not only ReasonVanished: an entry pending for no one is
// written from memory. The move is retried (workers.go deadLetter, up to 3
// attempts, then later for a keyed entry) with a new once-key each time,
// so a retry after a lost reply runs the script again; the first run
// acknowledged the entry, and the second, finding it pending for no one,
// not taken over and (no failure recorded: mover "1") with no record to
// check, dead-letters it again. Before, a move that was not for
// ReasonVanished answered "not-pending" there.
func TestDeadLetterMoveRetriedAfterALostReplyWritesOneDeadLetter(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	lose := &loseReply{script: scripts.DeadLetter}
	aRdb := redistest.Client(t)
	aRdb.AddHook(lose)
	c := newTestConsumer(t, aRdb, "g", WithGroupStart("0"), WithConsumerName("a"))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		return fmt.Errorf("poison: %w", ErrDeadLetter)
	}))
	startReady(t, c)
	eventually(t, 10*time.Second, func() bool { return lose.done.Load() >= 2 }, "the move, its reply lost, is retried")
	assert.Zero(t, pendingCount(t, rdb, stream, "g"))
	n, err := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "dead letters of %s", id)
}

// A move of a retry to the schedule whose reply is lost (Redis ran it: the
// message is scheduled and no longer pending) must not leave the message
// to an in-memory retry too, which finds it pending for no one and
// dead-letters it as vanished while the schedule delivers it again: the
// move is sent again as the same call, and gets the first run's reply.
func TestLostReplyOfARetryMoveNeitherDeadLettersNorRetriesTwice(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 1)

	lose := &loseReply{script: scripts.ScheduleRetry}
	rdb.AddHook(lose)
	var calls atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithLongRetryAfter(100*time.Millisecond))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		if calls.Add(1) == 1 {
			return RetryAfter(300*time.Millisecond, errors.New("fails once"))
		}
		return nil
	}))
	startReady(t, c)
	eventually(t, 10*time.Second, func() bool { return calls.Load() == 2 }, "the retry handled")
	require.True(t, lose.lost.Load(), "a reply was lost")
	assert.Never(t, func() bool {
		n, _ := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
		return n > 0 || calls.Load() > 2
	}, time.Second, 20*time.Millisecond, "dead-lettered, or handled a third time")
}

// The same, when every send of the move loses its reply
// (scheduleRetryAttempts): the consumer keeps the retry in memory, while
// Redis ran the first send, which scheduled the message and acknowledged
// it. The in-memory retry found the entry pending for no one, with no
// takeover or failure recorded, took it for forgotten by Redis and ran the
// handler from memory: the message handled twice (and dead-lettered as
// vanished had that run failed), the schedule delivering it once more.
// The move now records the entry as taken (by no consumer) in the step
// that acknowledges it: the consumer lets its in-memory retry go, and the
// schedule's delivery is the retry.
func TestEveryReplyOfARetryMoveLostLeavesTheRetryToTheSchedule(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 1)

	lose := &loseReply{script: scripts.ScheduleRetry, times: scheduleRetryAttempts}
	rdb.AddHook(lose)
	var calls, retries atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithLongRetryAfter(100*time.Millisecond))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		if m.RetryOf() != "" {
			retries.Add(1)
		}
		if calls.Add(1) == 1 {
			return RetryAfter(300*time.Millisecond, errors.New("fails once"))
		}
		return nil
	}))
	startReady(t, c)
	eventually(t, 10*time.Second, func() bool { return retries.Load() == 1 }, "the schedule delivers the retry")
	require.Equal(t, int64(scheduleRetryAttempts), lose.losses.Load(), "every send lost its reply")
	assert.Never(t, func() bool {
		n, _ := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
		return n > 0 || calls.Load() > 2
	}, time.Second, 20*time.Millisecond, "dead-lettered, or handled a third time")
	assert.Equal(t, int64(2), calls.Load(), "the first run and the schedule's retry")
}
