package redstreamtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/redstreamtest"
)

// TestAdvanceMakesScheduledMessagesDue: on the frozen miniredis, a
// message published with a delay is due when Advance has moved the clock
// past it, as a handler's test of delayed work needs.
func TestAdvanceMakesScheduledMessagesDue(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	rdb, stream := r.Client(), r.Stream(t, "orders:reminder:due")
	p, err := redstream.NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	id, err := p.Publish(context.Background(), Order{ID: "o-1"}, redstream.WithDelay(time.Hour))
	require.NoError(t, err)

	handled := make(chan *redstream.Message[Order], 1)
	c, err := redstream.NewConsumer(rdb, "reminders", redstream.WithGroupStart("0"),
		redstream.WithBlock(20*time.Millisecond), redstream.WithSchedulePoll(10*time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, redstream.Handle(c, stream, func(_ context.Context, m *redstream.Message[Order]) error {
		handled <- m
		return nil
	}))
	redstreamtest.Start(t, c)
	assert.Never(t, func() bool { return len(handled) > 0 }, 200*time.Millisecond, 10*time.Millisecond, "not due yet")

	r.Advance(t, time.Hour)
	select {
	case m := <-handled:
		assert.Equal(t, id, m.ScheduleID())
		assert.Equal(t, "o-1", m.Payload.ID)
		assert.False(t, m.Time().Before(m.ScheduledFor()), "appended %v, due %v", m.Time(), m.ScheduledFor())
	case <-time.After(10 * time.Second):
		t.Fatal("not handled after Advance")
	}
}
