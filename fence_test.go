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

	"github.com/redstream/redstream/internal/redistest"
)

// handledBy records which consumer handled each message, in handling order.
type handledBy struct {
	mu  sync.Mutex
	seq []string // "consumer:payload ID"
	by  map[string]string
}

func (h *handledBy) handler(consumer string) HandlerFunc[Order] {
	return func(_ context.Context, m *Message[Order]) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.seq = append(h.seq, consumer+":"+m.Payload.ID)
		if h.by == nil {
			h.by = map[string]string{}
		}
		h.by[m.Payload.ID] = consumer
		return nil
	}
}

func (h *handledBy) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.by)
}

// The input: WithExclusivePartitions, MinIdle 200ms, default block.
// Consumer z owns the stream; all its Redis traffic is held for about
// 1.5 s; consumer b takes the lease (and keeps it: it sorts first). When
// z's traffic resumes, 60 entries are published 25 ms apart: z must handle
// none of them, and one key's messages are handled in order.
func TestFenceStalledConsumerHandlesNothingAfterItsLeaseWent(t *testing.T) {
	t.Parallel()
	ctx, stream := testCtx(t), uniqueStream(t)
	direct := redistest.Client(t)
	proxy := startCutProxy(t, redistest.Addr(t))
	viaProxy := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { viaProxy.Close() })
	h := &handledBy{}
	member := func(rdb redis.UniversalClient, name string) *Consumer {
		c := newTestConsumer(t, rdb, "g", WithConsumerName(name), WithMinIdle(200*time.Millisecond), WithGroupStart("0"))
		require.NoError(t, Handle(c, stream, h.handler(name), WithOrderedKeys(), WithExclusivePartitions()))
		return c
	}
	holder := func() string { return direct.Get(ctx, leaseKey(stream, "g")).Val() }

	startReady(t, member(viaProxy, "z"))
	eventually(t, 10*time.Second, func() bool { return holder() == "z" }, "z owns the stream")
	// z's requests are held (its renewals, and the read it sends once its
	// blocked read times out); replies pass.
	proxy.StallRequests()
	stalled := time.Now()
	startReady(t, member(direct, "b"))
	eventually(t, 10*time.Second, func() bool { return holder() == "b" }, "b takes the lease once z's expires")
	time.Sleep(time.Until(stalled.Add(1500 * time.Millisecond)))
	proxy.Resume()

	p, err := NewProducer[Order](direct, stream, WithKeyFunc(func(o Order) string { return o.UserID }))
	require.NoError(t, err)
	for i := range 60 {
		_, err := p.Publish(ctx, Order{ID: strconv.Itoa(i), UserID: "k"})
		require.NoError(t, err)
		time.Sleep(25 * time.Millisecond)
	}
	eventually(t, 20*time.Second, func() bool { return h.count() == 60 }, "all handled")
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, by := range h.by {
		assert.Equal(t, "b", by, "entry %s, published after b held the lease, handled by %s", id, by)
	}
	assert.Len(t, h.seq, 60, "each handled once")
	for i, s := range h.seq {
		if !assert.Equal(t, "b:"+strconv.Itoa(i), s, "in order") {
			break
		}
	}
}
