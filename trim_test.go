package redstream

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// remaining returns the IDs the stream still holds, as a set.
func remaining(t *testing.T, rdb redis.UniversalClient, stream string) map[string]bool {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), stream, "-", "+").Result()
	require.NoError(t, err)
	ids := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		ids[m.ID] = true
	}
	return ids
}

func TestSafeTrimKeepsEveryEntryAGroupNeeds(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	ids := publishOrders(t, rdb, stream, 100)

	// "slow" was delivered 60 and acknowledged all but ids[10] and 50..59;
	// "fast" was delivered 80 and acknowledged them all; "never" never read.
	slow := deliverTo(t, rdb, stream, "slow", "c", 60)
	var acks []string
	for i, id := range slow {
		if i != 10 && i < 50 {
			acks = append(acks, id)
		}
	}
	require.NoError(t, rdb.XAck(ctx, stream, "slow", acks...).Err())
	fast := deliverTo(t, rdb, stream, "fast", "c", 80)
	require.NoError(t, rdb.XAck(ctx, stream, "fast", fast...).Err())

	// needed reports whether some group still needs ids[i].
	tenPending := true
	needed := func(i int, groups ...string) bool {
		for _, g := range groups {
			switch g {
			case "slow":
				if i >= 60 || (i == 10 && tenPending) || (i >= 50 && i < 60) {
					return true
				}
			case "fast":
				if i >= 80 {
					return true
				}
			}
		}
		return false
	}
	check := func(groups ...string) {
		t.Helper()
		left := remaining(t, rdb, stream)
		for i, id := range ids {
			if needed(i, groups...) {
				assert.True(t, left[id], "entry %d (%s) is needed by %v but was trimmed", i, id, groups)
			}
		}
	}

	res, err := Trim(ctx, rdb, stream, TrimPolicy{})
	require.NoError(t, err)
	assert.Equal(t, int64(10), res.Removed, "entries 0..9: consumed by both groups")
	assert.Equal(t, ids[10], res.MinID)
	check("slow", "fast")

	// A length bound does not go past what a group needs...
	res, err = Trim(ctx, rdb, stream, TrimPolicy{MaxLen: 5})
	require.NoError(t, err)
	assert.Zero(t, res.Removed)
	check("slow", "fast")
	// ...nor does an age bound.
	res, err = Trim(ctx, rdb, stream, TrimPolicy{MaxAge: time.Nanosecond})
	require.NoError(t, err)
	assert.Zero(t, res.Removed)
	check("slow", "fast")

	// Once slow acknowledges ids[10], the bound moves to ids[50].
	require.NoError(t, rdb.XAck(ctx, stream, "slow", slow[10]).Err())
	tenPending = false
	res, err = Trim(ctx, rdb, stream, TrimPolicy{})
	require.NoError(t, err)
	assert.Equal(t, int64(40), res.Removed)
	check("slow", "fast")

	// A group that never read protects everything.
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "never", "0").Err())
	before := remaining(t, rdb, stream)
	res, err = Trim(ctx, rdb, stream, TrimPolicy{MaxLen: 1})
	require.NoError(t, err)
	assert.Zero(t, res.Removed)
	assert.Equal(t, before, remaining(t, rdb, stream))
	require.NoError(t, rdb.XGroupDestroy(ctx, stream, "never").Err())

	// The explicit hard cap drops what slow still needs, and says how much.
	res, err = Trim(ctx, rdb, stream, TrimPolicy{MaxLen: 5, AllowUnconsumed: true})
	require.NoError(t, err)
	assert.Equal(t, int64(45), res.Removed, "50 left, 5 kept")
	assert.Equal(t, int64(45), res.Dropped, "all 45 were needed by slow (pending 50..59 or undelivered)")
	left := remaining(t, rdb, stream)
	assert.Len(t, left, 5)
	for _, id := range ids[95:] {
		assert.True(t, left[id])
	}
}

func TestTrimWithoutGroups(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 30)
	res, err := Trim(ctx, rdb, stream, TrimPolicy{})
	require.NoError(t, err)
	assert.Zero(t, res.Removed, "no group has consumed anything: safe trim keeps all")
	res, err = Trim(ctx, rdb, stream, TrimPolicy{MaxLen: 10})
	require.NoError(t, err)
	assert.Equal(t, int64(20), res.Removed, "no group to protect: the policy applies")
	assert.Zero(t, res.Dropped)
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(10), n)
}

