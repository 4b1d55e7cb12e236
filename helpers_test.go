package redstream

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/redstream/redstream/internal/faultkit"
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

// uniqueStream returns a stream key no other test uses (faultkit).
func uniqueStream(t testing.TB) string { return faultkit.UniqueStream(t) }

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

func testCtx(t testing.TB) context.Context { return faultkit.Ctx(t) }

// running is a Consumer.Run in a goroutine (faultkit.Running: Done
// receives Run's error).
type running struct{ *faultkit.Running }

// start runs c until stop (or the end of the test).
func start(t testing.TB, c *Consumer) *running { return &running{faultkit.Start(t, c)} }

// startReady is start, then waits until c is ready, failing the test if
// Run returns first or c is not ready within 30 seconds.
func startReady(t testing.TB, c *Consumer) *running {
	t.Helper()
	return &running{faultkit.StartReady(t, c)}
}

// stop cancels Run and returns its error, failing if it takes too long.
func (r *running) stop(t testing.TB) error { return r.Stop(t) }

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
	return faultkit.PendingCount(t, rdb, stream, group)
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	faultkit.Eventually(t, timeout, cond, msgAndArgs...)
}

// mustRedis returns a client of the shared real redis-server.
func mustRedis(t testing.TB) *redis.Client { return redistest.Client(t) }
