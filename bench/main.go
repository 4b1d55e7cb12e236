// Command bench measures redstream's throughput, latency, client CPU and
// consumer memory against a hand-rolled go-redis loop doing the same work,
// against the ceiling of what a client can do on the machine, and against
// peer libraries, in the same run, against the same Redis.
//
//	go run ./bench                        # ceiling, publish, drain, e2e, latency, ...: a table
//	go run ./bench -quick                 # one round, a fifth of the sizes: about 30s
//	go run ./bench -json                  # one JSON object per workload and line
//	go run ./bench -workload drain,e2e -n 200000 -rounds 5
//	go run ./bench -workload drain-heap   # 1,000,000 entries; not part of "all"
//	go run ./bench -workload many-streams # one Consumer on 1 to 1,000 streams; not part of "all"
//
// It is a module of its own (bench/go.mod), so that the peers'
// dependencies stay out of the core module; from the repository's root the
// go.work makes `go run ./bench` work, as does `cd bench && go run .`.
//
// It starts its own redis-server (no persistence) on a free loopback port
// and stops it at exit, unless REDIS_ADDR names a server to use; it only
// ever writes and deletes keys under "redstream-bench:", so it is safe on
// a server holding other data.
//
// Every message carries a payload struct whose encoding/json encoding is
// 256 bytes, in the entry field "payload", on every side. The workloads:
//
//   - ceiling: the fastest a client can go here, with no per-message
//     waiting: raw go-redis with 1 to -ceiling-conns connections per
//     direction, publishers sending pipelines of 512 XADDs, consumers
//     reading XREADGROUP COUNT 1000 ahead while they decode and acknowledge
//     each batch with one multi-ID XACK. Each shape's best (publish, drain,
//     e2e) is what the other workloads of that shape are compared with
//     ("of ceil").
//   - publish: 8 goroutines publish n messages, one call per message:
//     redstream's Producer.Publish (which pipelines concurrent calls) against
//     one XADD round trip per call.
//   - drain: a prefilled stream of n entries (prefilling is not timed) is
//     consumed until every entry is acknowledged: a redstream Consumer with
//     default options and a no-op handler, against one goroutine doing
//     XREADGROUP COUNT 100, json.Unmarshal of each payload and one
//     multi-ID XACK per batch, and against watermill-redisstream's
//     Subscriber (default settings, the handler decoding the payload and
//     acknowledging), on -peer-n entries in its own format.
//   - e2e: 8 publishing goroutines and one consumer at once, until all n
//     messages are acknowledged; watermill with its Publisher and
//     Subscriber.
//   - latency: messages published at a fixed 5,000 msg/s for
//     -latency-duration (n follows from those; -n does not apply) by 4
//     goroutines; p50 and p99 of the time from just before Publish (XADD)
//     to the start of the handler (the raw reader having decoded the
//     entry).
//   - publish-async, e2e-async: publish and e2e with PublishAsync on the
//     redstream side.
//   - drain-heap: drain of 1,000,000 prefilled entries (or -n), sampling
//     the Go heap (HeapInuse) every 50ms; it reports the peak. The stream
//     itself lives in redis-server, not in this heap. It takes a while, so
//     it runs only when asked for by name, one round per side unless
//     -rounds is given.
//   - many-streams: one Consumer serving 1, 10, 100 and 1,000 streams
//     (-streams) while -many-rate messages per second (2,000) spread over
//     them for -many-duration: connections it holds (CLIENT LIST), its
//     pool's connections, goroutines, peak heap, p50/p99 latency, CPU per
//     message; then fairness on -fair-streams streams: the quiet streams'
//     p99 with the hot stream idle, taking 90% of the traffic, and
//     draining a 300,000-entry backlog. It takes about 2 minutes, so it
//     runs only when named. The consumer's pool and in-flight room are
//     set above the streams (as per-stream readers needed, so that runs
//     compare), and the largest step runs again with the defaults.
//
// Each workload runs -rounds rounds per side, alternating the sides so
// that drift in the machine's speed hits all alike, each round on a fresh
// stream that is deleted afterwards. It reports the median over the rounds
// of each side (for the heap, the largest peak); the JSON lines carry
// every round's figure too, and the table notes a side whose rounds differ
// by more than 30%. ratio is redstream's throughput over the raw loop's:
// above 1, redstream is faster. CPU is the process's user+system CPU time
// (getrusage) over the timed part of a round, per message: only one side
// runs at a time, and redis-server's CPU is not in it. The raw and
// redstream sides share one go-redis client with a pool of 32 connections;
// watermill gets a client of its own (its Close closes its client).
//
// redis-server, the benchmark and anything else running share the CPUs;
// on a small machine run it when nothing else is busy, and look at the
// rounds (-v prints each) before trusting a ratio. -cpuprofile writes a
// profile of the whole run, labelled by workload and side:
//
//	go run ./bench -workload drain,e2e -cpuprofile /tmp/cpu.out
//	go tool pprof -top -tagfocus run=drain/redstream /tmp/cpu.out
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// poolSize is the go-redis connection pool both sides share: enough for 8
// publishers, a blocking reader, the consumer's acker, lease keeper and
// reaper, and the completion checks.
const poolSize = 32

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// config is what the flags ask for.
type config struct {
	workloads       []*workload
	n               int // 0: each workload's default
	rounds          int
	roundsSet       bool
	quick           bool
	json            bool
	verbose         bool
	latencyDuration time.Duration
	cpuProfile      string
	// Peers and the ceiling.
	noPeers      bool
	peerN        int
	ceilingConns int
	// The many-streams workload.
	manyStreams  []int
	manyDuration time.Duration
	manyRate     int
	fairStreams  int
}

