package redstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

// TestCluster runs the library on a real local Redis Cluster of three
// masters and three replicas, shared by the subtests.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	t.Parallel()
	cl := redistest.StartCluster(t)
	rdb := cl.Client(t)

	t.Run("PartitionedRoundTrip", func(t *testing.T) {
		t.Parallel()
		const n = 16
		checkPartitionedRoundTrip(t, rdb, n)
		// The partitions are spread over the masters: checked on a fixed
		// name, whose 16 partitions are known to reach all three (16 random
		// names miss one master now and then), as the README says.
		masters := map[string]int{}
		names, err := Partitions("orders:order:created", n)
		require.NoError(t, err)
		for _, name := range names {
			addr, err := cl.MasterForKey(testCtx(t), name)
			require.NoError(t, err)
			masters[addr]++
		}
		assert.Len(t, masters, 3, "16 partitions of orders:order:created land on every master: %v", masters)
	})

	t.Run("OrderedKeys", func(t *testing.T) {
		t.Parallel()
		checkOrderedKeys(t, rdb, 16)
	})

	t.Run("ManyStreams", func(t *testing.T) {
		t.Parallel()
		checkClusterManyStreams(t, cl.Addrs())
	})

	t.Run("ExclusivePartitions", func(t *testing.T) {
		t.Parallel()
		checkExclusivePartitions(t, rdb)
	})

	t.Run("DeadLetterAndReplay", func(t *testing.T) {
		t.Parallel()
		ctx, base := testCtx(t), uniqueStream(t)
		const n = 4
		parts, err := Partitions(base, n)
		require.NoError(t, err)
		p, err := NewProducer[Order](rdb, base, WithPartitions(n), WithKeyFunc(func(o Order) string { return o.ID }))
		require.NoError(t, err)
		var fixed atomic.Bool
		handled := newSeen()
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
		require.NoError(t, Handle(c, base, func(_ context.Context, m *Message[Order]) error {
			if m.Payload.Amount < 0 && !fixed.Load() {
				return fmt.Errorf("negative amount: %w", ErrDeadLetter)
			}
			handled.add(m.Payload.ID)
			return nil
		}, WithPartitions(n)))
		var batch []Order
		for i := range 40 {
			amount := float64(i)
			if i%5 == 0 {
				amount = -1
			}
			batch = append(batch, Order{ID: strconv.Itoa(i), Amount: amount})
		}
		_, err = p.PublishBatch(ctx, batch)
		require.NoError(t, err)
		run := start(t, c)

		eventually(t, 20*time.Second, func() bool {
			info, err := InspectPartitions(ctx, rdb, base, n)
			return err == nil && info.Total.DeadLetterLength == 8 && handled.len() == 32
		}, "8 dead letters over the partitions, 32 handled")
		fixed.Store(true)
		replayed := 0
		for _, part := range parts {
			dlq, err := NewDeadLetters(rdb, part)
			require.NoError(t, err)
			letters, _, err := dlq.List(ctx, ListOptions{})
			require.NoError(t, err)
			for _, l := range letters {
				assert.Equal(t, ReasonHandler, l.Reason)
				assert.Equal(t, part, l.Stream)
			}
			k, err := dlq.Replay(ctx, ReplayAll())
			require.NoError(t, err)
			replayed += k
		}
		assert.Equal(t, 8, replayed)
		eventually(t, 20*time.Second, func() bool { return handled.len() == 40 })
		require.NoError(t, run.stop(t))
		info, err := InspectPartitions(ctx, rdb, base, n)
		require.NoError(t, err)
		assert.Zero(t, info.Total.DeadLetterLength)
		require.Len(t, info.Total.Groups, 1)
		assert.Zero(t, info.Total.Groups[0].Pending)
	})

	t.Run("ReclaimFromStoppedConsumer", func(t *testing.T) {
		t.Parallel()
		ctx, base := testCtx(t), uniqueStream(t)
		const n = 3
		p, err := NewProducer[Order](rdb, base, WithPartitions(n))
		require.NoError(t, err)
		_, err = p.PublishBatch(ctx, []Order{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}, {ID: "e"}, {ID: "f"}})
		require.NoError(t, err)

		// The first consumer takes the messages in and never finishes them.
		stuck := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("stuck"), WithShutdownTimeout(10*time.Millisecond), WithoutReaper())
		took := newSeen()
		require.NoError(t, Handle(stuck, base, func(ctx context.Context, m *Message[Order]) error {
			took.add(m.Payload.ID)
			<-ctx.Done()
			return ctx.Err()
		}, WithPartitions(n)))
		run := start(t, stuck)
		eventually(t, 10*time.Second, func() bool { return took.len() == 6 })
		assert.ErrorIs(t, run.stop(t), ErrShutdownTimeout)

		// Another consumer's reaper takes them over once idle.
		handled := newSeen()
		other := newTestConsumer(t, rdb, "g", WithConsumerName("other"), WithMinIdle(300*time.Millisecond), WithReapInterval(50*time.Millisecond))
		require.NoError(t, Handle(other, base, func(_ context.Context, m *Message[Order]) error {
			handled.add(m.Payload.ID)
			return nil
		}, WithPartitions(n)))
		run = start(t, other)
		eventually(t, 10*time.Second, func() bool { return handled.len() == 6 })
		require.NoError(t, run.stop(t))

		// The standalone reaper and trim work per partition too.
		parts, err := Partitions(base, n)
		require.NoError(t, err)
		rp, err := NewReaper(rdb, "g", parts, WithIdleConsumerTTL(30*time.Millisecond), WithMinIdle(30*time.Millisecond))
		require.NoError(t, err)
		deleted := 0
		eventually(t, 10*time.Second, func() bool {
			stats, err := rp.ReapOnce(ctx)
			if !assert.NoError(t, err) {
				return false
			}
			deleted += stats.ConsumersDeleted
			return deleted == 2*n
		}, "the two idle, empty consumers are deleted from every partition")
		res, err := TrimPartitions(ctx, rdb, base, n, TrimPolicy{})
		require.NoError(t, err)
		assert.EqualValues(t, 6, res.Removed)
	})

	t.Run("MinReplicas", func(t *testing.T) {
		t.Parallel()
		ctx, base := testCtx(t), uniqueStream(t)
		p, err := NewProducer[Order](rdb, base, WithPartitions(4), WithMinReplicas(1, time.Second))
		require.NoError(t, err)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 50 {
					_, err := p.Publish(ctx, Order{ID: strconv.Itoa(w*100 + i)}, WithKey(strconv.Itoa(i)))
					assert.NoError(t, err, "every master has a replica")
				}
			})
		}
		wg.Wait()
		ids, err := p.PublishBatch(ctx, []Order{{ID: "x"}, {ID: "y"}, {ID: "z"}})
		require.NoError(t, err)
		assert.Len(t, ids, 3)
		info, err := InspectPartitions(ctx, rdb, base, 4)
		require.NoError(t, err)
		assert.EqualValues(t, 203, info.Total.Length)
	})

	t.Run("ScheduledAndDedupe", func(t *testing.T) {
		t.Parallel()
		checkScheduledAndDedupe(t, rdb)
	})

	t.Run("PlainStream", func(t *testing.T) {
		t.Parallel()
		ctx, stream := testCtx(t), uniqueStream(t)
		ids := publishOrders(t, rdb, stream, 20)
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
		handled := newSeen()
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			handled.add(m.ID)
			return nil
		}))
		run := start(t, c)
		eventually(t, 10*time.Second, func() bool { return handled.len() == len(ids) })
		require.NoError(t, run.stop(t))
		info, err := Inspect(ctx, rdb, stream)
		require.NoError(t, err)
		assert.EqualValues(t, 20, info.Length)
		res, err := Trim(ctx, rdb, stream, TrimPolicy{})
		require.NoError(t, err)
		assert.EqualValues(t, 20, res.Removed)
	})
}

