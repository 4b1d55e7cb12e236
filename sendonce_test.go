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
	"github.com/redstream/redstream/internal/scripts"
)

// A write that is not idempotent must not be sent again by the client
// after a connection cut that came after Redis ran it: each of these tests
// cuts one connection right after Redis ran the command, through a default
// go-redis client (MaxRetries 3), and checks what Redis holds against what
// the call reported.

// proxiedClient returns a default client that talks to the test server
// through a fault proxy, and a direct client to check what Redis holds.
func proxiedClient(t *testing.T) (*cutProxy, *redis.Client, *redis.Client) {
	t.Helper()
	direct := redistest.Client(t)
	proxy := startCutProxy(t, redistest.Addr(t))
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return proxy, rdb, direct
}

// proxiedProducer returns a producer of a new stream that publishes
// through a fault proxy.
func proxiedProducer(t *testing.T, opts ...ProducerOption) (*cutProxy, *Producer[Order], *redis.Client, string) {
	t.Helper()
	proxy, rdb, direct := proxiedClient(t)
	stream := uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream, opts...)
	require.NoError(t, err)
	return proxy, p, direct, stream
}

func TestSendOncePublishCutAfterXADD(t *testing.T) {
	t.Parallel()
	proxy, p, direct, stream := proxiedProducer(t)
	ctx := testCtx(t)
	var err error

	proxy.CutAfter("xadd", 1)
	id, err := p.Publish(ctx, Order{ID: "o-1"})
	require.Error(t, err, "the reply was lost: the outcome is not known")
	assert.ErrorIs(t, err, ErrUncertain)
	assert.Empty(t, id)
	assert.Equal(t, 1, proxy.Cuts())
	assert.Equal(t, int64(1), direct.XLen(ctx, stream).Val(), "the XADD ran once, never resent")

	// A publish after the cut works as before.
	id, err = p.Publish(ctx, Order{ID: "o-2"})
	require.NoError(t, err)
	assert.NotEmpty(t, id)
	assert.Equal(t, int64(2), direct.XLen(ctx, stream).Val())
}

func TestSendOncePublishBatchCutAfterXADD(t *testing.T) {
	t.Parallel()
	proxy, p, direct, stream := proxiedProducer(t)
	ctx := testCtx(t)
	var err error

	proxy.CutAfter("xadd", 1)
	ids, err := p.PublishBatch(ctx, []Order{{ID: "a"}, {ID: "b"}, {ID: "c"}})
	var batchErr *BatchError
	require.ErrorAs(t, err, &batchErr)
	for i, e := range batchErr.Errs {
		assert.ErrorIs(t, e, ErrUncertain, "entry %d", i)
		assert.Empty(t, ids[i])
	}
	assert.Equal(t, int64(3), direct.XLen(ctx, stream).Val(), "the pipeline ran once, never resent")
}