// Quick mode (-quick) divides the default sizes by quickDivisor and runs
// one round per side, unless -n or -rounds say otherwise.
const quickDivisor = 5

func parseFlags() (config, error) {
	var (
		cfg         config
		name, many  string
		durationSet bool
		peerNSet    bool
	)
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench [flags]\n\nCompares redstream with a hand-rolled go-redis loop, the ceiling of this machine and peer libraries; see the package doc.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&name, "workload", "all", "workloads, comma-separated: all ("+strings.Join(defaultWorkloadNames(), ", ")+"), any of them, drain-heap, many-streams")
	fs.IntVar(&cfg.n, "n", 0, "messages per round (default: per workload: "+defaultSizes()+")")
	fs.IntVar(&cfg.rounds, "rounds", defaultRounds, "rounds per side, alternating the sides; the median is reported")
	fs.BoolVar(&cfg.quick, "quick", false, "a quick look: one round per side, a fifth of the default sizes, short latency and many-streams phases")
	fs.IntVar(&publishers, "publishers", 8, "publishing goroutines in the publish and e2e workloads")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object per workload and line instead of a table")
	fs.BoolVar(&cfg.verbose, "v", false, "print each round's figures to stderr")
	fs.DurationVar(&cfg.latencyDuration, "latency-duration", 10*time.Second, "how long the latency workload publishes, per round")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file; samples carry the labels workload, side and run (go tool pprof -tagfocus run=drain/redstream)")
	fs.BoolVar(&cfg.noPeers, "no-peers", false, "leave the peer libraries (watermill-redisstream) out of drain and e2e")
	fs.IntVar(&cfg.peerN, "peer-n", 30_000, "messages per round for peer libraries, at most the workload's n")
	fs.IntVar(&cfg.ceilingConns, "ceiling-conns", 4, "the ceiling is measured with 1 to this many connections per direction")
	fs.StringVar(&many, "streams", "1,10,100,1000", "many-streams: the numbers of streams one Consumer serves, comma-separated")
	fs.DurationVar(&cfg.manyDuration, "many-duration", 10*time.Second, "many-streams: how long each step and fairness phase publishes")
	fs.IntVar(&cfg.manyRate, "many-rate", 2000, "many-streams: total publish rate over all streams, msg/s")
	fs.IntVar(&cfg.fairStreams, "fair-streams", 10, "many-streams: streams in the fairness test (one hot, the rest quiet)")
	_ = fs.Parse(os.Args[1:]) // ExitOnError: Parse exits on a bad flag
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "rounds":
			cfg.roundsSet = true
		case "latency-duration", "many-duration":
			durationSet = true
		case "peer-n":
			peerNSet = true
		}
	})
	if cfg.quick {
		if !cfg.roundsSet {
			cfg.rounds = 1
			cfg.roundsSet = true
		}
		if !durationSet {
			cfg.latencyDuration = 2 * time.Second
			cfg.manyDuration = 3 * time.Second
		}
		if !peerNSet {
			cfg.peerN /= quickDivisor
		}
	}
	for f := range strings.SplitSeq(many, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			return config{}, fmt.Errorf("-streams %q: want positive numbers, comma-separated", many)
		}
		cfg.manyStreams = append(cfg.manyStreams, k)
	}
	switch {
	case cfg.n < 0:
		return config{}, fmt.Errorf("-n %d: must be positive", cfg.n)
	case cfg.rounds < 1:
		return config{}, fmt.Errorf("-rounds %d: must be at least 1", cfg.rounds)
	case cfg.latencyDuration < 100*time.Millisecond:
		return config{}, fmt.Errorf("-latency-duration %v: must be at least 100ms", cfg.latencyDuration)
	case cfg.peerN < 1:
		return config{}, fmt.Errorf("-peer-n %d: must be positive", cfg.peerN)
	case cfg.ceilingConns < 1:
		return config{}, fmt.Errorf("-ceiling-conns %d: must be at least 1", cfg.ceilingConns)
	case cfg.manyDuration < time.Second:
		return config{}, fmt.Errorf("-many-duration %v: must be at least 1s", cfg.manyDuration)
	case cfg.manyRate < 10:
		return config{}, fmt.Errorf("-many-rate %d: must be at least 10", cfg.manyRate)
	case cfg.fairStreams < 2:
		return config{}, fmt.Errorf("-fair-streams %d: must be at least 2 (one hot, one quiet)", cfg.fairStreams)
	}
	var err error
	if cfg.workloads, err = selectWorkloads(name); err != nil {
		return config{}, err
	}
	return cfg, nil
}

