package redstream

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// healthyRun is one measurement of healthy traffic beside failing traffic.
type healthyRun struct {
	handled int           // key B messages handled
	elapsed time.Duration // until the last one, or the whole window
}

func (h healthyRun) rate() float64 { return float64(h.handled) / h.elapsed.Seconds() }

// measureHealthy publishes n messages alternating between keys A and B,
// then runs a consumer (small in-flight room) whose handler fails every
// other message of key A with fail (nil: none fails), and measures how
// fast key B's messages are handled, over at most window.
func measureHealthy(t *testing.T, rdb *redis.Client, n int, window time.Duration, fail func() error, opts ...ConsumerOption) healthyRun {
	t.Helper()
	ctx, stream := testCtx(t), uniqueStream(t)
	pipe := rdb.Pipeline()
	for i := range n {
		key := "A"
		if i%2 == 1 {
			key = "B"
		}
		vals := []any{KeyField, key, DefaultPayloadField, `{"id":"` + strconv.Itoa(i) + `","userId":"` + key + `"}`}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: vals})
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)

	var (
		mu   sync.Mutex
		last time.Time
		b    int
		done = make(chan struct{})
	)
	c := newTestConsumer(t, rdb, "g", append([]ConsumerOption{WithGroupStart("0"), WithMaxInFlight(20)}, opts...)...)
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		// A millisecond of work per message, as a handler calling a
		// service would spend, so the rate is the workers' and not the
		// reads'.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if m.Payload.UserID == "A" {
			i, _ := strconv.Atoi(m.Payload.ID)
			if fail != nil && i%4 == 0 {
				return fail()
			}
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		b++
		last = time.Now()
		if b == n/2 {
			close(done)
		}
		return nil
	}))
	began := time.Now()
	r := startReady(t, c)
	select {
	case <-done:
	case <-time.After(window):
	}
	mu.Lock()
	run := healthyRun{handled: b, elapsed: window}
	if b == n/2 {
		run.elapsed = last.Sub(began)
	}
	mu.Unlock()
	require.NoError(t, r.stop(t))
	return run
}

// TestLongRetryHealthyTraffic measures healthy traffic (key B) while half
// of key A's messages fail with a one-minute retry, against the same
// traffic with no failures. It logs the figures; it asserts only that
// healthy traffic is not starved, a bound loose enough for a loaded
// machine.
func TestLongRetryHealthyTraffic(t *testing.T) {
	rdb := mustRedis(t)
	const n, window = 2000, 5 * time.Second
	base := measureHealthy(t, rdb, n, window, nil)
	failing := measureHealthy(t, rdb, n, window, func() error { return RetryAfter(time.Minute, errors.New("downstream down")) })
	t.Logf("healthy traffic: %d of %d in %v (%.0f msg/s) with no failures; %d of %d in %v (%.0f msg/s) while 50%% of key A fails with RetryAfter(1m): %.0f%%",
		base.handled, n/2, base.elapsed.Round(time.Millisecond), base.rate(),
		failing.handled, n/2, failing.elapsed.Round(time.Millisecond), failing.rate(),
		100*failing.rate()/base.rate())
}
