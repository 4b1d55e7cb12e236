// Command deadletter shows a poison message landing in the dead-letter
// stream, being listed with its reason, fixed and replayed.
//
//	go run ./examples/deadletter
//
// It publishes three orders, one with a negative amount that the handler
// refuses, plus an entry that is not valid JSON. Both land in the
// dead-letter stream. After the handler is "fixed" (negative amounts are
// refunds now), the refused order is replayed and handled; the undecodable
// entry is deleted. It runs on an embedded miniredis unless REDIS_ADDR
// names a real server, and exits 0 when everything went as described.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

// Order is the payload.
type Order struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"` // in cents
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "deadletter:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb, stream, cleanup, err := connect()
	if err != nil {
		return err
	}
	defer cleanup()
	return demo(ctx, rdb, stream)
}

// billing is the handler: it refuses negative amounts until refunds are
// supported, and records what it handled.
type billing struct {
	refundsSupported atomic.Bool
	mu               sync.Mutex
	handled          map[string]bool
}

func (b *billing) handle(_ context.Context, m *redstream.Message[Order]) error {
	if m.Payload.Amount < 0 && !b.refundsSupported.Load() {
		return fmt.Errorf("order %s: negative amount %d: %w", m.Payload.ID, m.Payload.Amount, redstream.ErrDeadLetter)
	}
	b.mu.Lock()
	b.handled[m.Payload.ID] = true
	b.mu.Unlock()
	fmt.Printf("handled %s (amount %d)\n", m.Payload.ID, m.Payload.Amount)
	return nil
}

func (b *billing) done(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.handled[id]
}

func (b *billing) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.handled)
}

// demo runs the story on stream: publish, dead-letter, list, fix, replay.
func demo(ctx context.Context, rdb redis.UniversalClient, stream string) error {
	b := &billing{handled: map[string]bool{}}
	c, err := redstream.NewConsumer(rdb, "billing", redstream.WithGroupStart("0"), redstream.WithBlock(100*time.Millisecond))
	if err != nil {
		return err
	}
	if err := redstream.Handle(c, stream, b.handle); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "deadletter: consumer:", err)
		}
	}()

	p, err := redstream.NewProducer[Order](rdb, stream)
	if err != nil {
		return err
	}
	for _, o := range []Order{{"o-1", 1200}, {"o-2", -500}, {"o-3", 3000}} {
		if _, err := p.Publish(ctx, o); err != nil {
			return err
		}
	}
	// An entry some other producer wrote by hand, with a broken payload.
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"payload", "{oops"}}).Err(); err != nil {
		return err
	}

	dlq, err := redstream.NewDeadLetters(rdb, stream)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, func() bool { n, _ := dlq.Len(ctx); return n == 2 }); err != nil {
		return errors.New("the two poison entries did not reach the dead-letter stream")
	}

	letters, _, err := dlq.List(ctx, redstream.ListOptions{})
	if err != nil {
		return err
	}
	fmt.Printf("\n%s holds %d entries:\n", dlq.Key(), len(letters))
	var refused, broken string
	for _, d := range letters {
		fmt.Printf("  %s  from %s  reason=%s  deliveries=%d  error=%q  fields=%v\n",
			d.ID, d.OriginID, d.Reason, d.Deliveries, d.Error, d.Fields)
		switch d.Reason {
		case redstream.ReasonHandler:
			refused = d.ID
		case redstream.ReasonDecode:
			broken = d.ID
		}
	}
	if refused == "" || broken == "" {
		return errors.New("expected one refused and one undecodable entry")
	}

	// Deploy the fix, replay the refused order, drop the broken entry.
	fmt.Println("\nfix deployed: negative amounts are refunds; replaying")
	b.refundsSupported.Store(true)
	n, err := dlq.Replay(ctx, redstream.ReplayIDs(refused))
	if err != nil {
		return err
	}
	if _, err := dlq.Delete(ctx, broken); err != nil {
		return err
	}
	if err := waitFor(ctx, func() bool { return b.done("o-2") }); err != nil {
		return errors.New("the replayed order was not handled")
	}
	again, err := dlq.Replay(ctx, redstream.ReplayIDs(refused))
	if err != nil {
		return err
	}
	left, err := dlq.Len(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("\ndeadletter: replayed %d (again: %d), handled %d orders, dead letters left %d\n", n, again, b.count(), left)
	if n != 1 || again != 0 || b.count() != 3 || left != 0 {
		return errors.New("unexpected final state")
	}
	return nil
}

func waitFor(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// connect uses REDIS_ADDR when set (with a stream of its own, deleted at the
// end) and an embedded miniredis otherwise.
func connect() (redis.UniversalClient, string, func(), error) {
	stream := "orders:order:created"
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		stream += ":example-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		return rdb, stream, func() {
			rdb.Del(context.Background(), stream, redstream.DeadLetterKey(stream))
			_ = rdb.Close()
		}, nil
	}
	mr, err := miniredis.Run()
	if err != nil {
		return nil, "", nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return rdb, stream, func() { _ = rdb.Close(); mr.Close() }, nil
}
