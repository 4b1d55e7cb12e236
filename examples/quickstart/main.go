// Command quickstart publishes a few orders to a stream, handles them in a
// consumer group and checks that every one was acknowledged.
//
//	go run ./examples/quickstart
//
// It runs against an embedded, in-memory Redis (miniredis) unless REDIS_ADDR
// names a real server, in which case it uses a stream of its own per run and
// deletes it at the end. It exits 0 when every order was handled and nothing
// is left pending, and 1 otherwise.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

// Order is the payload. Its JSON encoding goes into the entry's payload
// field; Headers puts orderId and userId next to it, readable with
// XRANGE without decoding anything.
type Order struct {
	ID     string `json:"id"`
	UserID string `json:"userId"`
	Amount int64  `json:"amount"` // in cents
}

// Headers implements redstream.HeaderSource.
func (o Order) Headers() map[string]string {
	return map[string]string{"orderId": o.ID, "userId": o.UserID}
}

const (
	group   = "billing"
	timeout = 30 * time.Second
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	rdb, stream, cleanup, err := connect(ctx)
	if err != nil {
		return err
	}
	defer cleanup()

	// Publish ten orders in one round trip, then one more on its own.
	p, err := redstream.NewProducer[Order](rdb, stream)
	if err != nil {
		return err
	}
	orders := batch()
	ids, err := p.PublishBatch(ctx, orders)
	if err != nil {
		return fmt.Errorf("publish batch: %w", err)
	}
	one := Order{ID: "order-" + strconv.Itoa(len(orders)+1), UserID: "user-1", Amount: 9900}
	id, err := p.Publish(ctx, one)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	published := len(ids) + 1
	fmt.Printf("published %d orders to %s (entries %s .. %s)\n", published, stream, ids[0], id)

	// The group starts at "0", the beginning of the stream, so the consumer
	// gets the orders published before it created the group. The default,
	// "$", would give it only entries added after that.
	c, err := redstream.NewConsumer(rdb, group, redstream.WithGroupStart("0"))
	if err != nil {
		return err
	}
	h := newHandled(published)
	err = redstream.Handle(c, stream, func(_ context.Context, m *redstream.Message[Order]) error {
		fmt.Printf("handled %s for %s: %d.%02d (entry %s)\n",
			m.Payload.ID, m.Header("userId"), m.Payload.Amount/100, m.Payload.Amount%100, m.ID)
		h.add(m.ID)
		return nil // the entry is acknowledged (XACK) only now
	})
	if err != nil {
		return err
	}
	runCtx, stopConsumer := context.WithCancel(ctx)
	defer stopConsumer()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()

	select {
	case <-h.done:
	case err := <-runErr:
		return fmt.Errorf("consumer stopped early: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("timed out after %v: handled %d of %d orders", timeout, h.count(), published)
	}

	// Graceful shutdown: Run stops reading, lets handlers finish, sends the
	// last acknowledgements and returns nil.
	stopConsumer()
	select {
	case err := <-runErr:
		if err != nil {
			return fmt.Errorf("consumer: %w", err)
		}
	case <-ctx.Done():
		return fmt.Errorf("timed out after %v waiting for the consumer to stop", timeout)
	}

	pending, err := rdb.XPending(ctx, stream, group).Result()
	if err != nil {
		return fmt.Errorf("XPENDING: %w", err)
	}
	fmt.Printf("quickstart: published %d orders, handled %d, pending %d\n", published, h.count(), pending.Count)
	if h.count() != published || pending.Count != 0 {
		return errors.New("expected every order handled and none pending")
	}
	return nil
}

// connect returns a client for REDIS_ADDR, or for an embedded miniredis
// when it is unset, with the stream to use and a func that cleans up.
func connect(ctx context.Context) (rdb *redis.Client, stream string, cleanup func(), err error) {
	stream, err = redstream.StreamName("quickstart", "order", "created")
	if err != nil {
		return nil, "", nil, err
	}
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return nil, "", nil, fmt.Errorf("start miniredis: %w", err)
		}
		rdb = redis.NewClient(&redis.Options{Addr: mr.Addr()})
		fmt.Println("using an embedded miniredis (set REDIS_ADDR to use a real server)")
		return rdb, stream, func() { _ = rdb.Close(); mr.Close() }, nil
	}

	rdb = redis.NewClient(&redis.Options{Addr: addr})
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, "", nil, fmt.Errorf("redis at REDIS_ADDR=%s: %w", addr, err)
	}
	// A stream per run, so reruns against the same server never see each
	// other's entries or groups.
	stream, err = redstream.StreamName("quickstart", "order", "created-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err != nil {
		_ = rdb.Close()
		return nil, "", nil, err
	}
	fmt.Printf("using redis at %s\n", addr)
	return rdb, stream, func() {
		_ = rdb.Del(context.WithoutCancel(ctx), stream).Err()
		_ = rdb.Close()
	}, nil
}

// batch returns the orders published with PublishBatch.
func batch() []Order {
	orders := make([]Order, 10)
	for i := range orders {
		orders[i] = Order{
			ID:     "order-" + strconv.Itoa(i+1),
			UserID: "user-" + strconv.Itoa(i%3+1),
			Amount: int64(1000 + 250*i),
		}
	}
	return orders
}

// handled counts the distinct entries handled, and closes done when it
// reaches want. Delivery is at least once, so an entry may in general be
// handled twice: counting IDs rather than calls keeps the total honest.
type handled struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	want int
	done chan struct{}
}

func newHandled(want int) *handled {
	return &handled{ids: make(map[string]struct{}), want: want, done: make(chan struct{})}
}

func (h *handled) add(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.ids[id]; dup {
		return
	}
	h.ids[id] = struct{}{}
	if len(h.ids) == h.want {
		close(h.done)
	}
}

func (h *handled) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ids)
}
