package redstream

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// manyStreams returns n stream keys no other test uses, with a common
// prefix.
func manyStreams(t testing.TB, n int) []string {
	base := uniqueStream(t)
	streams := make([]string, n)
	for i := range streams {
		streams[i] = fmt.Sprintf("%s:%d", base, i)
	}
	return streams
}

// grouped is manyStreams with group "g" created on each from "0".
func grouped(t testing.TB, rdb redis.UniversalClient, n int) []string {
	streams := manyStreams(t, n)
	for _, s := range streams {
		require.NoError(t, createGroup(testCtx(t), rdb, s, "g", "0"))
	}
	return streams
}

// namedClient returns a client of the shared redis-server whose
// connections carry a name of their own, for CLIENT LIST to count, with a
// pool large enough for one connection per stream.
func namedClient(t testing.TB) (*redis.Client, string) {
	name := "rs-" + strings.ReplaceAll(uniqueStream(t), ":", "-")
	rdb := redis.NewClient(&redis.Options{Addr: mustRedis(t).Options().Addr, ClientName: name, PoolSize: 1000})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, name
}

// namedConns counts the connections rdb's server lists with name, and
// those of them blocked in a command.
func namedConns(t testing.TB, rdb redis.Cmdable, name string) (conns, blocked int) {
	list, err := rdb.ClientList(testCtx(t)).Result()
	require.NoError(t, err)
	for line := range strings.Lines(list) {
		if strings.Contains(line, " name="+name+" ") {
			conns++
			if strings.Contains(line, " flags=b ") {
				blocked++
			}
		}
	}
	return conns, blocked
}

// handleAll registers one handler of Orders on every stream that records
// stream/ID in seen, then calls fn(stream, m) if not nil.
func handleAll(t testing.TB, c *Consumer, streams []string, seen *seen, fn func(m *Message[Order]) error) {
	for _, s := range streams {
		require.NoError(t, Handle(c, s, func(_ context.Context, m *Message[Order]) error {
			if fn != nil {
				if err := fn(m); err != nil {
					return err
				}
			}
			seen.add(m.Stream + "/" + m.ID)
			return nil
		}))
	}
}

// allAcknowledged reports whether no entry of streams is pending in group.
func allAcknowledged(t testing.TB, rdb redis.UniversalClient, streams []string, group string) bool {
	for _, s := range streams {
		if pendingCount(t, rdb, s, group) != 0 {
			return false
		}
	}
	return true
}

// TestGroupReaderServesManyStreamsOnFewConnections: a Consumer of 200
// streams on one node holds a handful of connections, not one per stream,
// and handles and acknowledges every entry of every stream.
func TestGroupReaderServesManyStreamsOnFewConnections(t *testing.T) {
	t.Parallel()
	rdb, name := namedClient(t)
	streams := manyStreams(t, 200)
	seen := newSeen()
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	handleAll(t, c, streams, seen, nil)
	startReady(t, c)
	const perStream = 3
	for _, s := range streams {
		publishOrders(t, rdb, s, perStream)
	}
	eventually(t, 60e9, func() bool { return seen.len() == len(streams)*perStream }, "every entry handled")
	eventually(t, 30e9, func() bool { return allAcknowledged(t, rdb, streams, "g") }, "every entry acknowledged")
	conns, _ := namedConns(t, rdb, name)
	assert.LessOrEqual(t, conns, 8, "connections of a consumer of %d streams", len(streams))
	t.Logf("%d streams: %d connections", len(streams), conns)
}

// TestGroupReaderKeepsTheInFlightBound: with a handler that blocks, a
// consumer of 50 streams takes in no more entries than its room, across
// all streams, whichever way it reads.
func TestGroupReaderKeepsTheInFlightBound(t *testing.T) {
	t.Parallel()
	for _, room := range []int{10, 120} { // less room than streams; more
		t.Run(fmt.Sprint(room), func(t *testing.T) {
			t.Parallel()
			rdb := mustRedis(t)
			streams := manyStreams(t, 50)
			for _, s := range streams {
				publishOrders(t, rdb, s, 5)
			}
			release := make(chan struct{})
			var running atomic.Int64
			c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMaxInFlight(room), WithConcurrency(4))
			handleAll(t, c, streams, newSeen(), func(*Message[Order]) error {
				running.Add(1)
				<-release
				return nil
			})
			r := startReady(t, c)
			delivered := func() int64 {
				var n int64
				for _, s := range streams {
					n += pendingCount(t, rdb, s, "g")
				}
				return n
			}
			eventually(t, 30e9, func() bool { return running.Load() == 4 && delivered() >= int64(room) }, "room filled")
			assert.Equal(t, int64(room), delivered(), "entries delivered to the consumer with every handler blocked")
			close(release)
			require.NoError(t, r.stop(t))
		})
	}
}

