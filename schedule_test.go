package redstream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

// scheduledLedger records what handlers saw of scheduled messages.
type scheduledLedger struct {
	mu       sync.Mutex
	handled  map[string]int       // schedule ID -> handler runs
	lateness []time.Duration      // entry ID time - due, per first run
	early    []string             // schedule IDs appended before due
	dues     map[string]time.Time // schedule ID -> due, as the entry says
}

func newScheduledLedger() *scheduledLedger {
	return &scheduledLedger{handled: map[string]int{}, dues: map[string]time.Time{}}
}

func (l *scheduledLedger) handle(m *Message[Order]) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id, due := m.ScheduleID(), m.ScheduledFor()
	l.handled[id]++
	if l.handled[id] > 1 {
		return
	}
	l.dues[id] = due
	// Both are the server's clock: the ID's time when Redis appended it,
	// the due time as the schedule script computed or was given it.
	if m.Time().Before(due) {
		l.early = append(l.early, id)
	}
	l.lateness = append(l.lateness, m.Time().Sub(due))
}

func (l *scheduledLedger) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.handled)
}

// percentiles returns the p50, p90, p99 and max of ds.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("p50 %v, p90 %v, p99 %v, max %v", at(0.5), at(0.9), at(0.99), s[len(s)-1])
}

// TestScheduledDeliveryNeverEarlyExactlyOnce publishes 1,000 messages with
// random delays of 0-3s (by Publish, PublishAsync and PublishBatch) while
// three consumers of a group race to move and handle them: none is
// appended before it is due (the entry ID's time, the server's, against
// the due time), each is appended exactly once and handled once. Lateness
// is reported, and bounded only loosely: on a loaded machine a poll can be
// late.
func TestScheduledDeliveryNeverEarlyExactlyOnce(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	l := newScheduledLedger()
	for i := range 3 {
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("c"+strconv.Itoa(i)))
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			l.handle(m)
			return nil
		}))
		startReady(t, c)
	}
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)

	const n = 1000
	delay := func() time.Duration { return time.Duration(rand.Int64N(int64(3 * time.Second))) }
	var ids []string
	var futures []*PublishFuture
	for i := 0; i < n; {
		switch i % 3 {
		case 0:
			id, err := p.Publish(ctx, Order{ID: strconv.Itoa(i)}, WithDelay(delay()))
			require.NoError(t, err)
			ids = append(ids, id)
			i++
		case 1:
			f, err := p.PublishAsync(ctx, Order{ID: strconv.Itoa(i)}, WithDelay(delay()))
			require.NoError(t, err)
			futures = append(futures, f)
			i++
		default:
			batch := []Order{{ID: strconv.Itoa(i)}, {ID: strconv.Itoa(i + 1)}}
			got, err := p.PublishBatch(ctx, batch[:min(2, n-i)], WithDeliverAt(time.Now().Add(delay())))
			require.NoError(t, err)
			ids = append(ids, got...)
			i += len(got)
		}
	}
	require.NoError(t, p.Flush(ctx))
	for _, f := range futures {
		id, err := f.Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.Len(t, ids, n)
	slices.Sort(ids)
	require.Len(t, slices.Compact(slices.Clone(ids)), n, "schedule IDs are distinct")

	eventually(t, 30*time.Second, func() bool { return l.distinct() == n }, "every scheduled message handled")
	eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })

	// Appended exactly once: the stream holds n entries, one per schedule ID.
	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	inStream := map[string]int{}
	for _, e := range entries {
		inStream[e.Values[ScheduleIDField].(string)]++
	}
	assert.Len(t, entries, n, "entries appended")
	for _, id := range ids {
		assert.Equal(t, 1, inStream[id], "schedule ID %s appended once", id)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Empty(t, l.early, "appended before due")
	for id, runs := range l.handled {
		assert.Equal(t, 1, runs, "schedule ID %s handled once", id)
	}
	// Due + 2 polls is the aim; the assertion allows for a loaded machine.
	for _, d := range l.lateness {
		assert.Less(t, d, 5*time.Second, "appended within 5s of due")
	}
	late := 0
	for _, d := range l.lateness {
		if d > 2*DefaultSchedulePoll {
			late++
		}
	}
	info, err := Inspect(ctx, rdb, stream)
	require.NoError(t, err)
	assert.Zero(t, info.Scheduled)
	t.Logf("%d scheduled messages, 3 consumers, poll %v: lateness (entry ID time - due) %s; %d later than due + 2 polls",
		n, DefaultSchedulePoll, percentiles(l.lateness), late)
}

