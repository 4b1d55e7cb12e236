// Command bench measures redstream's throughput, latency and consumer
// memory against a hand-rolled go-redis loop doing the same work, in the
// same run, against the same Redis and through the same client.
//
//	go run ./bench                        # publish, drain, e2e, latency: a table
//	go run ./bench -json                  # one JSON object per workload and line
//	go run ./bench -workload drain -n 200000 -rounds 5
//	go run ./bench -workload drain-heap   # 1,000,000 entries; not part of "all"
//
// It starts its own redis-server (no persistence) on a free loopback port
// and stops it at exit, unless REDIS_ADDR names a server to use; it only
// ever writes and deletes keys under "redstream-bench:", so it is safe on
// a server holding other data.
//
// Every message carries a payload struct whose encoding/json encoding is
// 256 bytes, in the entry field "payload", on both sides. The workloads:
//
//   - publish: 8 goroutines publish n messages, one call per message:
//     redstream's Producer.Publish (which pipelines concurrent calls) against
//     one XADD round trip per call.
//   - drain: a prefilled stream of n entries (prefilling is not timed) is
//     consumed until every entry is acknowledged: a redstream Consumer with
//     default options and a no-op handler, against one goroutine doing
//     XREADGROUP COUNT 100, json.Unmarshal of each payload and one
//     multi-ID XACK per batch.
//   - e2e: 8 publishing goroutines and one consumer at once, until all n
//     messages are acknowledged.
//   - latency: messages published at a fixed 5,000 msg/s for
//     -latency-duration (n follows from those; -n does not apply) by 4
//     goroutines; p50 and p99 of the time from just before Publish (XADD)
//     to the start of the handler (the raw reader having decoded the
//     entry).
//   - drain-heap: drain of 1,000,000 prefilled entries (or -n), sampling
//     the Go heap (HeapInuse) every 50ms; it reports the peak. The stream
//     itself lives in redis-server, not in this heap. It takes a while, so
//     it runs only when asked for by name, one round per side unless
//     -rounds is given.
//
// Each workload runs -rounds rounds per side, alternating raw and redstream
// so that drift in the machine's speed hits both alike, each round on a
// fresh stream that is deleted afterwards. It reports the median over the
// rounds of each side (for the heap, the largest peak); the JSON lines
// carry every round's figure too, and the table notes a side whose rounds
// differ by more than 30%. ratio is redstream's throughput over the raw
// loop's: above 1, redstream is faster. Both sides share one go-redis
// client with a pool of 32 connections.
//
// redis-server, the benchmark and anything else running share the CPUs;
// on a small machine run it when nothing else is busy, and look at the
// rounds (-v prints each) before trusting a ratio. -cpuprofile writes a
// profile of the whole run.
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
	json            bool
	verbose         bool
	latencyDuration time.Duration
	cpuProfile      string
}

func parseFlags() (config, error) {
	var (
		cfg  config
		name string
	)
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench [flags]\n\nCompares redstream with a hand-rolled go-redis loop; see the package doc.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&name, "workload", "all", "workload: all ("+strings.Join(defaultWorkloadNames(), ", ")+"), or one of them, or drain-heap")
	fs.IntVar(&cfg.n, "n", 0, "messages per round (default: per workload: "+defaultSizes()+")")
	fs.IntVar(&cfg.rounds, "rounds", defaultRounds, "rounds per side, alternating raw and redstream; the median is reported")
	fs.IntVar(&publishers, "publishers", 8, "publishing goroutines in the publish and e2e workloads")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object per workload and line instead of a table")
	fs.BoolVar(&cfg.verbose, "v", false, "print each round's figures to stderr")
	fs.DurationVar(&cfg.latencyDuration, "latency-duration", 10*time.Second, "how long the latency workload publishes, per round")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (both sides) to this file")
	_ = fs.Parse(os.Args[1:]) // ExitOnError: Parse exits on a bad flag
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "rounds" {
			cfg.roundsSet = true
		}
	})
	switch {
	case cfg.n < 0:
		return config{}, fmt.Errorf("-n %d: must be positive", cfg.n)
	case cfg.rounds < 1:
		return config{}, fmt.Errorf("-rounds %d: must be at least 1", cfg.rounds)
	case cfg.latencyDuration < 100*time.Millisecond:
		return config{}, fmt.Errorf("-latency-duration %v: must be at least 100ms", cfg.latencyDuration)
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

	e := &env{rdb: rdb, cfg: cfg}
	if err := e.setup(ctx); err != nil {
		return err
	}
	out := newPrinter(os.Stdout, cfg.json)
	// drain-heap, the only opt-in workload, runs alone.
	out.header(e.meta, e.roundsFor(cfg.workloads[0].optIn))
	for _, w := range cfg.workloads {
		n := w.defaultN
		if cfg.n > 0 {
			n = cfg.n
		}
		res, err := w.run(ctx, e, n)
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		res.Workload = w.name
		res.meta = e.meta
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
