package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

// publishers is the number of publishing goroutines in publish and e2e
// (-publishers).
var publishers = 8

const (
	// keyPrefix starts every key the benchmark writes; at start it deletes
	// any left by an interrupted run against the same server.
	keyPrefix = "redstream-bench:"
	// group is the consumer group of both sides.
	group = "bench"
	// defaultRounds is the rounds per side when -rounds is not given.
	defaultRounds = 3
	// roundTimeout bounds one round of a throughput workload, so a stuck
	// consumer fails the run instead of hanging it.
	roundTimeout = 2 * time.Minute
)

// workload is one thing to measure.
type workload struct {
	name     string
	defaultN int
	run      func(ctx context.Context, e *env, n int) (result, error)
	// shape names the ceiling the workload is compared with; "" for none.
	shape string
	// optIn workloads run only when named, not as part of "all".
	optIn bool
}

// workloads, in the order "all" runs them: the ceiling first, so that the
// others can be given as a fraction of it. The default sizes keep
// `go run ./bench` near 4 minutes on a 2-core machine, of which the
// latency workload takes a fixed 65s (3 rounds of 10s per side).
var workloads = []*workload{
	{name: "ceiling", defaultN: 300_000, run: runCeiling},
	{name: "publish", defaultN: 150_000, run: runPublish, shape: shapePublish},
	{name: "drain", defaultN: 300_000, run: runDrain, shape: shapeDrain},
	{name: "e2e", defaultN: 150_000, run: runE2E, shape: shapeE2E},
	{name: "latency", run: runLatency},
	{name: "publish-async", defaultN: 300_000, run: runPublishAsync, shape: shapePublish},
	{name: "e2e-async", defaultN: 300_000, run: runE2EAsync, shape: shapeE2E},
	{name: "drain-heap", defaultN: 1_000_000, run: runDrainHeap, shape: shapeDrain, optIn: true},
	{name: "many-streams", run: runManyStreams, optIn: true},
	{name: "batch-sink", defaultN: 5_000, run: runBatchSink},
}

func defaultWorkloadNames() []string {
	var names []string
	for _, w := range workloads {
		if !w.optIn {
			names = append(names, w.name)
		}
	}
	return names
}

func defaultSizes() string {
	var parts []string
	for _, w := range workloads {
		if w.defaultN > 0 {
			parts = append(parts, w.name+" "+strconv.Itoa(w.defaultN))
		}
	}
	return strings.Join(parts, ", ") + "; latency ignores -n: 5,000/s for -latency-duration"
}

// selectWorkloads returns the workloads named in a comma-separated list,
// in the order given; "all" is every workload that is not opt-in.
func selectWorkloads(list string) ([]*workload, error) {
	var ws []*workload
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if name == "all" {
			for _, w := range workloads {
				if !w.optIn {
					ws = append(ws, w)
				}
			}
			continue
		}
		i := slices.IndexFunc(workloads, func(w *workload) bool { return w.name == name })
		if i < 0 {
			var names []string
			for _, w := range workloads {
				names = append(names, w.name)
			}
			return nil, fmt.Errorf("-workload %q: want all, %s, or a comma-separated list", name, strings.Join(names, ", "))
		}
		ws = append(ws, workloads[i])
	}
	return ws, nil
}

// env is what every workload shares: one client for the raw and the
// redstream sides, and the ceiling measured so far.
type env struct {
	rdb  *redis.Client
	cfg  config
	meta meta
	// ceiling is each shape's best ceiling figure, once measured.
	ceiling map[string]ceilingFigure
}

// peerN is how many messages a peer library handles in a round of a
// workload of n: peers are much slower, so they get fewer, up to -peer-n.
func (e *env) peerN(n int) int { return min(n, e.cfg.peerN) }

