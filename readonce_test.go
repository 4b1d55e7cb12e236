package redstream

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"

	"github.com/redstream/redstream/internal/redistest"
	"github.com/redstream/redstream/internal/scripts"
)

// An XREADGROUP > whose reply is lost has delivered its entries: they are
// pending for the consumer, unseen. Resent by the client, the read returns
// what came after them, and they waited for a reaper after MinIdle (a
// minute here), with a delivery more. Sent once, the failure reaches the
// reader, which reads its own pending entries again at once.
func TestLostReadReplyIsReadFromOwnPending(t *testing.T) {
	for _, tc := range []struct {
		name          string
		streams, room int
	}{
		{"the reader", 1, 0},
		{"the group reader's blocking read", 3, 0},
		{"the group reader's pipelined reads", 3, 2}, // less room than streams
	} {
		streams := tc.streams
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			proxy := startCutProxy(t, redistest.Addr(t))
			rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr()}) // go-redis's default retries
			t.Cleanup(func() { _ = rdb.Close() })
			direct := mustRedis(t)
			handled := newSeen()
			deliveries := make(chan int64, 100)
			opts := []ConsumerOption{WithGroupStart("0"), WithMinIdle(time.Minute)}
			if tc.room > 0 {
				opts = append(opts, WithMaxInFlight(tc.room))
			}
			c := newTestConsumer(t, rdb, "g", opts...)
			var names []string
			for range streams {
				stream := uniqueStream(t)
				names = append(names, stream)
				publishOrders(t, direct, stream, 5)
				assert.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
					handled.add(m.Stream + "/" + m.ID)
					deliveries <- m.Deliveries
					return nil
				}))
			}
			proxy.CutAfter("xreadgroup", 1)
			start(t, c)
			proxy.eventuallyCut(t, 1)
			eventually(t, 20*time.Second, func() bool { return handled.len() == 5*streams }, "every entry handled long before MinIdle")
			for _, s := range names {
				eventually(t, 5*time.Second, func() bool { return pendingCount(t, direct, s, "g") == 0 })
			}
			close(deliveries)
			for d := range deliveries {
				assert.Equal(t, int64(1), d, "handled on its first delivery")
			}
		})
	}
}

// The fenced read of an exclusive partition runs XREADGROUP in a script:
// the same holds for it, and for its EVALSHA.
func TestLostFencedReadReplyIsReadFromOwnPending(t *testing.T) {
	t.Parallel()
	proxy := startCutProxy(t, redistest.Addr(t))
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr()}) // go-redis's default retries
	t.Cleanup(func() { _ = rdb.Close() })
	direct := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, direct, stream, 5)
	// Cached, so that the cut falls on the EVALSHA that runs, not on one
	// refused with NOSCRIPT.
	assert.NoError(t, scripts.FencedRead.Load(ctx, direct).Err())
	handled := newSeen()
	deliveries := make(chan int64, 100)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMinIdle(time.Minute))
	assert.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		handled.add(m.ID)
		deliveries <- m.Deliveries
		return nil
	}, WithOrderedKeys(), WithExclusivePartitions()))
	proxy.CutAfter(scripts.FencedRead.Hash(), 1)
	start(t, c)
	proxy.eventuallyCut(t, 1)
	eventually(t, 20*time.Second, func() bool { return handled.len() == 5 }, "every entry handled long before MinIdle")
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, direct, stream, "g") == 0 })
	close(deliveries)
	for d := range deliveries {
		assert.Equal(t, int64(1), d, "handled on its first delivery")
	}
}
