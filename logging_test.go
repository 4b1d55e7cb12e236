package redstream

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/faultkit"
)

// What a consumer logs and reports should be read once: a panic's stack
// once per message, a decode failure's stream and ID once per line, a
// successful dead-letter move as an event rather than an error.

func TestLoggingPanicStackOncePerMessage(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	logs := &faultkit.SyncBuffer{}
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMaxDeliveries(3),
		WithRetryBackoff(time.Millisecond, time.Millisecond),
		WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { panic("boom") }))
	run := start(t, c)
	publishOrders(t, rdb, stream, 2)
	d := mustDeadLetters(t, rdb, stream)
	eventually(t, 10*time.Second, func() bool { n, _ := d.Len(ctx); return n == 2 }, "dead-lettered after 3 panics each")
	require.NoError(t, run.stop(t))

	out := logs.String()
	assert.Equal(t, 6, strings.Count(out, "handler panicked"), "one line per panic")
	assert.Equal(t, 2, strings.Count(out, "stack="), "the stack once per message:\n%s", out)
	assert.Equal(t, 4, strings.Count(out, "panicked again"), "later panics say so")
	assert.Contains(t, out, "deliveries=3")
}

func TestLoggingDecodeErrorNamesStreamAndIDOnce(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	logs := &faultkit.SyncBuffer{}
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
	run := start(t, c)
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", "{not json"}}).Result()
	require.NoError(t, err)
	d := mustDeadLetters(t, rdb, stream)
	eventually(t, 10*time.Second, func() bool { n, _ := d.Len(ctx); return n == 1 }, "dead-lettered")
	require.NoError(t, run.stop(t))

	var line string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "cannot decode entry") {
			line = l
		}
	}
	require.NotEmpty(t, line)
	assert.Equal(t, 1, strings.Count(line, stream), line)
	assert.Equal(t, 1, strings.Count(line, id), line)
	assert.Contains(t, line, "field=payload")
}

func TestLoggingDeadLetterMoveIsNotAnError(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	var mu sync.Mutex
	var ops []string
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithErrorHandler(func(err error) {
		var op *OpError
		if errors.As(err, &op) {
			mu.Lock()
			ops = append(ops, op.Op)
			mu.Unlock()
		}
	}))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return ErrDeadLetter }))
	run := start(t, c)
	publishOrders(t, rdb, stream, 1)
	d := mustDeadLetters(t, rdb, stream)
	eventually(t, 10*time.Second, func() bool { n, _ := d.Len(ctx); return n == 1 }, "dead-lettered")
	require.NoError(t, run.stop(t))
	mu.Lock()
	defer mu.Unlock()
	// Only the ops of this message's way count: a loaded machine may add a
	// read that timed out, which is not what this test is about.
	var ours []string
	for _, op := range ops {
		if op == "handle" || op == "dead-letter" {
			ours = append(ours, op)
		}
	}
	assert.Equal(t, []string{"handle"}, ours, "the handler's failure is reported; the successful move is not (all reported: %v)", ops)
}
