package redstream_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

// Order is the payload of the examples.
type Order struct {
	ID     string `json:"id"`
	UserID string `json:"userId"`
	Amount int64  `json:"amount"` // in cents
}

// Headers puts orderId and userId next to the payload field, so tools can
// read them without decoding the payload.
func (o Order) Headers() map[string]string {
	return map[string]string{"orderId": o.ID, "userId": o.UserID}
}

func ExampleNewProducer() {
	// An in-memory Redis for the example; a service dials its server.
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = rdb.Close() }()
	ctx := context.Background()

	orders, err := redstream.NewProducer[Order](rdb, "orders:order:created")
	if err != nil {
		panic(err)
	}
	order := Order{ID: "o-1", UserID: "u-7", Amount: 1250}

	// An explicit ID makes the publish safe to retry: if an earlier attempt
	// got through, the retry writes nothing and reports ErrDuplicate.
	id, err := orders.Publish(ctx, order, redstream.WithID("1694012345678-0"))
	fmt.Println(id, err)
	id, err = orders.Publish(ctx, order, redstream.WithID("1694012345678-0"))
	fmt.Println(id, errors.Is(err, redstream.ErrDuplicate))

	entries, err := rdb.XRange(ctx, "orders:order:created", "-", "+").Result()
	if err != nil {
		panic(err)
	}
	fmt.Println(len(entries), "entry:")
	for _, name := range slices.Sorted(maps.Keys(entries[0].Values)) {
		fmt.Printf("  %s = %v\n", name, entries[0].Values[name])
	}
	// Output:
	// 1694012345678-0 <nil>
	// 1694012345678-0 true
	// 1 entry:
	//   orderId = o-1
	//   payload = {"id":"o-1","userId":"u-7","amount":1250}
	//   userId = u-7
}

func ExampleHandle() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = rdb.Close() }()

	orders, err := redstream.NewProducer[Order](rdb, "orders:order:created")
	if err != nil {
		panic(err)
	}
	_, err = orders.PublishBatch(context.Background(), []Order{
		{ID: "o-1", UserID: "u-7", Amount: 1250},
		{ID: "o-2", UserID: "u-3", Amount: 990},
		{ID: "o-3", UserID: "u-7", Amount: 4200},
	})
	if err != nil {
		panic(err)
	}

	// The group starts at "0" so that it sees the orders published before it
	// existed; one handler at a time keeps the output in stream order.
	c, err := redstream.NewConsumer(rdb, "billing", redstream.WithGroupStart("0"), redstream.WithConcurrency(1))
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	handled := 0
	err = redstream.Handle(c, "orders:order:created", func(_ context.Context, m *redstream.Message[Order]) error {
		fmt.Printf("charge %s: %d cents for %s\n", m.Payload.ID, m.Payload.Amount, m.Header("userId"))
		if handled++; handled == 3 {
			stop() // Run drains: this message is still acknowledged
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("Run:", c.Run(ctx))

	pending, err := rdb.XPending(context.Background(), "orders:order:created", "billing").Result()
	if err != nil {
		panic(err)
	}
	fmt.Println("pending:", pending.Count)
	// Output:
	// charge o-1: 1250 cents for u-7
	// charge o-2: 990 cents for u-3
	// charge o-3: 4200 cents for u-7
	// Run: <nil>
	// pending: 0
}

func ExampleHandleBatch() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = rdb.Close() }()

	orders, err := redstream.NewProducer[Order](rdb, "orders:order:created")
	if err != nil {
		panic(err)
	}
	_, err = orders.PublishBatch(context.Background(), []Order{
		{ID: "o-1", Amount: 1250}, {ID: "o-2", Amount: -5}, {ID: "o-3", Amount: 4200}, {ID: "o-4", Amount: 990},
	})
	if err != nil {
		panic(err)
	}

	c, err := redstream.NewConsumer(rdb, "ledger", redstream.WithGroupStart("0"))
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	// Up to 100 orders per call, or what arrived 50ms after the first.
	err = redstream.HandleBatch(c, "orders:order:created", func(_ context.Context, msgs []*redstream.Message[Order]) error {
		failures := redstream.NewBatchFailures(len(msgs))
		var rows []string
		for i, m := range msgs {
			if m.Payload.Amount < 0 {
				failures.Fail(i, fmt.Errorf("negative amount: %w", redstream.ErrDeadLetter))
				continue
			}
			rows = append(rows, m.Payload.ID)
		}
		fmt.Printf("insert %d rows in one call: %v\n", len(rows), rows)
		stop() // Run drains: this batch is still settled
		return failures.Err()
	}, redstream.WithBatch(100, 50*time.Millisecond))
	if err != nil {
		panic(err)
	}
	fmt.Println("Run:", c.Run(ctx))

	pending, err := rdb.XPending(context.Background(), "orders:order:created", "ledger").Result()
	if err != nil {
		panic(err)
	}
	dlq, err := redstream.NewDeadLetters(rdb, "orders:order:created")
	if err != nil {
		panic(err)
	}
	dead, err := dlq.Len(context.Background())
	if err != nil {
		panic(err)
	}
	fmt.Println("pending:", pending.Count, "dead letters:", dead)
	// Output:
	// insert 3 rows in one call: [o-1 o-3 o-4]
	// Run: <nil>
	// pending: 0 dead letters: 1
}

