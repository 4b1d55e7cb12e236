package redstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// orderLog records, per key, the sequence numbers handled, and which
// consumer is running each partition, flagging anything out of order.
type orderLog struct {
	mu         sync.Mutex
	next       map[string]int
	running    map[string]string // partition -> consumer running one of its messages
	runningN   map[string]int
	violations []string
	dups       int
	handled    int
	work       time.Duration // the most a handler sleeps
}

func newOrderLog() *orderLog {
	return &orderLog{next: map[string]int{}, running: map[string]string{}, runningN: map[string]int{}}
}

func (l *orderLog) handler(consumer string) HandlerFunc[Order] {
	return func(_ context.Context, m *Message[Order]) error {
		seq, _ := strconv.Atoi(m.Payload.ID)
		l.mu.Lock()
		if other, ok := l.running[m.Stream]; ok && other != consumer {
			l.violations = append(l.violations, fmt.Sprintf("%s run by %s and %s at once", m.Stream, other, consumer))
		}
		l.running[m.Stream] = consumer
		l.runningN[m.Stream]++
		switch next := l.next[m.Key()]; {
		case seq == next:
			l.next[m.Key()]++
			l.handled++
		case seq < next:
			l.dups++
		default:
			l.violations = append(l.violations, fmt.Sprintf("%s: %d handled before %d, by %s (%s %s, attempt %d)", m.Key(), seq, next, consumer, m.Stream, m.ID, m.Deliveries))
		}
		l.mu.Unlock()
		time.Sleep(time.Duration(rand.Int64N(int64(l.work) + 1)))
		l.mu.Lock()
		if l.runningN[m.Stream]--; l.runningN[m.Stream] == 0 {
			delete(l.running, m.Stream)
		}
		l.mu.Unlock()
		return nil
	}
}

// TestExclusivePartitionsKeepOrderAcrossTheGroup runs up to three
// consumers of one group on six partitions with ordered keys while messages
// flow, adding and removing consumers: each partition is read by one
// consumer at a time, the partitions are shared out, and every key's
// messages are handled in order across the group.
func TestExclusivePartitionsKeepOrderAcrossTheGroup(t *testing.T) {
	t.Parallel()
	checkExclusivePartitions(t, mustRedis(t))
}

func checkExclusivePartitions(t *testing.T, rdb redis.UniversalClient) {
	ctx, base := testCtx(t), uniqueStream(t)
	const n, keys = 6, 40
	parts, err := Partitions(base, n)
	require.NoError(t, err)
	p, err := NewProducer[Order](rdb, base, WithPartitions(n), WithKeyFunc(func(o Order) string { return o.UserID }))
	require.NoError(t, err)
	log := newOrderLog()
	// Handlers slow enough that a consumer giving a partition up still
	// holds a backlog of it, which must be done before the next owner reads.
	log.work = 30 * time.Millisecond
	newMember := func(name string) (*Consumer, *running) {
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName(name), WithConcurrency(16),
			WithMinIdle(300*time.Millisecond), WithReapInterval(50*time.Millisecond))
		require.NoError(t, Handle(c, base, log.handler(name), WithPartitions(n), WithOrderedKeys(), WithExclusivePartitions()))
		return c, start(t, c)
	}
	owners := func() map[string]int {
		counts := map[string]int{}
		for _, part := range parts {
			holder, err := rdb.Get(ctx, leaseKey(part, "g")).Result()
			if err == nil {
				counts[holder]++
			}
		}
		return counts
	}

	var published atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		seq := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			for k := range keys {
				_, err := p.Publish(ctx, Order{ID: strconv.Itoa(seq), UserID: "user-" + strconv.Itoa(k)})
				if !assert.NoError(t, err) {
					return
				}
				published.Add(1)
			}
			seq++
			time.Sleep(30 * time.Millisecond)
		}
	})

	_, a := newMember("a")
	eventually(t, 10*time.Second, func() bool { return owners()["a"] == n }, "a alone owns every partition")
	time.Sleep(300 * time.Millisecond)
	_, b := newMember("b")
	_, _ = newMember("c")
	eventually(t, 10*time.Second, func() bool {
		o := owners()
		return o["a"] == 2 && o["b"] == 2 && o["c"] == 2
	}, "three members share six partitions")
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, b.stop(t))
	eventually(t, 10*time.Second, func() bool {
		o := owners()
		return o["a"] == 3 && o["c"] == 3
	}, "b's partitions move to a and c")
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	eventually(t, 20*time.Second, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return int64(log.handled) == published.Load()
	}, "every message handled")
	require.NoError(t, a.stop(t))
	log.mu.Lock()
	defer log.mu.Unlock()
	assert.Empty(t, log.violations)
	t.Logf("published %d, handled %d, duplicates %d", published.Load(), log.handled, log.dups)
	for _, part := range parts {
		assert.Zero(t, pendingCount(t, rdb, part, "g"))
	}
	members, err := rdb.ZRange(ctx, membersKey(base, "g"), 0, -1).Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"c"}, members, "stopped consumers leave the member set")
}

