package redstream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A handler's Message is allocated with its entry for the first attempt
// (allocWithMessage): a handler that keeps it must find it as it was after
// later attempts, which get Messages of their own.
func TestAMessageKeptByItsHandlerIsNotReusedByARetry(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	stream := uniqueStream(t)
	publishOrders(t, rdb, stream, 1)

	var mu sync.Mutex
	var kept []*Message[Order]
	done := make(chan struct{})
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithRetryBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		mu.Lock()
		defer mu.Unlock()
		kept = append(kept, m)
		if len(kept) < 3 {
			return errors.New("fails twice")
		}
		close(done)
		return nil
	}))
	startReady(t, c)
	<-done
	mu.Lock()
	defer mu.Unlock()
	for i, m := range kept {
		assert.Equal(t, int64(i+1), m.Deliveries, "attempt %d's Message", i+1)
		for _, other := range kept[:i] {
			assert.NotSame(t, other, m)
		}
	}
}