func TestTrimMaxAge(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	old := time.Now().Add(-time.Hour).UnixMilli()
	for i := range 20 {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: strconv.FormatInt(old+int64(i), 10) + "-0", Values: []string{"k", "v"}}).Err())
	}
	fresh := publishOrders(t, rdb, stream, 5)
	all := deliverTo(t, rdb, stream, "g", "c", 25)
	require.NoError(t, rdb.XAck(ctx, stream, "g", all[:22]...).Err()) // the 3 newest stay pending

	res, err := Trim(ctx, rdb, stream, TrimPolicy{MaxAge: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, int64(20), res.Removed, "entries older than a minute go")
	left := remaining(t, rdb, stream)
	assert.Len(t, left, 5)
	for _, id := range fresh {
		assert.True(t, left[id])
	}
}

func TestTrimLengthInSeveralCalls(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	prefillOrders(t, rdb, stream, trimBatch+2500)
	res, err := Trim(ctx, rdb, stream, TrimPolicy{MaxLen: 100})
	require.NoError(t, err)
	assert.Equal(t, int64(trimBatch+2400), res.Removed)
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(100), n)
}

func prefillOrders(t *testing.T, rdb redis.UniversalClient, stream string, n int) {
	t.Helper()
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	batch := make([]Order, 0, 1000)
	for i := range n {
		batch = append(batch, Order{ID: strconv.Itoa(i)})
		if len(batch) == cap(batch) || i == n-1 {
			_, err := p.PublishBatch(context.Background(), batch)
			require.NoError(t, err)
			batch = batch[:0]
		}
	}
}

func TestTrimErrors(t *testing.T) {
	rdb := mustRedis(t)
	ctx := testCtx(t)
	res, err := Trim(ctx, rdb, uniqueStream(t), TrimPolicy{})
	require.NoError(t, err, "a missing stream has nothing to trim")
	assert.Zero(t, res.Removed)
	_, err = Trim(ctx, rdb, "s", TrimPolicy{MaxLen: -1})
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = Trim(ctx, rdb, "s", TrimPolicy{AllowUnconsumed: true})
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = Trim(ctx, rdb, "a}b", TrimPolicy{})
	assert.ErrorIs(t, err, ErrInvalidStreamName)
}

func TestConsumerAndReaperTrimPeriodically(t *testing.T) {
	rdb := mustRedis(t)
	ctx := testCtx(t)
	stream := uniqueStream(t)
	publishOrders(t, rdb, stream, 20)
	release := make(chan struct{})
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConcurrency(1), WithTrim(TrimPolicy{}, 20*time.Millisecond))
	var first sync.Once
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		first.Do(func() { <-release })
		return nil
	}))
	start(t, c)
	// While the first message is in its handler, nothing it or later
	// entries need may go.
	assert.Never(t, func() bool { n, _ := rdb.XLen(ctx, stream).Result(); return n < 20 }, 150*time.Millisecond, 10*time.Millisecond)
	close(release)
	eventually(t, 10*time.Second, func() bool { n, _ := rdb.XLen(ctx, stream).Result(); return n == 0 }, "consumed entries are trimmed")

	other := uniqueStream(t)
	publishOrders(t, rdb, other, 10)
	all := deliverTo(t, rdb, other, "g", "c", 10)
	require.NoError(t, rdb.XAck(ctx, other, "g", all[:6]...).Err())
	rp, err := NewReaper(rdb, "g", []string{other}, WithTrim(TrimPolicy{}, 20*time.Millisecond))
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rp.Run(runCtx) }()
	eventually(t, 10*time.Second, func() bool { n, _ := rdb.XLen(ctx, other).Result(); return n == 4 })
	stop()
	require.NoError(t, <-done)

	_, err = NewConsumer(rdb, "g", WithTrim(TrimPolicy{}, 0))
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewConsumer(rdb, "g", WithTrim(TrimPolicy{MaxLen: -1}, time.Second))
	assert.ErrorIs(t, err, ErrInvalidOption)
}
