package redstream

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

func TestPublishWritesHeadersAndPayload(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)

		id, err := p.Publish(ctx, Order{ID: "o-1", UserID: "u-7", Amount: 12.5}, WithHeader("source", "test"))
		require.NoError(t, err)

		got, err := rdb.XRange(ctx, stream, "-", "+").Result()
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.Equal(t, id, got[0].ID)
		assert.Equal(t, map[string]any{
			"orderId": "o-1",
			"userId":  "u-7",
			"source":  "test",
			"payload": `{"id":"o-1","userId":"u-7","amount":12.5}`,
		}, got[0].Values)
	})
}

func TestPublishRejectsBadHeaders(t *testing.T) {
	_, rdb := newMiniredis(t)
	p, err := NewProducer[Order](rdb, uniqueStream(t))
	require.NoError(t, err)
	ctx := testCtx(t)

	_, err = p.Publish(ctx, Order{ID: "1"}, WithHeader("payload", "x"))
	assert.ErrorIs(t, err, ErrInvalidOption, "header named like the payload field")
	_, err = p.Publish(ctx, Order{ID: "1"}, WithHeader("orderId", "x"))
	assert.ErrorIs(t, err, ErrInvalidOption, "header clashing with a HeaderSource header")
	_, err = p.Publish(ctx, Order{ID: "1"}, WithHeader("", "x"))
	assert.ErrorIs(t, err, ErrInvalidOption, "empty header name")

	n, err := rdb.XLen(ctx, p.Stream()).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "a rejected publish writes nothing")
}

func TestPublishFieldsUntyped(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		p, err := NewProducer[Fields](rdb, stream)
		require.NoError(t, err)
		_, err = p.Publish(ctx, Fields{"orderId": "9", "amount": "3"}, WithHeader("source", "x"))
		require.NoError(t, err)
		got, err := rdb.XRange(ctx, stream, "-", "+").Result()
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.Equal(t, map[string]any{"orderId": "9", "amount": "3", "source": "x"}, got[0].Values)

		_, err = p.Publish(ctx, Fields{})
		assert.Error(t, err, "an entry needs at least one field")
		_, err = p.Publish(ctx, Fields{"a": "1"}, WithHeader("a", "2"))
		assert.ErrorIs(t, err, ErrInvalidOption, "header clashing with a field")
	})
}

type failingCodec struct{}

func (failingCodec) Marshal(any) ([]byte, error) { return nil, errors.New("boom") }
func (failingCodec) Unmarshal([]byte, any) error { return errors.New("boom") }

func TestPublishCodecAndPayloadField(t *testing.T) {
	_, rdb := newMiniredis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[string](rdb, stream, WithPayloadField("body"))
	require.NoError(t, err)
	_, err = p.Publish(ctx, "hello")
	require.NoError(t, err)
	got, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"body": `"hello"`}, got[0].Values)

	bad, err := NewProducer[string](rdb, stream, WithCodec(failingCodec{}))
	require.NoError(t, err)
	_, err = bad.Publish(ctx, "x")
	assert.ErrorContains(t, err, "boom")
}

func TestExplicitIDRetryIsIdempotent(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)

		id, err := p.Publish(ctx, Order{ID: "a"}, WithID("1694012345678-0"))
		require.NoError(t, err)
		assert.Equal(t, "1694012345678-0", id)

		// A retry of the same publish is a reported duplicate, not a new entry.
		id, err = p.Publish(ctx, Order{ID: "a"}, WithID("1694012345678-0"))
		assert.ErrorIs(t, err, ErrDuplicate)
		assert.Equal(t, "1694012345678-0", id)
		// Written another way (leading zeros), it is the same ID, and
		// reported as Redis writes it.
		id, err = p.Publish(ctx, Order{ID: "a"}, WithID("01694012345678-00"))
		assert.ErrorIs(t, err, ErrDuplicate)
		assert.Equal(t, "1694012345678-0", id)

		_, err = p.Publish(ctx, Order{ID: "b"}, WithID("1694012345679-0"))
		require.NoError(t, err)

		// An ID below the top that holds no entry is not a duplicate.
		_, err = p.Publish(ctx, Order{ID: "c"}, WithID("1694012345678-5"))
		assert.ErrorIs(t, err, ErrIDTooSmall)
		assert.NotErrorIs(t, err, ErrDuplicate)

		n, err := rdb.XLen(ctx, stream).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(2), n)
	})
}

