package redstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPartitions(t *testing.T) {
	t.Parallel()
	names, err := Partitions("orders:order:created", 3)
	require.NoError(t, err)
	assert.Equal(t, []string{"orders:order:created:p0", "orders:order:created:p1", "orders:order:created:p2"}, names)
	for _, p := range names {
		assert.Equal(t, "dead-letter:{"+p+"}", DeadLetterKey(p))
	}

	for _, tc := range []struct {
		base string
		n    int
		want error
	}{
		{"orders:{eu}:created", 4, ErrInvalidStreamName},
		{"", 4, ErrInvalidStreamName},
		{"orders", 0, ErrInvalidOption},
		{"orders", -1, ErrInvalidOption},
		{"orders", MaxPartitions + 1, ErrInvalidOption},
	} {
		_, err := Partitions(tc.base, tc.n)
		assert.ErrorIs(t, err, tc.want, "Partitions(%q, %d)", tc.base, tc.n)
	}
	offline := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = offline.Close() })
	_, err = NewProducer[Order](offline, "orders", WithPartitions(0))
	assert.ErrorIs(t, err, ErrInvalidOption)
	c, err := NewConsumer(offline, "g")
	require.NoError(t, err)
	err = Handle(c, "orders:{eu}", func(context.Context, *Message[Order]) error { return nil }, WithPartitions(4))
	assert.ErrorIs(t, err, ErrInvalidStreamName)
}

// fnv1a is FNV-1a (32 bits) written out from its definition, so that the
// test pins PartitionOf to what writers in other languages compute.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func TestPartitionOfSpreadsAndIsStable(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"", "order-1", "user-42", "ü", "a much longer key with spaces"} {
		for _, n := range []int{1, 3, 16, 1024} {
			assert.Equal(t, int(fnv1a(key)%uint32(n)), PartitionOf(key, n), "PartitionOf(%q, %d)", key, n)
		}
	}
	assert.Equal(t, 0x811c9dc5, int(fnv1a("")), "the FNV-1a offset basis")
	counts := make([]int, 16)
	for i := range 16_000 {
		p := PartitionOf("order-"+strconv.Itoa(i), 16)
		require.True(t, p >= 0 && p < 16)
		counts[p]++
	}
	for p, n := range counts {
		assert.InDelta(t, 1000, n, 200, "partition %d", p)
	}
}

func TestKeyOptionErrors(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx := testCtx(t)
	_, err := NewProducer[Order](rdb, "orders", WithKeyFunc(func(s string) string { return s }))
	assert.ErrorIs(t, err, ErrInvalidOption, "a key func of another type")
	_, err = NewProducer[Order](rdb, "orders", WithKeyFunc[Order](nil))
	assert.ErrorIs(t, err, ErrInvalidOption)

	stream := uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream, WithPartitions(4))
	require.NoError(t, err)
	_, err = p.Publish(ctx, Order{ID: "1"}, WithID("1-1"))
	assert.ErrorIs(t, err, ErrInvalidOption, "WithID without a key would go to a random partition")
	id, err := p.Publish(ctx, Order{ID: "1"}, WithID("1-1"), WithKey("k"))
	require.NoError(t, err)
	_, err = p.Publish(ctx, Order{ID: "1"}, WithID(id), WithKey("k"))
	assert.ErrorIs(t, err, ErrDuplicate, "a retry with the same key finds its entry")

	// A key already used as a header is refused, not silently overwritten.
	f, err := NewProducer[Fields](rdb, stream)
	require.NoError(t, err)
	_, err = f.Publish(ctx, Fields{"key": "a"}, WithKey("b"))
	assert.ErrorIs(t, err, ErrInvalidOption)
}

func TestPartitionedRoundTrip(t *testing.T) {
	t.Parallel()
	checkPartitionedRoundTrip(t, mustRedis(t), 4)
}