func run() error {
	start := time.Now()
	cfg, err := parseFlags()
	if err != nil {
		return err
	}
	if err := checkPayload(); err != nil {
		return err
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return fmt.Errorf("start CPU profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			if cerr := f.Close(); cerr != nil {
				fmt.Fprintln(os.Stderr, "bench: write CPU profile:", cerr)
			}
		}()
	}
	if !cfg.verbose {
		// go-redis logs failed dials itself; the errors reach us anyway.
		redis.SetLogger(quietLogger{})
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = bench(ctx, cfg, start)
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return err
}

// bench connects to (or starts) Redis and runs the workloads.
func bench(ctx context.Context, cfg config, start time.Time) error {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		srv, err := startServer(ctx)
		if err != nil {
			return err
		}
		defer srv.stop()
		addr = srv.addr
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: poolSize})
	defer func() { _ = rdb.Close() }()

	e := &env{rdb: rdb, cfg: cfg, ceiling: map[string]ceilingFigure{}}
	if err := e.setup(ctx); err != nil {
		return err
	}
	out := newPrinter(os.Stdout, cfg.json)
	rounds := e.cfg.rounds
	if !slices.ContainsFunc(cfg.workloads, func(w *workload) bool { return !w.optIn }) {
		rounds = e.roundsFor(true)
	}
	out.header(e.meta, rounds)
	for _, w := range cfg.workloads {
		n := w.defaultN
		switch {
		case cfg.n > 0:
			n = cfg.n
		case cfg.quick:
			n /= quickDivisor
		}
		res, err := w.run(ctx, e, n)
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		res.Workload = w.name
		res.meta = e.meta
		if c, ok := e.ceiling[w.shape]; ok && res.RedstreamRate > 0 {
			res.Ceiling = []ceilingFigure{c}
			v := round3(res.RedstreamRate / c.Rate)
			res.OfCeiling = &v
		}
		out.result(res)
	}
	out.footer(time.Since(start))
	return out.err
}

// quietLogger discards go-redis's own log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// meta describes the setup, repeated in every JSON line.
type meta struct {
	RedisVersion string `json:"redis_version"`
	GoVersion    string `json:"go_version"`
	CPUs         int    `json:"cpus"`
}

func newMeta(redisVersion string) meta {
	return meta{RedisVersion: redisVersion, GoVersion: runtime.Version(), CPUs: runtime.NumCPU()}
}
