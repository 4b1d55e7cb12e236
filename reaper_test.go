package redstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/faultkit"
	"github.com/redstream/redstream/internal/redistest"
)

// fastReclaim makes reclaiming quick enough for tests.
func fastReclaim(minIdle time.Duration) []ConsumerOption {
	return []ConsumerOption{WithMinIdle(minIdle), WithReapInterval(minIdle / 4), WithRetryBackoff(20*time.Millisecond, 200*time.Millisecond)}
}

// deliverTo reads up to n new entries as consumer name without handling
// them: a consumer that then dies holding them.
func deliverTo(t testing.TB, rdb redis.UniversalClient, stream, group, name string, n int) []string {
	t.Helper()
	return faultkit.DeliverTo(t, rdb, stream, group, name, n)
}

func TestDeadConsumerMessageHandledElsewhereOnce(t *testing.T) {
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	// Consumer A takes the message and dies mid-handler: its Run ends with
	// the handler cancelled, so the message is never acknowledged.
	started := make(chan struct{})
	a := newTestConsumer(t, rdb, "g", append(fastReclaim(300*time.Millisecond), WithGroupStart("0"), WithConsumerName("a"), WithShutdownTimeout(0))...)
	require.NoError(t, Handle(a, stream, func(ctx context.Context, _ *Message[Order]) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}))
	ra := start(t, a)
	<-started
	require.ErrorIs(t, ra.stop(t), ErrShutdownTimeout)
	require.Equal(t, int64(1), pendingCount(t, rdb, stream, "g"))

	// A handed the message over as it shut down: consumer B's reaper
	// reclaims it on its first round and handles it, once.
	handled := newSeen()
	var handledAt atomic.Int64
	b := newTestConsumer(t, rdb, "g", append(fastReclaim(300*time.Millisecond), WithConsumerName("b"))...)
	require.NoError(t, Handle(b, stream, func(_ context.Context, m *Message[Order]) error {
		handledAt.Store(time.Now().UnixNano())
		handled.add(m.ID)
		return nil
	}))
	start(t, b)
	eventually(t, 10*time.Second, func() bool { return handled.count(id) == 1 })
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	assert.Never(t, func() bool { return handled.count(id) > 1 }, 500*time.Millisecond, 20*time.Millisecond, "handled once")
}

// TestHelperKilledConsumer is not a test: TestKilledProcessMessageHandledElsewhere
// runs the test binary with it as a consumer process that it SIGKILLs.
func TestHelperKilledConsumer(t *testing.T) {
	addr, stream := os.Getenv("REDSTREAM_HELPER_ADDR"), os.Getenv("REDSTREAM_HELPER_STREAM")
	if addr == "" {
		t.Skip("helper process only")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	c, err := NewConsumer(rdb, "g", WithGroupStart("0"), WithConsumerName("doomed"), WithMinIdle(300*time.Millisecond), WithBlock(50*time.Millisecond))
	if err != nil {
		panic(err)
	}
	_ = Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		rdb.Set(ctx, stream+":started", m.ID, 0)
		select {} // hang until killed
	})
	_ = c.Run(context.Background())
}

func TestKilledProcessMessageHandledElsewhere(t *testing.T) {
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKilledConsumer$")
	cmd.Env = append(os.Environ(), "REDSTREAM_HELPER_ADDR="+rdb.Options().Addr, "REDSTREAM_HELPER_STREAM="+stream)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, 20*time.Second, func() bool { return rdb.Get(context.Background(), stream+":started").Val() == id }, "child handles the message")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	handled := newSeen()
	b := newTestConsumer(t, rdb, "g", append(fastReclaim(300*time.Millisecond), WithConsumerName("survivor"))...)
	require.NoError(t, Handle(b, stream, func(_ context.Context, m *Message[Order]) error {
		handled.add(m.ID)
		return nil
	}))
	start(t, b)
	eventually(t, 10*time.Second, func() bool { return handled.count(id) == 1 })
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	assert.Equal(t, 1, handled.len())
}

