package redstream

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// starts records handler start times across consumers.
type starts struct {
	mu    sync.Mutex
	times []time.Time
}

func (s *starts) add() time.Time {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.times = append(s.times, now)
	return now
}

func (s *starts) sorted() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.times)
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// maxInWindow is the most starts in any window of length w.
func maxInWindow(ts []time.Time, w time.Duration) int {
	most, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

// 200/s over three consumers for 10 s: the measured rate is at most 10 %
// above the limit (and not starved) and no 100 ms window has more than the
// burst (20) grants. The limit holds on
// the server's clock, when grants are made; a start follows its grant by
// one reply and a goroutine hand-off, so starts on the handlers' clock are
// only logged.
func TestRateLimitIsSharedByTheGroup(t *testing.T) {
	t.Parallel() // the grant hook records this test's stream only
	rdb := mustRedis(t)
	stream := uniqueStream(t)
	const rate, burst, run = 200, 20, 10 * time.Second
	s := &starts{}
	granted := &starts{}
	hook := func(st string, at time.Time) {
		if st == stream {
			granted.mu.Lock()
			granted.times = append(granted.times, at)
			granted.mu.Unlock()
		}
	}
	rateGranted.Store(&hook)
	t.Cleanup(func() { rateGranted.Store(nil) })
	var runs []*running
	for i := range 3 {
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("c"+strconv.Itoa(i)), WithConcurrency(8))
		require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
			s.add()
			return nil
		}, WithRateLimit(rate, burst)))
		runs = append(runs, start(t, c))
	}
	publishOrders(t, rdb, stream, 4000) // more than 10 s of work
	time.Sleep(run)
	// Stopped, so that starts and grants are counted at one moment.
	for _, r := range runs {
		_ = r.stop(t)
	}
	ts := s.sorted()
	require.NotEmpty(t, ts)
	// The rate over the run, from the first start (consumers start at
	// slightly different times).
	var inRun []time.Time
	for _, x := range ts {
		if x.Sub(ts[0]) < run-500*time.Millisecond {
			inRun = append(inRun, x)
		}
	}
	measured := float64(len(inRun)) / (run - 500*time.Millisecond).Seconds()
	grants := granted.sorted()
	t.Logf("%d starts, %.1f/s; most grants in any 100ms (server clock): %d; most starts in any 100ms (handlers' clock, with reply and scheduling jitter): %d",
		len(inRun), measured, maxInWindow(grants, 100*time.Millisecond), maxInWindow(ts, 100*time.Millisecond))
	// The limit's promise is the upper bound. Below it, a loaded machine
	// (other test packages run beside this one) falls behind: 172/s was
	// seen at load 5. Half the rate still tells a limiter that starves.
	assert.LessOrEqual(t, measured, rate*1.1, "the group's rate")
	assert.GreaterOrEqual(t, measured, rate*0.5, "the group's rate, on a loaded machine")
	assert.LessOrEqual(t, maxInWindow(grants, 100*time.Millisecond), burst, "grants in any 100 ms, on the server's clock")
	// Every start had its grant; a grant made as its consumer stopped may
	// have started nothing (at most one per worker).
	assert.GreaterOrEqual(t, len(grants), len(ts), "one grant per start")
	assert.LessOrEqual(t, len(grants), len(ts)+3*8, "one start per grant, but for the workers stopping")
}

// RateLimited(d) from one consumer holds all three back for d.
func TestRateLimitedHoldsTheGroupBack(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	stream := uniqueStream(t)
	const hold = 500 * time.Millisecond
	s := &starts{}
	var once sync.Once
	var heldAt time.Time
	var mu sync.Mutex
	for i := range 3 {
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("c"+strconv.Itoa(i)), WithRetryBackoff(time.Hour, time.Hour))
		require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
			now := s.add()
			err := error(nil)
			once.Do(func() {
				mu.Lock()
				heldAt = now
				mu.Unlock()
				err = RateLimited(hold, errors.New("429 from the downstream"))
			})
			time.Sleep(2 * time.Millisecond)
			return err
		}, WithRateLimit(1000, 100)))
		start(t, c)
	}
	publishOrders(t, rdb, stream, 600)
	eventually(t, 20*time.Second, func() bool { return len(s.sorted()) >= 601 }, "all handled, the rate-limited one twice")
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 }, "all acknowledged")
	mu.Lock()
	from := heldAt
	mu.Unlock()
	// The hold is set when the handler returns (a few ms after its start);
	// starts granted before that may follow it by one reply.
	quietFrom, quietTo := from.Add(50*time.Millisecond), from.Add(hold-20*time.Millisecond)
	for _, x := range s.sorted() {
		assert.False(t, x.After(quietFrom) && x.Before(quietTo), "a start %v after the hold began", x.Sub(from))
	}
	d := mustDeadLetters(t, rdb, stream)
	n, err := d.Len(testCtx(t))
	require.NoError(t, err)
	assert.Zero(t, n, "a rate-limited attempt is not a failure")
}

func TestRateLimitRefusesBadOptions(t *testing.T) {
	c, err := NewConsumer(mustRedis(t), "g")
	require.NoError(t, err)
	h := func(context.Context, *Message[Order]) error { return nil }
	for _, o := range []HandleOption{WithRateLimit(0, 1), WithRateLimit(-1, 1), WithRateLimit(10, 0), WithRateLimit(1e9, 1)} {
		assert.ErrorIs(t, Handle(c, "s", h, o), ErrInvalidOption)
	}
}
