package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// ceilingPipeline is how many XADDs the ceiling's publishers send in
	// one pipeline.
	ceilingPipeline = 512
	// ceilingCount is the ceiling's readers' XREADGROUP COUNT.
	ceilingCount = 1000
)

// Shapes: what a workload does, so that it can be compared with the
// ceiling that does the same.
const (
	shapePublish = "publish"
	shapeDrain   = "drain"
	shapeE2E     = "e2e"
)

// ceilingFigure is the ceiling of one shape with one number of
// connections per direction.
type ceilingFigure struct {
	Shape  string    `json:"shape"`
	Conns  int       `json:"conns"`
	Rate   float64   `json:"msgs_per_s"`
	CPU    float64   `json:"cpu_us_per_msg"`
	Rounds []float64 `json:"rounds_msgs_per_s"`
}

// runCeiling measures the fastest a client can go on this machine, with
// no per-message waiting, for each shape and 1 to -ceiling-conns
// connections per direction: publishers sending pipelines of
// ceilingPipeline XADDs, consumers reading XREADGROUP COUNT ceilingCount
// ahead while they decode every payload (as the other sides do) and
// acknowledge each batch with one multi-ID XACK. It keeps each shape's best for the other
// workloads' "of ceiling" figures.
func runCeiling(ctx context.Context, e *env, n int) (result, error) {
	res := result{N: n, Rounds: e.cfg.rounds}
	for _, shape := range []string{shapePublish, shapeDrain, shapeE2E} {
		var sides []side
		for c := 1; c <= e.cfg.ceilingConns; c++ {
			sides = append(sides, side{"c" + strconv.Itoa(c), e.ceilingRound(shape, n, c)})
		}
		ss, err := e.rounds(ctx, "ceiling-"+shape, e.cfg.rounds, roundTimeout, sides...)
		if err != nil {
			return result{}, err
		}
		for c := 1; c <= e.cfg.ceilingConns; c++ {
			f := ceilingFigure{Shape: shape, Conns: c}
			f.Rate, f.CPU, f.Rounds = sideFigures(ss["c"+strconv.Itoa(c)])
			res.Ceiling = append(res.Ceiling, f)
			if best, ok := e.ceiling[shape]; !ok || f.Rate > best.Rate {
				e.ceiling[shape] = f
			}
		}
	}
	return res, nil
}

// ceilingRound returns one round of shape with c connections per
// direction.
func (e *env) ceilingRound(shape string, n, c int) roundFunc {
	return func(ctx context.Context, key string) (sample, error) {
		switch shape {
		case shapePublish:
			m := startMeter()
			err := pipelinedPublish(ctx, e.rdb, key, n, c)
			return m.sample(n), err
		case shapeDrain:
			if err := e.rdb.XGroupCreateMkStream(ctx, key, group, "0").Err(); err != nil {
				return sample{}, err
			}
			if _, err := e.prefill(ctx, key, n, false); err != nil {
				return sample{}, err
			}
			return consumeParallel(ctx, e.rdb, key, n, c, startMeter(), func() error { return nil })
		default:
			if err := e.rdb.XGroupCreateMkStream(ctx, key, group, "0").Err(); err != nil {
				return sample{}, err
			}
			m := startMeter()
			var published time.Duration
			s, err := consumeParallel(ctx, e.rdb, key, n, c, m, func() error {
				err := pipelinedPublish(ctx, e.rdb, key, n, c)
				published = m.since()
				return err
			})
			s.published = published
			return s, err
		}
	}
}

// pipelinedPublish publishes messages 0 to n-1 from c goroutines, each
// sending its share in pipelines of ceilingPipeline XADDs.
func pipelinedPublish(ctx context.Context, rdb *redis.Client, key string, n, c int) error {
	var wg sync.WaitGroup
	errs := make([]error, c)
	for g := range c {
		wg.Go(func() {
			// Each pipeline carries the goroutine's next ceilingPipeline IDs.
			for first := g; first < n; first += c * ceilingPipeline {
				ids := stepIDs(first, min(n, first+c*ceilingPipeline), c)
				if err := xaddPipelined(ctx, rdb, key, ids, payloadEntry); err != nil {
					errs[g] = fmt.Errorf("XADD pipeline: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// consumeParallel runs c consumers of the group while publish runs until
// n entries are acknowledged, and returns m's sample of that moment (the
// readers still blocked stop within rawBlock, after it). Each consumer is two goroutines, so that no round trip
// waits for decoding: one reads batches of ceilingCount ahead, the other
// decodes each batch and acknowledges it with one multi-ID XACK.
func consumeParallel(ctx context.Context, rdb *redis.Client, key string, n, c int, m meter, publish func() error) (sample, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		acked atomic.Int64
		wg    sync.WaitGroup
	)
	done := make(chan error, c)
	for i := range c {
		batches := make(chan []redis.XMessage, 2)
		consumer := "ceiling-" + strconv.Itoa(i)
		wg.Go(func() { readAhead(ctx, cancel, rdb, key, consumer, int64(n), &acked, batches) })
		wg.Go(func() { done <- decodeAck(ctx, rdb, key, int64(n), &acked, batches) })
	}
	perr := publish()
	var err error
	if perr == nil {
		// The first consumer to return has either failed or seen all n
		// acknowledged.
		err = <-done
	}
	s := m.sample(n)
	cancel(nil)
	wg.Wait()
	if perr != nil {
		return sample{}, perr
	}
	return s, err
}

// readAhead reads batches of new entries as consumer and hands them to
// batches until n are acknowledged; it closes batches when it stops, and
// cancels ctx with its error if it fails.
func readAhead(ctx context.Context, cancel context.CancelCauseFunc, rdb *redis.Client, key, consumer string, n int64, acked *atomic.Int64, batches chan<- []redis.XMessage) {
	defer close(batches)
	for acked.Load() < n && ctx.Err() == nil {
		streams, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group:    group,
			Consumer: consumer,
			Streams:  []string{key, ">"},
			Count:    ceilingCount,
			Block:    rawBlock,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			cancel(fmt.Errorf("XREADGROUP: %w", err))
			return
		}
		for _, s := range streams {
			select {
			case batches <- s.Messages:
			case <-ctx.Done():
				return
			}
		}
	}
}

// decodeAck decodes every payload of each batch and acknowledges the batch
// with one multi-ID XACK, until n are acknowledged or batches closes.
func decodeAck(ctx context.Context, rdb *redis.Client, key string, n int64, acked *atomic.Int64, batches <-chan []redis.XMessage) error {
	ids := make([]string, 0, ceilingCount)
	for msgs := range batches {
		var err error
		if ids, err = decodeBatch(msgs, ids[:0], nil); err != nil {
			return err
		}
		if err := rdb.XAck(ctx, key, group, ids...).Err(); err != nil {
			return fmt.Errorf("XACK: %w", err)
		}
		if acked.Add(int64(len(ids))) >= n {
			return nil
		}
	}
	if acked.Load() >= n {
		return nil
	}
	return context.Cause(ctx)
}
