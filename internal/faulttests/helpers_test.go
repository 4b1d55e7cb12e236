package faulttests

import (
	"context"
	"os"
	"strconv"
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