func TestAlwaysFailingMessageDeliveredMaxTimesThenDeadLettered(t *testing.T) {
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	const maxDeliveries = 4
	var (
		mu    sync.Mutex
		times []time.Time
		deliv []int64
	)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMaxDeliveries(maxDeliveries),
		WithRetryBackoff(40*time.Millisecond, time.Second), WithMinIdle(time.Minute))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		deliv = append(deliv, m.Deliveries)
		return fmt.Errorf("attempt %d failed", m.Deliveries)
	}))
	start(t, c)
	dlq, err := NewDeadLetters(rdb, stream)
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() bool { n, _ := dlq.Len(ctx); return n == 1 })
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	assert.Never(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(times) > maxDeliveries }, 300*time.Millisecond, 20*time.Millisecond)

	mu.Lock()
	require.Len(t, times, maxDeliveries)
	assert.Equal(t, []int64{1, 2, 3, 4}, deliv)
	var gaps []time.Duration
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]))
	}
	mu.Unlock()
	// Equal jitter keeps each gap in [d/2, d] with d doubling: 20-40ms,
	// 40-80ms, 80-160ms (plus scheduling).
	assert.GreaterOrEqual(t, gaps[0], 20*time.Millisecond, "not retried at once")
	assert.Greater(t, gaps[2], gaps[0], "gaps grow: %v", gaps)
	assert.GreaterOrEqual(t, gaps[2], 80*time.Millisecond, "gaps: %v", gaps)

	letters, _, err := dlq.List(ctx, ListOptions{})
	require.NoError(t, err)
	require.Len(t, letters, 1)
	d := letters[0]
	assert.Equal(t, stream, d.Stream)
	assert.Equal(t, id, d.OriginID)
	assert.Equal(t, "g", d.Group)
	assert.Equal(t, c.Name(), d.Consumer)
	assert.Equal(t, int64(maxDeliveries), d.Deliveries)
	assert.Equal(t, ReasonMaxDeliveries, d.Reason)
	assert.Equal(t, "attempt 4 failed", d.Error)
	assert.WithinDuration(t, time.Now(), d.Time, 10*time.Second)
	assert.Equal(t, "0", d.Fields["orderId"])
	assert.Contains(t, d.Fields, "payload")
}

func TestHandlerOutcomes(t *testing.T) {
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		p, err := NewProducer[Order](rdb, stream)
		require.NoError(t, err)
		ids := map[string]string{}
		for _, kind := range []string{"dead-letter", "drop", "retry-after", "ok"} {
			ids[kind], err = p.Publish(ctx, Order{ID: kind})
			require.NoError(t, err)
		}
		var (
			mu    sync.Mutex
			calls = map[string][]time.Time{}
		)
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithRetryBackoff(time.Hour, time.Hour))
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			mu.Lock()
			calls[m.Payload.ID] = append(calls[m.Payload.ID], time.Now())
			n := len(calls[m.Payload.ID])
			mu.Unlock()
			switch m.Payload.ID {
			case "dead-letter":
				return fmt.Errorf("unknown customer: %w", ErrDeadLetter)
			case "drop":
				return fmt.Errorf("test order: %w", ErrDrop)
			case "retry-after":
				if n == 1 {
					return RetryAfter(150*time.Millisecond, errors.New("rate limited"))
				}
			}
			return nil
		}))
		start(t, c)
		dlq, err := NewDeadLetters(rdb, stream)
		require.NoError(t, err)
		eventually(t, 10*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(calls["retry-after"]) == 2
		})
		eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })

		mu.Lock()
		assert.Len(t, calls["dead-letter"], 1, "ErrDeadLetter is not retried")
		assert.Len(t, calls["drop"], 1)
		assert.GreaterOrEqual(t, calls["retry-after"][1].Sub(calls["retry-after"][0]), 140*time.Millisecond, "RetryAfter's delay replaces the hour-long backoff")
		mu.Unlock()

		letters, _, err := dlq.List(ctx, ListOptions{})
		require.NoError(t, err)
		require.Len(t, letters, 1, "only the ErrDeadLetter message is dead-lettered; ErrDrop is not")
		assert.Equal(t, ids["dead-letter"], letters[0].OriginID)
		assert.Equal(t, ReasonHandler, letters[0].Reason)
		if !strings.HasSuffix(t.Name(), "miniredis") {
			// miniredis counts a delivery on every XCLAIM, JUSTID ones
			// included (Redis does not), and the consumer's claims may
			// come first.
			assert.Equal(t, int64(1), letters[0].Deliveries)
		}
		assert.Contains(t, letters[0].Error, "unknown customer")
	})
}

