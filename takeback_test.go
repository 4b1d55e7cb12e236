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
	script *redis.Script
	on     atomic.Bool
}

func (h *failScript) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *failScript) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.on.Load() && isScript(cmd, h.script) {
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
	t.Cleanup(func() { // before the consumer stops, should the test fail
		select {
		case <-release:
		default:
			close(release)
		}
	})
	<-running

	stall.on.Store(true)
	require.NoError(t, rdb.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: "g", Consumer: "b", Messages: []string{id}}).Err())
	require.NoError(t, markTaken(ctx, rdb, stream, "g", "b", []string{id}))
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