func TestScheduledCancel(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)

	// Before due: never appended.
	later, err := p.Publish(ctx, Order{ID: "later"}, WithDelay(300*time.Millisecond))
	require.NoError(t, err)
	now, err := p.Publish(ctx, Order{ID: "now"}, WithDelay(0))
	require.NoError(t, err)
	info, err := Inspect(ctx, rdb, stream)
	require.NoError(t, err, "nothing appended yet, but two wait")
	assert.Equal(t, int64(2), info.Scheduled)
	assert.Zero(t, info.Length)

	list, err := ListScheduled(ctx, rdb, stream, 0, 10)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, now, list[0].ID, "due order")
	assert.Equal(t, later, list[1].ID)
	assert.Contains(t, list[1].Fields[DefaultPayloadField], `"later"`)
	assert.Equal(t, "later", list[1].Fields["orderId"], "headers kept")

	require.NoError(t, p.Cancel(ctx, later))
	assert.ErrorIs(t, p.Cancel(ctx, later), ErrNotScheduled, "cancelled twice")

	moved, err := MoveDue(ctx, rdb, stream)
	require.NoError(t, err)
	assert.Equal(t, 1, moved)
	// After the move: too late.
	assert.ErrorIs(t, p.Cancel(ctx, now), ErrNotScheduled)
	assert.ErrorIs(t, p.Cancel(ctx, "not-a-schedule-id"), ErrNotScheduled)

	due := list[1].Due
	eventually(t, 5*time.Second, func() bool { return rdb.Time(ctx).Val().After(due) }, "past the cancelled message's due time, by the server's clock")
	moved, err = MoveDue(ctx, rdb, stream)
	require.NoError(t, err)
	assert.Zero(t, moved, "a cancelled message is never appended")
	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, now, entries[0].Values[ScheduleIDField])
	exists, err := rdb.Exists(ctx, scheduledKey(stream), scheduledDataKey(stream)).Result()
	require.NoError(t, err)
	assert.Zero(t, exists, "the schedule's keys are gone when empty")
}

func TestScheduledOnPartitionsAndInspect(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, base := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, base, WithPartitions(4))
	require.NoError(t, err)
	_, err = p.Publish(ctx, Order{ID: "warm"}, WithKey("k1"))
	require.NoError(t, err)
	ids := map[string]string{}
	for _, key := range []string{"k1", "k2", "k3", "k4", "k5"} {
		id, err := p.Publish(ctx, Order{ID: key}, WithKey(key), WithDelay(time.Hour))
		require.NoError(t, err)
		ids[key] = id
	}
	part := PartitionOf("k1", 4)
	info, err := Inspect(ctx, rdb, p.Partitions()[part])
	require.NoError(t, err)
	assert.Positive(t, info.Scheduled)
	assert.WithinDuration(t, time.Now().Add(time.Hour), info.NextDue, 5*time.Second)

	all, err := InspectPartitions(ctx, rdb, base, 4)
	require.NoError(t, err)
	assert.Equal(t, int64(5), all.Total.Scheduled, "scheduled per partition, summed")

	list, err := ListScheduled(ctx, rdb, p.Partitions()[part], 0, 10)
	require.NoError(t, err)
	assert.Contains(t, slices.Collect(func(yield func(string) bool) {
		for _, m := range list {
			if !yield(m.ID) {
				return
			}
		}
	}), ids["k1"], "scheduled in its key's partition")
	for _, id := range ids {
		require.NoError(t, p.Cancel(ctx, id), "Cancel finds the partition from the ID")
	}
	all, err = InspectPartitions(ctx, rdb, base, 4)
	require.NoError(t, err)
	assert.Zero(t, all.Total.Scheduled)
}