func TestLongHandlerOnLiveConsumerIsNotStolen(t *testing.T) {
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	const minIdle = 200 * time.Millisecond
	var byA, byB atomic.Int64
	started := make(chan struct{})
	a := newTestConsumer(t, rdb, "g", append(fastReclaim(minIdle), WithGroupStart("0"), WithConsumerName("a"))...)
	require.NoError(t, Handle(a, stream, func(ctx context.Context, _ *Message[Order]) error {
		close(started)
		sleepCtx(ctx, 3*minIdle)
		byA.Add(1)
		return ctx.Err()
	}))
	b := newTestConsumer(t, rdb, "g", append(fastReclaim(minIdle), WithGroupStart("0"), WithConsumerName("b"))...)
	require.NoError(t, Handle(b, stream, func(context.Context, *Message[Order]) error {
		byB.Add(1)
		return nil
	}))
	start(t, a)
	eventually(t, 5*time.Second, func() bool { return groupExists(rdb, stream, "g") })
	publishOrders(t, rdb, stream, 1)
	<-started
	start(t, b) // b's reaper now runs every 50ms against a 200ms MinIdle
	eventually(t, 5*time.Second, func() bool { return byA.Load() == 1 })
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	assert.Zero(t, byB.Load(), "a live consumer's long handler was redelivered elsewhere")
}

func TestLostLeaseCancelsHandlerAndLosesNothing(t *testing.T) {
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]
	cancelled := make(chan struct{})
	started := make(chan struct{})
	a := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"), WithMinIdle(90*time.Millisecond), WithoutReaper())
	require.NoError(t, Handle(a, stream, func(ctx context.Context, _ *Message[Order]) error {
		close(started)
		<-ctx.Done() // the lease renewal finds the message taken and cancels
		close(cancelled)
		return ctx.Err()
	}))
	start(t, a)
	<-started
	// Another consumer takes the message over, as a reaper would from a
	// consumer it wrongly believed dead.
	claimed, err := rdb.XClaimJustID(ctx, &redis.XClaimArgs{Stream: stream, Group: "g", Consumer: "b", Messages: []string{id}}).Result()
	require.NoError(t, err)
	require.Equal(t, []string{id}, claimed)
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("handler context not cancelled after the lease was lost")
	}
	// A's failed handler must not acknowledge or dead-letter b's delivery:
	// the message stays pending for b.
	assert.Never(t, func() bool {
		p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: "-", End: "+", Count: 10}).Result()
		return err != nil || len(p) != 1 || p[0].Consumer != "b"
	}, 300*time.Millisecond, 20*time.Millisecond)
	n, err := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
	require.NoError(t, err)
	assert.Zero(t, n)
}

// logRecords is a slog handler that keeps records for assertions.
type logRecords struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecords) WithGroup(string) slog.Handler      { return h }

// sumInt adds the int attribute key over the records whose message is msg.
func (h *logRecords) sumInt(msg, key string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var sum int64
	for _, r := range h.records {
		if r.Message != msg {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key {
				sum += a.Value.Int64()
			}
			return true
		})
	}
	return sum
}