func TestExplicitIDValidation(t *testing.T) {
	_, rdb := newMiniredis(t)
	p, err := NewProducer[Order](rdb, uniqueStream(t))
	require.NoError(t, err)
	for _, id := range []string{"0-0", "*", "123", "abc-1", "1-*", ""} {
		_, err := p.Publish(testCtx(t), Order{}, WithID(id))
		assert.ErrorIs(t, err, ErrInvalidID, "id %q", id)
	}
	_, err = p.PublishBatch(testCtx(t), []Order{{}}, WithID("1-1"))
	assert.ErrorIs(t, err, ErrInvalidOption, "WithID in a batch")
}

func TestPublishToWrongTypeKey(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		require.NoError(t, rdb.Set(ctx, stream, "not a stream", 0).Err())
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)
		_, err = p.Publish(ctx, Order{ID: "1"})
		require.Error(t, err)
		assert.True(t, redis.HasErrorPrefix(err, "WRONGTYPE"), "the Redis error is wrapped: %v", err)
		assert.Contains(t, err.Error(), stream)
	})
}

func TestPublishBatch(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)

		orders := make([]Order, 50)
		for i := range orders {
			orders[i] = Order{ID: strconv.Itoa(i)}
		}
		ids, err := p.PublishBatch(ctx, orders)
		require.NoError(t, err)
		require.Len(t, ids, 50)

		got, err := rdb.XRange(ctx, stream, "-", "+").Result()
		require.NoError(t, err)
		require.Len(t, got, 50)
		for i, m := range got {
			assert.Equal(t, ids[i], m.ID, "IDs returned in order")
			assert.Equal(t, strconv.Itoa(i), m.Values["orderId"])
		}

		ids, err = p.PublishBatch(ctx, nil)
		assert.NoError(t, err)
		assert.Empty(t, ids)
	})
}

func TestPublishBatchReportsPerEntryErrors(t *testing.T) {
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	// The stream key holds a string: every XADD of the pipeline fails.
	require.NoError(t, rdb.Set(ctx, stream, "x", 0).Err())
	ids, err := p.PublishBatch(ctx, []Order{{ID: "1"}, {ID: "2"}})
	var batchErr *BatchError
	require.ErrorAs(t, err, &batchErr)
	assert.Len(t, batchErr.Errs, 2)
	assert.Error(t, batchErr.Errs[0])
	assert.Equal(t, []string{"", ""}, ids)
	assert.Contains(t, err.Error(), "2 of 2 entries not published")
}

func TestMaxLenTrimsAtWrite(t *testing.T) {
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream, WithMaxLen(100))
	require.NoError(t, err)
	for i := range 1000 {
		_, err := p.Publish(ctx, Order{ID: strconv.Itoa(i)})
		require.NoError(t, err)
	}
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	// Approximate trimming removes whole macro-nodes (100 entries by default).
	assert.GreaterOrEqual(t, n, int64(100))
	assert.LessOrEqual(t, n, int64(200), "stream was not trimmed at write")
	last, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	require.NoError(t, err)
	assert.Equal(t, "999", last[0].Values["orderId"], "trimming drops the oldest entries")
}

func TestMinIDTrimsAtWrite(t *testing.T) {
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	for i := 1; i <= 300; i++ {
		_, err := p.Publish(ctx, Order{}, WithID(strconv.Itoa(i)+"-0"))
		require.NoError(t, err)
	}
	_, err = p.Publish(ctx, Order{}, WithID("301-0"), WithMinID("250-0"))
	require.NoError(t, err)
	first, err := rdb.XRangeN(ctx, stream, "-", "+", 1).Result()
	require.NoError(t, err)
	assert.NotEqual(t, "1-0", first[0].ID, "entries below MINID were trimmed")
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, int64(52), "entries at or above MINID are kept")
	assert.Less(t, n, int64(301))
}

