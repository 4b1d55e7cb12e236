// Command batchsink shows why a sink wants batches: it writes orders to a
// simulated database that takes 1 ms per call, whatever the number of
// rows, first with a plain handler (one row per call), then with a batch
// handler (up to 100 rows per call), and prints the messages per second of
// each.
//
//	go run ./examples/batchsink
//	go run ./examples/batchsink -n 20000 -concurrency 4
//
// It runs against an embedded, in-memory Redis (miniredis) unless
// REDIS_ADDR names a real server, in which case it uses a stream of its
// own per run and deletes it at the end. It exits 0 when both runs handled
// every order and left nothing pending, and 1 otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
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

// callCost is what the simulated database charges per call.
const callCost = time.Millisecond

// database is a simulated sink: every insert costs callCost, for one row
// or a hundred, as a round trip to a real database mostly does. It is safe
// for concurrent use.
type database struct {
	mu    sync.Mutex
	rows  map[string]Order // by order ID: a re-insert (a redelivery) is idempotent
	calls int
}

func newDatabase() *database { return &database{rows: make(map[string]Order)} }

// insert writes rows in one call.
func (db *database) insert(ctx context.Context, rows ...Order) error {
	t := time.NewTimer(callCost)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.calls++
	for _, r := range rows {
		db.rows[r.ID] = r
	}
	return nil
}

func (db *database) count() (rows, calls int) {
	db.mu.Lock()
	defer db.mu.Unlock()
	return len(db.rows), db.calls
}

func main() {
	n := flag.Int("n", 5000, "orders to publish")
	concurrency := flag.Int("concurrency", 2, "handler goroutines of each consumer (the sink's connections)")
	flag.Parse()
	if err := run(*n, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "batchsink:", err)
		os.Exit(1)
	}
}

func run(n, concurrency int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rdb, stream, cleanup, err := connect(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := publish(ctx, rdb, stream, n); err != nil {
		return err
	}
	fmt.Printf("published %d orders to %s; the database takes %v per call\n", n, stream, callCost)

	one, err := consume(ctx, rdb, stream, "one-by-one", n, concurrency, false)
	if err != nil {
		return err
	}
	batched, err := consume(ctx, rdb, stream, "batched", n, concurrency, true)
	if err != nil {
		return err
	}
	fmt.Printf("batchsink: one message per call %.0f msg/s, batches of up to 100 %.0f msg/s: %.1fx\n", one, batched, batched/one)
	return nil
}

// publish writes n orders, 500 per round trip.
func publish(ctx context.Context, rdb redis.UniversalClient, stream string, n int) error {
	p, err := redstream.NewProducer[Order](rdb, stream)
	if err != nil {
		return err
	}
	for start := 0; start < n; start += 500 {
		orders := make([]Order, min(500, n-start))
		for i := range orders {
			orders[i] = Order{ID: "order-" + strconv.Itoa(start+i), Amount: int64(100 + i)}
		}
		if _, err := p.PublishBatch(ctx, orders); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	return nil
}

// consume reads the whole stream as a new consumer group, writing every
// order to a fresh database, with a batch handler or a plain one, and
// returns the messages handled per second.
func consume(ctx context.Context, rdb redis.UniversalClient, stream, group string, n, concurrency int, batches bool) (float64, error) {
	// The group starts at "0": it reads the orders published before it.
	c, err := redstream.NewConsumer(rdb, group, redstream.WithGroupStart("0"), redstream.WithConcurrency(concurrency))
	if err != nil {
		return 0, err
	}
	db := newDatabase()
	if batches {
		// A batch is handed over at 100 orders, or 10 ms after its first.
		err = redstream.HandleBatch(c, stream, func(ctx context.Context, msgs []*redstream.Message[Order]) error {
			rows := make([]Order, len(msgs))
			for i, m := range msgs {
				rows[i] = m.Payload
			}
			// nil acknowledges all; an error retries all. To fail only
			// some rows, return a *redstream.BatchFailures.
			return db.insert(ctx, rows...)
		}, redstream.WithBatch(100, 10*time.Millisecond))
	} else {
		err = redstream.Handle(c, stream, func(ctx context.Context, m *redstream.Message[Order]) error {
			return db.insert(ctx, m.Payload)
		})
	}
	if err != nil {
		return 0, err
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()
	select {
	case <-c.Ready():
	case err := <-runErr:
		return 0, fmt.Errorf("%s: consumer stopped early: %w", group, err)
	}
	began := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for rows, _ := db.count(); rows < n; rows, _ = db.count() {
		select {
		case <-tick.C:
		case err := <-runErr:
			return 0, fmt.Errorf("%s: consumer stopped early: %w", group, err)
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: timed out with %d of %d orders written", group, rows, n)
		}
	}
	took := time.Since(began)
	stop()
	if err := <-runErr; err != nil {
		return 0, fmt.Errorf("%s: %w", group, err)
	}
	pending, err := rdb.XPending(ctx, stream, group).Result()
	if err != nil {
		return 0, fmt.Errorf("XPENDING: %w", err)
	}
	if pending.Count != 0 {
		return 0, errors.New(group + ": messages left pending")
	}
	rows, calls := db.count()
	rate := float64(rows) / took.Seconds()
	fmt.Printf("%-10s %6d orders in %5d database calls, %8v: %7.0f msg/s\n", group, rows, calls, took.Round(time.Millisecond), rate)
	return rate, nil
}

// connect returns a client of REDIS_ADDR, with a stream of its own that
// cleanup deletes, or else of an embedded miniredis.
func connect(ctx context.Context) (*redis.Client, string, func(), error) {
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		stream := "sink:order:created-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		fmt.Println("using redis at", addr)
		return rdb, stream, func() {
			_ = rdb.Del(context.WithoutCancel(ctx), stream).Err()
			_ = rdb.Close()
		}, nil
	}
	mr, err := miniredis.Run()
	if err != nil {
		return nil, "", nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	fmt.Println("using an embedded miniredis (set REDIS_ADDR for a real server)")
	return rdb, "sink:order:created", func() { _ = rdb.Close(); mr.Close() }, nil
}
