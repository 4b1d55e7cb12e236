package redstream

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/faultkit"
)

// Helpers shared by the fault tests (restart_test.go, nogroup_test.go,
// acl_test.go); what the toxiproxy tests (module internal/faulttests)
// share with them is in internal/faultkit.

// publishSteadily publishes Orders with unique keys (prefix<worker>-<n>)
// through p; see faultkit.PublishSteadily.
func publishSteadily(ctx context.Context, p *Producer[Order], l *faultkit.Ledger, prefix string, workers int, every time.Duration) (wait func()) {
	return faultkit.PublishSteadily(ctx, func(ctx context.Context, key string) (string, error) {
		return p.Publish(ctx, Order{ID: key, UserID: "u"})
	}, l, prefix, workers, every)
}

// streamIDs returns every entry of stream, ID to its orderId header,
// reading XRANGE in pages.
func streamIDs(t testing.TB, rdb redis.UniversalClient, stream string) map[string]string {
	t.Helper()
	ctx := testCtx(t)
	out := make(map[string]string)
	start := "-"
	for {
		msgs, err := rdb.XRangeN(ctx, stream, start, "+", 1000).Result()
		require.NoError(t, err)
		for _, m := range msgs {
			key, _ := m.Values["orderId"].(string)
			out[m.ID] = key
		}
		if len(msgs) < 1000 {
			return out
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}