func TestMaxAgeTrimsAtWrite(t *testing.T) {
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	// 300 entries from one hour ago, then a publish with a one-minute max age.
	old := time.Now().Add(-time.Hour).UnixMilli()
	for i := range 300 {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: strconv.FormatInt(old+int64(i), 10) + "-0", Values: []string{"k", "v"}}).Err())
	}
	p, err := NewProducer[Order](rdb, stream, WithMaxAge(time.Minute))
	require.NoError(t, err)
	_, err = p.Publish(ctx, Order{ID: "new"})
	require.NoError(t, err)
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.Less(t, n, int64(301), "old entries were trimmed")
}

func TestProducerOptionErrors(t *testing.T) {
	_, rdb := newMiniredis(t)
	cases := map[string][]ProducerOption{
		"zero maxlen":     {WithMaxLen(0)},
		"negative maxage": {WithMaxAge(-time.Second)},
		"maxlen+maxage":   {WithMaxLen(10), WithMaxAge(time.Minute)},
		"nil codec":       {WithCodec(nil)},
		"empty field":     {WithPayloadField("")},
	}
	for name, opts := range cases {
		_, err := NewProducer[Order](rdb, "a:b:c", opts...)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
	}
	_, err := NewProducer[Order](nil, "a:b:c")
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewProducer[Order](rdb, "")
	assert.ErrorIs(t, err, ErrInvalidStreamName)
	_, err = NewProducer[Order](rdb, "a}b")
	assert.ErrorIs(t, err, ErrInvalidStreamName)
}

type pointerHeaders struct {
	ID string `json:"id"`
}

func (p *pointerHeaders) Headers() map[string]string { return map[string]string{"ref": p.ID} }

func TestHeaderSourceOnPointerReceiver(t *testing.T) {
	_, rdb := newMiniredis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[pointerHeaders](rdb, stream)
	require.NoError(t, err)
	_, err = p.Publish(ctx, pointerHeaders{ID: "k1"})
	require.NoError(t, err)
	got, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	assert.Equal(t, "k1", got[0].Values["ref"])
}

// roundTrips counts the commands and pipelines a client sends; gate, when
// set, runs before each single command.
type roundTrips struct {
	singles, pipelines, pipelined atomic.Int64
	gate                          func()
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "xadd" {
			h.singles.Add(1)
			if h.gate != nil {
				h.gate()
			}
		}
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		// New connections also pipeline their CLIENT SETINFO calls.
		if cmds[0].Name() == "xadd" {
			h.pipelines.Add(1)
			h.pipelined.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

func TestConcurrentPublishesArePipelined(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)
		p.batches[0].maxSenders = 1 // one round trip at a time: the others queue
		hooks := &roundTrips{}
		// Hold the first XADD until seven more callers have queued behind it.
		var once sync.Once
		hooks.gate = func() {
			once.Do(func() {
				eventually(t, 5*time.Second, func() bool {
					p.batches[0].mu.Lock()
					defer p.batches[0].mu.Unlock()
					return len(p.batches[0].queue) == 7
				})
			})
		}
		rdb.AddHook(hooks)

		const goroutines, each = 8, 200
		ids := make([][]string, goroutines)
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range each {
					id, err := p.Publish(ctx, Order{ID: strconv.Itoa(g) + "-" + strconv.Itoa(i)})
					if !assert.NoError(t, err) {
						return
					}
					ids[g] = append(ids[g], id)
				}
			})
		}
		wg.Wait()

		entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
		require.NoError(t, err)
		require.Len(t, entries, goroutines*each)
		byID := map[string]string{}
		for _, e := range entries {
			byID[e.ID] = e.Values["orderId"].(string)
		}
		for g := range goroutines {
			require.Len(t, ids[g], each)
			for i, id := range ids[g] {
				assert.Equal(t, strconv.Itoa(g)+"-"+strconv.Itoa(i), byID[id], "each caller gets the ID of its own entry")
			}
		}
		assert.Positive(t, hooks.pipelines.Load(), "concurrent publishes were pipelined")
		assert.Equal(t, int64(goroutines*each), hooks.singles.Load()+hooks.pipelined.Load(), "singles %d pipelines %d pipelined %d", hooks.singles.Load(), hooks.pipelines.Load(), hooks.pipelined.Load())
		assert.Less(t, hooks.singles.Load()+hooks.pipelines.Load(), int64(goroutines*each), "fewer round trips than publishes")
	})
}