// checkPartitionedRoundTrip publishes keyed and keyless messages through a
// producer of n partitions and checks a consumer handles each once, every
// key's messages in the key's partition.
func checkPartitionedRoundTrip(t *testing.T, rdb redis.UniversalClient, n int) {
	ctx, base := testCtx(t), uniqueStream(t)
	parts, err := Partitions(base, n)
	require.NoError(t, err)
	p, err := NewProducer[Order](rdb, base, WithPartitions(n), WithKeyFunc(func(o Order) string { return o.UserID }))
	require.NoError(t, err)
	assert.Equal(t, parts, p.Partitions())
	assert.Equal(t, base, p.Stream())

	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	var (
		mu      sync.Mutex
		handled = map[string]string{} // order ID -> partition stream
		dups    int
	)
	require.NoError(t, Handle(c, base, func(_ context.Context, m *Message[Order]) error {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := handled[m.Payload.ID]; ok {
			dups++
		}
		handled[m.Payload.ID] = m.Stream
		if m.Payload.UserID != "" {
			assert.Equal(t, m.Payload.UserID, m.Key())
		}
		return nil
	}, WithPartitions(n)))

	const keyed, keyless = 400, 40
	var want []Order
	for i := range keyed {
		want = append(want, Order{ID: strconv.Itoa(i), UserID: "user-" + strconv.Itoa(i%37)})
	}
	for i := range keyless {
		want = append(want, Order{ID: "free-" + strconv.Itoa(i)})
	}
	// Half through Publish (pipelined), half through PublishBatch.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(want)/2; i += 4 {
				_, err := p.Publish(ctx, want[i])
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	_, err = p.PublishBatch(ctx, want[len(want)/2:])
	require.NoError(t, err)

	run := start(t, c)
	eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == len(want)
	})
	require.NoError(t, run.stop(t))
	assert.Zero(t, dups)
	used := map[string]bool{}
	for _, o := range want {
		if o.UserID != "" {
			assert.Equal(t, parts[PartitionOf(o.UserID, n)], handled[o.ID], "order %s of %s", o.ID, o.UserID)
		}
		used[handled[o.ID]] = true
	}
	assert.Len(t, used, n, "messages reached every partition")

	info, err := InspectPartitions(ctx, rdb, base, n)
	require.NoError(t, err)
	assert.EqualValues(t, len(want), info.Total.Length)
	require.Len(t, info.Total.Groups, 1)
	assert.Zero(t, info.Total.Groups[0].Lag)
	assert.Zero(t, info.Total.Groups[0].Pending)
	var sum int64
	for _, pi := range info.Partitions {
		require.NotNil(t, pi)
		sum += pi.Length
	}
	assert.EqualValues(t, len(want), sum)

	res, err := TrimPartitions(ctx, rdb, base, n, TrimPolicy{})
	require.NoError(t, err)
	assert.EqualValues(t, len(want), res.Removed, "everything was acknowledged, so safe trim removes all")
}

func TestInspectPartitionsMissing(t *testing.T) {
	t.Parallel()
	_, err := InspectPartitions(testCtx(t), mustRedis(t), uniqueStream(t), 4)
	assert.ErrorIs(t, err, ErrNoStream)
}

func TestPartitionsBadInput(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, base := testCtx(t), uniqueStream(t)
	// One partition exists, another is not a stream: that is an error,
	// not a partition to skip.
	p, err := NewProducer[Order](rdb, base, WithPartitions(4), WithKeyFunc(func(o Order) string { return o.ID }))
	require.NoError(t, err)
	_, err = p.PublishBatch(ctx, []Order{{ID: "a"}, {ID: "b"}, {ID: "c"}})
	require.NoError(t, err)
	parts, err := Partitions(base, 4)
	require.NoError(t, err)
	require.NoError(t, rdb.Del(ctx, parts[2]).Err())
	require.NoError(t, rdb.Set(ctx, parts[2], "not a stream", 0).Err())
	_, err = InspectPartitions(ctx, rdb, base, 4)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNoStream)
	assert.Contains(t, err.Error(), parts[2])
	_, err = TrimPartitions(ctx, rdb, base, 4, TrimPolicy{})
	assert.Error(t, err, "trimming a key that is not a stream")

	_, err = InspectPartitions(ctx, rdb, "orders:{eu}", 4)
	assert.ErrorIs(t, err, ErrInvalidStreamName)
	_, err = TrimPartitions(ctx, rdb, base, 0, TrimPolicy{})
	assert.ErrorIs(t, err, ErrInvalidOption)
}

func TestOrderedKeys(t *testing.T) {
	t.Parallel()
	checkOrderedKeys(t, mustRedis(t), 0)
}

func TestOrderedKeysPartitioned(t *testing.T) {
	t.Parallel()
	checkOrderedKeys(t, mustRedis(t), 4)
}