// TestScheduledWritesThroughDroppedReplies drops the reply of the schedule
// script, of the mover and of a cancel after Redis ran them: go-redis
// sends them again, and each still acts once.
func TestScheduledWritesThroughDroppedReplies(t *testing.T) {
	t.Parallel()
	proxy := startCutProxy(t, redistest.Addr(t))
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	// Load the scripts first: the cut is on EVALSHA.
	_, err = p.Publish(ctx, Order{ID: "load"}, WithDelay(time.Hour))
	require.NoError(t, err)
	_, err = MoveDue(ctx, rdb, stream)
	require.NoError(t, err)

	proxy.CutAfter("evalsha", 1)
	id, err := p.Publish(ctx, Order{ID: "a"}, WithDelay(0))
	require.NoError(t, err, "the resend returns the first run's reply")
	proxy.eventuallyCut(t, 1)
	n, err := rdb.ZCard(ctx, scheduledKey(stream)).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(2), n, "scheduled once")

	proxy.CutAfter("evalsha", 1)
	_, err = MoveDue(ctx, rdb, stream)
	require.NoError(t, err)
	proxy.eventuallyCut(t, 2)
	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1, "moved once")
	assert.Equal(t, id, entries[0].Values[ScheduleIDField])

	cancelMe, err := p.Publish(ctx, Order{ID: "b"}, WithDelay(time.Hour))
	require.NoError(t, err)
	proxy.CutAfter("evalsha", 1)
	require.NoError(t, p.Cancel(ctx, cancelMe), "the resend reports the first run's cancel")
	proxy.eventuallyCut(t, 3)
}

// TestHelperScheduledConsumer is not a test:
// TestScheduledSurviveKilledConsumerAndRedisRestart runs the test binary
// with it as a consumer process that it SIGKILLs.
func TestHelperScheduledConsumer(t *testing.T) {
	addr, stream := os.Getenv("REDSTREAM_HELPER_ADDR"), os.Getenv("REDSTREAM_HELPER_SCHEDULED")
	if addr == "" || stream == "" {
		t.Skip("helper process only")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	c, err := NewConsumer(rdb, "g", WithGroupStart("0"), WithConsumerName("doomed"), WithMinIdle(300*time.Millisecond),
		WithBlock(50*time.Millisecond), WithSchedulePoll(20*time.Millisecond))
	if err != nil {
		panic(err)
	}
	_ = Handle(c, stream, func(ctx context.Context, m *Message[Order]) error {
		rdb.Incr(ctx, stream+":helper-handled")
		return nil
	})
	_ = c.Run(context.Background())
}

// TestScheduledSurviveKilledConsumerAndRedisRestart schedules messages
// over 3 seconds, lets a consumer process move and handle some, SIGKILLs
// it, then SIGKILLs redis-server (AOF, fsync always) and restarts it: a
// consumer started afterwards appends every other message once, and
// none before its due time.
func TestScheduledSurviveKilledConsumerAndRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	const n = 300
	for i := range n {
		_, err := p.Publish(ctx, Order{ID: strconv.Itoa(i)}, WithDelay(time.Duration(i)*10*time.Millisecond))
		require.NoError(t, err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperScheduledConsumer$")
	cmd.Env = append(os.Environ(), "REDSTREAM_HELPER_ADDR="+srv.Addr(), "REDSTREAM_HELPER_SCHEDULED="+stream)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, 20*time.Second, func() bool {
		v, _ := rdb.Get(ctx, stream+":helper-handled").Int()
		return v >= 20
	}, "the helper moves and handles some")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	left, err := rdb.ZCard(ctx, scheduledKey(stream)).Result()
	require.NoError(t, err)
	require.Positive(t, left, "messages still scheduled when the consumer died")

	srv.Kill()
	srv.Restart(t)
	eventually(t, 10*time.Second, func() bool { return rdb.Ping(ctx).Err() == nil }, "redis back")
	afterRestart, err := rdb.ZCard(ctx, scheduledKey(stream)).Result()
	require.NoError(t, err)
	appended, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(n), afterRestart+appended, "nothing lost by the kills: each message is scheduled or appended")

	l := newScheduledLedger()
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("survivor"), WithMinIdle(300*time.Millisecond), WithReapInterval(100*time.Millisecond))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		l.handle(m)
		return nil
	}))
	startReady(t, c)
	eventually(t, 30*time.Second, func() bool {
		n, _ := rdb.ZCard(ctx, scheduledKey(stream)).Result()
		return n == 0
	}, "the survivor moves the rest")
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	seen := map[string]int{}
	for _, e := range entries {
		id := e.Values[ScheduleIDField].(string)
		seen[id]++
		due, _ := strconv.ParseInt(e.Values[DueField].(string), 10, 64)
		ms, _ := strconv.ParseInt(e.ID[:slices.Index([]byte(e.ID), '-')], 10, 64)
		assert.GreaterOrEqual(t, ms, due, "entry %s appended before due", e.ID)
	}
	assert.Len(t, entries, n, "every message appended")
	assert.Len(t, seen, n, "each once")
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("%d messages: %d appended before the kills, %d still scheduled after the restart; the survivor handled %d",
		n, appended, afterRestart, len(l.handled))
}