func TestTrimmedPendingEntriesDoNotStallReaper(t *testing.T) {
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 30)
	doomed := deliverTo(t, rdb, stream, "g", "dead", 30)
	// Trim the 30 oldest away while they are pending, then add 10 more that
	// the dead consumer also took: the reaper must get past the 30.
	require.NoError(t, rdb.XTrimMaxLen(ctx, stream, 0).Err())
	live := publishOrders(t, rdb, stream, 10)
	require.Len(t, deliverTo(t, rdb, stream, "g", "dead", 10), 10)
	require.Len(t, doomed, 30)

	logs := &logRecords{}
	handled := newSeen()
	c := newTestConsumer(t, rdb, "g", append(fastReclaim(100*time.Millisecond), WithReapBatch(4), WithLogger(slog.New(logs)))...)
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		handled.add(m.ID)
		return nil
	}))
	start(t, c)
	eventually(t, 15*time.Second, func() bool { return handled.len() == 10 }, "the live entries behind the trimmed ones are reclaimed")
	for _, id := range live {
		assert.Equal(t, 1, handled.count(id))
	}
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	eventually(t, 5*time.Second, func() bool {
		return logs.sumInt("redstream: reaper cleared pending entries that were deleted from the stream", "count") == 30
	}, "the deleted entries are counted")
}

func TestRacingReapersDeadLetterOnce(t *testing.T) {
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	for round := range 10 {
		stream := uniqueStream(t) + ":" + strconv.Itoa(round)
		publishOrders(t, rdb, stream, 40)
		ids := deliverTo(t, rdb, stream, "g", "dead", 40)
		// Delivered five times, last an hour ago: ready to dead-letter.
		require.NoError(t, rdb.XClaimJustID(ctx, &redis.XClaimArgs{Stream: stream, Group: "g", Consumer: "dead", Messages: ids}).Err())
		require.NoError(t, rdb.Do(ctx, append([]any{"XCLAIM", stream, "g", "dead", 0}, append(anySlice(ids), "IDLE", 3600000, "RETRYCOUNT", 5, "JUSTID")...)...).Err())
		for _, id := range ids {
			recordAttempts(t, rdb, stream, "g", id, 5)
		}

		var wg sync.WaitGroup
		var total atomic.Int64
		for range 4 {
			rp, err := NewReaper(rdb, "g", []string{stream}, WithMinIdle(time.Second), WithReapBatch(7))
			require.NoError(t, err)
			wg.Go(func() {
				for range 5 {
					stats, err := rp.ReapOnce(ctx)
					assert.NoError(t, err)
					total.Add(int64(stats.DeadLettered))
				}
			})
		}
		wg.Wait()
		letters, _, err := mustDeadLetters(t, rdb, stream).List(ctx, ListOptions{Count: 1000})
		require.NoError(t, err)
		origins := map[string]int{}
		for _, d := range letters {
			origins[d.OriginID]++
		}
		assert.Len(t, letters, 40, "round %d", round)
		assert.Len(t, origins, 40, "each entry dead-lettered once (round %d)", round)
		assert.Equal(t, int64(40), total.Load(), "stats count each move once")
		assert.Zero(t, pendingCount(t, rdb, stream, "g"))
	}
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func mustDeadLetters(t testing.TB, rdb redis.UniversalClient, stream string) *DeadLetters {
	d, err := NewDeadLetters(rdb, stream)
	require.NoError(t, err)
	return d
}

// waitDeadLetters waits until stream's dead-letter stream holds n entries,
// and returns them.
func waitDeadLetters(t testing.TB, rdb redis.UniversalClient, stream string, n int) []DeadLetter {
	t.Helper()
	var letters []DeadLetter
	eventually(t, 10*time.Second, func() bool {
		var err error
		letters, _, err = mustDeadLetters(t, rdb, stream).List(context.Background(), ListOptions{})
		require.NoError(t, err)
		return len(letters) == n
	}, "%d dead letters", n)
	return letters
}

func TestStandaloneReaperLeavesEntriesBelowTheLimit(t *testing.T) {
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 3)
	ids := deliverTo(t, rdb, stream, "g", "dead", 3)
	publishOrders(t, rdb, stream, 2)
	ids = append(ids, deliverTo(t, rdb, stream, "g", "dead", 2)...)
	require.NoError(t, rdb.Do(ctx, "XCLAIM", stream, "g", "dead", 0, ids[0], "IDLE", 3600000, "RETRYCOUNT", 5, "JUSTID").Err())
	recordAttempts(t, rdb, stream, "g", ids[0], 5)
	require.NoError(t, rdb.Do(ctx, "XCLAIM", stream, "g", "dead", 0, ids[1], "IDLE", 3600000, "RETRYCOUNT", 2, "JUSTID").Err())
	recordAttempts(t, rdb, stream, "g", ids[1], 2)
	// ids[2] is at its limit too but was delivered just now: not idle.
	require.NoError(t, rdb.Do(ctx, "XCLAIM", stream, "g", "dead", 0, ids[2], "RETRYCOUNT", 5, "JUSTID").Err())
	recordAttempts(t, rdb, stream, "g", ids[2], 5)
	// ids[3]: delivered 5 times, but its handler failed once: the other
	// deliveries went to consumers that died holding it, or were lost.
	require.NoError(t, rdb.Do(ctx, "XCLAIM", stream, "g", "dead", 0, ids[3], "IDLE", 3600000, "RETRYCOUNT", 5, "JUSTID").Err())
	recordAttempts(t, rdb, stream, "g", ids[3], 1)
	// ids[4]: delivered past the crash-loop guard without failures.
	require.NoError(t, rdb.Do(ctx, "XCLAIM", stream, "g", "dead", 0, ids[4], "IDLE", 3600000, "RETRYCOUNT", DefaultMaxDeliveries+CrashLoopDeliveries+1, "JUSTID").Err())

	rp, err := NewReaper(rdb, "g", []string{stream}, WithMinIdle(time.Minute), WithIdleConsumerTTL(0))
	require.NoError(t, err)
	stats, err := rp.ReapOnce(ctx)
	require.NoError(t, err)
	assert.Equal(t, ReapStats{DeadLettered: 2}, stats)
	assert.Equal(t, int64(3), pendingCount(t, rdb, stream, "g"))
	letters, _, err := mustDeadLetters(t, rdb, stream).List(ctx, ListOptions{})
	require.NoError(t, err)
	reasons := map[string]string{}
	for _, d := range letters {
		reasons[d.OriginID] = d.Reason
	}
	assert.Equal(t, map[string]string{ids[0]: ReasonMaxDeliveries, ids[4]: ReasonCrashLoop}, reasons)
	fields, err := rdb.HGetAll(ctx, attemptsKey(stream, "g")).Result()
	require.NoError(t, err)
	assert.NotContains(t, fields, ids[0], "the dead-letter move deletes the failed-attempts record")
}