// checkOrderedKeys publishes 120 keys × 10 messages and checks that 16
// workers handle each key's messages one at a time, in publish order, while
// different keys run concurrently. Some handlers fail once, to show a
// retried message holds its key back.
func checkOrderedKeys(t *testing.T, rdb redis.UniversalClient, partitions int) {
	ctx, base := testCtx(t), uniqueStream(t)
	const keys, perKey = 120, 10
	popts := []ProducerOption{WithKeyFunc(func(o Order) string { return o.UserID })}
	hopts := []HandleOption{WithOrderedKeys()}
	if partitions > 0 {
		popts = append(popts, WithPartitions(partitions))
		hopts = append(hopts, WithPartitions(partitions))
	}
	p, err := NewProducer[Order](rdb, base, popts...)
	require.NoError(t, err)
	var batch []Order
	for i := range perKey {
		for k := range keys {
			batch = append(batch, Order{ID: strconv.Itoa(i), UserID: "user-" + strconv.Itoa(k)})
		}
	}
	// Keyless messages run beside the ordered ones.
	for i := range 50 {
		_, err := p.Publish(ctx, Order{ID: "free"}, WithKey(""), WithHeader("n", strconv.Itoa(i)))
		require.NoError(t, err)
	}
	_, err = p.PublishBatch(ctx, batch)
	require.NoError(t, err)

	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConcurrency(16), WithRetryBackoff(5*time.Millisecond, 20*time.Millisecond))
	var (
		mu         sync.Mutex
		next       = map[string]int{} // key -> next sequence number expected
		busy       = map[string]bool{}
		violations []string
		failed     = map[string]bool{}
		running    atomic.Int32
		peak       atomic.Int32
		free       atomic.Int32
	)
	require.NoError(t, Handle(c, base, func(_ context.Context, m *Message[Order]) error {
		if m.Key() == "" {
			free.Add(1)
			return nil
		}
		n := running.Add(1)
		defer running.Add(-1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		key, seq := m.Key(), m.Payload.ID
		mu.Lock()
		if busy[key] {
			violations = append(violations, key+" ran twice at once")
		}
		if want := strconv.Itoa(next[key]); seq != want {
			violations = append(violations, fmt.Sprintf("%s: got %s, want %s", key, seq, want))
		}
		busy[key] = true
		fail := rand.IntN(20) == 0 && !failed[key+"/"+seq]
		if fail {
			failed[key+"/"+seq] = true
		}
		mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		mu.Lock()
		defer mu.Unlock()
		busy[key] = false
		if fail {
			return errors.New("fails once")
		}
		next[key]++
		return nil
	}, hopts...))
	run := start(t, c)
	eventually(t, 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		done := 0
		for _, n := range next {
			if n == perKey {
				done++
			}
		}
		return done == keys && free.Load() == 50
	})
	require.NoError(t, run.stop(t))
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, violations)
	assert.Greater(t, peak.Load(), int32(4), "different keys ran concurrently")
	assert.NotEmpty(t, failed, "some messages failed once and were retried")
	t.Logf("peak concurrency %d, %d messages retried", peak.Load(), len(failed))
}

func TestMinReplicasWithoutReplicas(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	_, err := NewProducer[Order](rdb, stream, WithMinReplicas(0, time.Second))
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewProducer[Order](rdb, stream, WithMinReplicas(1, 0))
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewProducer[Order](rdb, stream, WithMinReplicas(1, 500*time.Microsecond))
	assert.ErrorIs(t, err, ErrInvalidOption, "WAIT counts whole milliseconds; 0 blocks for ever")
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": rdb.Options().Addr}})
	t.Cleanup(func() { _ = ring.Close() })
	_, err = NewProducer[Order](ring, stream, WithMinReplicas(1, time.Second))
	assert.ErrorIs(t, err, ErrInvalidOption, "a ring may send the WAIT to another shard than the writes")

	p, err := NewProducer[Order](rdb, stream, WithMinReplicas(1, 20*time.Millisecond))
	require.NoError(t, err)
	id, err := p.Publish(ctx, Order{ID: "1"})
	var replErr *ReplicationError
	require.ErrorAs(t, err, &replErr, "the test server has no replica")
	assert.ErrorIs(t, err, ErrNotReplicated)
	assert.Equal(t, id, replErr.ID)
	assert.Equal(t, 0, replErr.Replicas)
	assert.Equal(t, 1, replErr.Want)
	assert.NotEmpty(t, id, "the write happened; its ID comes back")
	got, err := rdb.XRange(ctx, stream, id, id).Result()
	require.NoError(t, err)
	assert.Len(t, got, 1)

	// Concurrent publishes each get their own ID and error.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			id, err := p.Publish(ctx, Order{ID: "2"})
			assert.ErrorIs(t, err, ErrNotReplicated)
			assert.NotEmpty(t, id)
		})
	}
	wg.Wait()
	ids, err := p.PublishBatch(ctx, []Order{{ID: "3"}, {ID: "4"}})
	var batchErr *BatchError
	require.ErrorAs(t, err, &batchErr)
	for i, err := range batchErr.Errs {
		assert.ErrorIs(t, err, ErrNotReplicated)
		assert.NotEmpty(t, ids[i])
	}
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 11, n)
}

