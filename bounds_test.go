package redstream

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Bounds of the options and arguments a caller gives: a value past a
// documented maximum is refused, never overflowed into one that runs at
// once or never.

func TestScheduleBeyondMaxDelayRefused(t *testing.T) {
	t.Parallel()
	_, rdb := newMiniredis(t)
	ctx := testCtx(t)
	p, err := NewProducer[Order](rdb, uniqueStream(t))
	require.NoError(t, err)
	for name, opt := range map[string]PublishOption{
		"delay just over":   WithDelay(MaxDelay + time.Millisecond),
		"delay max int":     WithDelay(math.MaxInt64),
		"deliver-at far":    WithDeliverAt(time.Unix(1<<62, 0)),
		"deliver-at beyond": WithDeliverAt(time.Now().Add(MaxDelay + time.Hour)),
	} {
		_, err := p.Publish(ctx, Order{}, opt)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
		_, err = p.PublishBatch(ctx, []Order{{}}, opt)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
	}
}

func TestScheduleAtMaxDelayIsDueThen(t *testing.T) {
	t.Parallel()
	_, rdb := newMiniredis(t)
	ctx := testCtx(t)
	stream := uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	far := time.Now().Add(MaxDelay - time.Hour)
	for _, opt := range []PublishOption{WithDelay(MaxDelay), WithDeliverAt(far)} {
		_, err := p.Publish(ctx, Order{}, opt)
		require.NoError(t, err)
	}
	list, err := ListScheduled(ctx, rdb, stream, 0, 10)
	require.NoError(t, err)
	require.Len(t, list, 2)
	for _, m := range list {
		assert.True(t, m.Due.After(time.Now().Add(MaxDelay-2*time.Hour)), "due %v", m.Due)
	}
	n, err := MoveDue(ctx, rdb, stream)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing due")
}