// TestExclusivePartitionsAfterACrash checks a partition whose owner died
// with messages pending goes to another member once the lease expires,
// which handles the dead owner's messages first, in order.
func TestExclusivePartitionsAfterACrash(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishSequence(t, rdb, stream, "k", 20)

	// The dead owner: it took the lease and the first messages in, then
	// vanished without a word (as a killed process would).
	require.NoError(t, createGroup(ctx, rdb, stream, "g", "0"))
	require.NoError(t, rdb.Set(ctx, leaseKey(stream, "g"), "dead", 400*time.Millisecond).Err())
	require.NoError(t, rdb.ZAdd(ctx, membersKey(stream, "g"), redis.Z{Score: float64(time.Now().Add(400 * time.Millisecond).UnixMilli()), Member: "dead"}).Err())
	_, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "dead", Streams: []string{stream, ">"}, Count: 5}).Result()
	require.NoError(t, err)

	log := newOrderLog()
	log.work = 300 * time.Microsecond
	c := newTestConsumer(t, rdb, "g", WithConsumerName("heir"), WithMinIdle(300*time.Millisecond), WithReapInterval(50*time.Millisecond))
	require.NoError(t, Handle(c, stream, log.handler("heir"), WithOrderedKeys(), WithExclusivePartitions()))
	run := start(t, c)
	eventually(t, 10*time.Second, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.handled == 20
	}, "the heir handles all 20, the dead owner's 5 first")
	require.NoError(t, run.stop(t))
	log.mu.Lock()
	defer log.mu.Unlock()
	assert.Empty(t, log.violations)
	assert.Zero(t, pendingCount(t, rdb, stream, "g"))
}

// TestExclusivePartitionsKeptWhileDraining checks a consumer that shuts
// down keeps its partition while its handlers finish, longer than MinIdle:
// no other member may start on the partition meanwhile.
func TestExclusivePartitionsKeptWhileDraining(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	stream := uniqueStream(t)
	log := newOrderLog()
	handleA := log.handler("a")
	started := make(chan struct{}, 1)
	var handledMeanwhile int
	slowFirst := func(ctx context.Context, m *Message[Order]) error {
		if m.Payload.ID == "0" {
			started <- struct{}{}
			time.Sleep(time.Second) // more than three MinIdles, within the shutdown timeout
			log.mu.Lock()
			handledMeanwhile = log.handled
			log.mu.Unlock()
		}
		return handleA(ctx, m)
	}
	opts := []ConsumerOption{WithGroupStart("0"), WithMinIdle(300 * time.Millisecond), WithReapInterval(50 * time.Millisecond)}
	a := newTestConsumer(t, rdb, "g", append(opts, WithConsumerName("a"))...)
	require.NoError(t, Handle(a, stream, slowFirst, WithOrderedKeys(), WithExclusivePartitions()))
	publishSequence(t, rdb, stream, "k", 10)
	runA := start(t, a)
	<-started
	b := newTestConsumer(t, rdb, "g", append(opts, WithConsumerName("b"))...)
	require.NoError(t, Handle(b, stream, log.handler("b"), WithOrderedKeys(), WithExclusivePartitions()))
	runB := start(t, b)
	require.NoError(t, runA.stop(t))
	assert.Zero(t, handledMeanwhile, "b handled messages while a was still in the first")
	eventually(t, 10*time.Second, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.handled == 10
	}, "b takes the partition over once a has left")
	require.NoError(t, runB.stop(t))
	log.mu.Lock()
	defer log.mu.Unlock()
	assert.Empty(t, log.violations)
}

