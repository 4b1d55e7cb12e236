package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// sideWatermill is the watermill-redisstream peer: its Publisher and its
// Subscriber in a consumer group, with their default settings, the handler
// decoding the same JSON payload and acknowledging each message.
const sideWatermill = "watermill"

// watermillClient returns a client of its own for watermill: its
// Subscriber's and Publisher's Close close the client they were given.
func (e *env) watermillClient() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: e.rdb.Options().Addr, PoolSize: poolSize})
}

// watermillDrain prefills a stream with n entries in watermill's format
// (prefilling is not timed), then times a watermill Subscriber handling
// them all.
func (e *env) watermillDrain(n int) roundFunc {
	return func(ctx context.Context, key string) (sample, error) {
		if err := watermillPrefill(ctx, e.rdb, key, n); err != nil {
			return sample{}, err
		}
		m := startMeter()
		err := e.watermillConsume(ctx, key, n, func() error { return nil })
		return m.sample(n), err
	}
}

// watermillE2E times publishers goroutines publishing n messages with
// watermill's Publisher while its Subscriber handles them, until all are
// acknowledged.
func (e *env) watermillE2E(n int) roundFunc {
	return func(ctx context.Context, key string) (sample, error) {
		rdb := e.watermillClient()
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rdb}, nil)
		if err != nil {
			_ = rdb.Close()
			return sample{}, err
		}
		defer func() { _ = pub.Close() }()
		m := startMeter()
		var published time.Duration
		err = e.watermillConsume(ctx, key, n, func() error {
			err := publishAll(ctx, publishers, n, func(_ context.Context, id int64) error {
				data, err := json.Marshal(newPayload(id, 0))
				if err != nil {
					return err
				}
				return pub.Publish(key, message.NewMessage(watermill.NewUUID(), data))
			})
			published = m.since()
			return err
		})
		s := m.sample(n)
		s.published = published
		return s, err
	}
}

// watermillConsume runs a watermill Subscriber of key while publish runs,
// until n messages are handled and acknowledged in Redis.
func (e *env) watermillConsume(ctx context.Context, key string, n int, publish func() error) error {
	rdb := e.watermillClient()
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:        rdb,
		Consumer:      "watermill",
		ConsumerGroup: group,
	}, nil)
	if err != nil {
		_ = rdb.Close()
		return err
	}
	defer func() { _ = sub.Close() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, key)
	if err != nil {
		return err
	}
	var handled atomic.Int64
	consumed := make(chan error, 1)
	go func() {
		for msg := range msgs {
			var p payload
			if err := json.Unmarshal(msg.Payload, &p); err != nil {
				consumed <- fmt.Errorf("decode %s: %w", msg.UUID, err)
				return
			}
			msg.Ack()
			if handled.Add(1) == int64(n) {
				consumed <- nil
				return
			}
		}
		consumed <- errors.New("watermill closed the subscription")
	}()
	if err := publish(); err != nil {
		return err
	}
	select {
	case err := <-consumed:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return fmt.Errorf("%d of %d messages handled: %w", handled.Load(), n, ctx.Err())
	}
	return waitNoPending(ctx, e.rdb, key)
}

// watermillPrefill appends n entries to key as watermill's default
// marshaller writes them (uuid, metadata, payload), in pipelines.
func watermillPrefill(ctx context.Context, rdb *redis.Client, key string, n int) error {
	var mu redisstream.DefaultMarshallerUnmarshaller
	entry := func(id int64) (any, error) {
		data, err := json.Marshal(newPayload(id, 0))
		if err != nil {
			return nil, err
		}
		return mu.Marshal(key, message.NewMessage(watermill.NewUUID(), data))
	}
	for first := 0; first < n; first += prefillChunk {
		if err := xaddPipelined(ctx, rdb, key, stepIDs(first, min(n, first+prefillChunk), 1), entry); err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
	}
	return nil
}
