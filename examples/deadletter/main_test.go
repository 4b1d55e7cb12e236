package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/redstreamtest"
)

// The whole story, on a real redis-server when one is installed (the
// program itself runs on miniredis unless REDIS_ADDR is set).
func TestDemo(t *testing.T) {
	r := redstreamtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := r.Stream(t, "orders:order:created")
	require.NoError(t, demo(ctx, r.Client(), stream))
	redstreamtest.WaitNoPending(t, r.Client(), stream, "billing")
	assert.Empty(t, redstreamtest.DeadLetters(t, r.Client(), stream))
}

// The handler alone: what it refuses lands in the dead-letter stream with
// its reason, and is handled once replayed after the fix.
func TestBillingRefusesNegativeAmountsUntilRefundsAreSupported(t *testing.T) {
	r := redstreamtest.New(t)
	rdb, stream := r.Client(), r.Stream(t, "orders:order:created")
	b := &billing{handled: map[string]bool{}}
	c, err := redstream.NewConsumer(rdb, "billing", redstream.WithBlock(50*time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, redstream.Handle(c, stream, b.handle))
	redstreamtest.Start(t, c)

	ids := redstreamtest.PublishAndWait(t, rdb, stream, "billing", Order{"o-1", 1200}, Order{"o-2", -500})
	assert.True(t, b.done("o-1"))
	assert.False(t, b.done("o-2"))
	letters := redstreamtest.DeadLetters(t, rdb, stream)
	require.Len(t, letters, 1)
	assert.Equal(t, ids[1], letters[0].OriginID)
	assert.Equal(t, redstream.ReasonHandler, letters[0].Reason)
	assert.Contains(t, letters[0].Error, "negative amount -500")

	b.refundsSupported.Store(true)
	dlq, err := redstream.NewDeadLetters(rdb, stream)
	require.NoError(t, err)
	n, err := dlq.Replay(context.Background(), redstream.ReplayAll())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	// The replay appended the entry anew, under a new ID: the stream's last.
	last, err := rdb.XRevRangeN(context.Background(), stream, "+", "-", 1).Result()
	require.NoError(t, err)
	require.Len(t, last, 1)
	redstreamtest.WaitHandled(t, rdb, stream, "billing", last[0].ID)
	assert.True(t, b.done("o-2"))
	assert.Empty(t, redstreamtest.DeadLetters(t, rdb, stream))
}