// TestExclusivePartitionsSurviveAMemberSetFailure checks a consumer keeps
// its partitions when it cannot read the member set.
func TestExclusivePartitionsSurviveAMemberSetFailure(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, base := testCtx(t), uniqueStream(t)
	parts, err := Partitions(base, 4)
	require.NoError(t, err)
	var errs atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithConsumerName("a"), WithMinIdle(300*time.Millisecond), WithErrorHandler(func(error) { errs.Add(1) }))
	require.NoError(t, Handle(c, base, func(context.Context, *Message[Order]) error { return nil }, WithPartitions(4), WithExclusivePartitions()))
	start(t, c)
	held := func() int {
		n := 0
		for _, part := range parts {
			if holder, _ := rdb.Get(ctx, leaseKey(part, "g")).Result(); holder == "a" {
				n++
			}
		}
		return n
	}
	eventually(t, 5*time.Second, func() bool { return held() == 4 })
	require.NoError(t, rdb.Set(ctx, membersKey(base, "g"), "not a sorted set", 0).Err())
	eventually(t, 5*time.Second, func() bool { return errs.Load() >= 3 }, "the member set fails a few times")
	assert.Equal(t, 4, held(), "what is held is kept and renewed")
}

// TestExclusivePartitionsClaimFromStaleMembers checks the heir of a
// partition claims what another consumer left pending there even while
// that consumer still looks like a member (it died between announcements).
func TestExclusivePartitionsClaimFromStaleMembers(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	publishSequence(t, rdb, stream, "k", 20)
	require.NoError(t, createGroup(ctx, rdb, stream, "g", "0"))
	_, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "zombie", Streams: []string{stream, ">"}, Count: 5}).Result()
	require.NoError(t, err)
	// "zombie" is listed for a while yet, but holds no lease; sorted after
	// "heir", it leaves the partition to it.
	require.NoError(t, rdb.ZAdd(ctx, membersKey(stream, "g"), redis.Z{Score: float64(time.Now().Add(time.Minute).UnixMilli()), Member: "zombie"}).Err())

	log := newOrderLog()
	c := newTestConsumer(t, rdb, "g", WithConsumerName("heir"), WithMinIdle(300*time.Millisecond), WithReapInterval(50*time.Millisecond))
	require.NoError(t, Handle(c, stream, log.handler("heir"), WithOrderedKeys(), WithExclusivePartitions()))
	start(t, c)
	eventually(t, 10*time.Second, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.handled+len(log.violations) >= 20
	})
	log.mu.Lock()
	defer log.mu.Unlock()
	assert.Empty(t, log.violations)
}

// TestExclusivePartitionsUnderChurn has four consumers join and leave at
// random for a few seconds while messages flow and some handlers fail once:
// no partition ever runs on two consumers at once, and every key stays in
// order.
func TestExclusivePartitionsUnderChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("churns consumers for seconds")
	}
	t.Parallel()
	rdb := mustRedis(t)
	ctx, base := testCtx(t), uniqueStream(t)
	const n, keys = 6, 30
	p, err := NewProducer[Order](rdb, base, WithPartitions(n), WithKeyFunc(func(o Order) string { return o.UserID }))
	require.NoError(t, err)
	log := newOrderLog()
	log.work = 2 * time.Millisecond
	var failMu sync.Mutex
	failed := map[string]bool{}
	handler := func(name string) HandlerFunc[Order] {
		inner := log.handler(name)
		return func(ctx context.Context, m *Message[Order]) error {
			failMu.Lock()
			fail := rand.IntN(30) == 0 && !failed[m.ID]
			if fail {
				failed[m.ID] = true
			}
			failMu.Unlock()
			if fail {
				return errors.New("fails once") // before the log: not handled yet
			}
			return inner(ctx, m)
		}
	}
	startMember := func(name string) *running {
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName(name), WithConcurrency(8),
			WithMinIdle(300*time.Millisecond), WithReapInterval(50*time.Millisecond),
			WithRetryBackoff(5*time.Millisecond, 20*time.Millisecond))
		require.NoError(t, Handle(c, base, handler(name), WithPartitions(n), WithOrderedKeys(), WithExclusivePartitions()))
		return start(t, c)
	}

	var published atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			for k := range keys {
				if _, err := p.Publish(ctx, Order{ID: strconv.Itoa(seq), UserID: "user-" + strconv.Itoa(k)}); !assert.NoError(t, err) {
					return
				}
				published.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	members := map[string]*running{"m0": startMember("m0")}
	names := []string{"m0", "m1", "m2", "m3"}
	changes := 0
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); changes++ {
		time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
		name := names[rand.IntN(len(names))]
		if r, ok := members[name]; ok && len(members) > 1 {
			require.NoError(t, r.stop(t))
			delete(members, name)
		} else if !ok {
			members[name] = startMember(name)
		}
	}
	close(stop)
	wg.Wait()
	eventually(t, 30*time.Second, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return int64(log.handled) == published.Load()
	}, "every message handled")
	for _, r := range members {
		require.NoError(t, r.stop(t))
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	assert.Empty(t, log.violations)
	t.Logf("%d membership changes; published %d, handled %d, duplicates %d, failed once %d", changes, published.Load(), log.handled, log.dups, len(failed))
}