func TestSendOncePublishAsyncCutAfterXADD(t *testing.T) {
	t.Parallel()
	proxy, p, direct, stream := proxiedProducer(t)
	ctx := testCtx(t)
	var err error

	proxy.CutAfter("xadd", 1)
	futures := make([]*PublishFuture, 20)
	for i := range futures {
		futures[i], err = p.PublishAsync(ctx, Order{ID: "o"})
		require.NoError(t, err)
	}
	require.NoError(t, p.Flush(ctx))
	var reported []string
	uncertainN := 0
	for _, f := range futures {
		id, err := f.Result()
		switch {
		case err == nil:
			reported = append(reported, id)
		case errors.Is(err, ErrUncertain):
			uncertainN++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	require.Equal(t, 1, proxy.Cuts())
	require.Positive(t, uncertainN, "the cut round trip's publishes are uncertain")
	entries, err := direct.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	held := map[string]bool{}
	for _, e := range entries {
		held[e.ID] = true
	}
	for _, id := range reported {
		assert.True(t, held[id], "reported ID %s is in the stream", id)
	}
	// Every entry is either reported or one of the uncertain ones: none
	// was appended behind the caller's back.
	assert.LessOrEqual(t, len(entries), len(reported)+uncertainN)
	assert.LessOrEqual(t, len(entries), 20)
}

func TestSendOnceExplicitIDCutAfterXADDIsResolved(t *testing.T) {
	t.Parallel()
	proxy, p, direct, stream := proxiedProducer(t)
	ctx := testCtx(t)
	var err error

	proxy.CutAfter("xadd", 1)
	id, err := p.Publish(ctx, Order{ID: "o-1"}, WithID("1700000000000-1"))
	require.NoError(t, err, "the entry is there: the publish did what it was asked")
	assert.Equal(t, "1700000000000-1", id)
	assert.Equal(t, int64(1), direct.XLen(ctx, stream).Val())
}

// pendingEntry adds one entry to stream and delivers it to consumer c of
// group g, and returns its ID.
func pendingEntry(t *testing.T, rdb *redis.Client, stream string) string {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, stream, "g", "0").Err())
	id := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", "{}"}}).Val()
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{stream, ">"}, Count: 1}).Err())
	return id
}

// seedDeadLetters dead-letters n messages of stream, directly.
func seedDeadLetters(t *testing.T, rdb *redis.Client, stream string, n int) {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, rdb.XGroupCreateMkStream(ctx, stream, "g", "0").Err())
	for range n {
		id := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", "{}"}}).Val()
		require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{stream, ">"}, Count: 1}).Err())
		res, _, err := deadLetterMove(ctx, rdb, stream, "g", "c", id, ReasonMaxDeliveries, "boom", -1, 1, byOther, nil)
		require.NoError(t, err)
		require.Equal(t, moved, res)
	}
	// Emptied, not deleted: Replay refuses a stream that does not exist.
	require.NoError(t, rdb.XTrimMaxLen(ctx, stream, 0).Err())
}

func TestSendOnceReplayCutAfterScriptCountsWhatRedisDid(t *testing.T) {
	t.Parallel()
	proxy, rdb, direct := proxiedClient(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	seedDeadLetters(t, direct, stream, 5)
	require.NoError(t, scripts.Replay.Load(ctx, direct).Err())

	dl, err := NewDeadLetters(rdb, stream)
	require.NoError(t, err)
	proxy.CutAfter("evalsha", 1)
	n, err := dl.Replay(ctx, ReplayAll())
	require.NoError(t, err)
	assert.Equal(t, 1, proxy.Cuts())
	assert.Equal(t, 5, n, "the replay whose reply was lost is counted")
	assert.Equal(t, int64(5), direct.XLen(ctx, stream).Val(), "each replayed once")
	assert.Zero(t, direct.XLen(ctx, DeadLetterKey(stream)).Val())
}

func TestSendOnceDeadLetterMoveCutAfterScript(t *testing.T) {
	t.Parallel()
	proxy, rdb, direct := proxiedClient(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := pendingEntry(t, direct, stream)
	require.NoError(t, scripts.DeadLetter.Load(ctx, direct).Err())

	proxy.CutAfter("evalsha", 1)
	res, dlID, err := deadLetterMove(ctx, rdb, stream, "g", "c", id, ReasonMaxDeliveries, "boom", -1, 1, byOther, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, proxy.Cuts())
	assert.Equal(t, moved, res, "the resent move reports the first run's result, not not-pending")
	assert.NotEmpty(t, dlID)
	assert.Equal(t, int64(1), direct.XLen(ctx, DeadLetterKey(stream)).Val())
}

// A consumer whose dead-letter move's reply is lost still reports the
// message dead-lettered, once.
func TestSendOnceConsumerDeadLetterCutAfterScript(t *testing.T) {
	t.Parallel()
	proxy, rdb, direct := proxiedClient(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	require.NoError(t, scripts.DeadLetter.Load(ctx, direct).Err())
	watch := &deadLetterWatch{}
	c := newTestConsumer(t, rdb, "g", WithMaxDeliveries(1), WithObserver(watch))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return errors.New("boom") }))
	run := startReady(t, c)
	proxy.CutAfter(scripts.DeadLetter.Hash(), 1)
	p, err := NewProducer[Order](direct, stream)
	require.NoError(t, err)
	_, err = p.Publish(ctx, Order{ID: "o-1"})
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() bool { return watch.count() == 1 }, "dead-lettered once")
	require.NoError(t, run.stop(t))
	assert.Equal(t, 1, proxy.Cuts())
	assert.Equal(t, 1, watch.count())
	assert.Equal(t, int64(1), direct.XLen(ctx, DeadLetterKey(stream)).Val())
	assert.Zero(t, pendingCount(t, direct, stream, "g"))
}