// TestGroupReaderIsFairToAQuietStream: while a hot stream has a large
// backlog and the room is small, an entry of a quiet stream is handled
// long before the backlog is.
func TestGroupReaderIsFairToAQuietStream(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	streams := manyStreams(t, 10)
	hot, quiet := streams[0], streams[5]
	const backlog = 2000
	p, err := NewProducer[Order](rdb, hot)
	require.NoError(t, err)
	batch := make([]Order, backlog)
	for i := range batch {
		batch[i] = Order{ID: fmt.Sprint(i)}
	}
	_, err = p.PublishBatch(testCtx(t), batch)
	require.NoError(t, err)

	var hotHandled atomic.Int64
	first := make(chan struct{})
	published := make(chan struct{})
	quietAt := make(chan int64, 1)
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMaxInFlight(4), WithConcurrency(1))
	handleAll(t, c, streams, newSeen(), func(m *Message[Order]) error {
		switch m.Stream {
		case hot:
			if hotHandled.Add(1) == 1 {
				close(first)
				<-published // the quiet entry is there before the second
			}
		case quiet:
			quietAt <- hotHandled.Load()
		}
		return nil
	})
	startReady(t, c)
	<-first
	publishOrders(t, rdb, quiet, 1)
	close(published)
	handledBefore := <-quietAt
	assert.Less(t, handledBefore, int64(backlog/4), "hot entries handled before the quiet one")
	t.Logf("quiet entry handled after %d of %d hot entries", handledBefore, backlog)
}

// TestGroupReaderStreamDeletedWhileOthersGoOn: a stream of many deleted
// under the consumer (NOGROUP) gets its group back, and the other streams
// are read all along.
func TestGroupReaderStreamDeletedWhileOthersGoOn(t *testing.T) {
	t.Parallel()
	for _, room := range []int{3, 100} {
		t.Run(fmt.Sprint(room), func(t *testing.T) {
			t.Parallel()
			rdb := mustRedis(t)
			streams := manyStreams(t, 6)
			seen := newSeen()
			c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMaxInFlight(room))
			handleAll(t, c, streams, seen, nil)
			startReady(t, c)
			for _, s := range streams {
				publishOrders(t, rdb, s, 2)
			}
			eventually(t, 30e9, func() bool { return seen.len() == 12 }, "first entries handled")
			require.NoError(t, rdb.Del(testCtx(t), streams[2]).Err())
			for _, s := range streams {
				if s != streams[2] {
					publishOrders(t, rdb, s, 2)
				}
			}
			eventually(t, 30e9, func() bool { return seen.len() == 22 }, "the other streams go on")
			// Written again (without the group), the stream is read again
			// once its group is back.
			publishOrders(t, rdb, streams[2], 2)
			eventually(t, 30e9, func() bool { return seen.len() == 24 }, "the deleted stream is read again")
		})
	}
}

// TestGroupReaderPausedStreamAmongMany: a paused stream of many is not
// read while the others are, and is read once resumed.
func TestGroupReaderPausedStreamAmongMany(t *testing.T) {
	t.Parallel()
	rdb, ctx := mustRedis(t), testCtx(t)
	streams := grouped(t, rdb, 5)
	paused := streams[1]
	require.NoError(t, Pause(ctx, rdb, paused, "g"))
	for _, s := range streams {
		publishOrders(t, rdb, s, 3)
	}
	seen := newSeen()
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	handleAll(t, c, streams, seen, nil)
	startReady(t, c)
	eventually(t, 30e9, func() bool { return seen.len() == 12 }, "the other streams are read")
	info, err := groupInfo(ctx, rdb, paused, "g")
	require.NoError(t, err)
	assert.Equal(t, "0-0", info.LastDeliveredID, "nothing of the paused stream was read")
	require.NoError(t, Resume(ctx, rdb, paused, "g"))
	eventually(t, 30e9, func() bool { return seen.len() == 15 }, "the resumed stream is read")
}

