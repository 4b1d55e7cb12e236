package redstream

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPublishAsyncKeepsCallOrder(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		hooks := &roundTrips{}
		rdb.AddHook(hooks)
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)
		const n = 3000
		futures := make([]*PublishFuture, n)
		for i := range n {
			futures[i], err = p.PublishAsync(ctx, Order{ID: strconv.Itoa(i)})
			require.NoError(t, err)
		}
		ids := make([]string, n)
		for i, f := range futures {
			<-f.Done()
			ids[i], err = f.Result()
			require.NoError(t, err)
		}
		msgs, err := rdb.XRange(ctx, stream, "-", "+").Result()
		require.NoError(t, err)
		require.Len(t, msgs, n)
		for i, m := range msgs {
			assert.Equal(t, ids[i], m.ID, "entry %d", i)
			var o Order
			require.NoError(t, unmarshal(JSON, m.Values[DefaultPayloadField].(string), &o))
			require.Equal(t, strconv.Itoa(i), o.ID, "entries appear in call order")
		}
		// One goroutine kept many publishes in flight: far fewer round
		// trips than messages.
		trips := hooks.singles.Load() + hooks.pipelines.Load()
		assert.Less(t, trips, int64(n/4), "round trips for %d async publishes", n)
		t.Logf("%d publishes in %d round trips", n, trips)
	})
}

func TestPublishAsyncErrors(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	_, err := NewProducer[Order](rdb, stream, WithMaxPending(0))
	assert.ErrorIs(t, err, ErrInvalidOption)

	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	_, err = p.PublishAsync(ctx, Order{}, WithID("not an id"))
	assert.ErrorIs(t, err, ErrInvalidID, "a bad option is returned at once")
	bad, err := NewProducer[chan int](rdb, stream)
	require.NoError(t, err)
	_, err = bad.PublishAsync(ctx, make(chan int))
	assert.Error(t, err, "a payload that does not encode is returned at once")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = p.PublishAsync(cancelled, Order{})
	assert.ErrorIs(t, err, context.Canceled)

	// An explicit ID: the retry is a duplicate, an ID below the top is refused.
	f, err := p.PublishAsync(ctx, Order{ID: "1"}, WithID("5-1"))
	require.NoError(t, err)
	id, err := f.Result()
	require.NoError(t, err)
	f, err = p.PublishAsync(ctx, Order{ID: "1"}, WithID(id))
	require.NoError(t, err)
	id2, err := f.Result()
	assert.ErrorIs(t, err, ErrDuplicate)
	assert.Equal(t, id, id2)
	f, err = p.PublishAsync(ctx, Order{ID: "1"}, WithID("4-1"))
	require.NoError(t, err)
	_, err = f.Result()
	assert.ErrorIs(t, err, ErrIDTooSmall)

	// A failed write reaches the future.
	require.NoError(t, rdb.Set(ctx, stream+":string", "x", 0).Err())
	wrong, err := NewProducer[Order](rdb, stream+":string")
	require.NoError(t, err)
	f, err = wrong.PublishAsync(ctx, Order{})
	require.NoError(t, err)
	_, err = f.Result()
	assert.True(t, redis.HasErrorPrefix(errors.Unwrap(err), "WRONGTYPE"), "got %v", err)
}

func TestPublishAsyncBoundsPending(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: mustRedis(t).Options().Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream, WithMaxPending(3))
	require.NoError(t, err)

	// Hold every round trip until released.
	release := make(chan struct{})
	rdb.AddHook(gateHook{release})
	var futures []*PublishFuture
	for i := range 3 {
		f, err := p.PublishAsync(ctx, Order{ID: strconv.Itoa(i)})
		require.NoError(t, err)
		futures = append(futures, f)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = p.PublishAsync(short, Order{ID: "3"})
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a fourth publish waits for room")

	// A publish queued before its context ends is sent all the same.
	blocked := make(chan *PublishFuture, 1)
	qctx, qcancel := context.WithCancel(ctx)
	go func() {
		f, err := p.PublishAsync(qctx, Order{ID: "late"})
		assert.NoError(t, err)
		blocked <- f
	}()
	close(release)
	for _, f := range futures {
		_, err := f.Result()
		require.NoError(t, err)
	}
	late := <-blocked
	qcancel()
	_, err = late.Result()
	require.NoError(t, err)
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 4, n)
}

