package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

// The batch-sink workload: a consumer writes to a simulated database that
// takes sinkCost per call, for one row or a hundred, first with a handler
// of one message per call ("raw" column), then with a batch handler of up
// to sinkBatch messages per call ("rs" column). Both sides are redstream;
// the ratio is what batches buy such a sink.

// sinkCost is the simulated database's cost per call.
const sinkCost = time.Millisecond

// sinkBatch is the batch size of the batch side.
const sinkBatch = 100

func runBatchSink(ctx context.Context, e *env, n int) (result, error) {
	ss, err := e.rounds(ctx, "batch-sink", e.cfg.rounds, roundTimeout,
		side{sideRaw, e.sinkRound(n, false)}, side{sideRedstream, e.sinkRound(n, true)})
	if err != nil {
		return result{}, err
	}
	r := throughput(n, ss)
	r.Note = "raw = one message per sink call, rs = HandleBatch of 100 (50 ms wait); the sink takes 1 ms a call"
	return r, nil
}

// sinkRound prefills key with n entries and times a consumer (default
// concurrency) writing them all to the simulated sink.
func (e *env) sinkRound(n int, batch bool) roundFunc {
	return func(ctx context.Context, key string) (sample, error) {
		if _, err := e.prefill(ctx, key, n, false); err != nil {
			return sample{}, err
		}
		m := startMeter()
		var s sample
		// Timed until the last row is written, not until the consumer
		// has stopped (which waits for its blocked read).
		err := consumeIntoSink(ctx, e.rdb, key, n, batch, func() { s = m.sample(n) })
		return s, err
	}
}

// consumeIntoSink runs a consumer of key until it has written n messages
// to the simulated sink.
// written is called once the last one is.
func consumeIntoSink(ctx context.Context, rdb *redis.Client, key string, n int, batch bool, written func()) error {
	c, err := redstream.NewConsumer(rdb, group, redstream.WithGroupStart("0"))
	if err != nil {
		return err
	}
	var rows atomic.Int64
	all := make(chan struct{})
	write := func(ctx context.Context, count int) error {
		t := time.NewTimer(sinkCost)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		if rows.Add(int64(count)) == int64(n) {
			close(all)
		}
		return nil
	}
	if batch {
		err = redstream.HandleBatch(c, key, func(ctx context.Context, msgs []*redstream.Message[payload]) error {
			return write(ctx, len(msgs))
		}, redstream.WithBatch(sinkBatch, 50*time.Millisecond))
	} else {
		err = redstream.Handle(c, key, func(ctx context.Context, _ *redstream.Message[payload]) error {
			return write(ctx, 1)
		})
	}
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	select {
	case <-all:
		written()
	case <-ctx.Done():
	}
	cancel()
	runErr := <-done
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return runErr
}
