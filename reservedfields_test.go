package redstream

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

// Fields under ReservedFieldPrefix are redstream's: a message published
// with RetryGroupField as a header (or a Fields payload forwarded from a
// long-retried entry) was acknowledged unhandled by every group but the
// one it named; AttemptsField counted attempts the message never had.
// The producer now refuses them, in every publish mode, writing nothing.
func TestPublishRefusesRedstreamsOwnFieldNames(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	for _, name := range []string{RetryGroupField, AttemptsField, RetryOfField, ScheduleIDField, DueField, ReservedFieldPrefix + "anything"} {
		for mode := range publishModes {
			stream := uniqueStream(t)
			p, err := NewProducer[Order](rdb, stream)
			require.NoError(t, err)
			err = publishVia(t, ctx, p, mode, Order{ID: "1"}, WithHeader(name, "shipping"))
			assert.ErrorIs(t, err, ErrInvalidOption, "header %s, %s", name, mode)

			f, err := NewProducer[Fields](rdb, stream)
			require.NoError(t, err)
			err = publishVia(t, ctx, f, mode, Fields{"order": "1", name: "2"})
			assert.ErrorIs(t, err, ErrInvalidOption, "field %s, %s", name, mode)
			assert.Zero(t, rdb.XLen(ctx, stream).Val(), "%s, %s: nothing written", name, mode)
		}
	}
}

// A dead letter of a message that went through long retries carries
// AttemptsField: Replay copied it back, and the replayed message started
// its count where the dead-lettered one ended (one attempt, then a dead
// letter again), where the README promises a fresh count. It is dropped
// now; RetryGroupField stays (the stream's other groups handled the
// message already).
func TestReplayStartsALongRetriedMessageAfresh(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 1)
	dl := mustDeadLetters(t, rdb, stream)
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: DeadLetterKey(stream), Values: []string{
		"dead-letter:stream", stream, "dead-letter:group", "g", "dead-letter:reason", ReasonMaxDeliveries,
		"payload", `{"id":"1"}`, AttemptsField, "2", RetryGroupField, "g", RetryOfField, "1-1",
	}}).Result()
	require.NoError(t, err)

	n, err := dl.Replay(ctx, ReplayIDs(id))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	last, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	require.NoError(t, err)
	require.Len(t, last, 1)
	assert.NotContains(t, last[0].Values, AttemptsField, "a fresh count")
	assert.Equal(t, "g", last[0].Values[RetryGroupField], "still for the group it failed in")
	assert.Equal(t, "1-1", last[0].Values[RetryOfField])
}

// Replay to a stream deleted since its messages were dead-lettered
// reported them replayed and deleted the dead letters, while the XADD made
// a new stream with no group: a consumer starting at "$" (the default)
// never read them. It now refuses with ErrNoStream and leaves them.
func TestReplayToADeletedStreamRefuses(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	dl := mustDeadLetters(t, rdb, stream)
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: DeadLetterKey(stream), Values: []string{
		"dead-letter:stream", stream, "dead-letter:reason", ReasonHandler, "payload", `{"id":"1"}`,
	}}).Result()
	require.NoError(t, err)
	for name, opt := range map[string]ReplayOption{"ids": ReplayIDs(id), "all": ReplayAll()} {
		n, err := dl.Replay(ctx, opt)
		assert.ErrorIs(t, err, ErrNoStream, name)
		assert.Zero(t, n, name)
	}
	assert.Zero(t, rdb.Exists(ctx, stream).Val(), "no stream made")
	left, err := dl.Len(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), left, "the dead letter stays")
}