// recordAttempts records n failed handler attempts of id, as consumers do.
func recordAttempts(t testing.TB, rdb redis.UniversalClient, stream, group, id string, n int64) {
	t.Helper()
	_, err := recordAttempt(context.Background(), rdb, stream, group, id, n)
	require.NoError(t, err)
}

func TestIdleConsumerCleanupNeverLosesPendingEntries(t *testing.T) {
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 5)
	held := deliverTo(t, rdb, stream, "g", "old", 5)
	require.NoError(t, rdb.XGroupCreateConsumer(ctx, stream, "g", "empty").Err())

	// A standalone reaper with a short TTL deletes only the consumer that
	// holds nothing.
	time.Sleep(150 * time.Millisecond) // let both consumers become idle
	rp, err := NewReaper(rdb, "g", []string{stream}, WithMinIdle(100*time.Millisecond), WithIdleConsumerTTL(100*time.Millisecond))
	require.NoError(t, err)
	stats, err := rp.ReapOnce(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, stats.ConsumersDeleted)
	assert.ElementsMatch(t, []string{"old"}, consumerNames(t, rdb, stream, "g"))

	// A consumer's reaper claims old's entries first, handles them, then
	// deletes old.
	handled := newSeen()
	c := newTestConsumer(t, rdb, "g", append(fastReclaim(100*time.Millisecond), WithConsumerName("new"), WithIdleConsumerTTL(100*time.Millisecond))...)
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		handled.add(m.ID)
		return nil
	}))
	start(t, c)
	eventually(t, 10*time.Second, func() bool { return handled.len() == 5 })
	for _, id := range held {
		assert.Equal(t, 1, handled.count(id))
	}
	eventually(t, 10*time.Second, func() bool {
		names := consumerNames(t, rdb, stream, "g")
		return len(names) == 1 && names[0] == "new"
	}, "old deleted once empty")
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 }, "all acknowledged")
}

