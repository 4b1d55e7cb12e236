package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// The throughput workloads (publish, drain, e2e and their async forms):
// each times raw go-redis, redstream and, where there is one, a peer on the
// same work.

func runPublish(ctx context.Context, e *env, n int) (result, error) {
	return e.publishWorkload(ctx, "publish", n, false)
}

// runPublishAsync is publish with PublishAsync on the redstream side: the
// same goroutines, one call per message, but each keeps publishing without
// waiting for its results (the raw side is the same per-call XADD loop).
func runPublishAsync(ctx context.Context, e *env, n int) (result, error) {
	return e.publishWorkload(ctx, "publish-async", n, true)
}

// publishWorkload times publishers goroutines publishing n messages, raw
// against redstream's Publish (or PublishAsync, until every result is in).
func (e *env) publishWorkload(ctx context.Context, name string, n int, async bool) (result, error) {
	rs := func(ctx context.Context, key string) (sample, error) {
		publish, wait, err := redstreamPublisher(e.rdb, key, async)
		if err != nil {
			return sample{}, err
		}
		m := startMeter()
		if err = publishAll(ctx, publishers, n, publish); err == nil {
			err = wait()
		}
		return m.sample(n), err
	}
	ss, err := e.rounds(ctx, name, e.cfg.rounds, roundTimeout, side{sideRaw, e.rawPublish(n)}, side{sideRedstream, rs})
	if err != nil {
		return result{}, err
	}
	return throughput(n, ss), nil
}

func runDrain(ctx context.Context, e *env, n int) (result, error) {
	sides := []side{{sideRaw, e.rawDrain(n, nil)}, {sideRedstream, e.redstreamDrain(n, nil)}}
	if !e.cfg.noPeers {
		sides = append(sides, side{sideWatermill, e.watermillDrain(e.peerN(n))})
	}
	ss, err := e.rounds(ctx, "drain", e.cfg.rounds, roundTimeout, sides...)
	if err != nil {
		return result{}, err
	}
	return throughput(n, ss), nil
}

// rawDrain prefills a stream with n entries, then times the raw reader
// consuming them all. heap, if not nil, samples the heap meanwhile.
func (e *env) rawDrain(n int, heap *heapSampler) roundFunc {
	return func(ctx context.Context, key string) (sample, error) {
		mem, err := e.prefill(ctx, key, n, heap != nil)
		if err != nil {
			return sample{}, err
		}
		base := heap.start()
		m := startMeter()
		err = e.rdb.XGroupCreateMkStream(ctx, key, group, "0").Err()
		if err == nil {
			err = rawConsume(ctx, e.rdb, key, n, nil)
		}
		s := m.sample(n)
		s.heapBase, s.heapPeak, s.redisMem = base, heap.stop(), mem
		return s, err
	}
}

// redstreamDrain prefills a stream with n entries, then times a Consumer
// with default options handling them all.
func (e *env) redstreamDrain(n int, heap *heapSampler) roundFunc {
	return func(ctx context.Context, key string) (sample, error) {
		mem, err := e.prefill(ctx, key, n, heap != nil)
		if err != nil {
			return sample{}, err
		}
		base := heap.start()
		m := startMeter()
		c, err := startConsumer(ctx, e.rdb, key, n, nil)
		if err != nil {
			return sample{}, err
		}
		err = c.wait(ctx)
		s := m.sample(n)
		s.heapBase, s.redisMem = base, mem
		if serr := c.stop(); err == nil {
			err = serr
		}
		s.heapPeak = heap.stop()
		return s, err
	}
}

// prefill fills key with n entries and, if asked, returns redis-server's
// used memory afterwards.
func (e *env) prefill(ctx context.Context, key string, n int, measure bool) (uint64, error) {
	start := time.Now()
	if err := prefill(ctx, e.rdb, key, n); err != nil {
		return 0, err
	}
	if e.cfg.verbose {
		fmt.Fprintf(os.Stderr, "prefilled %d entries in %v\n", n, time.Since(start).Round(time.Millisecond))
	}
	if !measure {
		return 0, nil
	}
	return usedMemory(ctx, e)
}

func runE2E(ctx context.Context, e *env, n int) (result, error) {
	sides := []side{{sideRaw, e.rawE2E(n)}, {sideRedstream, e.redstreamE2E(n, false)}}
	if !e.cfg.noPeers {
		sides = append(sides, side{sideWatermill, e.watermillE2E(e.peerN(n))})
	}
	ss, err := e.rounds(ctx, "e2e", e.cfg.rounds, roundTimeout, sides...)
	if err != nil {
		return result{}, err
	}
	return throughput(n, ss), nil
}

// runE2EAsync is e2e with PublishAsync on the redstream side.
func runE2EAsync(ctx context.Context, e *env, n int) (result, error) {
	ss, err := e.rounds(ctx, "e2e-async", e.cfg.rounds, roundTimeout, side{sideRaw, e.rawE2E(n)}, side{sideRedstream, e.redstreamE2E(n, true)})
	if err != nil {
		return result{}, err
	}
	return throughput(n, ss), nil
}

// redstreamE2E times publishers goroutines publishing n messages with
// Publish (or PublishAsync) while a redstream consumer handles them, until
// all are acknowledged.
func (e *env) redstreamE2E(n int, async bool) roundFunc {
	return func(ctx context.Context, key string) (sample, error) {
		publish, wait, err := redstreamPublisher(e.rdb, key, async)
		if err != nil {
			return sample{}, err
		}
		m := startMeter()
		c, err := startConsumer(ctx, e.rdb, key, n, nil)
		if err != nil {
			return sample{}, err
		}
		if err = publishAll(ctx, publishers, n, publish); err == nil {
			err = wait()
		}
		published := m.since()
		if err == nil {
			err = c.wait(ctx)
		}
		s := m.sample(n)
		s.published = published
		if serr := c.stop(); err == nil {
			err = serr
		}
		return s, err
	}
}

// rawPublish times publishers goroutines publishing n messages with one
// XADD round trip per call.
func (e *env) rawPublish(n int) roundFunc {
	return func(ctx context.Context, key string) (sample, error) {
		m := startMeter()
		err := publishAll(ctx, publishers, n, rawXAdd(e.rdb, key))
		return m.sample(n), err
	}
}

// rawE2E times publishers goroutines publishing n messages with one XADD
// per call while the raw reader consumes them, until all are acknowledged.
func (e *env) rawE2E(n int) roundFunc {
	return func(ctx context.Context, key string) (sample, error) {
		m := startMeter()
		if err := e.rdb.XGroupCreateMkStream(ctx, key, group, "0").Err(); err != nil {
			return sample{}, err
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		consumed := make(chan error, 1)
		go func() { consumed <- rawConsume(ctx, e.rdb, key, n, nil) }()
		err := publishAll(ctx, publishers, n, rawXAdd(e.rdb, key))
		published := m.since()
		if err != nil {
			cancel()
			if cerr := <-consumed; !errors.Is(cerr, context.Canceled) {
				err = errors.Join(err, cerr)
			}
			return sample{}, err
		}
		err = <-consumed
		s := m.sample(n)
		s.published = published
		return s, err
	}
}
