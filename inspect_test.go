package redstream

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

func TestInspectKnownScenario(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	ids := publishOrders(t, rdb, stream, 10)

	// "billing": a1 read 4, acknowledged 2; a2 read 1 and holds it.
	held := deliverTo(t, rdb, stream, "billing", "a1", 4)
	require.NoError(t, rdb.XAck(ctx, stream, "billing", held[0], held[1]).Err())
	deliverTo(t, rdb, stream, "billing", "a2", 1)
	// "audit" never read; "new" starts at the end.
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "audit", "0").Err())
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "new", "$").Err())
	// One dead letter.
	_, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: DeadLetterKey(stream), Values: []string{"k", "v"}}).Result()
	require.NoError(t, err)

	info, err := Inspect(ctx, rdb, stream)
	require.NoError(t, err)
	assert.Equal(t, int64(10), info.Length)
	assert.Equal(t, ids[0], info.FirstID)
	assert.Equal(t, ids[9], info.LastID)
	assert.Equal(t, int64(1), info.DeadLetterLength)
	require.Len(t, info.Groups, 3)
	groups := map[string]GroupInfo{}
	for _, g := range info.Groups {
		groups[g.Name] = g
	}

	billing := groups["billing"]
	assert.Equal(t, ids[4], billing.LastDeliveredID)
	assert.Equal(t, int64(5), billing.Lag)
	assert.True(t, billing.LagKnown)
	assert.Equal(t, int64(3), billing.Pending)
	assert.Equal(t, ids[2], billing.OldestPendingID)
	assert.Less(t, billing.OldestPendingAge, time.Minute)
	assert.GreaterOrEqual(t, billing.OldestPendingAge, billing.OldestPendingIdle-time.Second)
	require.Len(t, billing.Consumers, 2)
	byName := map[string]ConsumerInfo{}
	for _, c := range billing.Consumers {
		byName[c.Name] = c
	}
	assert.Equal(t, int64(2), byName["a1"].Pending)
	assert.Equal(t, int64(1), byName["a2"].Pending)

	assert.Equal(t, int64(10), groups["audit"].Lag)
	assert.Zero(t, groups["audit"].Pending)
	assert.Empty(t, groups["audit"].OldestPendingID)
	assert.Zero(t, groups["new"].Lag)
	assert.Empty(t, groups["new"].Consumers)
}

func TestInspectCountsLagWhenRedisCannot(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	ids := publishOrders(t, rdb, stream, 10)
	deliverTo(t, rdb, stream, "g", "c", 3)
	// Deleting an entry the group has not read makes Redis 7 report no lag.
	require.NoError(t, rdb.XDel(ctx, stream, ids[6]).Err())

	info, err := Inspect(ctx, rdb, stream)
	require.NoError(t, err)
	require.Len(t, info.Groups, 1)
	assert.Equal(t, int64(6), info.Groups[0].Lag, "ids 3..9 without the deleted one")
	assert.True(t, info.Groups[0].LagKnown)
}

// A server that sends no lag of its own (Redis 6.2 sends none, which
// go-redis reads as 0; miniredis sends the stream's length) and no
// entries-added: the lag is counted.
func TestInspectCountsLagWhenTheServerSendsNone(t *testing.T) {
	_, rdb := newMiniredis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 10)
	deliverTo(t, rdb, stream, "g", "c", 3)

	info, err := Inspect(ctx, rdb, stream)
	require.NoError(t, err)
	require.Len(t, info.Groups, 1)
	assert.Equal(t, int64(7), info.Groups[0].Lag, "miniredis says 10")
	assert.True(t, info.Groups[0].LagKnown)
}

func TestInspectErrors(t *testing.T) {
	rdb := mustRedis(t)
	_, err := Inspect(context.Background(), rdb, uniqueStream(t))
	assert.ErrorIs(t, err, ErrNoStream)
	_, err = Inspect(context.Background(), rdb, "a}b")
	assert.ErrorIs(t, err, ErrInvalidStreamName)
}

// beforeCommand runs fn once, just before the first command of the client
// it is added to whose name and first argument are name and sub.
type beforeCommand struct {
	name, sub string
	fn        func()
	once      sync.Once
}

func (h *beforeCommand) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *beforeCommand) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); cmd.Name() == h.name && len(args) > 1 && strings.EqualFold(fmt.Sprint(args[1]), h.sub) {
			h.once.Do(h.fn)
		}
		return next(ctx, cmd)
	}
}

func (h *beforeCommand) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Inspect reads a stream's groups one after another: a group deleted
// meanwhile is left out of the snapshot, and a stream deleted meanwhile is
// ErrNoStream, rather than a Redis error (the dashboard's stream page
// answered 502 to them).
func TestInspectWhileAGroupOrTheStreamIsDeleted(t *testing.T) {
	for _, tc := range []struct {
		name, cmd, sub string
		groups         []string // what Inspect shows; nil: ErrNoStream
	}{
		{"group deleted before its consumers are read", "xinfo", "consumers", []string{"b"}},
		{"group deleted before its pending entries are read", "xpending", "", []string{"b"}},
		{"stream deleted before its groups are read", "xinfo", "groups", nil},
		{"stream deleted before a group's consumers are read", "xinfo", "consumers", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := redistest.Client(t)
			ctx, stream := testCtx(t), uniqueStream(t)
			publishOrders(t, rdb, stream, 2)
			deliverTo(t, rdb, stream, "a", "c1", 1)
			deliverTo(t, rdb, stream, "b", "c1", 1)
			other := redistest.Client(t)
			h := &beforeCommand{name: tc.cmd, sub: tc.sub, fn: func() {
				if tc.groups == nil {
					require.NoError(t, other.Del(ctx, stream).Err())
				} else {
					require.NoError(t, other.XGroupDestroy(ctx, stream, "a").Err())
				}
			}}
			if tc.sub == "" {
				h.sub = stream // XPENDING's first argument is the stream
			}
			rdb.AddHook(h)

			info, err := Inspect(ctx, rdb, stream)
			if tc.groups == nil {
				require.ErrorIs(t, err, ErrNoStream)
				return
			}
			require.NoError(t, err)
			var names []string
			for _, g := range info.Groups {
				names = append(names, g.Name)
			}
			assert.Equal(t, tc.groups, names)
		})
	}
}