func TestPublishAsyncWithSyncAndPartitions(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, base := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, base, WithPartitions(4), WithKeyFunc(func(o Order) string { return o.UserID }))
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var futures []*PublishFuture
	for w := range 4 {
		wg.Go(func() {
			for i := range 250 {
				o := Order{ID: strconv.Itoa(w*1000 + i), UserID: "u" + strconv.Itoa(i%10)}
				if i%2 == 0 {
					_, err := p.Publish(ctx, o)
					assert.NoError(t, err)
					continue
				}
				f, err := p.PublishAsync(ctx, o)
				if assert.NoError(t, err) {
					mu.Lock()
					futures = append(futures, f)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, f := range futures {
		_, err := f.Result()
		require.NoError(t, err)
	}
	info, err := InspectPartitions(ctx, rdb, base, 4)
	require.NoError(t, err)
	assert.EqualValues(t, 1000, info.Total.Length)
	// Each key's entries are in its partition, in order per publisher.
	parts, err := Partitions(base, 4)
	require.NoError(t, err)
	for _, part := range parts {
		msgs, err := rdb.XRange(ctx, part, "-", "+").Result()
		require.NoError(t, err)
		last := map[string]int{}
		for _, m := range msgs {
			var o Order
			require.NoError(t, unmarshal(JSON, m.Values[DefaultPayloadField].(string), &o))
			assert.Equal(t, part, parts[PartitionOf(o.UserID, 4)])
			id, _ := strconv.Atoi(o.ID)
			key := o.UserID + "/" + strconv.Itoa(id/1000)
			if prev, ok := last[key]; ok {
				assert.Greater(t, id, prev, "publisher %d's messages of %s in order", id/1000, o.UserID)
			}
			last[key] = id
		}
	}
}

// gateHook holds every XADD, alone or pipelined, until release is closed.
type gateHook struct{ release chan struct{} }

func (h gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "xadd" {
			<-h.release
		}
		return next(ctx, cmd)
	}
}
func (h gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() == "xadd" {
			<-h.release
		}
		return next(ctx, cmds)
	}
}

func TestFlushWaitsForPendingPublishes(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: mustRedis(t).Options().Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream, WithMaxPending(64))
	require.NoError(t, err)
	require.NoError(t, p.Flush(ctx), "nothing pending")

	release := make(chan struct{})
	rdb.AddHook(gateHook{release})
	var futures []*PublishFuture
	for i := range 40 {
		f, err := p.PublishAsync(ctx, Order{ID: strconv.Itoa(i)})
		require.NoError(t, err)
		futures = append(futures, f)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, p.Flush(short), context.DeadlineExceeded, "the round trips are held")

	flushed := make(chan error, 1)
	go func() { flushed <- p.Flush(ctx) }()
	close(release)
	require.NoError(t, <-flushed)
	for _, f := range futures {
		select {
		case <-f.Done():
		default:
			t.Fatal("Flush returned before a future was done")
		}
	}
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 40, n)

	// Failed publishes give their room back too.
	require.NoError(t, rdb.Set(ctx, stream+":string", "x", 0).Err())
	wrong, err := NewProducer[Order](rdb, stream+":string", WithMaxPending(4))
	require.NoError(t, err)
	for range 20 {
		_, err := wrong.PublishAsync(ctx, Order{})
		require.NoError(t, err)
	}
	require.NoError(t, wrong.Flush(ctx))
}
