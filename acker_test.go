package redstream

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ackSizes is an Observer that records the IDs of each XACK.
type ackSizes struct {
	NopObserver
	mu    sync.Mutex
	sizes []int
}

func (o *ackSizes) Acked(_, _ string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sizes = append(o.sizes, n)
}

func (o *ackSizes) get() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int(nil), o.sizes...)
}

// TestAcksOfMessagesHandledApartGoTogether: an acknowledgement that
// finds the acknowledger idle waits for those that follow within the
// linger, and they go in one XACK, rather than one XACK per handful.
func TestAcksOfMessagesHandledApartGoTogether(t *testing.T) {
	// Not parallel: it lengthens the linger of every acknowledger.
	ackLingerOverride.Store(int64(2 * time.Second))
	t.Cleanup(func() { ackLingerOverride.Store(0) })
	_, rdb := newMiniredis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	obs := &ackSizes{}
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithObserver(obs))
	handled := make(chan string, 2)
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		handled <- m.Payload.ID
		return nil
	}))
	startReady(t, c)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	for _, id := range []string{"first", "second"} {
		// One at a time: the second is published once the first is handled.
		_, err := p.Publish(ctx, Order{ID: id})
		require.NoError(t, err)
		assert.Equal(t, id, <-handled)
	}
	// The observer hears of an XACK after Redis has applied it, so wait
	// for the observer rather than for the pending entries list.
	eventually(t, 10*time.Second, func() bool { return sum(obs.get()) == 2 }, "both acknowledged")
	assert.Equal(t, []int{2}, obs.get(), "one XACK of both")
	assert.Zero(t, pendingCount(t, rdb, stream, "g"))
}

func sum(ns []int) int {
	total := 0
	for _, n := range ns {
		total += n
	}
	return total
}

// cmdTexts is a hook that records how go-redis prints each XADD and XACK,
// as tracing and logging hooks show them.
type cmdTexts struct {
	mu    sync.Mutex
	texts []string
}

func (h *cmdTexts) record(cmds ...redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range cmds {
		if c.Name() == "xadd" || c.Name() == "xack" {
			h.texts = append(h.texts, c.String())
		}
	}
}

func (h *cmdTexts) get() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.texts...)
}

func (h *cmdTexts) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *cmdTexts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.record(cmd)
		return err
	}
}
func (h *cmdTexts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.record(cmds...)
		return err
	}
}

// TestCommandsPrintTheirArguments: the arguments redstream builds for its
// hot-path commands (some put in interfaces once, to spare an allocation
// per message) are strings, so that a hook printing a command (tracing,
// logging) shows the stream, field and IDs, not pointers.
func TestCommandsPrintTheirArguments(t *testing.T) {
	t.Parallel()
	_, rdb := newMiniredis(t)
	texts := &cmdTexts{}
	rdb.AddHook(texts)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	id, err := p.Publish(ctx, Order{ID: "o1"})
	require.NoError(t, err)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
	startReady(t, c)
	eventually(t, 10*time.Second, func() bool { return len(texts.get()) == 2 }, "one XADD and one XACK")
	got := texts.get()
	assert.Contains(t, got[0], "xadd "+stream+" * ")
	assert.Contains(t, got[0], " payload {")
	assert.Equal(t, "xack "+stream+" g "+id+": 1", got[1])
}

// TestAckLingerHoldsNoHandlerBack: however small the in-flight room (and
// so the acks channel), no handler waits for lingering acknowledgements:
// with too little room to hold a linger's worth, they do not linger.
func TestAckLingerHoldsNoHandlerBack(t *testing.T) {
	// Not parallel: it lengthens the linger of every acknowledger.
	ackLingerOverride.Store(int64(10 * time.Second))
	t.Cleanup(func() { ackLingerOverride.Store(0) })
	_, rdb := newMiniredis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConcurrency(1), WithMaxInFlight(1))
	const n = 5
	handled := make(chan string, n)
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		handled <- m.Payload.ID
		return nil
	}))
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	for i := range n {
		_, err := p.Publish(ctx, Order{ID: string(rune('a' + i))})
		require.NoError(t, err)
	}
	startReady(t, c)
	for range n {
		select {
		case <-handled:
		case <-time.After(5 * time.Second):
			t.Fatal("a handler waited for the lingering acknowledgements")
		}
	}
	eventually(t, 20*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 }, "all acknowledged")
}
