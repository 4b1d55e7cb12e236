// Command orders is an orders service in one program: a producer that
// publishes order-created events to the stream orders:order:created, and a
// billing consumer that handles them in a consumer group.
//
//	go run ./examples/orders -mode producer -n 100    # publish 100 orders, then exit
//	go run ./examples/orders -mode producer -n 0      # one order every -every until Ctrl-C
//	go run ./examples/orders -mode consumer           # handle orders until Ctrl-C
//	curl -s localhost:9464/metrics | grep redstream_  # the consumer's metrics
//
// It needs a Redis server: -addr, default $REDIS_ADDR, else localhost:6379.
// Both modes stop cleanly on SIGINT or SIGTERM and print a final line; -for
// stops the consumer by itself.
//
// With -leave-behind both modes leave something for the admin CLI to show:
// the producer publishes one more order, of 0 cents, which the consumer
// refuses for good (redstream.ErrDeadLetter), so it lands in the
// dead-letter stream; the consumer keeps the first order it takes in its
// handler until it stops, and then gives up on it after a second, so that
// order stays pending under the consumer's name until another consumer of
// the group takes it over.
//
// The consumer serves Prometheus metrics at http://localhost:9464/metrics
// (-metrics-addr; empty turns it off), on the loopback interface only; when
// that port is taken (a second consumer on the same machine) and
// -metrics-addr was not given, it serves them on a free port instead and
// logs where. The metrics are the counters and histograms of
// redstreamotel.NewObserver (published, handled, acked, retried,
// dead-lettered, handler duration, end-to-end latency) and the gauges of
// redstreamotel.RegisterStreamGauges (stream length, group lag, pending,
// oldest pending age, dead letters), through the OpenTelemetry Prometheus
// exporter. The producer serves them too when given -metrics-addr.
//
// Each publish runs in a span, and its trace context travels in the entry's
// traceparent field (redstreamotel.ContextHeaders) to the consumer, whose
// handler runs in a child span (redstreamotel.TraceMiddleware). No span is
// exported: the trace IDs in the producer's and the consumer's output show
// which publish each charge continues. With -n 0 each order is published in
// a span of its own, and its line shows its trace ID; with -n N the orders
// go out in batches of up to 100, one PublishBatch and one span each, and
// the line printed per batch shows the trace ID its orders share.
//
// The consumer refuses an order of 0 cents or less for good: it returns
// redstream.ErrDeadLetter, and the order goes to the dead-letter stream at
// once. Its handler also fails about one attempt in 20 on purpose. A failed
// order is not acknowledged: it stays in the group's pending entries list
// and the consumer delivers it again after a backoff, up to
// redstream.DefaultMaxDeliveries times before it moves it to the
// dead-letter stream. Orders still waiting for a retry when the consumer
// stops stay pending; the final line counts them, and a consumer started
// again with the same -name handles them first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

// Order is the event payload. Headers puts orderId, userId and amount next
// to the JSON payload, readable with XRANGE without decoding it.
type Order struct {
	ID     string `json:"id"`
	UserID string `json:"userId"`
	Amount int64  `json:"amount"` // in cents
}

// Headers implements redstream.HeaderSource.
func (o Order) Headers() map[string]string {
	return map[string]string{"orderId": o.ID, "userId": o.UserID, "amount": strconv.FormatInt(o.Amount, 10)}
}

// publishTimeout bounds one publish. A publish runs to the end even when a
// signal arrives, so the count printed at exit is exact.
const publishTimeout = 5 * time.Second

// batchSize is how many orders -n > 0 publishes per round trip.
const batchSize = 100

// defaultMetricsAddr is where the consumer serves /metrics by default: the
// port the OpenTelemetry Prometheus exporter is usually given, on loopback
// only, so that the metrics are not open to the network.
const defaultMetricsAddr = "localhost:9464"

// fallbackMetricsAddr is where the metrics go when defaultMetricsAddr is
// taken and -metrics-addr was not given: a free loopback port.
const fallbackMetricsAddr = "localhost:0"

// leaveBehindTimeout is how long a consumer with -leave-behind waits for its
// handlers when it stops, before giving up on the order it keeps.
const leaveBehindTimeout = time.Second

// shutdownTimeout bounds the metrics server's and providers' shutdown.
const shutdownTimeout = 5 * time.Second

type config struct {
	mode        string
	addr        string
	stream      string
	n           int
	every       time.Duration
	group       string
	name        string
	concurrency int
	runFor      time.Duration // consumer: stop after this long; 0: until a signal
	leaveBehind bool
	metricsAddr string // "": no metrics endpoint
	// metricsFallback allows a free port when metricsAddr is taken: the
	// default address, not one the user asked for.
	metricsFallback bool
	out             io.Writer // the program's result lines (stdout)
	failOneIn       int       // the simulated card declines: one charge in this many; 0: none
}

func main() { os.Exit(exitCode(os.Args[1:])) }

