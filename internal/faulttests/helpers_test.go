package faulttests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/faultkit"
	"github.com/redstream/redstream/internal/redistest"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	if code == 0 {
		opts := []goleak.Option{
			// A go-redis pool that failed to dial retries in a goroutine
			// sleeping up to a second, even after Close.
			goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
		}
		for _, fn := range toxiproxyGoroutines {
			opts = append(opts, goleak.IgnoreAnyFunction(fn))
		}
		if err := goleak.Find(opts...); err != nil {
			_, _ = os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// toxiproxyGoroutines are the functions toxiproxy runs its goroutines in.
// Some stay blocked on a channel send after their proxy is gone when a
// connection went away in mid-transfer (the bandwidth toxic on a read that
// timed out, the no-op toxic of a link cut by Stop or Clear): the test
// tool's leak, not redstream's, whose goroutines never run under these.
var toxiproxyGoroutines = []string{
	"github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run",
	"github.com/Shopify/toxiproxy/v2.(*ToxicLink).read",
	"github.com/Shopify/toxiproxy/v2.(*ToxicLink).write",
	"github.com/Shopify/toxiproxy/v2.(*ToxicLink).RemoveToxic.func1",
	"github.com/Shopify/toxiproxy/v2.(*ToxicCollection).chainAddToxic.func1",
	"github.com/Shopify/toxiproxy/v2.(*ToxicCollection).chainUpdateToxic.func1",
	"github.com/Shopify/toxiproxy/v2.(*ToxicCollection).chainRemoveToxic.func1",
	"github.com/Shopify/toxiproxy/v2.(*Proxy).server",
	"github.com/Shopify/toxiproxy/v2.(*Proxy).freeBlocker",
}

// Order is the payload the tests publish.
type Order struct {
	ID     string  `json:"id"`
	UserID string  `json:"userId"`
	Amount float64 `json:"amount"`
}

// Headers writes orderId and userId next to the payload.
func (o Order) Headers() map[string]string {
	return map[string]string{"orderId": o.ID, "userId": o.UserID}
}

// uniqueStream returns a stream key no other test uses, so tests can share
// one Redis server and run in parallel.
func uniqueStream(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return "test:" + name + ":" + hex.EncodeToString(b)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// running is a Consumer.Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs c until stop (or the end of the test).
func start(t testing.TB, c *redstream.Consumer) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { _ = r.stop(t) })
	return r
}

// startReady is start, then waits until c is ready, failing the test if
// Run returns first or c is not ready within 30 seconds.
func startReady(t testing.TB, c *redstream.Consumer) *running {
	t.Helper()
	r := start(t, c)
	select {
	case <-c.Ready():
	case err := <-r.done:
		r.done <- err // for stop
		t.Fatalf("Run returned before the consumer was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("consumer not ready after 30s")
	}
	return r
}

// stop cancels Run and returns its error, failing if it takes too long.
func (r *running) stop(t testing.TB) error {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if !ok {
			return nil
		}
		close(r.done)
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return 30s after its context was cancelled")
		return nil
	}
}

// newTestConsumer is NewConsumer with options that keep tests fast: a short
// block so shutdowns are quick, and a short error backoff.
func newTestConsumer(t testing.TB, rdb redis.UniversalClient, group string, opts ...redstream.ConsumerOption) *redstream.Consumer {
	base := []redstream.ConsumerOption{
		redstream.WithBlock(50 * time.Millisecond),
		redstream.WithErrorBackoff(10*time.Millisecond, 200*time.Millisecond),
	}
	c, err := redstream.NewConsumer(rdb, group, append(base, opts...)...)
	require.NoError(t, err)
	return c
}

// pendingCount returns the group's pending entries count.
func pendingCount(t testing.TB, rdb redis.UniversalClient, stream, group string) int64 {
	p, err := rdb.XPending(context.Background(), stream, group).Result()
	require.NoError(t, err)
	return p.Count
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	require.Eventually(t, cond, timeout, 5*time.Millisecond, msgAndArgs...)
}

// publishOrders publishes n Orders with IDs "0" to "n-1" and returns their
// entry IDs.
func publishOrders(t testing.TB, rdb redis.UniversalClient, stream string, n int) []string {
	t.Helper()
	p, err := redstream.NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	ids := make([]string, n)
	for i := range n {
		ids[i], err = p.Publish(context.Background(), Order{ID: strconv.Itoa(i), UserID: "u", Amount: float64(i)})
		require.NoError(t, err)
	}
	return ids
}

// publishSteadily publishes Orders with unique keys (prefix<worker>-<n>)
// through p; see faultkit.PublishSteadily.
func publishSteadily(ctx context.Context, p *redstream.Producer[Order], l *faultkit.Ledger, prefix string, workers int, every time.Duration) (wait func()) {
	return faultkit.PublishSteadily(ctx, func(ctx context.Context, key string) (string, error) {
		return p.Publish(ctx, Order{ID: key, UserID: "u"})
	}, l, prefix, workers, every)
}

// deliverTo reads up to n new entries as consumer name without handling
// them: a consumer that then dies holding them.
func deliverTo(t testing.TB, rdb redis.UniversalClient, stream, group, name string, n int) []string {
	t.Helper()
	ctx := context.Background()
	err := rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		require.NoError(t, err)
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: name, Streams: []string{stream, ">"}, Count: int64(n), Block: -1}).Result()
	require.NoError(t, err)
	var ids []string
	for _, m := range res[0].Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

// seen collects handled message IDs, safe for concurrent handlers.
type seen struct {
	mu  sync.Mutex
	ids map[string]int
}

func newSeen() *seen { return &seen{ids: map[string]int{}} }

func (s *seen) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[id]++
}

func (s *seen) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}
