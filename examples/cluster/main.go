// Command cluster publishes order events to a stream partitioned over a
// Redis Cluster and handles them with per-key ordering: every order's
// events (created, paid, shipped) are handled one at a time, in order,
// while different orders run concurrently.
//
//	REDIS_CLUSTER_ADDRS=127.0.0.1:7000,127.0.0.1:7001 go run ./examples/cluster
//
// REDIS_CLUSTER_ADDRS lists seed nodes of a cluster (any of its nodes).
// Without it the example runs the same code on an embedded, in-memory Redis
// (miniredis), which has no slots: the partitions are then simply separate
// keys. Flags: -partitions (default 8), -orders (default 500),
// -min-replicas (default 0: publish without waiting for replicas). It uses
// a stream of its own per run, deletes it at the end, and exits 0 when every
// event was handled once and in order, 1 otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

// Event is one step in an order's life. Seq orders the steps of one order.
type Event struct {
	OrderID string `json:"orderId"`
	Seq     int    `json:"seq"`
	Step    string `json:"step"`
}

var steps = []string{"created", "paid", "packed", "shipped"}

func main() {
	partitions := flag.Int("partitions", 8, "partitions of the logical stream")
	orders := flag.Int("orders", 500, "orders to publish (each has 4 events)")
	minReplicas := flag.Int("min-replicas", 0, "replicas each publish waits for (0: none)")
	flag.Parse()
	if err := run(*partitions, *orders, *minReplicas); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(partitions, orders, minReplicas int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rdb, where, cleanup, err := connect()
	if err != nil {
		return err
	}
	defer cleanup()
	stream := "examples:order:events-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	parts, err := redstream.Partitions(stream, partitions)
	if err != nil {
		return err
	}
	defer func() {
		for _, p := range parts {
			_ = rdb.Del(context.Background(), p, redstream.DeadLetterKey(p)).Err()
		}
	}()
	fmt.Printf("%s: %d partitions of %s\n", where, partitions, stream)

	// The consumer: one reader per partition it owns, 16 handlers, one
	// order's events one at a time.
	c, err := redstream.NewConsumer(rdb, "shipping", redstream.WithConcurrency(16), redstream.WithBlock(100*time.Millisecond))
	if err != nil {
		return err
	}
	var (
		mu      sync.Mutex
		next    = map[string]int{}
		handled int
		bad     []string
	)
	total := orders * len(steps)
	done := make(chan struct{})
	err = redstream.Handle(c, stream, func(_ context.Context, m *redstream.Message[Event]) error {
		mu.Lock()
		defer mu.Unlock()
		if m.Payload.Seq != next[m.Payload.OrderID] {
			bad = append(bad, fmt.Sprintf("%s: step %d before %d", m.Payload.OrderID, m.Payload.Seq, next[m.Payload.OrderID]))
		}
		next[m.Payload.OrderID] = m.Payload.Seq + 1
		if handled++; handled == total {
			close(done)
		}
		return nil
	}, redstream.WithPartitions(partitions), redstream.WithOrderedKeys(),
		// Run several copies of this consumer and each partition is still
		// read by one of them at a time, so the order holds across them.
		redstream.WithExclusivePartitions())
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()
	select {
	case <-c.Ready():
	case err := <-runErr:
		return fmt.Errorf("consumer: %w", err)
	}

	// The producer: the order ID is the key, so an order's events share a
	// partition and keep their order.
	opts := []redstream.ProducerOption{
		redstream.WithPartitions(partitions),
		redstream.WithKeyFunc(func(e Event) string { return e.OrderID }),
	}
	if minReplicas > 0 {
		opts = append(opts, redstream.WithMinReplicas(minReplicas, 500*time.Millisecond))
	}
	p, err := redstream.NewProducer[Event](rdb, stream, opts...)
	if err != nil {
		return err
	}
	// PublishAsync keeps many publishes in flight from each goroutine; the
	// entries of a partition are appended in call order, so an order's
	// events stay in sequence.
	began := time.Now()
	var wg sync.WaitGroup
	futures := make([][]*redstream.PublishFuture, 8)
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for seq, step := range steps {
				for o := w; o < orders; o += 8 {
					f, err := p.PublishAsync(ctx, Event{OrderID: "order-" + strconv.Itoa(o), Seq: seq, Step: step})
					if err != nil {
						errs <- err
						return
					}
					futures[w] = append(futures[w], f)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	for _, fs := range futures {
		for _, f := range fs {
			if _, err := f.Result(); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		return fmt.Errorf("only %d of %d events handled in time", handled, total)
	}
	elapsed := time.Since(began)
	stop()
	if err := <-runErr; err != nil {
		return fmt.Errorf("consumer: %w", err)
	}

	info, err := redstream.InspectPartitions(ctx, rdb, stream, partitions)
	if err != nil {
		return err
	}
	for i, pi := range info.Partitions {
		if pi != nil {
			fmt.Printf("  %s: %d entries\n", parts[i], pi.Length)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		return fmt.Errorf("%d events out of order, first: %s", len(bad), bad[0])
	}
	g := info.Total.Groups[0]
	fmt.Printf("cluster: published %d events of %d orders, handled %d in order, pending %d, %.0f events/s\n",
		total, orders, handled, g.Pending, float64(total)/elapsed.Seconds())
	if g.Pending != 0 {
		return errors.New("entries left pending")
	}
	return nil
}

// connect returns a cluster client for REDIS_CLUSTER_ADDRS, or a client of
// an embedded miniredis.
func connect() (redis.UniversalClient, string, func(), error) {
	if addrs := os.Getenv("REDIS_CLUSTER_ADDRS"); addrs != "" {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
		return rdb, "Redis Cluster at " + addrs, func() { _ = rdb.Close() }, nil
	}
	mr, err := miniredis.Run()
	if err != nil {
		return nil, "", nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return rdb, "embedded miniredis (set REDIS_CLUSTER_ADDRS for a cluster)", func() { _ = rdb.Close(); mr.Close() }, nil
}