// exitCode runs the program and returns its exit status: 0 on success or a
// clean stop, 1 on a failure, 2 on bad flags.
func exitCode(args []string) int {
	cfg, err := parseFlags(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errReported):
		return 2 // the flag package has printed the error and usage
	case err != nil:
		fmt.Fprintln(os.Stderr, "orders:", err)
		fmt.Fprintln(os.Stderr, "run 'orders -h' for usage")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, a second one kills the program at once.
	context.AfterFunc(ctx, stop)

	cfg.out = os.Stdout
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		return 1
	}
	return 0
}

// errReported marks a flag error that the flag package has printed already.
var errReported = errors.New("reported")

// parseFlags parses and checks the command line.
func parseFlags(args []string) (config, error) {
	defaultAddr := os.Getenv("REDIS_ADDR")
	if defaultAddr == "" {
		defaultAddr = "localhost:6379"
	}
	cfg := config{failOneIn: 20}
	fs := flag.NewFlagSet("orders", flag.ContinueOnError)
	fs.StringVar(&cfg.mode, "mode", "", "what to run: `producer|consumer` (required)")
	fs.StringVar(&cfg.addr, "addr", defaultAddr, "Redis server `host:port`; the default is $REDIS_ADDR if set")
	fs.StringVar(&cfg.stream, "stream", "orders:order:created", "the stream")
	fs.IntVar(&cfg.n, "n", 0, "producer: orders to publish, then exit; 0 publishes until stopped, one every -every")
	fs.DurationVar(&cfg.every, "every", 200*time.Millisecond, "producer with -n 0: time between orders")
	fs.StringVar(&cfg.group, "group", "billing", "consumer: consumer group")
	fs.StringVar(&cfg.name, "name", "", "consumer: consumer name in the group (default <hostname>-<pid>)")
	fs.IntVar(&cfg.concurrency, "concurrency", redstream.DefaultConcurrency, "consumer: handlers running at once")
	fs.DurationVar(&cfg.runFor, "for", 0, "consumer: stop after this `duration`; 0 runs until Ctrl-C")
	fs.BoolVar(&cfg.leaveBehind, "leave-behind", false,
		"leave work for the admin CLI to show: the producer adds an order the consumer dead-letters; "+
			"the consumer leaves the first order it takes pending when it stops")
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", defaultMetricsAddr,
		"serve Prometheus metrics at `host:port`/metrics; empty disables; the producer serves them only when this is given")
	fs.Usage = func() {
		_, _ = fmt.Fprintln(fs.Output(), "usage: orders -mode producer|consumer [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, fmt.Errorf("%w: %w", errReported, err)
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	only := func(mode string, names ...string) error {
		for _, name := range names {
			if set[name] {
				return fmt.Errorf("-%s applies only to -mode %s", name, mode)
			}
		}
		return nil
	}
	switch {
	case fs.NArg() > 0:
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.mode == "":
		return config{}, errors.New("-mode is required: producer or consumer")
	case cfg.mode != "producer" && cfg.mode != "consumer":
		return config{}, fmt.Errorf("-mode %q: want producer or consumer", cfg.mode)
	case cfg.addr == "":
		return config{}, errors.New("-addr is empty")
	}
	if err := redstream.ValidateStream(cfg.stream); err != nil {
		return config{}, fmt.Errorf("-stream: %w", err)
	}
	cfg.metricsFallback = !set["metrics-addr"]
	if cfg.mode == "producer" {
		if !set["metrics-addr"] {
			cfg.metricsAddr = ""
		}
		switch {
		case cfg.n < 0:
			return config{}, fmt.Errorf("-n %d: must be 0 (until stopped) or more", cfg.n)
		case cfg.n == 0 && cfg.every <= 0:
			return config{}, fmt.Errorf("-every %v: must be positive", cfg.every)
		case cfg.n > 0 && set["every"]:
			return config{}, errors.New("-every applies only with -n 0")
		}
		return cfg, only("consumer", "group", "name", "concurrency", "for")
	}
	switch {
	case cfg.group == "":
		return config{}, errors.New("-group is empty")
	case set["name"] && cfg.name == "":
		return config{}, errors.New("-name is empty")
	case cfg.concurrency <= 0:
		return config{}, fmt.Errorf("-concurrency %d: must be positive", cfg.concurrency)
	case cfg.runFor < 0:
		return config{}, fmt.Errorf("-for %v: must not be negative", cfg.runFor)
	}
	return cfg, only("producer", "n", "every")
}

func run(ctx context.Context, cfg config) error {
	stream := cfg.stream
	rdb := redis.NewClient(&redis.Options{Addr: cfg.addr})
	defer func() { _ = rdb.Close() }()
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(cfg.out, "orders: stopped before reaching redis")
			return nil
		}
		return fmt.Errorf("redis at %s: %w", cfg.addr, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	tel, err := startTelemetry(cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if err := tel.shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "error", err)
		}
	}()
	if cfg.mode == "producer" {
		return produce(ctx, rdb, stream, cfg, tel)
	}
	return consume(ctx, rdb, stream, cfg, tel, log)
}
