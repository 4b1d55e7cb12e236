package redstream

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each bad input of the reliability suite gets a clear error or a
// dead-letter entry with its reason, and the consumer keeps going. Some are
// covered where the behaviour lives: fields named like dead-letter metadata
// in TestDeadLetterMetadataNamesAreEscaped, an explicit ID in the past in
// TestExplicitIDRetryIsIdempotent. The subtests here name every item.

// consumeAll runs a consumer of Order over stream from "0" and returns what
// its handler saw, by payload ID, once want entries were handled or
// dead-lettered.
func consumeAll(t *testing.T, rdb redis.UniversalClient, stream string, handledWant, deadWant int) (*seen, []DeadLetter) {
	t.Helper()
	handled := newSeen()
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		handled.add(m.Payload.ID)
		return nil
	}))
	r := start(t, c)
	d := mustDeadLetters(t, rdb, stream)
	eventually(t, 20*time.Second, func() bool {
		n, _ := d.Len(context.Background())
		return handled.len() == handledWant && n == int64(deadWant)
	})
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	require.NoError(t, r.stop(t))
	letters, _, err := d.List(context.Background(), ListOptions{Count: 100})
	require.NoError(t, err)
	return handled, letters
}

func TestBadInput(t *testing.T) {
	rdb := mustRedis(t)

	t.Run("payload field missing", func(t *testing.T) {
		t.Parallel()
		ctx, stream := testCtx(t), uniqueStream(t)
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"orderId", "1"}}).Err())
		publishOrders(t, rdb, stream, 1)
		handled, letters := consumeAll(t, rdb, stream, 1, 1)
		assert.Equal(t, 1, handled.count("0"), "the consumer keeps going")
		assert.Equal(t, ReasonDecode, letters[0].Reason)
		assert.Contains(t, letters[0].Error, `field "payload" is missing`)
	})

	t.Run("invalid JSON", func(t *testing.T) {
		t.Parallel()
		ctx, stream := testCtx(t), uniqueStream(t)
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"payload", `{"id": 1,`}}).Err())
		publishOrders(t, rdb, stream, 1)
		_, letters := consumeAll(t, rdb, stream, 1, 1)
		assert.Equal(t, ReasonDecode, letters[0].Reason)
		assert.Contains(t, letters[0].Error, "unexpected end of JSON input")
		assert.Equal(t, `{"id": 1,`, letters[0].Fields["payload"])
	})

	t.Run("10 MB payload", func(t *testing.T) {
		t.Parallel()
		ctx, stream := testCtx(t), uniqueStream(t)
		big := strings.Repeat("x", 10<<20)
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)
		_, err = p.Publish(ctx, Order{ID: "big", UserID: big})
		require.NoError(t, err, "a 10 MB payload is published")
		// And a 10 MB entry that is not JSON is dead-lettered whole.
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"payload", big}}).Err())
		handled, letters := consumeAll(t, rdb, stream, 1, 1)
		assert.Equal(t, 1, handled.count("big"))
		assert.Equal(t, ReasonDecode, letters[0].Reason)
		assert.Len(t, letters[0].Fields["payload"], 10<<20, "the dead letter keeps the whole payload")
	})

	t.Run("invalid UTF-8", func(t *testing.T) {
		t.Parallel()
		ctx, stream := testCtx(t), uniqueStream(t)
		bad := "\xff\xfe\x80 not utf-8 \xc3\x28"
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"payload", bad, "note", bad}}).Err())
		// Inside a JSON string, encoding/json replaces invalid bytes: it
		// decodes, and the header keeps the exact bytes.
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"payload", `{"id":"` + bad + `"}`, "note", bad}}).Err())
		var got atomic.Value
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			got.Store(m.Header("note"))
			return nil
		}))
		start(t, c)
		d := mustDeadLetters(t, rdb, stream)
		eventually(t, 10*time.Second, func() bool { n, _ := d.Len(ctx); return n == 1 && got.Load() != nil })
		assert.Equal(t, bad, got.Load(), "headers reach the handler byte for byte")
		letters, _, err := d.List(ctx, ListOptions{})
		require.NoError(t, err)
		assert.Equal(t, ReasonDecode, letters[0].Reason)
		assert.Equal(t, map[string]string{"payload": bad, "note": bad}, letters[0].Fields, "the dead letter keeps the bytes")
		// A replay puts back exactly those bytes.
		_, err = d.Replay(ctx, ReplayAll())
		require.NoError(t, err)
		last, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"payload": bad, "note": bad}, stringFields(last[0].Values))
	})

	t.Run("fields named like dead-letter metadata", func(t *testing.T) {
		t.Parallel()
		ctx, stream := testCtx(t), uniqueStream(t)
		own := map[string]string{"payload": "nope", "dead-letter:stream": "elsewhere", "dead-letter:reason": "mine"}
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: own}).Err())
		_, letters := consumeAll(t, rdb, stream, 0, 1)
		assert.Equal(t, stream, letters[0].Stream, "metadata is the real one")
		assert.Equal(t, ReasonDecode, letters[0].Reason)
		assert.Equal(t, own, letters[0].Fields)
	})

	t.Run("explicit ID in the past", func(t *testing.T) {
		t.Parallel()
		ctx, stream := testCtx(t), uniqueStream(t)
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)
		_, err = p.Publish(ctx, Order{ID: "now"})
		require.NoError(t, err)
		_, err = p.Publish(ctx, Order{ID: "past"}, WithID("1000-0"))
		assert.ErrorIs(t, err, ErrIDTooSmall)
		assert.ErrorContains(t, err, "1000-0")
	})

	t.Run("stream key is not a stream", func(t *testing.T) {
		t.Parallel()
		ctx, stream := testCtx(t), uniqueStream(t)
		require.NoError(t, rdb.Set(ctx, stream, "a string", 0).Err())
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)
		_, err = p.Publish(ctx, Order{ID: "x"})
		assert.True(t, redis.HasErrorPrefix(err, "WRONGTYPE"), "Publish: %v", err)
		c := newTestConsumer(t, rdb, "g")
		require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
		err = c.Run(ctx)
		assert.True(t, redis.HasErrorPrefix(err, "WRONGTYPE"), "Run: %v", err)
		_, err = Inspect(ctx, rdb, stream)
		assert.True(t, redis.HasErrorPrefix(err, "WRONGTYPE"), "Inspect: %v", err)
	})

	t.Run("stream replaced by another type while consuming", func(t *testing.T) {
		t.Parallel()
		ctx, stream := testCtx(t), uniqueStream(t)
		var mu sync.Mutex
		var failures []time.Time
		c := newTestConsumer(t, rdb, "g", WithErrorHandler(func(err error) {
			mu.Lock()
			failures = append(failures, time.Now())
			mu.Unlock()
		}))
		handled := newSeen()
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			handled.add(m.Payload.ID)
			return nil
		}))
		startReady(t, c)
		require.NoError(t, rdb.Del(ctx, stream).Err())
		require.NoError(t, rdb.Set(ctx, stream, "not a stream", 0).Err())
		time.Sleep(time.Second) // the consumer meets WRONGTYPE for a second
		mu.Lock()
		n := len(failures)
		mu.Unlock()
		assert.Positive(t, n, "the errors are reported")
		assert.Less(t, n, 40, "with backoff, not in a hot loop")
		require.NoError(t, rdb.Del(ctx, stream).Err())
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)
		eventually(t, 10*time.Second, func() bool {
			_, _ = p.Publish(ctx, Order{ID: "back"})
			return handled.count("back") > 0
		}, "the consumer carries on once the key is a stream again")
	})
}

// panickyCodec encodes with JSON and panics when decoding.
type panickyCodec struct{}

func (panickyCodec) Marshal(v any) ([]byte, error) { return JSON.Marshal(v) }
func (panickyCodec) Unmarshal([]byte, any) error   { panic("codec bug") }

func TestPanickingCodecDeadLettersAsDecodeFailure(t *testing.T) {
	// A real server: miniredis counts the lease renewal's XCLAIM JUSTID
	// (the reaper's first round renews what is held) as a delivery, which
	// Redis does not, so the count checked below would be 2 now and then.
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 1)
	var calls atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithCodec(panickyCodec{}))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
		calls.Add(1)
		return nil
	}))
	start(t, c)
	d := mustDeadLetters(t, rdb, stream)
	eventually(t, 10*time.Second, func() bool { n, _ := d.Len(ctx); return n == 1 }, "dead-lettered, not retried")
	letters, _, err := d.List(ctx, ListOptions{})
	require.NoError(t, err)
	assert.Equal(t, ReasonDecode, letters[0].Reason)
	assert.Contains(t, letters[0].Error, "codec panicked: codec bug")
	assert.Equal(t, int64(1), letters[0].Deliveries)
	assert.Zero(t, calls.Load(), "the handler never ran")
}
