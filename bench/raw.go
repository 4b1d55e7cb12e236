package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"
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
		if err := xaddPipelined(ctx, rdb, key, stepIDs(first, min(n, first+prefillChunk), 1), payloadEntry); err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
	}
	return nil
}

// payloadEntry returns the values of the entry with the given ID as the
// raw sides write it: encoding/json into the field "payload".
func payloadEntry(id int64) (any, error) {
	data, err := json.Marshal(newPayload(id, 0))
	return []any{payloadField, data}, err
}

// stepIDs yields first, first+step, ... below end.
func stepIDs(first, end, step int) iter.Seq[int64] {
	return func(yield func(int64) bool) {
		for id := first; id < end; id += step {
			if !yield(int64(id)) {
				return
			}
		}
	}
}

// xaddPipelined sends one pipeline of XADDs to key, one per ID, each with
// the values entry returns, and returns the first error.
func xaddPipelined(ctx context.Context, rdb *redis.Client, key string, ids iter.Seq[int64], entry func(id int64) (any, error)) error {
	cmds, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for id := range ids {
			values, err := entry(id)
			if err != nil {
				return err
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: values})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return err
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
	ids := make([]string, 0, rawBatch)
	for acked := 0; acked < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		streams, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group:    group,
			Consumer: rawConsumer,
			Streams:  []string{key, ">"},
			Count:    rawBatch,
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
			if ids, err = decodeBatch(s.Messages, ids, onMsg); err != nil {
				return err
			}
		}
		if len(ids) == 0 {
			continue
		}
		if err := rdb.XAck(ctx, key, group, ids...).Err(); err != nil {
			return fmt.Errorf("XACK: %w", err)
		}
		acked += len(ids)
	}
	return nil
}

// decodeBatch decodes each entry's payload, passes it to onMsg if not nil,
// and appends the entry's ID to ids.
func decodeBatch(msgs []redis.XMessage, ids []string, onMsg func(*payload)) ([]string, error) {
	for _, m := range msgs {
		raw, _ := m.Values[payloadField].(string)
		var p payload
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			return ids, fmt.Errorf("decode %s: %w", m.ID, err)
		}
		if onMsg != nil {
			onMsg(&p)
		}
		ids = append(ids, m.ID)
	}
	return ids, nil
}