func TestPublishWithEndedContextIsNotSent(t *testing.T) {
	_, rdb := newMiniredis(t)
	stream := uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.Publish(ctx, Order{ID: "x"})
	assert.ErrorIs(t, err, context.Canceled)
	n, err := rdb.XLen(context.Background(), stream).Result()
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestQueuedPublishGivesUpWithItsContext(t *testing.T) {
	_, rdb := newMiniredis(t)
	stream := uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	p.batches[0].maxSenders = 1 // one round trip at a time: the second call queues
	release := make(chan struct{})
	var once sync.Once
	rdb.AddHook(&roundTrips{gate: func() { once.Do(func() { <-release }) }})

	first := make(chan error, 1)
	go func() {
		_, err := p.Publish(context.Background(), Order{ID: "first"})
		first <- err
	}()
	eventually(t, 5*time.Second, func() bool {
		p.batches[0].mu.Lock()
		defer p.batches[0].mu.Unlock()
		b := p.batches[0]
		return b.senders == 1 && b.idle == 0 && len(b.queue) == 0 // first is in its round trip
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = p.Publish(ctx, Order{ID: "impatient"}) // queues behind the held round trip
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	close(release)
	require.NoError(t, <-first)

	_, err = p.Publish(context.Background(), Order{ID: "after"})
	require.NoError(t, err, "the batcher still works")
	entries, err := rdb.XRange(context.Background(), stream, "-", "+").Result()
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Values["orderId"].(string))
	}
	assert.Equal(t, []string{"first", "after"}, got, "the caller that gave up was never sent")
}

func TestSyncPublishesUseSeveralRoundTrips(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: mustRedis(t).Options().Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	gate := &countingGate{release: make(chan struct{})}
	rdb.AddHook(gate)
	var wg sync.WaitGroup
	publish := func(i int) {
		wg.Go(func() {
			_, err := p.Publish(ctx, Order{ID: strconv.Itoa(i)})
			assert.NoError(t, err)
		})
	}
	// One round trip held in flight, then more callers: a second sender
	// takes them rather than waiting for the first round trip.
	publish(0)
	eventually(t, 10*time.Second, func() bool { trips, _ := gate.counts(); return trips == 1 }, "the first round trip is held")
	for i := 1; i < 12; i++ {
		publish(i)
	}
	b := p.batches[0]
	// A sender takes the callers queued when it starts into its round
	// trip: every caller is either held in one of the round trips or
	// queued for the next.
	eventually(t, 10*time.Second, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		trips, held := gate.counts()
		return b.senders == syncSenders && trips == syncSenders && held+len(b.queue) == 12
	}, "%d round trips in flight, the other callers queued", syncSenders)
	close(gate.release)
	wg.Wait()
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 12, n)
}

// countingGate holds every XADD round trip until release is closed,
// counting the round trips and XADDs it holds.
type countingGate struct {
	release     chan struct{}
	mu          sync.Mutex
	trips, held int
}

func (g *countingGate) counts() (trips, held int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.trips, g.held
}

func (g *countingGate) hold(n int) {
	g.mu.Lock()
	g.trips++
	g.held += n
	g.mu.Unlock()
	<-g.release
}

func (g *countingGate) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *countingGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "xadd" {
			g.hold(1)
		}
		return next(ctx, cmd)
	}
}
func (g *countingGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() == "xadd" {
			g.hold(len(cmds))
		}
		return next(ctx, cmds)
	}
}
