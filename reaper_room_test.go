package redstream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

// TestReaperClaimsWhileReaderHoldsAllRoom: a reader blocked on a quiet
// stream holds the room its read may fill, all of it when MaxInFlight is not
// above the batch size, and takes it again as soon as the read returns. The
// reaper must still get room, or a dead consumer's entries stay pending for
// good (the chaos test found this).
func TestReaperClaimsWhileReaderHoldsAllRoom(t *testing.T) {
	for _, maxInFlight := range []int{1, 16} {
		t.Run(fmt.Sprintf("max-in-flight-%d", maxInFlight), func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Client(t)
			stream := uniqueStream(t)
			id := publishOrders(t, rdb, stream, 1)[0]
			deliverTo(t, rdb, stream, "g", "dead", 1)

			handled := newSeen()
			c := newTestConsumer(t, rdb, "g", append(fastReclaim(100*time.Millisecond),
				WithConsumerName("alive"), WithConcurrency(1), WithMaxInFlight(maxInFlight))...)
			require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
				handled.add(m.ID)
				return nil
			}))
			start(t, c)
			eventually(t, 5*time.Second, func() bool { return handled.count(id) == 1 }, "the dead consumer's entry is reclaimed and handled")
			eventually(t, 5*time.Second, func() bool { return pendingCount(t, rdb, stream, "g") == 0 })
		})
	}
}