// TestGroupReaderRedeliversOwnPendingOfManyStreams: entries of many
// streams left pending for a consumer's name (it died holding them) are
// handled by the next run under that name, first, without counting a
// delivery.
func TestGroupReaderRedeliversOwnPendingOfManyStreams(t *testing.T) {
	t.Parallel()
	rdb, ctx := mustRedis(t), testCtx(t)
	streams := grouped(t, rdb, 30)
	for _, s := range streams {
		publishOrders(t, rdb, s, 2)
		require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "crashed", Streams: []string{s, ">"}}).Err())
	}
	seen := newSeen()
	var deliveries atomic.Int64
	c := newTestConsumer(t, rdb, "g", WithConsumerName("crashed"), WithoutReaper(), WithMaxInFlight(20))
	handleAll(t, c, streams, seen, func(m *Message[Order]) error {
		deliveries.Add(m.Deliveries)
		return nil
	})
	startReady(t, c)
	eventually(t, 30e9, func() bool { return seen.len() == 60 }, "own pending entries handled")
	eventually(t, 30e9, func() bool { return allAcknowledged(t, rdb, streams, "g") }, "and acknowledged")
	assert.Equal(t, int64(60), deliveries.Load(), "each on its first handler attempt")
}

// TestGroupReaderOtherConsumersReadToo: two consumers of a group share
// many streams with little room (the wait is an XREAD from each stream's
// last-delivered ID, which the other consumer's reads move on): every
// entry is handled and acknowledged.
func TestGroupReaderOtherConsumersReadToo(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	streams := manyStreams(t, 20)
	seen := newSeen()
	for range 2 {
		c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithMaxInFlight(4))
		handleAll(t, c, streams, seen, nil)
		startReady(t, c)
	}
	for range 3 {
		for _, s := range streams {
			publishOrders(t, rdb, s, 2)
		}
	}
	eventually(t, 60e9, func() bool { return seen.len() == 120 }, "every entry handled")
	eventually(t, 30e9, func() bool { return allAcknowledged(t, rdb, streams, "g") }, "and acknowledged")
}

// TestGroupReaderStopsPromptly: a consumer of many streams, some paused,
// returns from Run without error when its context ends, its group reader
// blocked.
func TestGroupReaderStopsPromptly(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	streams := manyStreams(t, 40)
	seen := newSeen()
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	handleAll(t, c, streams, seen, nil)
	r := startReady(t, c)
	publishOrders(t, rdb, streams[7], 1)
	eventually(t, 30e9, func() bool { return seen.len() == 1 }, "an entry handled")
	require.NoError(t, r.stop(t))
}

func TestShareOut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n, k int
		want []int
	}{
		{10, 3, []int{4, 3, 3}},
		{2, 5, []int{1, 1}},
		{6, 6, []int{1, 1, 1, 1, 1, 1}},
		{1, 1, []int{1}},
	} {
		assert.Equal(t, tc.want, shareOut(tc.n, tc.k), "shareOut(%d, %d)", tc.n, tc.k)
	}
}

func TestReaderGroups(t *testing.T) {
	t.Parallel()
	routes := func(names ...string) []*route {
		rs := make([]*route, len(names))
		for i, n := range names {
			rs[i] = &route{stream: n}
		}
		return rs
	}
	plain := routes("a", "b", "c")
	plain[1].exclusive = true
	single := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer func() { _ = single.Close() }()
	assert.Len(t, readerGroups(single, plain), 1, "one node: one group, without the exclusive route")
	assert.Len(t, readerGroups(single, plain)[0], 2)

	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer func() { _ = cluster.Close() }()
	groups := readerGroups(cluster, routes("{x}:a", "{y}:a", "{x}:b", "{y}:b", "{z}:a"))
	var sizes []int
	for _, g := range groups {
		sizes = append(sizes, len(g))
	}
	assert.Equal(t, []int{2, 2, 1}, sizes, "a cluster: one group per hash slot")

	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	groups = readerGroups(single, routes(many...))
	require.Len(t, groups, 3, "at most groupReaderStreams a reader")
	for _, g := range groups {
		assert.LessOrEqual(t, len(g), groupReaderStreams)
	}
}