// TestExclusivePartitionsStopWhenLeaseCannotBeRenewed checks a consumer
// stops reading a partition whose lease it cannot renew before the lease
// may have expired, and reads it again once it can.
func TestExclusivePartitionsStopWhenLeaseCannotBeRenewed(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream, WithKeyFunc(func(o Order) string { return o.UserID }))
	require.NoError(t, err)
	log := newOrderLog()
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"), WithMinIdle(300*time.Millisecond))
	require.NoError(t, Handle(c, stream, log.handler("a"), WithOrderedKeys(), WithExclusivePartitions()))
	run := start(t, c)
	handled := func() int {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.handled
	}
	_, err = p.Publish(ctx, Order{ID: "0", UserID: "k"})
	require.NoError(t, err)
	eventually(t, 5*time.Second, func() bool { return handled() == 1 })

	// The lease key holds a hash: every lease call fails.
	lease := leaseKey(stream, "g")
	require.NoError(t, rdb.Del(ctx, lease).Err())
	require.NoError(t, rdb.HSet(ctx, lease, "x", "y").Err())
	time.Sleep(time.Second) // past the lease time: the reader has stopped
	for i := 1; i <= 5; i++ {
		_, err := p.Publish(ctx, Order{ID: strconv.Itoa(i), UserID: "k"})
		require.NoError(t, err)
	}
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 1, handled(), "nothing is read without a lease")

	require.NoError(t, rdb.Del(ctx, lease).Err())
	eventually(t, 5*time.Second, func() bool { return handled() == 6 }, "read again once the lease can be taken")
	require.NoError(t, run.stop(t))
	log.mu.Lock()
	defer log.mu.Unlock()
	assert.Empty(t, log.violations)
}

// publishSequence publishes messages 0 to n-1 of key to stream, in one batch.
func publishSequence(t *testing.T, rdb redis.UniversalClient, stream, key string, n int) {
	t.Helper()
	p, err := NewProducer[Order](rdb, stream, WithKeyFunc(func(o Order) string { return o.UserID }))
	require.NoError(t, err)
	batch := make([]Order, n)
	for i := range batch {
		batch[i] = Order{ID: strconv.Itoa(i), UserID: key}
	}
	_, err = p.PublishBatch(testCtx(t), batch)
	require.NoError(t, err)
}

// TestExclusivePartitionGivenUpWithARetryWaiting: the consumer that gives a
// partition up holds a message waiting an hour for its retry, and the
// messages of its key held back behind it. It lets them go at once, pending,
// instead of keeping the partition (and its lease) until the retry: the
// next owner takes the partition and handles all of them, in order.
func TestExclusivePartitionGivenUpWithARetryWaiting(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	stream := uniqueStream(t)
	log := newOrderLog()
	handleB := log.handler("b")
	failed := make(chan struct{})
	var deliveries atomic.Int64
	failFirst := func(ctx context.Context, m *Message[Order]) error {
		if m.Payload.ID == "0" {
			close(failed)
			return RetryAfter(time.Hour, errors.New("not now"))
		}
		return handleB(ctx, m)
	}
	opts := []ConsumerOption{WithGroupStart("0"), WithMinIdle(300 * time.Millisecond), WithReapInterval(50 * time.Millisecond)}
	b := newTestConsumer(t, rdb, "g", append(opts, WithConsumerName("b"))...)
	require.NoError(t, Handle(b, stream, failFirst, WithOrderedKeys(), WithExclusivePartitions()))
	publishSequence(t, rdb, stream, "k", 5)
	runB := startReady(t, b)
	<-failed

	// a sorts first: the partition falls to it.
	handleA := log.handler("a")
	a := newTestConsumer(t, rdb, "g", append(opts, WithConsumerName("a"))...)
	require.NoError(t, Handle(a, stream, func(ctx context.Context, m *Message[Order]) error {
		if m.Payload.ID == "0" {
			deliveries.Store(m.Deliveries)
		}
		return handleA(ctx, m)
	}, WithOrderedKeys(), WithExclusivePartitions()))
	startReady(t, a)
	eventually(t, 10*time.Second, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.handled == 5
	}, "a takes the partition over without waiting for b's retry")
	assert.Equal(t, int64(2), deliveries.Load(), "a runs the failed message's second attempt")
	require.NoError(t, runB.stop(t))
	log.mu.Lock()
	defer log.mu.Unlock()
	assert.Empty(t, log.violations)
}
