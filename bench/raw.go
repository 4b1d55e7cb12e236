package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// rawBatch is the raw reader's XREADGROUP COUNT, redstream's default
	// batch size (redstream.DefaultBatchSize).
	rawBatch = 100
	// rawBlock is the raw reader's XREADGROUP BLOCK.
	rawBlock = 100 * time.Millisecond
	// rawConsumer is the raw reader's consumer name in the group.
	rawConsumer = "raw"
	// prefillChunk is how many XADDs go in one pipeline when prefilling.
	prefillChunk = 1000
)

// publishFunc publishes the message with the given ID.
type publishFunc func(ctx context.Context, id int64) error

// publishAll publishes messages 0 to n-1 from the given number of
// goroutines, each publishing its share one call at a time. It returns the
// first error, after which the other goroutines stop.
func publishAll(ctx context.Context, goroutines, n int, publish publishFunc) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for id := int64(g); id < int64(n); id += int64(goroutines) {
				if err := publish(ctx, id); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// rawXAdd publishes with one XADD round trip per call, encoding the payload
// as redstream does: encoding/json into the field "payload".
func rawXAdd(rdb *redis.Client, key string) publishFunc {
	return func(ctx context.Context, id int64) error {
		return xadd(ctx, rdb, key, newPayload(id, 0))
	}
}

func xadd(ctx context.Context, rdb *redis.Client, key string, p payload) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{payloadField, data}}).Err(); err != nil {
		return fmt.Errorf("XADD: %w", err)
	}
	return nil
}

// prefill appends n entries to key in pipelines of prefillChunk XADDs.
func prefill(ctx context.Context, rdb *redis.Client, key string, n int) error {
	for first := 0; first < n; first += prefillChunk {
		cmds, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for id := first; id < min(n, first+prefillChunk); id++ {
				data, err := json.Marshal(newPayload(int64(id), 0))
				if err != nil {
					return err
				}
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{payloadField, data}})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
		for _, c := range cmds {
			if err := c.Err(); err != nil {
				return fmt.Errorf("prefill: %w", err)
			}
		}
	}
	return nil
}

// rawConsume is the hand-rolled consumer: one goroutine that reads up to
// rawBatch new entries with XREADGROUP, decodes each payload (the work
// redstream does before calling a handler), passes it to onMsg if not nil,
// and acknowledges the batch with one multi-ID XACK, until n entries are
// acknowledged. The group must exist.
func rawConsume(ctx context.Context, rdb *redis.Client, key string, n int, onMsg func(*payload)) error {
	var acked atomic.Int64
	return consumeLoop(ctx, rdb, key, rawConsumer, rawBatch, int64(n), &acked, onMsg)
}

// consumeLoop reads batches of up to count new entries as consumer,
// decodes and acknowledges each batch with one multi-ID XACK and adds
// them to acked, until acked reaches n: several loops may share acked.
func consumeLoop(ctx context.Context, rdb *redis.Client, key, consumer string, count, n int64, acked *atomic.Int64, onMsg func(*payload)) error {
	ids := make([]string, 0, count)
	for acked.Load() < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		streams, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group:    group,
			Consumer: consumer,
			Streams:  []string{key, ">"},
			Count:    count,
			Block:    rawBlock,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return fmt.Errorf("XREADGROUP: %w", err)
		}
		ids = ids[:0]
		for _, s := range streams {
			for _, m := range s.Messages {
				raw, _ := m.Values[payloadField].(string)
				var p payload
				if err := json.Unmarshal([]byte(raw), &p); err != nil {
					return fmt.Errorf("decode %s: %w", m.ID, err)
				}
				if onMsg != nil {
					onMsg(&p)
				}
				ids = append(ids, m.ID)
			}
		}
		if len(ids) == 0 {
			continue
		}
		if err := rdb.XAck(ctx, key, group, ids...).Err(); err != nil {
			return fmt.Errorf("XACK: %w", err)
		}
		acked.Add(int64(len(ids)))
	}
	return nil
}
