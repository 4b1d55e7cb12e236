package redstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/redstream/redstream/internal/redistest"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	if code == 0 {
		// A go-redis pool that failed to dial (a killed cluster node) retries
		// in a goroutine sleeping up to a second, even after Close.
		if err := goleak.Find(
			goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
		); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// Order is the payload the tests publish.
type Order struct {
	ID     string  `json:"id"`
	UserID string  `json:"userId"`
	Amount float64 `json:"amount"`
}

// Headers puts orderId and userId next to the payload.
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

func newMiniredis(t testing.TB) (*miniredis.Miniredis, *redis.Client) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return mr, rdb
}

// backends runs fn against miniredis and against a real redis-server.
func backends(t *testing.T, fn func(t *testing.T, rdb *redis.Client)) {
	t.Run("miniredis", func(t *testing.T) {
		t.Parallel()
		_, rdb := newMiniredis(t)
		fn(t, rdb)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		fn(t, redistest.Client(t))
	})
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
func start(t testing.TB, c *Consumer) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { _ = r.stop(t) })
	return r
}

// startReady is start, then waits until c is ready, failing the test if
// Run returns first or c is not ready within 30 seconds.
func startReady(t testing.TB, c *Consumer) *running {
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
// block so shutdowns are quick, and a short error backoff. Retries wait in
// memory (WithLongRetryAfter(0)): many tests park a message there with a
// long backoff; those of long retries (longretry_test.go) opt in.
func newTestConsumer(t testing.TB, rdb redis.UniversalClient, group string, opts ...ConsumerOption) *Consumer {
	base := []ConsumerOption{WithBlock(50 * time.Millisecond), WithErrorBackoff(10*time.Millisecond, 200*time.Millisecond), WithLongRetryAfter(0)}
	c, err := NewConsumer(rdb, group, append(base, opts...)...)
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

// mustRedis returns a client of the shared real redis-server.
func mustRedis(t testing.TB) *redis.Client { return redistest.Client(t) }