// TestClusterFailover kills the master of one partition while producers
// publish and consumers consume, and measures how many acknowledged
// publishes the failover lost: first with plain publishes, then with
// WithMinReplicas(1, ...). To make the asynchronous replication visible on
// loopback, the victim's replica is frozen for a moment before the kill, as
// a replica that lags behind would be: writes the master acknowledged in
// that window never reach it.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis Clusters")
	}
	t.Parallel()
	var summary []string
	for _, mode := range []string{"async", "min-replicas", "scheduled-async", "scheduled-min-replicas"} {
		t.Run(mode, func(t *testing.T) {
			line := runFailover(t, strings.HasSuffix(mode, "min-replicas"), strings.HasPrefix(mode, "scheduled"))
			summary = append(summary, line)
		})
	}
	writeSummary(t, summary...)
}

// scheduleDelay delays the publishes of the scheduled failover runs: long
// enough that the failover strikes messages still in the schedule.
const scheduleDelay = 1500 * time.Millisecond

// failoverFigures are what one failover run measured.
type failoverFigures struct {
	acked, unconfirmed, failed, lost, lostUnconfirmed, ackedAfter int
	failover                                                      time.Duration
}

// With scheduled, every publish is delayed (WithDelay): the failover
// strikes messages waiting in the schedule, not in the stream.
func runFailover(t *testing.T, minReplicas, scheduled bool) string {
	cl := redistest.StartCluster(t)
	rdb := cl.Client(t)
	ctx, base := testCtx(t), uniqueStream(t)
	const n, publishers, lagWindow = 6, 4, 300 * time.Millisecond
	parts, err := Partitions(base, n)
	require.NoError(t, err)
	opts := []ProducerOption{WithPartitions(n), WithKeyFunc(func(o Order) string { return o.ID })}
	if minReplicas {
		opts = append(opts, WithMinReplicas(1, 200*time.Millisecond))
	}
	p, err := NewProducer[Order](rdb, base, opts...)
	require.NoError(t, err)

	handled := newSeen()
	var consumers []*running
	for i := range 2 {
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("c"+strconv.Itoa(i)),
			WithMinIdle(time.Second), WithReapInterval(200*time.Millisecond), WithBlock(100*time.Millisecond))
		require.NoError(t, Handle(c, base, func(_ context.Context, m *Message[Order]) error {
			handled.add(m.Payload.ID)
			return nil
		}, WithPartitions(n)))
		consumers = append(consumers, startReady(t, c))
	}

	var (
		mu          sync.Mutex
		acked       = map[string]bool{}
		unconfirmed = map[string]bool{}
		failed      int
		errTexts    = map[string]int{}
		afterFlag   atomic.Bool
		ackedAfter  atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range publishers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := strconv.Itoa(w) + "-" + strconv.Itoa(i)
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				var popts []PublishOption
				if scheduled {
					popts = append(popts, WithDelay(scheduleDelay))
				}
				_, err := p.Publish(pctx, Order{ID: id}, popts...)
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					acked[id] = true
					if afterFlag.Load() {
						ackedAfter.Add(1)
					}
				case errors.Is(err, ErrNotReplicated):
					unconfirmed[id] = true
				default:
					failed++
					errTexts[err.Error()]++
				}
				mu.Unlock()
				if err != nil && !errors.Is(err, ErrNotReplicated) {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}

	time.Sleep(time.Second)
	victim, err := cl.MasterForKey(ctx, parts[0])
	require.NoError(t, err)
	replica, err := cl.ReplicaOf(ctx, victim)
	require.NoError(t, err)
	resume := cl.PauseNode(t, replica)
	// A burst of big writes to the victim's slot fills the kernel's socket
	// buffers to the frozen replica; what the master writes after it waits
	// in the master's memory, and dies with it.
	fill := strings.Repeat("x", 1<<20)
	for i := range 24 {
		require.NoError(t, rdb.Set(ctx, "{"+parts[0]+"}:fill:"+strconv.Itoa(i), fill, time.Minute).Err())
	}
	time.Sleep(lagWindow)
	cl.KillMaster(t, parts[0])
	killed := time.Now()
	resume()
	cl.WaitHealthy(t)
	failover := time.Since(killed)
	afterFlag.Store(true)
	// The old master comes back as a replica of its successor, as an
	// operator would bring it back; until then the successor has no replica
	// and publishes that wait for one fail after their timeout.
	time.Sleep(500 * time.Millisecond)
	cl.RestartNode(t, victim)
	cl.WaitHealthy(t)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	// Every entry the streams hold is handled, and nothing stays pending
	// (nor scheduled).
	eventually(t, 60*time.Second, func() bool {
		info, err := InspectPartitions(ctx, rdb, base, n)
		return err == nil && info.Total.Scheduled == 0 && len(info.Total.Groups) == 1 && info.Total.Groups[0].Lag == 0 && info.Total.Groups[0].Pending == 0
	}, "consumers drain every partition after the failover")
	for _, r := range consumers {
		require.NoError(t, r.stop(t))
	}
	stored := map[string]bool{}
	for _, part := range parts {
		msgs, err := rdb.XRange(ctx, part, "-", "+").Result()
		require.NoError(t, err)
		for _, m := range msgs {
			var o Order
			require.NoError(t, unmarshal(JSON, m.Values[DefaultPayloadField].(string), &o))
			stored[o.ID] = true
			assert.Positive(t, handled.count(o.ID), "stored entry %s of %s was handled", m.ID, part)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	f := failoverFigures{acked: len(acked), unconfirmed: len(unconfirmed), failed: failed, failover: failover, ackedAfter: int(ackedAfter.Load())}
	for id := range acked {
		if !stored[id] {
			f.lost++
		}
	}
	for id := range unconfirmed {
		if !stored[id] {
			f.lostUnconfirmed++
		}
	}
	mode := "async"
	if minReplicas {
		mode = "min-replicas=1"
	}
	if scheduled {
		mode = "scheduled " + mode
	}
	line := fmt.Sprintf("failover %s: acknowledged=%d lost=%d unconfirmed=%d (lost %d) failed=%d acknowledged-after-failover=%d failover=%s",
		mode, f.acked, f.lost, f.unconfirmed, f.lostUnconfirmed, f.failed, f.ackedAfter, f.failover.Round(10*time.Millisecond))
	t.Log(line)
	t.Logf("publish errors: %v", errTexts)
	assert.Positive(t, f.ackedAfter, "producers carry on after the failover")
	if minReplicas {
		assert.Zero(t, f.lost, "a write a replica confirmed survives the failover to that replica")
	}
	return line
}

// writeSummary appends lines to the file named by REDSTREAM_CHAOS_SUMMARY,
// which CI prints after the tests.
func writeSummary(t *testing.T, lines ...string) {
	path := os.Getenv(chaosEnvSummary)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	defer f.Close()
	for _, line := range lines {
		_, err = fmt.Fprintln(f, line)
		require.NoError(t, err)
	}
}

// BenchmarkClusterPartitions measures end-to-end throughput through a
// stream of 1, 4 and 16 partitions on a local 3+3 cluster: 8 goroutines
// publish b.N messages with distinct keys while one consumer (16 handlers,
// one reader per partition) handles them; msgs/s is from the first publish
// to the last handled message. Run it with a fixed count, such as
//
//	go test -run '^$' -bench ClusterPartitions -benchtime 100000x .
func BenchmarkClusterPartitions(b *testing.B) {
	cl := redistest.StartCluster(b)
	rdb := cl.Client(b)
	for _, n := range []int{1, 4, 16} {
		b.Run("partitions="+strconv.Itoa(n), func(b *testing.B) {
			ctx, base := testCtx(b), uniqueStream(b)
			p, err := NewProducer[Order](rdb, base, WithPartitions(n), WithKeyFunc(func(o Order) string { return o.ID }))
			require.NoError(b, err)
			c, err := NewConsumer(rdb, "g", WithGroupStart("0"), WithConcurrency(16), WithBlock(100*time.Millisecond))
			require.NoError(b, err)
			var handled atomic.Int64
			done := make(chan struct{})
			require.NoError(b, Handle(c, base, func(context.Context, *Message[Order]) error {
				if handled.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}, WithPartitions(n)))
			run := startReady(b, c)

			b.ResetTimer()
			began := time.Now()
			var wg sync.WaitGroup
			var next atomic.Int64
			for range 8 {
				wg.Go(func() {
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						if _, err := p.Publish(ctx, Order{ID: strconv.FormatInt(i, 10), Amount: 1}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			published := time.Since(began)
			select {
			case <-done:
			case <-ctx.Done():
				b.Fatalf("handled %d of %d", handled.Load(), b.N)
			}
			elapsed := time.Since(began)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N)/published.Seconds(), "published/s")
			require.NoError(b, run.stop(b))
			names, _ := Partitions(base, n)
			for _, name := range names {
				_ = rdb.Del(context.Background(), name).Err()
			}
		})
	}
}