// TestMinReplicasLongerThanReadTimeout checks a WAIT that could outlast
// the client's read timeout is refused (go-redis would send the XADDs again
// when the read timed out), and one under it neither fails the read nor
// writes the entry twice.
func TestMinReplicasLongerThanReadTimeout(t *testing.T) {
	t.Parallel()
	srv := mustRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Options().Addr, ReadTimeout: 400 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, stream := testCtx(t), uniqueStream(t)
	_, err := NewProducer[Order](rdb, stream, WithMinReplicas(1, 300*time.Millisecond))
	assert.ErrorIs(t, err, ErrInvalidOption)
	p, err := NewProducer[Order](rdb, stream, WithMinReplicas(1, 200*time.Millisecond))
	require.NoError(t, err)
	id, err := p.Publish(ctx, Order{ID: "1"})
	var replErr *ReplicationError
	require.ErrorAs(t, err, &replErr, "no replica: the WAIT runs out, not the read")
	assert.NoError(t, replErr.Err)
	assert.NotEmpty(t, id)
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "written once")
}

// TestOrderedKeysHoldWhileDeadLetteringFails checks that a message whose
// dead-letter move fails keeps its key's turn: the key's later messages
// wait until the move succeeds.
func TestOrderedKeysHoldWhileDeadLetteringFails(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	// The dead-letter key holds a string: every move fails with WRONGTYPE.
	require.NoError(t, rdb.Set(ctx, DeadLetterKey(stream), "in the way", 0).Err())
	p, err := NewProducer[Order](rdb, stream, WithKeyFunc(func(o Order) string { return o.UserID }))
	require.NoError(t, err)
	_, err = p.PublishBatch(ctx, []Order{{ID: "1", UserID: "k", Amount: -1}, {ID: "2", UserID: "k"}, {ID: "3", UserID: "k"}, {ID: "x", UserID: "other"}})
	require.NoError(t, err)

	var (
		mu    sync.Mutex
		order []string
	)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithErrorBackoff(10*time.Millisecond, 50*time.Millisecond))
	require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
		mu.Lock()
		order = append(order, m.Payload.ID)
		mu.Unlock()
		if m.Payload.Amount < 0 {
			return ErrDeadLetter
		}
		return nil
	}, WithOrderedKeys()))
	run := start(t, c)
	eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(order, "x")
	}, "other keys go on")
	// Let several dead-letter attempts fail.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	assert.Equal(t, []string{"1"}, slices.DeleteFunc(slices.Clone(order), func(id string) bool { return id == "x" }), "k's later messages wait")
	mu.Unlock()

	require.NoError(t, rdb.Del(ctx, DeadLetterKey(stream)).Err())
	eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 4
	})
	require.NoError(t, run.stop(t))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"1", "2", "3"}, slices.DeleteFunc(order, func(id string) bool { return id == "x" }), "1 was handled once, dead-lettered, then 2 and 3 ran")
	n, err := rdb.XLen(ctx, DeadLetterKey(stream)).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
	assert.Zero(t, pendingCount(t, rdb, stream, "g"))
}

// TestFieldsEntryRoutedByItsOwnKey: an untyped entry that carries the key
// field (one copied from another stream, say) goes to its key's partition,
// where consumers read it as that key's, not to a partition in turn.
func TestFieldsEntryRoutedByItsOwnKey(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, base := testCtx(t), uniqueStream(t)
	const n = 4
	p, err := NewProducer[Fields](rdb, base, WithPartitions(n))
	require.NoError(t, err)
	parts, err := Partitions(base, n)
	require.NoError(t, err)
	for i := range 6 {
		_, err := p.Publish(ctx, Fields{KeyField: "user-7", "seq": strconv.Itoa(i)})
		require.NoError(t, err)
	}
	want := parts[PartitionOf("user-7", n)]
	for _, s := range parts {
		l, err := rdb.XLen(ctx, s).Result()
		require.NoError(t, err)
		if s == want {
			assert.Equal(t, int64(6), l, "%s holds the key's entries", s)
		} else {
			assert.Zero(t, l, "%s", s)
		}
	}
	// With WithKey too: the same key is no conflict, another one is.
	_, err = p.Publish(ctx, Fields{KeyField: "user-7"}, WithKey("user-7"))
	require.NoError(t, err)
	_, err = p.Publish(ctx, Fields{KeyField: "user-7"}, WithKey("user-8"))
	require.ErrorIs(t, err, ErrInvalidOption)
}
