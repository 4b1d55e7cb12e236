package redstream

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/faultkit"
)

// startLog records, per payload ID, how many times a handler started it.
type startLog struct {
	mu     sync.Mutex
	starts map[string]int
	total  int
}

func (l *startLog) record(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.starts == nil {
		l.starts = map[string]int{}
	}
	l.starts[id]++
	l.total++
}

func (l *startLog) count() (distinct, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.starts), l.total
}

// Three consumers; a pause stops every one of them from starting handlers
// within about a block time, a handler running at the pause finishes and
// is acknowledged, messages read but not started wait, and a resume
// handles everything once.
func TestPauseStopsTheGroupAndResumeLosesNothing(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	l := &startLog{}
	release := make(chan struct{})
	var holdOnce sync.Once
	var logs []*faultkit.SyncBuffer
	for i := range 3 {
		buf := &faultkit.SyncBuffer{}
		logs = append(logs, buf)
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithBlock(100*time.Millisecond), WithConcurrency(1),
			WithConsumerName("c"+strconv.Itoa(i)), WithLogger(slog.New(slog.NewTextHandler(buf, nil))))
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			l.record(m.Payload.ID)
			if m.Payload.ID == "hold" {
				holdOnce.Do(func() { <-release })
			}
			time.Sleep(time.Millisecond)
			return nil
		}))
		start(t, c)
	}
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	publish := func(prefix string, n int) {
		for i := range n {
			_, err := p.Publish(ctx, Order{ID: prefix + strconv.Itoa(i)})
			require.NoError(t, err)
		}
	}
	publish("a", 30)
	eventually(t, 10*time.Second, func() bool { d, _ := l.count(); return d == 30 }, "handled before the pause")

	// A handler in flight when the pause comes.
	_, err = p.Publish(ctx, Order{ID: "hold"})
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() bool { d, _ := l.count(); return d == 31 }, "the held handler started")
	require.NoError(t, Pause(ctx, rdb, stream, "g"))
	for i, buf := range logs {
		eventually(t, 10*time.Second, func() bool { return strings.Contains(buf.String(), "stream paused for the group") },
			"consumer c%d saw the pause", i)
	}
	_, startedAtPause := l.count()
	publish("b", 30)
	close(release) // the running handler finishes and is acknowledged
	holdID := ""
	eventually(t, 10*time.Second, func() bool {
		entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
		require.NoError(t, err)
		for _, e := range entries {
			if strings.Contains(e.Values["payload"].(string), `"hold"`) {
				holdID = e.ID
			}
		}
		pending, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: holdID, End: holdID, Count: 1}).Result()
		require.NoError(t, err)
		return holdID != "" && len(pending) == 0
	}, "the handler running at the pause is acknowledged while paused")
	info, err := Inspect(ctx, rdb, stream)
	require.NoError(t, err)
	require.Len(t, info.Groups, 1)
	assert.True(t, info.Groups[0].Paused, "Inspect shows the pause")
	assert.True(t, info.Groups[0].PausedKnown)

	faultkit.HoldFault(ctx, t, 700*time.Millisecond) // several block times
	_, startedDuringPause := l.count()
	assert.Equal(t, startedAtPause, startedDuringPause, "no handler started while paused")

	require.NoError(t, Resume(ctx, rdb, stream, "g"))
	eventually(t, 20*time.Second, func() bool { d, _ := l.count(); return d == 61 }, "everything handled after the resume")
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 }, "all acknowledged")
	distinct, total := l.count()
	assert.Equal(t, distinct, total, "nothing handled twice")
	info, err = Inspect(ctx, rdb, stream)
	require.NoError(t, err)
	assert.False(t, info.Groups[0].Paused)
}

func TestPauseErrors(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	assert.ErrorIs(t, Pause(ctx, rdb, stream, "g"), ErrNoStream)
	publishOrders(t, rdb, stream, 1)
	assert.ErrorIs(t, Pause(ctx, rdb, stream, "g"), ErrNoGroup)
	assert.ErrorIs(t, Pause(ctx, rdb, stream, ""), ErrInvalidOption)
	assert.ErrorIs(t, Pause(ctx, rdb, "", "g"), ErrInvalidStreamName)
	assert.NoError(t, Resume(ctx, rdb, stream, "g"), "resuming what is not paused")
	paused, _, err := PausedSince(ctx, rdb, stream, "g")
	require.NoError(t, err)
	assert.False(t, paused)
}
