package redstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/redstream/redstream/internal/redistest"
)

// leakPoolBound is the most connections one consumer at a time may keep
// open: a blocking read, the reaper, leases, acknowledgements and a handler.
const leakPoolBound = 8

// TestConsumerStartStopLeaksNothing starts and stops a Consumer 100 times
// on one client, each run handling a message or two, and checks that
// nothing accumulates: no goroutines, no pool connections, no server
// clients. Every other run stops with a message waiting for its retry, which
// the next run takes back from its own pending list.
//
// Not parallel: goleak sees every goroutine of the process.
func TestConsumerStartStopLeaksNothing(t *testing.T) {
	const runs = 100
	srv := redistest.Start(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := testCtx(t)
	stream := uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)

	var (
		mu      sync.Mutex
		handled = map[string]int{}
	)
	count := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return handled[id]
	}
	var (
		conns   []int // server's connected clients after each run
		maxPool int
	)
	for run := range runs {
		c, err := NewConsumer(rdb, "g", WithConsumerName("leaky"), WithGroupStart("0"),
			WithBlock(20*time.Millisecond), WithMinIdle(90*time.Millisecond), WithReapInterval(20*time.Millisecond), WithLongRetryAfter(0),
			WithErrorBackoff(10*time.Millisecond, 100*time.Millisecond))
		require.NoError(t, err)
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			mu.Lock()
			defer mu.Unlock()
			if strings.HasPrefix(m.Payload.ID, "retry-") && m.Deliveries == 1 {
				handled["failed:"+m.Payload.ID]++
				return RetryAfter(time.Hour, errors.New("fails once"))
			}
			handled[m.Payload.ID]++
			return nil
		}))
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(runCtx) }()
		select {
		case <-c.Ready():
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: consumer not ready after 10s", run)
		}

		ok := "ok-" + strconv.Itoa(run)
		_, err = p.Publish(ctx, Order{ID: ok})
		require.NoError(t, err)
		retry := ""
		if run%2 == 0 && run < runs-1 {
			retry = "retry-" + strconv.Itoa(run)
			_, err = p.Publish(ctx, Order{ID: retry})
			require.NoError(t, err)
		}
		eventually(t, 10*time.Second, func() bool {
			if count(ok) != 1 {
				return false
			}
			if retry != "" && count("failed:"+retry) != 1 {
				return false
			}
			// The previous run's retry comes back from the pending list.
			return run%2 == 0 || count("retry-"+strconv.Itoa(run-1)) == 1
		}, "run %d: messages handled", run)

		stop()
		select {
		case err := <-done:
			require.NoError(t, err, "run %d", run)
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: Run did not return 10s after its context ended", run)
		}
		wantPending := int64(0)
		if retry != "" {
			wantPending = 1
		}
		require.Equal(t, wantPending, pendingCount(t, rdb, stream, "g"), "run %d: pending after Run returned", run)

		// The server sees no client but the client's pools (go-redis keeps
		// one for pipelines apart): Run dialled nothing of its own and
		// left nothing open. A connection may still be joining a pool
		// from a background dial, so poll; INFO first, as it may dial too.
		var n, pooled int
		eventually(t, 5*time.Second, func() bool {
			n, err = connectedClients(ctx, rdb)
			require.NoError(t, err)
			pooled = pooledConns(rdb)
			return n <= pooled
		}, "run %d: server clients beyond the pools'", run)
		maxPool = max(maxPool, pooled)
		require.LessOrEqual(t, pooled, leakPoolBound, "run %d: pool connections %+v", run, *rdb.PoolStats())
		conns = append(conns, n)
	}

	mu.Lock()
	for key, n := range handled {
		assert.Equal(t, 1, n, "%s handled once", key)
	}
	mu.Unlock()
	// The working set may grow by a connection or two when a run happens
	// to make more calls at once, but a leak of one per run would show.
	assert.LessOrEqual(t, slices.Max(conns[runs/2:]), slices.Max(conns[:runs/2])+2, "connected clients grew: %v", conns)
	t.Logf("pool connections at most %d; server clients after each run: first %d, most %d, last %d",
		maxPool, conns[0], slices.Max(conns), conns[len(conns)-1])
}

// pooledConns returns the connections rdb's pools hold.
func pooledConns(rdb *redis.Client) int {
	stats := rdb.PoolStats()
	n := int(stats.TotalConns)
	if stats.PipelineStats != nil {
		n += int(stats.PipelineStats.TotalConns)
	}
	return n
}

// connectedClients returns the connected_clients field of INFO clients.
func connectedClients(ctx context.Context, rdb redis.UniversalClient) (int, error) {
	info, err := rdb.Info(ctx, "clients").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("no connected_clients in INFO clients: %q", info)
}