func ExampleStreamName() {
	stream, err := redstream.StreamName("orders", "order", "created")
	fmt.Println(stream, err)

	_, err = redstream.StreamName("orders", "order:v2", "created")
	fmt.Println(errors.Is(err, redstream.ErrInvalidStreamName))
	fmt.Println(err)
	// Output:
	// orders:order:created <nil>
	// true
	// redstream: invalid stream name: entity part "order:v2" contains ":"
}

func ExampleDeadLetterKey() {
	fmt.Println(redstream.DeadLetterKey("orders:order:created"))
	// A stream with a hash tag keeps it, so both keys share a cluster slot.
	fmt.Println(redstream.DeadLetterKey("orders:{eu}:created"))
	// Output:
	// dead-letter:{orders:order:created}
	// dead-letter:orders:{eu}:created
}

func ExampleWithPartitions() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()}) // a *redis.ClusterClient in production
	defer func() { _ = rdb.Close() }()
	ctx := context.Background()

	// The order ID is the key: one order's events share a partition, in order.
	p, err := redstream.NewProducer[Order](rdb, "orders:order:created",
		redstream.WithPartitions(4),
		redstream.WithKeyFunc(func(o Order) string { return o.ID }))
	if err != nil {
		panic(err)
	}
	for _, id := range []string{"o-1", "o-2", "o-1"} {
		if _, err := p.Publish(ctx, Order{ID: id}); err != nil {
			panic(err)
		}
	}
	fmt.Println(p.Partitions())
	fmt.Println("o-1 goes to partition", redstream.PartitionOf("o-1", 4))

	info, err := redstream.InspectPartitions(ctx, rdb, "orders:order:created", 4)
	if err != nil {
		panic(err)
	}
	fmt.Println("entries:", info.Total.Length)
	// A consumer handles every partition, one order's events at a time:
	//
	//	redstream.Handle(c, "orders:order:created", handle,
	//		redstream.WithPartitions(4), redstream.WithOrderedKeys())

	// Output:
	// [orders:order:created:p0 orders:order:created:p1 orders:order:created:p2 orders:order:created:p3]
	// o-1 goes to partition 0
	// entries: 3
}

func ExampleProducer_PublishAsync() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = rdb.Close() }()
	ctx := context.Background()

	orders, err := redstream.NewProducer[Order](rdb, "orders:order:created")
	if err != nil {
		panic(err)
	}
	// Queue many publishes without waiting for each round trip; they go out
	// in pipelines, in call order.
	var futures []*redstream.PublishFuture
	for i := range 100 {
		f, err := orders.PublishAsync(ctx, Order{ID: fmt.Sprint("o-", i)})
		if err != nil {
			panic(err) // a bad option, an unencodable payload, ctx's end
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		if _, err := f.Result(); err != nil {
			panic(err) // what Publish would have returned
		}
	}
	n, err := rdb.XLen(ctx, "orders:order:created").Result()
	fmt.Println(n, err)
	// Output: 100 <nil>
}