func consumerNames(t testing.TB, rdb redis.UniversalClient, stream, group string) []string {
	infos, err := rdb.XInfoConsumers(context.Background(), stream, group).Result()
	require.NoError(t, err)
	var names []string
	for _, c := range infos {
		names = append(names, c.Name)
	}
	return names
}

// miniredis reports idle times from its own clock, so SetTime ages pending
// entries without waiting.
func TestReaperReclaimsAfterMinIdleMiniredis(t *testing.T) {
	mr, rdb := newMiniredis(t)
	mr.SetTime(time.Now())
	stream := uniqueStream(t)
	publishOrders(t, rdb, stream, 2)
	ids := deliverTo(t, rdb, stream, "g", "dead", 2)

	handled := newSeen()
	c := newTestConsumer(t, rdb, "g", WithMinIdle(time.Minute), WithReapInterval(10*time.Millisecond), WithConsumerName("live"))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		handled.add(m.ID)
		return nil
	}))
	start(t, c)
	assert.Never(t, func() bool { return handled.len() > 0 }, 200*time.Millisecond, 10*time.Millisecond, "entries younger than MinIdle stay with their consumer")
	mr.SetTime(time.Now().Add(2 * time.Minute))
	eventually(t, 5*time.Second, func() bool { return handled.len() == 2 })
	for _, id := range ids {
		assert.Equal(t, 1, handled.count(id))
	}
}

func TestReclaimOptionErrors(t *testing.T) {
	_, rdb := newMiniredis(t)
	for name, opt := range map[string]ConsumerOption{
		"tiny min idle":     WithMinIdle(time.Millisecond),
		"zero interval":     WithReapInterval(0),
		"zero batch":        WithReapBatch(0),
		"zero deliveries":   WithMaxDeliveries(0),
		"negative ttl":      WithIdleConsumerTTL(-time.Second),
		"ttl below minidle": WithIdleConsumerTTL(time.Second),
		"bad retry backoff": WithRetryBackoff(0, time.Second),
	} {
		_, err := NewConsumer(rdb, "g", opt)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
	}
	_, err := NewReaper(rdb, "g", nil)
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewReaper(rdb, "", []string{"s"})
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewReaper(rdb, "g", []string{"a}b"})
	assert.ErrorIs(t, err, ErrInvalidStreamName)
	_, err = NewReaper(rdb, "g", []string{"s"}, WithMaxDeliveries(-1))
	assert.ErrorIs(t, err, ErrInvalidOption)
}

func TestHeldMessageTrimmedWhileFailingIsDeadLetteredFromMemory(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	for _, outcome := range []string{"error", "dead-letter"} {
		t.Run(outcome, func(t *testing.T) {
			stream := stream + ":" + outcome
			id := publishOrders(t, rdb, stream, 1)[0]
			started, trimmed := make(chan struct{}), make(chan struct{})
			c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMinIdle(60*time.Millisecond), WithRetryBackoff(time.Hour, time.Hour))
			require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error {
				close(started)
				<-trimmed
				if outcome == "dead-letter" {
					return ErrDeadLetter
				}
				return errors.New("still failing")
			}))
			start(t, c)
			<-started
			require.NoError(t, rdb.XTrimMaxLen(ctx, stream, 0).Err())
			time.Sleep(100 * time.Millisecond) // a few lease renewals notice it
			close(trimmed)

			d := mustDeadLetters(t, rdb, stream)
			eventually(t, 10*time.Second, func() bool { n, _ := d.Len(ctx); return n == 1 }, "not lost with the trimmed entry")
			letters, _, err := d.List(ctx, ListOptions{})
			require.NoError(t, err)
			assert.Equal(t, id, letters[0].OriginID)
			assert.Equal(t, "0", letters[0].Fields["orderId"], "fields written from the consumer's memory")
			assert.Contains(t, letters[0].Fields, "payload")
			if outcome == "dead-letter" {
				assert.Equal(t, ReasonHandler, letters[0].Reason)
			} else {
				assert.Equal(t, ReasonTrimmed, letters[0].Reason)
			}
			eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
		})
	}
}

