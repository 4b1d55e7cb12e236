package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

const (
	// manyClientName names the many-streams consumer's connections, so
	// that CLIENT LIST can count them.
	manyClientName = "redstream-bench-many"
	// manySampleInterval is how often goroutines, heap and pool are sampled.
	manySampleInterval = 100 * time.Millisecond
	// manySlack is how long a many-streams phase may run past publishing.
	manySlack = time.Minute
	// quietShare is the quiet streams' share of the traffic in the
	// fairness test; the hot stream has the rest.
	quietShare = 10
	// backlogEntries is the hot stream's backlog in the fairness test's
	// backlog phase.
	backlogEntries = 300_000
)

// manyFigure is one step of the many-streams workload: one Consumer
// serving Streams streams at a fixed total rate.
type manyFigure struct {
	Streams int `json:"streams"`
	Rate    int `json:"msgs_per_s"`
	N       int `json:"n"`
	// PoolSize and MaxInFlight are the settings the README asked for
	// when each stream had a reader of its own (the pool above the
	// streams, the in-flight room too), kept so that runs compare; with
	// Defaults, go-redis's default pool and the default room instead.
	PoolSize    int  `json:"pool_size"`
	MaxInFlight int  `json:"max_in_flight"`
	Defaults    bool `json:"defaults,omitempty"`
	// Conns is what CLIENT LIST counts of the consumer's client near the
	// end of publishing; PoolConns the largest TotalConns of its pool.
	Conns      int     `json:"conns"`
	PoolConns  int     `json:"pool_conns"`
	Goroutines int     `json:"goroutines"` // the most, less those before the consumer
	HeapMiB    float64 `json:"peak_heap_mib"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
	CPU        float64 `json:"cpu_us_per_msg"`
}

// fairFigure is one phase of the fairness test: the quiet streams'
// latency while the hot stream is idle, takes 90% of the traffic, or has a
// backlog to drain.
type fairFigure struct {
	Phase    string  `json:"phase"`
	Streams  int     `json:"streams"`
	QuietN   int     `json:"quiet_n"`
	QuietP50 float64 `json:"quiet_p50_ms"`
	QuietP99 float64 `json:"quiet_p99_ms"`
	// OverIdle is the quiet p99 over the idle phase's.
	OverIdle float64 `json:"quiet_p99_over_idle"`
	// HotRate is the hot stream's handled msg/s while it had work.
	HotRate float64 `json:"hot_msgs_per_s,omitempty"`
}

// runManyStreams measures one Consumer serving many streams at a fixed
// total rate, then the fairness between a hot stream and quiet ones.
func runManyStreams(ctx context.Context, e *env, _ int) (result, error) {
	res := result{Rounds: 1}
	d := e.cfg.manyDuration
	// The largest step again with default settings: less room than
	// streams, the group readers wait with XREAD.
	steps := slices.Clone(e.cfg.manyStreams)
	steps = append(steps, -slices.Max(steps))
	for _, k := range steps {
		defaults := k < 0
		k = max(k, -k)
		total := int(float64(e.cfg.manyRate) * d.Seconds())
		name := fmt.Sprintf("k%d", k)
		if defaults {
			name += "d"
		}
		ph, err := e.manyPhase(ctx, name, k, total, e.cfg.manyRate,
			func(id int64) int { return int(id % int64(k)) }, 0, defaults)
		if err != nil {
			return result{}, fmt.Errorf("%d streams: %w", k, err)
		}
		lat := ph.latencies(func(int) bool { return true })
		f := manyFigure{
			Streams: k, Rate: e.cfg.manyRate, N: total, PoolSize: ph.poolSize, MaxInFlight: ph.maxInFlight, Defaults: defaults,
			Conns: ph.conns, PoolConns: ph.poolConns, Goroutines: ph.goroutines, HeapMiB: round1(mib(ph.heapPeak)),
			P50: round3(ms(percentile(lat, 50))), P99: round3(ms(percentile(lat, 99))), CPU: round3(ph.s.cpuPerMsg()),
		}
		e.logf("many-streams %d streams: %+v", k, f)
		res.Many = append(res.Many, f)
	}

	k := e.cfg.fairStreams
	quiet := func(id int64) int { return 1 + int(id%int64(k-1)) }
	quietRate := e.cfg.manyRate / quietShare
	isQuiet := func(stream int) bool { return stream != 0 }
	// idle: the quiet streams' traffic alone.
	idle, err := e.manyPhase(ctx, "idle", k, int(float64(quietRate)*d.Seconds()), quietRate, quiet, 0, false)
	if err != nil {
		return result{}, fmt.Errorf("fairness, idle: %w", err)
	}
	// hot: the same quiet traffic, and nine times as much on stream 0.
	hot, err := e.manyPhase(ctx, "hot", k, int(float64(e.cfg.manyRate)*d.Seconds()), e.cfg.manyRate, func(id int64) int {
		if id%quietShare == quietShare-1 {
			return quiet(id / quietShare)
		}
		return 0
	}, 0, false)
	if err != nil {
		return result{}, fmt.Errorf("fairness, hot: %w", err)
	}
	// backlog: the same quiet traffic while stream 0 drains a backlog.
	backlog, err := e.manyPhase(ctx, "backlog", k, int(float64(quietRate)*d.Seconds()), quietRate, quiet, backlogEntries, false)
	if err != nil {
		return result{}, fmt.Errorf("fairness, backlog: %w", err)
	}
	var idleP99 float64
	for _, ph := range []struct {
		name   string
		p      *phase
		during bool
	}{{"idle", idle, false}, {"hot 90%", hot, false}, {"hot backlog", backlog, true}} {
		lat := ph.p.latencies(isQuiet)
		if ph.during {
			lat = ph.p.latenciesBefore(isQuiet, ph.p.backlogDrained)
		}
		f := fairFigure{Phase: ph.name, Streams: k, QuietN: len(lat),
			QuietP50: round3(ms(percentile(lat, 50))), QuietP99: round3(ms(percentile(lat, 99)))}
		if ph.name == "idle" {
			idleP99 = f.QuietP99
		}
		if idleP99 > 0 {
			f.OverIdle = round3(f.QuietP99 / idleP99)
		}
		switch {
		case ph.during:
			f.HotRate = round1(ph.p.backlogRate())
		case ph.name == "hot 90%":
			f.HotRate = float64(e.cfg.manyRate - quietRate)
		}
		e.logf("fairness %s: %+v", ph.name, f)
		res.Fairness = append(res.Fairness, f)
	}
	return res, nil
}

func (e *env) logf(format string, args ...any) {
	if e.cfg.verbose {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// phase is what one many-streams run measured.
type phase struct {
	s           sample
	route       func(id int64) int
	sentAt      []int64 // per message ID, Unix ns
	handledAt   []int64 // per message ID, Unix ns
	poolSize    int
	maxInFlight int
	conns       int
	poolConns   int
	goroutines  int
	heapPeak    uint64
	// backlogDrained is when the hot stream's backlog was handled, from
	// the start of publishing; 0 if there was none or it was not drained
	// by the end, when backlogHandled of it were.
	backlogDrained time.Duration
	backlogHandled int64
	start          time.Time
}

// backlogRate is the hot stream's backlog handled per second.
func (p *phase) backlogRate() float64 {
	if p.backlogDrained > 0 {
		return float64(p.backlogHandled) / p.backlogDrained.Seconds()
	}
	return float64(p.backlogHandled) / p.s.elapsed.Seconds()
}

// latencies returns the sorted latencies of the messages routed to
// streams for which keep is true.
func (p *phase) latencies(keep func(stream int) bool) []time.Duration {
	return p.latenciesBefore(keep, 0)
}

// latenciesBefore is latencies of the messages published before
// cutoff from the start of publishing; 0 means no cutoff.
func (p *phase) latenciesBefore(keep func(stream int) bool, cutoff time.Duration) []time.Duration {
	var lat []time.Duration
	for id, at := range p.handledAt {
		if at == 0 || !keep(p.route(int64(id))) {
			continue
		}
		if cutoff > 0 && time.Duration(p.sentAt[id]-p.start.UnixNano()) > cutoff {
			continue
		}
		lat = append(lat, time.Duration(at-p.sentAt[id]))
	}
	slices.Sort(lat)
	return lat
}

// manyPhase runs one Consumer on k fresh streams while total messages are
// published at rate msg/s, message id to stream route(id), and waits
// until all are handled. backlog entries, if any, are put on stream 0
// before the consumer starts. With defaults, the consumer's client has
// go-redis's default pool and the consumer the default in-flight room.
func (e *env) manyPhase(ctx context.Context, name string, k, total, rate int, route func(int64) int, backlog int, defaults bool) (_ *phase, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.manyDuration+manySlack)
	defer cancel()
	keys := make([]string, k)
	for i := range keys {
		keys[i] = fmt.Sprintf("%smany:%s:%d", keyPrefix, name, i)
	}
	defer e.deleteKeys(context.WithoutCancel(ctx), keys)
	ph := &phase{route: route, sentAt: make([]int64, total), handledAt: make([]int64, total),
		poolSize: k + 16, maxInFlight: max(redstream.DefaultMaxInFlight, 2*k)}
	if defaults {
		ph.poolSize, ph.maxInFlight = 10*runtime.GOMAXPROCS(0), redstream.DefaultMaxInFlight
	}
	if backlog > 0 {
		if err := prefill(ctx, e.rdb, keys[0], backlog); err != nil {
			return nil, err
		}
	}
	runtime.GC()
	baseGoroutines := runtime.NumGoroutine()

	crdb := redis.NewClient(&redis.Options{Addr: e.rdb.Options().Addr, PoolSize: ph.poolSize, ClientName: manyClientName})
	defer func() { _ = crdb.Close() }()
	c, err := redstream.NewConsumer(crdb, group, redstream.WithGroupStart("0"), redstream.WithMaxInFlight(ph.maxInFlight))
	if err != nil {
		return nil, err
	}
	var handled, backlogHandled atomic.Int64
	all := make(chan struct{})
	for _, key := range keys {
		err := redstream.Handle(c, key, func(_ context.Context, m *redstream.Message[payload]) error {
			now := time.Now().UnixNano()
			if m.Payload.SentAt == 0 { // the backlog
				if backlogHandled.Add(1) == int64(backlog) {
					ph.backlogDrained = time.Since(ph.start)
				}
				return nil
			}
			ph.handledAt[m.Payload.ID] = now
			if handled.Add(1) == int64(total) {
				close(all)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(runCtx) }()
	defer func() {
		stop()
		if rerr := <-runDone; rerr != nil && err == nil {
			err = fmt.Errorf("consumer: %w", rerr)
		}
	}()
	select {
	case <-c.Ready():
	case err := <-runDone:
		runDone <- err
		return nil, fmt.Errorf("consumer stopped before reading: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	var sampler sync.WaitGroup
	samplerStop := make(chan struct{})
	sampler.Go(func() {
		ticker := time.NewTicker(manySampleInterval)
		defer ticker.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			ph.heapPeak = max(ph.heapPeak, ms.HeapInuse)
			ph.goroutines = max(ph.goroutines, runtime.NumGoroutine()-baseGoroutines)
			ph.poolConns = max(ph.poolConns, int(crdb.PoolStats().TotalConns))
			select {
			case <-samplerStop:
				return
			case <-ticker.C:
			}
		}
	})

	ph.start = time.Now()
	m := startMeter()
	err = paced(ctx, total, rate, func(ctx context.Context, id int64) error {
		p := newPayload(id, time.Now().UnixNano())
		ph.sentAt[id] = p.SentAt
		return xadd(ctx, e.rdb, keys[route(id)], p)
	})
	if err == nil {
		ph.conns, err = countClients(ctx, e.rdb, manyClientName)
	}
	if err == nil {
		select {
		case <-all:
		case err = <-runDone:
			runDone <- err
			err = fmt.Errorf("consumer stopped after %d of %d messages: %w", handled.Load(), total, err)
		case <-ctx.Done():
			err = fmt.Errorf("%d of %d messages handled: %w", handled.Load(), total, ctx.Err())
		}
	}
	ph.s = m.sample(total)
	ph.backlogHandled = backlogHandled.Load()
	close(samplerStop)
	sampler.Wait()
	return ph, err
}

// countClients counts the connections CLIENT LIST shows with the name.
func countClients(ctx context.Context, rdb *redis.Client, name string) (int, error) {
	list, err := rdb.ClientList(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("CLIENT LIST: %w", err)
	}
	n := 0
	for line := range strings.Lines(list) {
		if strings.Contains(line, " name="+name+" ") {
			n++
		}
	}
	return n, nil
}

// deleteKeys deletes keys in chunks, ignoring errors: a later run deletes
// what is left under keyPrefix.
func (e *env) deleteKeys(ctx context.Context, keys []string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for chunk := range slices.Chunk(keys, 500) {
		_ = e.rdb.Del(ctx, chunk...).Err()
	}
}
