package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/redstream/redstream"
)

const (
	// latencyRate is the latency workload's publish rate, in messages per
	// second.
	latencyRate = 5000
	// latencyPublishers is how many goroutines share the paced publishing,
	// so that one slow round trip does not delay the messages behind it.
	latencyPublishers = 4
	// latencyTick is the pacing interval: each tick publishes the messages
	// that have come due (5 per tick at 5,000 msg/s).
	latencyTick = time.Millisecond
	// latencySlack is how long a latency round may run past its publishing.
	latencySlack = time.Minute
)

// runLatency publishes at latencyRate for -latency-duration and measures,
// per message, the time from just before Publish (or XADD) to the start of
// the redstream handler (or the raw reader having decoded the entry). The
// publish time travels in the payload. Messages are stamped when they are
// published, not when they were due, so pacing hiccups do not count.
func runLatency(ctx context.Context, e *env, _ int) (result, error) {
	total := int(float64(latencyRate) * e.cfg.latencyDuration.Seconds())
	record := func(lat []time.Duration) func(*payload) {
		return func(p *payload) {
			if p.ID >= 0 && p.ID < int64(len(lat)) {
				lat[p.ID] = time.Duration(time.Now().UnixNano() - p.SentAt)
			}
		}
	}
	raw := func(ctx context.Context, key string) (sample, error) {
		lat := make([]time.Duration, total)
		if err := e.rdb.XGroupCreateMkStream(ctx, key, group, "0").Err(); err != nil {
			return sample{}, err
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		consumed := make(chan error, 1)
		go func() { consumed <- rawConsume(ctx, e.rdb, key, total, record(lat)) }()
		m := startMeter()
		err := paced(ctx, total, latencyRate, func(ctx context.Context, id int64) error {
			return xadd(ctx, e.rdb, key, newPayload(id, time.Now().UnixNano()))
		})
		if err != nil {
			cancel()
			if cerr := <-consumed; !errors.Is(cerr, context.Canceled) {
				err = errors.Join(err, cerr)
			}
			return sample{}, err
		}
		err = <-consumed
		s := m.sample(total)
		s.lat = lat
		return s, err
	}
	rs := func(ctx context.Context, key string) (sample, error) {
		lat := make([]time.Duration, total)
		p, err := newLatencyProducer(e, key)
		if err != nil {
			return sample{}, err
		}
		c, err := startConsumer(ctx, e.rdb, key, total, record(lat))
		if err != nil {
			return sample{}, err
		}
		m := startMeter()
		err = c.waitReady(ctx)
		if err == nil {
			m = startMeter()
			err = paced(ctx, total, latencyRate, p)
		}
		if err == nil {
			err = c.wait(ctx)
		}
		s := m.sample(total)
		s.lat = lat
		if serr := c.stop(); err == nil {
			err = serr
		}
		return s, err
	}
	timeout := e.cfg.latencyDuration + latencySlack
	ss, err := e.rounds(ctx, "latency", e.cfg.rounds, timeout, side{sideRaw, raw}, side{sideRedstream, rs})
	if err != nil {
		return result{}, err
	}
	rawS, rsS := ss[sideRaw], ss[sideRedstream]
	res := throughput(total, ss)
	res.P50, res.P99 = latencyStats(rsS)
	res.RawP50, res.RawP99 = latencyStats(rawS)
	return res, nil
}

func newLatencyProducer(e *env, key string) (publishFunc, error) {
	p, err := redstream.NewProducer[payload](e.rdb, key)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, id int64) error {
		_, err := p.Publish(ctx, newPayload(id, time.Now().UnixNano()))
		return err
	}, nil
}

// paced publishes messages 0 to total-1 at rate messages per second: a
// ticker releases the messages that have come due to latencyPublishers
// goroutines. It returns the first error.
func paced(ctx context.Context, total, rate int, publish publishFunc) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	due := make(chan int64, rate)
	var wg sync.WaitGroup
	for range latencyPublishers {
		wg.Go(func() {
			for id := range due {
				if err := publish(ctx, id); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	ticker := time.NewTicker(latencyTick)
	defer ticker.Stop()
	start := time.Now()
	sent := 0
pace:
	for sent < total {
		select {
		case <-ctx.Done():
			break pace
		case now := <-ticker.C:
			upTo := min(total, int(now.Sub(start).Seconds()*float64(rate)))
			for ; sent < upTo; sent++ {
				select {
				case due <- int64(sent):
				case <-ctx.Done():
					break pace
				}
			}
		}
	}
	close(due)
	wg.Wait()
	return context.Cause(ctx)
}

// latencyStats returns the medians over rounds of each round's p50 and p99,
// in milliseconds.
func latencyStats(samples []sample) (p50, p99 *float64) {
	var p50s, p99s []float64
	for _, s := range samples {
		sorted := slices.Clone(s.lat)
		slices.Sort(sorted)
		p50s = append(p50s, ms(percentile(sorted, 50)))
		p99s = append(p99s, ms(percentile(sorted, 99)))
	}
	a, b := round3(median(p50s)), round3(median(p99s))
	return &a, &b
}

// percentile returns the nearest-rank pth percentile of sorted.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (len(sorted)*p + 99) / 100 // ceil(len*p/100)
	return sorted[max(rank, 1)-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