func TestScheduleBadOptions(t *testing.T) {
	t.Parallel()
	_, rdb := newMiniredis(t)
	ctx := testCtx(t)
	p, err := NewProducer[Order](rdb, "s")
	require.NoError(t, err)
	for name, opts := range map[string][]PublishOption{
		"negative delay":       {WithDelay(-time.Millisecond)},
		"zero time":            {WithDeliverAt(time.Time{})},
		"delay twice":          {WithDelay(time.Second), WithDeliverAt(time.Now())},
		"delay with ID":        {WithDelay(time.Second), WithID("1-1")},
		"delay with dedupe":    {WithDelay(time.Second), WithDedupeKey("k")},
		"empty dedupe key":     {WithDedupeKey("")},
		"dedupe with ID":       {WithDedupeKey("k"), WithID("1-1")},
		"negative delay async": {WithDelay(-time.Hour)},
	} {
		_, err := p.Publish(ctx, Order{}, opts...)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
		_, err = p.PublishAsync(ctx, Order{}, opts...)
		assert.ErrorIs(t, err, ErrInvalidOption, name)
	}
	_, err = p.PublishBatch(ctx, []Order{{}}, WithDedupeKey("k"))
	assert.ErrorIs(t, err, ErrInvalidOption, "one dedupe key for a batch")
	_, err = NewProducer[Order](rdb, "s", WithDedupeWindow(0))
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewProducer[Order](rdb, "s", WithDedupeWindow(-time.Second))
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewProducer[Order](rdb, "s", WithDedupeKeyFunc[string](func(s string) string { return s }))
	assert.ErrorIs(t, err, ErrInvalidOption, "key func of another type")
	_, err = NewProducer[Order](rdb, "s", WithDedupeKeyFunc[Order](nil))
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewConsumer(rdb, "g", WithSchedulePoll(0))
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewReaper(rdb, "g", []string{"s"}, WithSchedulePoll(-time.Second))
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = ListScheduled(ctx, rdb, "s", 0, 0)
	assert.ErrorIs(t, err, ErrInvalidOption)
	empty, err := NewProducer[Order](rdb, "s", WithDedupeKeyFunc(func(Order) string { return "" }))
	require.NoError(t, err)
	_, err = empty.Publish(ctx, Order{})
	assert.ErrorIs(t, err, ErrInvalidOption, "empty derived dedupe key")
}

// TestStandaloneReaperMovesScheduled: a process with no consumer, only a
// Reaper, appends due messages.
func TestStandaloneReaperMovesScheduled(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	id, err := p.Publish(ctx, Order{ID: "1"}, WithDelay(50*time.Millisecond))
	require.NoError(t, err)
	rp, err := NewReaper(rdb, "g", []string{stream}, WithSchedulePoll(10*time.Millisecond))
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rp.Run(runCtx) }()
	eventually(t, 5*time.Second, func() bool { return rdb.XLen(ctx, stream).Val() == 1 })
	stop()
	require.NoError(t, <-done)
	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	assert.Equal(t, id, entries[0].Values[ScheduleIDField])
}

// TestScheduledRecordIsBinarySafe: fields holding any bytes come out of
// the schedule as they went in, on Redis and on miniredis (which the
// examples run on).
func TestScheduledRecordIsBinarySafe(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, rdb *redis.Client) {
		ctx, stream := testCtx(t), uniqueStream(t)
		p, err := NewProducer[Fields](rdb, stream)
		require.NoError(t, err)
		in := Fields{"bin": "\x00\xff:12:\x01", "": "x", "empty": "", "3:f": "1:f"}
		delete(in, "")
		id, err := p.Publish(ctx, in, WithDelay(0))
		require.NoError(t, err)
		list, err := ListScheduled(ctx, rdb, stream, 0, 5)
		require.NoError(t, err)
		require.Len(t, list, 1)
		assert.Equal(t, map[string]string(in), list[0].Fields)
		moved, err := MoveDue(ctx, rdb, stream)
		require.NoError(t, err)
		require.Equal(t, 1, moved)
		entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
		require.NoError(t, err)
		require.Len(t, entries, 1)
		for k, v := range in {
			assert.Equal(t, v, entries[0].Values[k], "field %q", k)
		}
		assert.Equal(t, id, entries[0].Values[ScheduleIDField])
	})
}

