package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

// pendingPoll is how often a finished consumer's pending count is checked
// while its last acknowledgements are on their way.
const pendingPoll = time.Millisecond

// redstreamPublish publishes with Producer.Publish, one call per message.
func redstreamPublish(rdb *redis.Client, key string) (publishFunc, error) {
	p, err := redstream.NewProducer[payload](rdb, key)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, id int64) error {
		_, err := p.Publish(ctx, newPayload(id, 0))
		return err
	}, nil
}

// redstreamPublishAsync publishes with Producer.PublishAsync, one call per
// message; wait returns once every publish has its result, with the first
// error.
func redstreamPublishAsync(rdb *redis.Client, key string) (publish publishFunc, wait func() error, err error) {
	p, err := redstream.NewProducer[payload](rdb, key)
	if err != nil {
		return nil, nil, err
	}
	var (
		mu      sync.Mutex
		futures []*redstream.PublishFuture
	)
	publish = func(ctx context.Context, id int64) error {
		f, err := p.PublishAsync(ctx, newPayload(id, 0))
		if err != nil {
			return err
		}
		mu.Lock()
		futures = append(futures, f)
		mu.Unlock()
		return nil
	}
	wait = func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range futures {
			if _, err := f.Result(); err != nil {
				return err
			}
		}
		return nil
	}
	return publish, wait, nil
}

// redstreamPublisher returns redstreamPublish (with a wait that returns at
// once) or redstreamPublishAsync.
func redstreamPublisher(rdb *redis.Client, key string, async bool) (publishFunc, func() error, error) {
	if async {
		return redstreamPublishAsync(rdb, key)
	}
	publish, err := redstreamPublish(rdb, key)
	return publish, func() error { return nil }, err
}

// consumer is a running redstream Consumer with default options (but for
// a group that starts at the beginning of the stream) and a handler that
// counts messages, passing each to onMsg if set.
type consumer struct {
	rdb     *redis.Client
	key     string
	n       int64
	handled atomic.Int64
	all     chan struct{} // closed when n messages have been handled
	ready   <-chan struct{}

	cancel  context.CancelFunc
	runDone chan struct{}
	runErr  error // set before runDone is closed
}

// startConsumer starts a consumer of key expecting n messages; stop it with
// [consumer.stop].
func startConsumer(ctx context.Context, rdb *redis.Client, key string, n int, onMsg func(*payload)) (*consumer, error) {
	rc, err := redstream.NewConsumer(rdb, group, redstream.WithGroupStart("0"))
	if err != nil {
		return nil, err
	}
	c := &consumer{rdb: rdb, key: key, n: int64(n), all: make(chan struct{}), ready: rc.Ready(), runDone: make(chan struct{})}
	err = redstream.Handle(rc, key, func(_ context.Context, m *redstream.Message[payload]) error {
		if onMsg != nil {
			onMsg(&m.Payload)
		}
		if c.handled.Add(1) == c.n {
			close(c.all)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	go func() {
		defer close(c.runDone)
		c.runErr = rc.Run(runCtx)
	}()
	return c, nil
}

// waitReady returns once the consumer has its group and reads.
func (c *consumer) waitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-c.runDone:
		return fmt.Errorf("consumer stopped before reading: %w", c.runErr)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait returns once n messages have been handled and nothing is pending in
// the group, that is, once every message is acknowledged.
func (c *consumer) wait(ctx context.Context) error {
	select {
	case <-c.all:
	case <-c.runDone:
		return fmt.Errorf("consumer stopped after %d of %d messages: %w", c.handled.Load(), c.n, c.runErr)
	case <-ctx.Done():
		return fmt.Errorf("%d of %d messages handled: %w", c.handled.Load(), c.n, ctx.Err())
	}
	return waitNoPending(ctx, c.rdb, c.key)
}

// waitNoPending returns once the group has nothing pending on key, that
// is, once every message read is acknowledged.
func waitNoPending(ctx context.Context, rdb *redis.Client, key string) error {
	ticker := time.NewTicker(pendingPoll)
	defer ticker.Stop()
	for {
		p, err := rdb.XPending(ctx, key, group).Result()
		if err != nil {
			return fmt.Errorf("XPENDING: %w", err)
		}
		if p.Count == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d messages still pending: %w", p.Count, ctx.Err())
		case <-ticker.C:
		}
	}
}

// stop ends Run (a graceful drain, up to the block time) and returns its
// error.
func (c *consumer) stop() error {
	c.cancel()
	<-c.runDone
	if c.runErr != nil {
		return fmt.Errorf("consumer: %w", c.runErr)
	}
	return nil
}
