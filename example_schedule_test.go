package redstream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

func ExampleWithDelay() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = rdb.Close() }()
	ctx := context.Background()

	reminders, err := redstream.NewProducer[Order](rdb, "orders:reminder:due")
	if err != nil {
		panic(err)
	}
	// Publish returns a schedule ID: the handle Cancel takes.
	later, err := reminders.Publish(ctx, Order{ID: "o-1"}, redstream.WithDelay(time.Hour))
	if err != nil {
		panic(err)
	}
	now, err := reminders.Publish(ctx, Order{ID: "o-2"}, redstream.WithDelay(0))
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.HasPrefix(later, "sched-"))

	// Cancelled before it is due: never appended.
	fmt.Println(reminders.Cancel(ctx, later))

	// Consumers and reapers of the stream do this every poll (250ms).
	moved, err := redstream.MoveDue(ctx, rdb, "orders:reminder:due")
	fmt.Println(moved, err)

	// Too late to cancel what was appended.
	fmt.Println(errors.Is(reminders.Cancel(ctx, now), redstream.ErrNotScheduled))

	entries, err := rdb.XRange(ctx, "orders:reminder:due", "-", "+").Result()
	if err != nil {
		panic(err)
	}
	fmt.Println(len(entries), entries[0].Values["orderId"], entries[0].Values[redstream.ScheduleIDField] == now)
	// Output:
	// true
	// <nil>
	// 1 <nil>
	// true
	// 1 o-2 true
}

func ExampleWithDedupeKey() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer func() { _ = rdb.Close() }()
	ctx := context.Background()

	orders, err := redstream.NewProducer[Order](rdb, "orders:order:created", redstream.WithDedupeWindow(time.Hour))
	if err != nil {
		panic(err)
	}
	order := Order{ID: "o-1", UserID: "u-7", Amount: 1250}
	first, err := orders.Publish(ctx, order, redstream.WithDedupeKey(order.ID))
	fmt.Println(err)
	// The same business key within the window: nothing appended, the
	// first entry's ID returned with ErrDuplicate.
	again, err := orders.Publish(ctx, order, redstream.WithDedupeKey(order.ID))
	fmt.Println(again == first, errors.Is(err, redstream.ErrDuplicate))
	fmt.Println(rdb.XLen(ctx, "orders:order:created").Val())
	// Output:
	// <nil>
	// true true
	// 1
}