func TestLeaseRenewalNeverLowersTheDeliveryCount(t *testing.T) {
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishOrders(t, rdb, stream, 1)
	id := deliverTo(t, rdb, stream, "g", "me", 1)[0]
	require.NoError(t, rdb.Do(ctx, "XCLAIM", stream, "g", "me", 0, id, "RETRYCOUNT", 5, "JUSTID").Err())

	res, err := renewLeases(ctx, rdb, stream, "g", "me", 2, 0, []string{id})
	require.NoError(t, err)
	assert.Equal(t, leaseResult{lost: []string{}, deleted: []string{}, vanished: []string{}, unrecorded: []string{}}, res)
	p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: "-", End: "+", Count: 1}).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(5), p[0].RetryCount)

	_, err = renewLeases(ctx, rdb, stream, "g", "me", 7, 0, []string{id})
	require.NoError(t, err)
	p, err = rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: "-", End: "+", Count: 1}).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(7), p[0].RetryCount)

	res, err = renewLeases(ctx, rdb, stream, "g", "someone-else", 0, 0, []string{id})
	require.NoError(t, err)
	assert.Equal(t, []string{id}, res.lost)

	require.NoError(t, rdb.HSet(ctx, attemptsKey(stream, "g"), id, 1).Err())
	require.NoError(t, rdb.XAck(ctx, stream, "g", id).Err())
	res, err = renewLeases(ctx, rdb, stream, "g", "me", 0, 0, []string{id})
	require.NoError(t, err)
	assert.Equal(t, []string{id}, res.vanished, "an entry pending for no one, its failure recorded, is vanished, not lost")
	require.NoError(t, rdb.HDel(ctx, attemptsKey(stream, "g"), id).Err())
	res, err = renewLeases(ctx, rdb, stream, "g", "me", 0, 0, []string{id})
	require.NoError(t, err)
	assert.Equal(t, []string{id}, res.unrecorded, "with no failure recorded, it may have been finished elsewhere")
	require.NoError(t, rdb.Del(ctx, stream).Err())
	res, err = renewLeases(ctx, rdb, stream, "g", "me", 0, 0, []string{id})
	require.NoError(t, err)
	assert.Equal(t, []string{id}, res.vanished, "a deleted stream's entries are vanished")
}

// TestReaperTakesNoPayloadOptions: a standalone Reaper never decodes, so
// the payload options are not ReaperOptions (NewReaper refuses them at
// compile time), while the logger and the observer, which it uses, are.
func TestReaperTakesNoPayloadOptions(t *testing.T) {
	for name, opt := range map[string]PayloadOption{
		"WithCodec":        WithCodec(JSON),
		"WithPayloadField": WithPayloadField("body"),
	} {
		_, isReaperOption := any(opt).(ReaperOption)
		assert.False(t, isReaperOption, "%s is a ReaperOption", name)
	}
	var shared []ReaperOption
	for _, opt := range []Option{WithLogger(nil), WithObserver(NopObserver{})} {
		shared = append(shared, opt)
	}
	_, rdb := newMiniredis(t)
	_, err := NewReaper(rdb, "g", []string{"s"}, shared...)
	assert.NoError(t, err)
}