// deadLetterWatch counts the DeadLettered events.
type deadLetterWatch struct {
	NopObserver
	mu sync.Mutex
	n  int
}

func (w *deadLetterWatch) DeadLettered(Event, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
}

func (w *deadLetterWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func TestSendOnceTrimCutAfterScriptCountsWhatRedisDid(t *testing.T) {
	t.Parallel()
	proxy, rdb, direct := proxiedClient(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	for range 10 {
		direct.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", "{}"}})
	}
	require.NoError(t, scripts.Trim.Load(ctx, direct).Err())
	proxy.CutAfter("evalsha", 1)
	res, err := Trim(ctx, rdb, stream, TrimPolicy{MaxLen: 4, AllowUnconsumed: true})
	require.NoError(t, err)
	assert.Equal(t, 1, proxy.Cuts())
	assert.Equal(t, int64(6), res.Removed)
	assert.Equal(t, int64(4), direct.XLen(ctx, stream).Val())
}

func TestSendOnceDeadLetterDeleteAndPurgeCut(t *testing.T) {
	t.Parallel()
	proxy, rdb, direct := proxiedClient(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	seedDeadLetters(t, direct, stream, 3)
	dl, err := NewDeadLetters(rdb, stream)
	require.NoError(t, err)
	first := direct.XRangeN(ctx, DeadLetterKey(stream), "-", "+", 1).Val()[0].ID

	proxy.CutAfter("xdel", 1)
	n, err := dl.Delete(ctx, first)
	assert.ErrorIs(t, err, ErrUncertain, "a lost reply is not reported as 0 deleted")
	assert.Zero(t, n)
	assert.Equal(t, int64(2), direct.XLen(ctx, DeadLetterKey(stream)).Val())

	proxy.CutAfter("exec", 1)
	n, err = dl.Purge(ctx)
	assert.ErrorIs(t, err, ErrUncertain)
	assert.Zero(t, n)
	assert.Zero(t, direct.Exists(ctx, DeadLetterKey(stream)).Val())
}

func TestSendOnceOperatorAckAndDestroyCut(t *testing.T) {
	t.Parallel()
	proxy, rdb, direct := proxiedClient(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := pendingEntry(t, direct, stream)

	// The acknowledgement is one script call (acklapsed.lua), cached.
	require.NoError(t, scripts.AckLapsed.Load(ctx, direct).Err())
	proxy.CutAfter("evalsha", 1)
	n, err := AckPending(ctx, rdb, stream, "g", id)
	assert.ErrorIs(t, err, ErrUncertain, "not reported as not pending")
	assert.NotErrorIs(t, err, ErrNotPending)
	assert.Zero(t, n)
	assert.Zero(t, pendingCount(t, direct, stream, "g"), "acknowledged once")

	proxy.CutAfter("exec", 1)
	_, err = DestroyGroup(ctx, rdb, stream, "g")
	assert.ErrorIs(t, err, ErrUncertain, "not reported as no such group")
	assert.NotErrorIs(t, err, ErrNoGroup)
	groups, err := direct.XInfoGroups(ctx, stream).Result()
	require.NoError(t, err)
	assert.Empty(t, groups)
}
