package redstreamotel

import (
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/redistest"
)

func TestStreamGauges(t *testing.T) {
	t.Parallel()
	ctx, stream := testCtx(t), uniqueStream(t)
	rdb := redistest.Client(t)
	// Six entries with IDs from 1970, so the oldest pending one is decades old.
	for i := 1; i <= 6; i++ {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: "1-" + strconv.Itoa(i), Values: []any{"n", i}}).Err())
	}
	// Group "billing" has been delivered 3 and acknowledged the first: lag 3, pending 2.
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "billing", "0").Err())
	read, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "c", Streams: []string{stream, ">"}, Count: 3}).Result()
	require.NoError(t, err)
	require.Len(t, read[0].Messages, 3)
	require.NoError(t, rdb.XAck(ctx, stream, "billing", "1-1").Err())
	// Group "audit" starts after the last entry: nothing to do.
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "audit", "$").Err())
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: redstream.DeadLetterKey(stream), Values: []any{"n", 0}}).Err())

	mp, reader := newMeterProvider(t)
	missing := stream + ":missing"
	reg, err := RegisterStreamGauges(mp, rdb, stream, missing)
	require.NoError(t, err)

	m := collect(t, reader)
	dest := semconv.MessagingDestinationName(stream)
	billing, audit := semconv.MessagingConsumerGroupName("billing"), semconv.MessagingConsumerGroupName("audit")
	for _, tt := range []struct {
		name string
		got  func() (int64, bool)
		want int64
	}{
		{"stream length", func() (int64, bool) { return m.int64("redstream.stream.length", dest) }, 6},
		{"dead-letter length", func() (int64, bool) { return m.int64("redstream.dead_letter.length", dest) }, 1},
		{"billing lag", func() (int64, bool) { return m.int64("redstream.group.lag", dest, billing) }, 3},
		{"billing pending", func() (int64, bool) { return m.int64("redstream.group.pending", dest, billing) }, 2},
		{"audit lag", func() (int64, bool) { return m.int64("redstream.group.lag", dest, audit) }, 0},
		{"audit pending", func() (int64, bool) { return m.int64("redstream.group.pending", dest, audit) }, 0},
	} {
		got, found := tt.got()
		assert.True(t, found, tt.name)
		assert.Equal(t, tt.want, got, tt.name)
	}
	age, found := m.float64("redstream.group.oldest_pending_age", dest, billing)
	assert.True(t, found)
	assert.Greater(t, age, (50 * 365 * 24 * time.Hour).Seconds(), "entry 1-2 dates from 1970; in seconds")
	age, found = m.float64("redstream.group.oldest_pending_age", dest, audit)
	assert.True(t, found)
	assert.Zero(t, age, "nothing pending")
	assert.Equal(t, 1, m.points("redstream.stream.length"), "the missing stream is skipped")
	assert.Equal(t, "s", m.metric("redstream.group.oldest_pending_age").Unit)

	require.NoError(t, reg.Unregister())
	m = collect(t, reader)
	assert.Zero(t, m.points("redstream.stream.length"), "no observations after Unregister")
}

func TestStreamGaugesArguments(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	_, err := RegisterStreamGauges(nil, rdb)
	require.ErrorContains(t, err, "no streams")
	_, err = RegisterStreamGauges(nil, rdb, "bad}stream")
	require.ErrorIs(t, err, redstream.ErrInvalidStreamName)
	_, err = RegisterStreamGauges(nil, nil, "s:e:a")
	require.ErrorContains(t, err, "nil redis client")
	reg, err := RegisterStreamGauges(nil, rdb, "s:e:a") // the global provider, a no-op one here
	require.NoError(t, err)
	require.NoError(t, reg.Unregister())
}