// checkClusterManyStreams: a Consumer of 40 streams in four hash slots of
// a cluster reads them with one reader (one blocked connection) per slot,
// not per stream, and handles and acknowledges every entry.
func checkClusterManyStreams(t *testing.T, addrs []string) {
	name := "rs-" + strings.ReplaceAll(uniqueStream(t), ":", "-")
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ClientName: name, PoolSize: 100})
	t.Cleanup(func() { _ = rdb.Close() })
	base := uniqueStream(t)
	var streams []string
	for tag := range 4 {
		for i := range 10 {
			streams = append(streams, fmt.Sprintf("{%s:%d}:%d", base, tag, i))
		}
	}
	seen := newSeen()
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"))
	handleAll(t, c, streams, seen, nil)
	startReady(t, c)
	for _, s := range streams {
		publishOrders(t, rdb, s, 2)
	}
	eventually(t, 60e9, func() bool { return seen.len() == 2*len(streams) }, "every entry handled")
	eventually(t, 30e9, func() bool { return allAcknowledged(t, rdb, streams, "g") }, "and acknowledged")
	var conns, blocked atomic.Int64
	err := rdb.ForEachMaster(testCtx(t), func(_ context.Context, m *redis.Client) error {
		n, b := namedConns(t, m, name)
		conns.Add(int64(n))
		blocked.Add(int64(b))
		return nil
	})
	require.NoError(t, err)
	// The other components' connections grow with the masters.
	assert.LessOrEqual(t, blocked.Load(), int64(4), "connections blocked reading, over the masters")
	t.Logf("%d streams in 4 slots: %d connections, %d blocked", len(streams), conns.Load(), blocked.Load())
}

// TestHeldSetCountsEntriesPerRoute: the group reader's cap on one
// stream's held entries rests on these counts and on the freed signal.
func TestHeldSetCountsEntriesPerRoute(t *testing.T) {
	t.Parallel()
	h := newHeldSet(8)
	h.countPerRoute()
	a, b := &route{stream: "a"}, &route{stream: "b"}
	e1, e2, e3 := &entry{route: a, id: "1-0"}, &entry{route: a, id: "2-0"}, &entry{route: b, id: "1-0"}
	for _, e := range []*entry{e1, e2, e3} {
		require.True(t, h.hold(e, nil))
	}
	require.False(t, h.hold(&entry{route: a, id: "1-0"}, nil), "held already: not counted twice")
	assert.Equal(t, 2, h.heldOf(a))
	assert.Equal(t, 1, h.heldOf(b))
	h.forget(e1)
	h.forget(e1) // forgotten already: not counted
	assert.Equal(t, 1, h.heldOf(a))
	select {
	case <-h.freed:
	default:
		t.Fatal("forgetting a held entry signals freed")
	}
	h.forget(e2, e3)
	assert.Equal(t, 0, h.heldOf(a))
	assert.Equal(t, 0, h.heldOf(b))
}

// An entry whose acknowledgement is queued stops counting against its
// stream's share at once, while it stays held until Redis has the XACK:
// a stream at its share reads on without waiting for the acknowledger.
func TestHeldSetUncountsWhatIsAcknowledged(t *testing.T) {
	t.Parallel()
	h := newHeldSet(8)
	h.countPerRoute()
	a := &route{stream: "a"}
	e1, e2 := &entry{route: a, id: "1-0"}, &entry{route: a, id: "2-0"}
	require.True(t, h.hold(e1, nil))
	require.True(t, h.hold(e2, nil))
	h.uncount(e1)
	assert.Equal(t, 1, h.heldOf(a))
	assert.True(t, h.holds(e1.heldKey()), "held until forgotten")
	select {
	case <-h.freed:
	default:
		t.Fatal("uncounting signals freed")
	}
	h.uncount(e1)
	h.forget(e1) // uncounted: not counted again
	assert.Equal(t, 1, h.heldOf(a))
	h.forget(e2)
	h.uncount(e2) // forgotten already: nothing to uncount
	assert.Equal(t, 0, h.heldOf(a))
}