// checkScheduledAndDedupe runs scheduled and deduplicated publishes on a
// partitioned stream with WithMinReplicas (each partition's scripts in a
// pipeline to its primary with a WAIT): on a Redis Cluster, every key
// involved is in its partition's slot.
func checkScheduledAndDedupe(t *testing.T, rdb redis.UniversalClient) {
	ctx, base := testCtx(t), uniqueStream(t)
	const parts = 4
	p, err := NewProducer[Order](rdb, base, WithPartitions(parts), WithMinReplicas(1, time.Second),
		WithKeyFunc(func(o Order) string { return o.ID }))
	require.NoError(t, err)
	var ids []string
	for i := range 20 {
		id, err := p.Publish(ctx, Order{ID: strconv.Itoa(i)}, WithDelay(time.Duration(i)*20*time.Millisecond))
		require.NoError(t, err)
		ids = append(ids, id)
	}
	batch, err := p.PublishBatch(ctx, []Order{{ID: "b1"}, {ID: "b2"}, {ID: "b3"}}, WithDelay(100*time.Millisecond))
	require.NoError(t, err)
	ids = append(ids, batch...)

	first, err := p.Publish(ctx, Order{ID: "d"}, WithDedupeKey("order-d"))
	require.NoError(t, err)
	again, err := p.Publish(ctx, Order{ID: "d"}, WithDedupeKey("order-d"))
	require.ErrorIs(t, err, ErrDuplicate)
	assert.Equal(t, first, again)

	l := newScheduledLedger()
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithSchedulePoll(20*time.Millisecond))
	require.NoError(t, Handle(c, base, func(_ context.Context, m *Message[Order]) error {
		if m.ScheduleID() != "" {
			l.handle(m)
		}
		return nil
	}, WithPartitions(parts)))
	startReady(t, c)
	eventually(t, 20*time.Second, func() bool { return l.distinct() == len(ids) }, "every scheduled message handled")
	l.mu.Lock()
	assert.Empty(t, l.early)
	for _, id := range ids {
		assert.Equal(t, 1, l.handled[id], "schedule ID %s", id)
	}
	l.mu.Unlock()
	info, err := InspectPartitions(ctx, rdb, base, parts)
	require.NoError(t, err)
	assert.EqualValues(t, len(ids)+1, info.Total.Length, "each scheduled message once, the deduplicated one once")
	assert.Zero(t, info.Total.Scheduled)
}

// TestScriptedPublishesReportReplication: with WithMinReplicas on a
// server without replicas, a deduplicated publish is written and returns
// its ID with a ReplicationError; a scheduled one returns its schedule ID
// with one.
func TestScriptedPublishesReportReplication(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream, WithMinReplicas(1, 5*time.Millisecond))
	require.NoError(t, err)
	id, err := p.Publish(ctx, Order{ID: "1"}, WithDedupeKey("k"))
	var replErr *ReplicationError
	require.ErrorAs(t, err, &replErr)
	assert.ErrorIs(t, err, ErrNotReplicated)
	assert.Equal(t, id, replErr.ID)
	assert.NotEmpty(t, id)
	sched, err := p.Publish(ctx, Order{ID: "2"}, WithDelay(time.Hour))
	require.ErrorAs(t, err, &replErr)
	assert.Equal(t, sched, replErr.ID)
	list, err := ListScheduled(ctx, rdb, stream, 0, 5)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, sched, list[0].ID)
	ids, err := p.PublishBatch(ctx, []Order{{ID: "3"}, {ID: "4"}}, WithDelay(time.Hour))
	var batchErr *BatchError
	require.ErrorAs(t, err, &batchErr)
	assert.Len(t, ids, 2)
	for i := range ids {
		assert.NotEmpty(t, ids[i], "written, not replicated")
		assert.ErrorIs(t, batchErr.Errs[i], ErrNotReplicated)
	}
}