// setup reads the server's version, deletes keys left by an interrupted
// run and opens the pool's connections, so that neither side's first round
// pays for dialling.
func (e *env) setup(ctx context.Context) error {
	info, err := e.rdb.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("redis at %s: %w", e.rdb.Options().Addr, err)
	}
	version := "unknown"
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			version = v
		}
	}
	e.meta = newMeta(version)

	var stale []string
	iter := e.rdb.Scan(ctx, 0, keyPrefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		stale = append(stale, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("look for keys left by an earlier run: %w", err)
	}
	for chunk := range slices.Chunk(stale, 1000) {
		if err := e.rdb.Del(ctx, chunk...).Err(); err != nil {
			return fmt.Errorf("delete keys left by an earlier run: %w", err)
		}
	}

	var wg sync.WaitGroup
	errs := make([]error, poolSize)
	for i := range poolSize {
		wg.Go(func() { errs[i] = e.rdb.Ping(ctx).Err() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// roundsFor returns how many rounds per side a workload runs: opt-in
// workloads, being slow, run one unless -rounds is given.
func (e *env) roundsFor(optIn bool) int {
	if optIn && !e.cfg.roundsSet {
		return 1
	}
	return e.cfg.rounds
}

// sample is one round's measurement of one side.
type sample struct {
	n       int
	elapsed time.Duration
	// cpu is the process's user+system CPU time over elapsed.
	cpu time.Duration
	// published is when the last publish returned, in e2e.
	published time.Duration
	// lat holds one latency per message, in the latency workload.
	lat []time.Duration
	// heapPeak and heapBase are HeapInuse bytes, and redisMem is
	// redis-server's used_memory after the prefill, in drain-heap.
	heapPeak, heapBase, redisMem uint64
}

func (s sample) rate() float64 { return float64(s.n) / s.elapsed.Seconds() }

// cpuPerMsg is the CPU time per message, in microseconds.
func (s sample) cpuPerMsg() float64 { return float64(s.cpu) / float64(time.Microsecond) / float64(s.n) }

// roundFunc runs one round of one side on a fresh stream key and returns
// what it measured; set-up such as prefilling is not in elapsed.
type roundFunc func(ctx context.Context, key string) (sample, error)

// side is one implementation of a workload: the raw loop, redstream, or a
// peer library.
type side struct {
	name string
	fn   roundFunc
}

// Side names; a side with another name is a peer library.
const (
	sideRaw       = "raw"
	sideRedstream = "redstream"
)

// samples holds each side's samples, by side name.
type samples map[string][]sample

// rounds runs the sides' rounds alternately, in the order given, and
// returns each side's samples. Each round runs under the pprof labels
// workload, side and run (workload/side), so that a -cpuprofile can be
// split: go tool pprof -tagfocus run=drain/redstream.
func (e *env) rounds(ctx context.Context, name string, rounds int, timeout time.Duration, sides ...side) (samples, error) {
	out := samples{}
	for i := range rounds {
		for _, sd := range sides {
			key := fmt.Sprintf("%s%s:%s:%d", keyPrefix, name, sd.name, i+1)
			var (
				s   sample
				err error
			)
			pprof.Do(ctx, pprof.Labels("workload", name, "side", sd.name, "run", name+"/"+sd.name), func(ctx context.Context) {
				s, err = e.round(ctx, key, timeout, sd.fn)
			})
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w", sd.name, i+1, err)
			}
			if e.cfg.verbose {
				fmt.Fprintf(os.Stderr, "%-13s %-10s round %d: %9.0f msg/s, %5.2f µs CPU/msg (%d in %v", name, sd.name, i+1, s.rate(), s.cpuPerMsg(), s.n, s.elapsed.Round(time.Millisecond))
				if s.published > 0 {
					fmt.Fprintf(os.Stderr, ", publishing done after %v", s.published.Round(time.Millisecond))
				}
				fmt.Fprintln(os.Stderr, ")")
			}
			out[sd.name] = append(out[sd.name], s)
		}
	}
	return out, nil
}

// round runs fn on key after a garbage collection, so that neither side
// pays for the other's garbage, and deletes the key (and its dead-letter
// stream, should there be one) afterwards, so Redis memory does not grow.
func (e *env) round(ctx context.Context, key string, timeout time.Duration, fn roundFunc) (sample, error) {
	runtime.GC()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := fn(rctx, key)
	// Clean up even when interrupted: with REDIS_ADDR the server outlives us.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer ccancel()
	if derr := e.rdb.Del(cctx, key, redstream.DeadLetterKey(key)).Err(); derr != nil && err == nil {
		err = fmt.Errorf("delete %s: %w", key, derr)
	}
	if err != nil && rctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("round did not finish within %v: %w", timeout, err)
	}
	return s, err
}

// sideFigures is the median rate and CPU per message over a side's rounds,
// and every round's rate.
func sideFigures(ss []sample) (rate, cpu float64, rates []float64) {
	var cpus []float64
	for _, s := range ss {
		rates = append(rates, round1(s.rate()))
		cpus = append(cpus, s.cpuPerMsg())
	}
	return round1(median(rates)), round3(median(cpus)), rates
}

// throughput fills in a result's rates and CPU per message from every
// side's samples; sides other than raw and redstream are peers.
func throughput(n int, ss samples) result {
	res := result{N: n, Rounds: len(ss[sideRedstream])}
	res.RawRate, res.RawCPU, res.RawRounds = sideFigures(ss[sideRaw])
	res.RedstreamRate, res.RedstreamCPU, res.RedstreamRounds = sideFigures(ss[sideRedstream])
	if res.RawRate > 0 {
		res.Ratio = round3(res.RedstreamRate / res.RawRate)
	}
	for _, name := range slices.Sorted(maps.Keys(ss)) {
		if name == sideRaw || name == sideRedstream {
			continue
		}
		p := peerResult{Name: name, N: ss[name][0].n}
		p.Rate, p.CPU, p.Rounds = sideFigures(ss[name])
		if p.Rate > 0 {
			p.RedstreamOver = round3(res.RedstreamRate / p.Rate)
		}
		res.Peers = append(res.Peers, p)
	}
	return res
}

// median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none.
func median[T int64 | float64](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
