package redstream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

// TestDedupeHundredPublishesOfOneKey publishes one dedupe key 100 times at
// once (Publish and PublishAsync), with the replies of some dropped after
// Redis ran the script, which go-redis then sends again: one entry, 100
// identical IDs, and exactly one publish told it appended the entry.
func TestDedupeHundredPublishesOfOneKey(t *testing.T) {
	t.Parallel()
	proxy := startCutProxy(t, redistest.Addr(t))
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr()}) // go-redis's default retries
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	warm, err := NewProducer[Order](rdb, stream+":warm")
	require.NoError(t, err)
	_, err = warm.Publish(ctx, Order{ID: "load"}, WithDedupeKey("load")) // the cut is on EVALSHA
	require.NoError(t, err)

	const n, cuts = 100, 3
	proxy.CutAfter("evalsha", cuts)
	ids, errs := make([]string, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if i%2 == 0 {
				ids[i], errs[i] = p.Publish(ctx, Order{ID: "order-1"}, WithDedupeKey("order-1"))
				return
			}
			f, err := p.PublishAsync(ctx, Order{ID: "order-1"}, WithDedupeKey("order-1"))
			if err != nil {
				errs[i] = err
				return
			}
			ids[i], errs[i] = f.Result()
		})
	}
	wg.Wait()
	proxy.eventuallyCut(t, cuts)
	first := 0
	for i := range n {
		assert.Equal(t, ids[0], ids[i], "publish %d: same ID", i)
		if errs[i] == nil {
			first++
		} else {
			assert.ErrorIs(t, errs[i], ErrDuplicate, "publish %d", i)
		}
	}
	assert.Equal(t, 1, first, "one publish appended the entry")
	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1, "one entry")
	assert.Equal(t, ids[0], entries[0].ID)

	// A lone publish whose reply is dropped: the resend gets the ID, as
	// the first publish of the key, not as a duplicate.
	proxy.CutAfter("evalsha", 1)
	id, err := p.Publish(ctx, Order{ID: "order-2"}, WithDedupeKey("order-2"))
	require.NoError(t, err)
	proxy.eventuallyCut(t, cuts+1)
	again, err := p.Publish(ctx, Order{ID: "order-2"}, WithDedupeKey("order-2"))
	assert.ErrorIs(t, err, ErrDuplicate)
	assert.Equal(t, id, again)
	assert.Equal(t, int64(2), rdb.XLen(ctx, stream).Val())
}

func TestDedupeWindowEnds(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream, WithDedupeWindow(150*time.Millisecond))
	require.NoError(t, err)
	id1, err := p.Publish(ctx, Order{ID: "1"}, WithDedupeKey("k"))
	require.NoError(t, err)
	dup, err := p.Publish(ctx, Order{ID: "1"}, WithDedupeKey("k"))
	require.ErrorIs(t, err, ErrDuplicate)
	assert.Equal(t, id1, dup)
	ttl, err := rdb.PTTL(ctx, dedupeMarkerKey(stream, "k")).Result()
	require.NoError(t, err)
	assert.Positive(t, ttl, "the marker expires with the window")
	assert.LessOrEqual(t, ttl, 150*time.Millisecond)

	eventually(t, 5*time.Second, func() bool { return rdb.Exists(ctx, dedupeMarkerKey(stream, "k")).Val() == 0 })
	id2, err := p.Publish(ctx, Order{ID: "1"}, WithDedupeKey("k"))
	require.NoError(t, err, "after the window, a new entry")
	assert.NotEqual(t, id1, id2)
	assert.Equal(t, int64(2), rdb.XLen(ctx, stream).Val())
}

// TestDedupeBatchAndPartitions: WithDedupeKeyFunc deduplicates the entries
// of a batch, among themselves and against earlier publishes, and on a
// partitioned producer routes by the dedupe key.
func TestDedupeBatchAndPartitions(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, base := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, base, WithPartitions(4), WithDedupeKeyFunc(func(o Order) string { return o.ID }))
	require.NoError(t, err)
	ids, err := p.PublishBatch(ctx, []Order{{ID: "a"}, {ID: "b"}, {ID: "a"}})
	var batchErr *BatchError
	require.ErrorAs(t, err, &batchErr)
	assert.NoError(t, batchErr.Errs[0])
	assert.NoError(t, batchErr.Errs[1])
	assert.ErrorIs(t, batchErr.Errs[2], ErrDuplicate)
	assert.Equal(t, ids[0], ids[2], "the duplicate has the first entry's ID")

	again, err := p.Publish(ctx, Order{ID: "b", UserID: "other payload"})
	assert.ErrorIs(t, err, ErrDuplicate)
	assert.Equal(t, ids[1], again)
	// A dedupe key given to the call takes precedence over the func's.
	_, err = p.Publish(ctx, Order{ID: "b"}, WithDedupeKey("c"))
	require.NoError(t, err)

	for _, key := range []string{"a", "b"} {
		part := p.Partitions()[PartitionOf(key, 4)]
		n, err := rdb.XLen(ctx, part).Result()
		require.NoError(t, err)
		assert.Positive(t, n, "key %s in its partition", key)
	}
	var total int64
	for _, s := range p.Partitions() {
		total += rdb.XLen(ctx, s).Val()
	}
	assert.Equal(t, int64(3), total, "a, b and c: one entry each")

	// A scheduled publish is not deduplicated by the func.
	_, err = p.Publish(ctx, Order{ID: "a"}, WithDelay(time.Hour))
	require.NoError(t, err)
}

// TestDedupeKeepsTrimAndHeaders: the script's XADD carries the producer's
// trim and the entry's headers and key.
func TestDedupeKeepsTrimAndHeaders(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream, WithMaxLen(1))
	require.NoError(t, err)
	for i := range 200 {
		_, err := p.Publish(ctx, Order{ID: "o", UserID: "u"}, WithDedupeKey(string(rune('a'+i%26))+time.Now().String()), WithKey("k"), WithHeader("h", "v"))
		require.NoError(t, err)
	}
	assert.Less(t, rdb.XLen(ctx, stream).Val(), int64(200), "trimmed at write")
	entries, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "v", entries[0].Values["h"])
	assert.Equal(t, "k", entries[0].Values[KeyField])
	assert.Equal(t, "o", entries[0].Values["orderId"])
}

// TestDedupeScriptErrorIsNotUncertain: a publish Redis refuses (the key is
// not a stream) reports Redis's error, not ErrUncertain.
func TestDedupeScriptErrorIsNotUncertain(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	require.NoError(t, rdb.Set(ctx, stream, "not a stream", 0).Err())
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	_, err = p.Publish(ctx, Order{ID: "1"}, WithDedupeKey("k"))
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrUncertain), "%v", err)
	assert.False(t, errors.Is(err, ErrDuplicate), "%v", err)
	assert.Zero(t, rdb.Exists(ctx, dedupeMarkerKey(stream, "k")).Val(), "no marker for a publish that failed")

	_, err = p.Publish(context.Background(), Order{ID: "1"}, WithDelay(0))
	require.NoError(t, err, "scheduling does not touch the stream")
}
