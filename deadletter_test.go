package redstream

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deadLetterN publishes n orders and dead-letters each through a consumer
// whose handler returns ErrDeadLetter, then stops it.
func deadLetterN(t *testing.T, rdb redis.UniversalClient, stream string, n int) []string {
	t.Helper()
	ids := publishOrders(t, rdb, stream, n)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConcurrency(1))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		return fmt.Errorf("order %s: %w", m.Payload.ID, ErrDeadLetter)
	}))
	r := start(t, c)
	d := mustDeadLetters(t, rdb, stream)
	eventually(t, 10*time.Second, func() bool { l, _ := d.Len(context.Background()); return l == int64(n) })
	require.NoError(t, r.stop(t))
	return ids
}

func TestReplayPutsMessagesBackOnce(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		ids := deadLetterN(t, rdb, stream, 5)
		d := mustDeadLetters(t, rdb, stream)

		// The handler is fixed: replayed messages are handled.
		handled := newSeen()
		c := newTestConsumer(t, rdb, "g")
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			handled.add(m.Payload.ID)
			return nil
		}))
		start(t, c)
		n, err := d.Replay(ctx, ReplayAll())
		require.NoError(t, err)
		assert.Equal(t, 5, n)
		eventually(t, 10*time.Second, func() bool { return handled.len() == 5 })
		for i := range ids {
			assert.Equal(t, 1, handled.count(strconv.Itoa(i)))
		}
		l, err := d.Len(ctx)
		require.NoError(t, err)
		assert.Zero(t, l)

		// Replaying again does nothing.
		n, err = d.Replay(ctx, ReplayAll())
		require.NoError(t, err)
		assert.Zero(t, n)
		assert.Never(t, func() bool {
			for i := range ids {
				if handled.count(strconv.Itoa(i)) != 1 {
					return true
				}
			}
			return false
		}, 200*time.Millisecond, 20*time.Millisecond)
		sl, err := rdb.XLen(ctx, stream).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(10), sl, "5 originals and 5 replays, nothing more")
	})
}

func TestReplaySelectedIDsIsIdempotent(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	deadLetterN(t, rdb, stream, 3)
	d := mustDeadLetters(t, rdb, stream)
	letters, _, err := d.List(ctx, ListOptions{})
	require.NoError(t, err)
	require.Len(t, letters, 3)

	before, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	n, err := d.Replay(ctx, ReplayIDs(letters[1].ID, letters[1].ID, "1-1"))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the same ID twice, and an unknown one, replay once")
	after, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.Equal(t, before+1, after)
	last, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	require.NoError(t, err)
	assert.Equal(t, letters[1].Fields, stringFields(last[0].Values), "the original fields, without metadata")
	rest, _, err := d.List(ctx, ListOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{letters[0].ID, letters[2].ID}, []string{rest[0].ID, rest[1].ID})
}

func stringFields(values map[string]any) map[string]string {
	out := make(map[string]string, len(values))
	for k, v := range values {
		out[k], _ = v.(string)
	}
	return out
}

func TestReplayRate(t *testing.T) {
	_, rdb := newMiniredis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	deadLetterN(t, rdb, stream, 5)
	d := mustDeadLetters(t, rdb, stream)
	begin := time.Now()
	n, err := d.Replay(ctx, ReplayAll(), ReplayRate(25))
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	assert.GreaterOrEqual(t, time.Since(begin), 160*time.Millisecond, "5 entries at 25/s take about 200ms")

	// A replay cut short by its context reports what it did.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	other := uniqueStream(t)
	deadLetterN(t, rdb, other, 3)
	n, err = mustDeadLetters(t, rdb, other).Replay(short, ReplayAll(), ReplayRate(1))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Zero(t, n)
}

func TestDeadLetterMetadataNamesAreEscaped(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		// An entry whose own fields look like dead-letter metadata.
		own := map[string]string{"payload": "{bad", "dead-letter:reason": "mine", "dead-letter:field:x": "y"}
		_, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: own}).Result()
		require.NoError(t, err)
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
		require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
		r := start(t, c)
		d := mustDeadLetters(t, rdb, stream)
		eventually(t, 10*time.Second, func() bool { l, _ := d.Len(ctx); return l == 1 })
		require.NoError(t, r.stop(t))

		letters, _, err := d.List(ctx, ListOptions{})
		require.NoError(t, err)
		assert.Equal(t, ReasonDecode, letters[0].Reason, "metadata is not overwritten")
		assert.Equal(t, own, letters[0].Fields, "the entry's own fields survive")

		_, err = d.Replay(ctx, ReplayAll())
		require.NoError(t, err)
		last, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
		require.NoError(t, err)
		assert.Equal(t, own, stringFields(last[0].Values), "replay restores the original names")
	})
}

