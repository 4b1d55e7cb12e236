// Command scheduled publishes reminders with a delay, cancels one of them,
// and handles the others when they are due, never before; then publishes
// one order twice with the same dedupe key and checks it is appended once.
//
//	go run ./examples/scheduled
//
// It runs against an embedded, in-memory Redis (miniredis) unless REDIS_ADDR
// names a real server, in which case it uses streams of its own per run and
// deletes them at the end. It exits 0 when everything went as described,
// and 1 otherwise.
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

// Reminder is the payload of the delayed messages.
type Reminder struct {
	User string `json:"user"`
	Text string `json:"text"`
}

const timeout = 30 * time.Second

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scheduled:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rdb, suffix, cleanup, err := connect(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := reminders(ctx, rdb, "reminders:user:due"+suffix); err != nil {
		return err
	}
	return dedupe(ctx, rdb, "orders:order:created"+suffix)
}

// reminders publishes three reminders due in 300ms, 600ms and 900ms,
// cancels the second, and handles the other two as they come due.
func reminders(ctx context.Context, rdb *redis.Client, stream string) error {
	p, err := redstream.NewProducer[Reminder](rdb, stream)
	if err != nil {
		return err
	}
	var ids []string
	for i, text := range []string{"stand up", "stretch", "drink water"} {
		id, err := p.Publish(ctx, Reminder{User: "ada", Text: text}, redstream.WithDelay(time.Duration(i+1)*300*time.Millisecond))
		if err != nil {
			return fmt.Errorf("publish %q: %w", text, err)
		}
		fmt.Printf("scheduled %q as %s\n", text, id)
		ids = append(ids, id)
	}
	// Cancelled before it is due: it is never appended.
	if err := p.Cancel(ctx, ids[1]); err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	fmt.Printf("cancelled %s\n", ids[1])
	if info, err := redstream.Inspect(ctx, rdb, stream); err == nil {
		fmt.Printf("waiting: %d, first due %s\n", info.Scheduled, info.NextDue.Format(time.StampMilli))
	}

	// Any consumer of the stream (or a standalone Reaper) appends due
	// messages; a short poll keeps the example quick (default 250ms).
	c, err := redstream.NewConsumer(rdb, "notifier", redstream.WithGroupStart("0"),
		redstream.WithSchedulePoll(50*time.Millisecond))
	if err != nil {
		return err
	}
	var (
		mu   sync.Mutex
		got  = map[string]bool{}
		bad  error
		done = make(chan struct{})
	)
	err = redstream.Handle(c, stream, func(_ context.Context, m *redstream.Message[Reminder]) error {
		mu.Lock()
		defer mu.Unlock()
		// The entry's ID time and the due time are both the server's clock.
		late := m.Time().Sub(m.ScheduledFor())
		fmt.Printf("handled %q (%s): due %s, appended %v after\n", m.Payload.Text, m.ScheduleID(), m.ScheduledFor().Format(time.StampMilli), late)
		if late < 0 {
			bad = fmt.Errorf("%s appended %v before it was due", m.ScheduleID(), -late)
		}
		if m.ScheduleID() == ids[1] {
			bad = errors.New("the cancelled reminder was delivered")
		}
		got[m.ScheduleID()] = true
		if len(got) == 2 {
			close(done)
		}
		return nil
	})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()
	select {
	case <-done:
	case err := <-runErr:
		return fmt.Errorf("consumer stopped early: %w", err)
	case <-ctx.Done():
		return errors.New("timed out waiting for the reminders")
	}
	stop()
	if err := <-runErr; err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	// Too late to cancel one that was appended.
	if err := p.Cancel(ctx, ids[0]); !errors.Is(err, redstream.ErrNotScheduled) {
		return fmt.Errorf("cancel after delivery: want ErrNotScheduled, got %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return bad
}

// dedupe publishes one order twice with its ID as the dedupe key.
func dedupe(ctx context.Context, rdb *redis.Client, stream string) error {
	p, err := redstream.NewProducer[Reminder](rdb, stream, redstream.WithDedupeWindow(time.Hour))
	if err != nil {
		return err
	}
	first, err := p.Publish(ctx, Reminder{User: "ada", Text: "order-42"}, redstream.WithDedupeKey("order-42"))
	if err != nil {
		return err
	}
	again, err := p.Publish(ctx, Reminder{User: "ada", Text: "order-42"}, redstream.WithDedupeKey("order-42"))
	if !errors.Is(err, redstream.ErrDuplicate) || again != first {
		return fmt.Errorf("second publish: want %s and ErrDuplicate, got %s, %w", first, again, err)
	}
	n, err := rdb.XLen(ctx, stream).Result()
	if err != nil {
		return err
	}
	fmt.Printf("published order-42 twice with one dedupe key: entry %s both times, %d entry in %s\n", first, n, stream)
	if n != 1 {
		return fmt.Errorf("want 1 entry, got %d", n)
	}
	return nil
}

// connect returns a client for REDIS_ADDR, or for an embedded miniredis
// when it is unset, with a suffix for the stream names and a cleanup func.
func connect(ctx context.Context) (*redis.Client, string, func(), error) {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return nil, "", nil, fmt.Errorf("start miniredis: %w", err)
		}
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		fmt.Println("using an embedded miniredis (set REDIS_ADDR to use a real server)")
		return rdb, "", func() { _ = rdb.Close(); mr.Close() }, nil
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, "", nil, fmt.Errorf("redis at REDIS_ADDR=%s: %w", addr, err)
	}
	suffix := "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	fmt.Printf("using redis at %s\n", addr)
	return rdb, suffix, func() {
		c := context.WithoutCancel(ctx)
		for _, pattern := range []string{"reminders:user:due" + suffix + "*", "*reminders:user:due" + suffix + "*", "*orders:order:created" + suffix + "*"} {
			keys, _ := rdb.Keys(c, pattern).Result()
			if len(keys) > 0 {
				_ = rdb.Del(c, keys...).Err()
			}
		}
		_ = rdb.Close()
	}, nil
}