func TestDeadLettersListPagingDeleteAndPurge(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	deadLetterN(t, rdb, stream, 7)
	d := mustDeadLetters(t, rdb, stream)

	var oldest []string
	after := ""
	for {
		page, next, err := d.List(ctx, ListOptions{Count: 3, After: after})
		require.NoError(t, err)
		for _, l := range page {
			oldest = append(oldest, l.ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	require.Len(t, oldest, 7)
	var newest []string
	after = ""
	for {
		page, next, err := d.List(ctx, ListOptions{Count: 2, After: after, NewestFirst: true})
		require.NoError(t, err)
		for _, l := range page {
			newest = append(newest, l.ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	require.Len(t, newest, 7)
	for i := range oldest {
		assert.Equal(t, oldest[i], newest[len(newest)-1-i])
	}

	n, err := d.Delete(ctx, oldest[0], oldest[1], "1-1")
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
	n, err = d.Purge(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
	l, err := d.Len(ctx)
	require.NoError(t, err)
	assert.Zero(t, l)
}

func TestDeadLettersErrors(t *testing.T) {
	_, rdb := newMiniredis(t)
	ctx := testCtx(t)
	_, err := NewDeadLetters(nil, "s")
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewDeadLetters(rdb, "")
	assert.ErrorIs(t, err, ErrInvalidStreamName)
	d := mustDeadLetters(t, rdb, uniqueStream(t))
	_, err = d.Replay(ctx)
	assert.ErrorIs(t, err, ErrInvalidOption, "Replay needs a selection")
	_, err = d.Replay(ctx, ReplayAll(), ReplayIDs("1-1"))
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = d.Replay(ctx, ReplayIDs("nope"))
	assert.ErrorIs(t, err, ErrInvalidID)
	// Rates whose interval is 0, negative (overflow) or not a number
	// panicked in time.NewTicker (found with the dashboard's replay form).
	for _, rate := range []float64{0, -1, math.NaN(), math.Inf(1), math.Inf(-1), 2e9, MaxReplayRate * 1.01, 1e-300, MinReplayRate / 2} {
		_, err = d.Replay(ctx, ReplayAll(), ReplayRate(rate))
		assert.ErrorIs(t, err, ErrInvalidOption, "rate %v", rate)
	}
	assert.NoError(t, CheckReplayRate(MinReplayRate))
	assert.NoError(t, CheckReplayRate(MaxReplayRate))
	_, _, err = d.List(ctx, ListOptions{After: "x"})
	assert.ErrorIs(t, err, ErrInvalidID)
	_, _, err = d.List(ctx, ListOptions{Count: -1})
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = d.Delete(ctx, "bad")
	assert.ErrorIs(t, err, ErrInvalidID)

	// An entry that claims to come from another stream is not replayed
	// into this one.
	_, err = rdb.XAdd(ctx, &redis.XAddArgs{Stream: d.Key(), Values: []string{metaStream, "elsewhere", "k", "v"}}).Result()
	require.NoError(t, err)
	_, err = d.Replay(ctx, ReplayAll())
	assert.ErrorContains(t, err, "came from elsewhere")
	assert.ErrorIs(t, err, ErrNotReplayable)
}

func TestParseDeadLetter(t *testing.T) {
	d := parseDeadLetter("9-0", map[string]any{
		metaStream: "s", metaID: "1-0", metaGroup: "g", metaConsumer: "c", metaDeliveries: "x",
		metaReason: ReasonDecode, metaError: "e", metaTime: "junk",
		"dead-letter:future": "ignored", "dead-letter:field:dead-letter:id": "mine", "payload": "p",
	})
	assert.Equal(t, "9-0", d.ID)
	assert.Equal(t, "s", d.Stream)
	assert.Zero(t, d.Deliveries, "malformed count is zero, not an error")
	assert.True(t, d.Time.IsZero())
	assert.Equal(t, map[string]string{"dead-letter:id": "mine", "payload": "p"}, d.Fields)
}

func TestDeadLetterWhenRedisFailsLeavesMessagePending(t *testing.T) {
	mr, rdb := newMiniredis(t)
	stream := uniqueStream(t)
	publishOrders(t, rdb, stream, 1)
	var calls atomic.Int64
	started := make(chan struct{})
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithErrorBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		if calls.Add(1) == 1 {
			close(started)
			// Scripts fail from now on.
			mr.SetError("ERR simulated outage")
		}
		return ErrDeadLetter
	}))
	r := start(t, c)
	<-started
	time.Sleep(50 * time.Millisecond)
	mr.SetError("")
	require.NoError(t, r.stop(t))
	// The entry stayed pending; the reader, rereading its own pending
	// entries after the outage, may have dead-lettered it since.
	letters, err := rdb.XLen(context.Background(), DeadLetterKey(stream)).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), pendingCount(t, rdb, stream, "g")+letters, "a failed dead-letter move loses nothing: the entry stays pending, or is dead-lettered once")
}

func TestReplayAllOfMessagesThatFailAgainEnds(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	for range 3 {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"payload", "{broken"}}).Err())
	}
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
	start(t, c)
	d := mustDeadLetters(t, rdb, stream)
	eventually(t, 10*time.Second, func() bool { n, _ := d.Len(ctx); return n == 3 })

	// Replayed poison lands in the dead-letter stream again while the
	// replay runs: the replay must still end, with the three it started with.
	for round := 1; round <= 3; round++ {
		n, err := d.Replay(ctx, ReplayAll(), ReplayRate(200))
		require.NoError(t, err)
		assert.Equal(t, 3, n, "round %d", round)
		eventually(t, 10*time.Second, func() bool { n, _ := d.Len(ctx); return n == 3 })
	}
	l, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(12), l, "3 originals and 3 replays per round")
}

func TestEntryWithTooManyFieldsIsDeadLetteredWithoutThem(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	values := make([]string, 0, 2*3500)
	for i := range 3500 {
		values = append(values, "f"+strconv.Itoa(i), "v")
	}
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values}).Result()
	require.NoError(t, err)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
	start(t, c)
	d := mustDeadLetters(t, rdb, stream)
	eventually(t, 10*time.Second, func() bool { n, _ := d.Len(ctx); return n == 1 }, "not stuck: recorded without its fields")
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	letters, _, err := d.List(ctx, ListOptions{})
	require.NoError(t, err)
	assert.Equal(t, id, letters[0].OriginID)
	assert.Equal(t, int64(3500), letters[0].FieldsOmitted)
	assert.Empty(t, letters[0].Fields)

	n, err := d.Replay(ctx, ReplayAll())
	assert.Zero(t, n)
	assert.ErrorContains(t, err, "without its 3500 fields")
	l, err := d.Len(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), l, "left in place")
}
