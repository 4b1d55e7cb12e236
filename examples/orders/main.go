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
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/redstreamotel"
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

func produce(ctx context.Context, rdb *redis.Client, stream string, cfg config, tel *telemetry) error {
	opts := []redstream.ProducerOption{redstreamotel.ContextHeaders(nil)} // W3C traceparent
	if tel.observer != nil {
		opts = append(opts, redstream.WithObserver(tel.observer))
	}
	p, err := redstream.NewProducer[Order](rdb, stream, opts...)
	if err != nil {
		return err
	}
	tracer := tel.tracer.Tracer("orders")
	runID := strconv.FormatInt(time.Now().UnixMilli(), 36)
	published := 0
	next := func() Order {
		published++
		return Order{
			ID:     "ord-" + runID + "-" + strconv.Itoa(published),
			UserID: "user-" + strconv.Itoa(1+rand.IntN(50)),
			Amount: 100 + rand.Int64N(50_000),
		}
	}
	// A publish is never cut short by a signal: it finishes (or times out)
	// and is counted, so the final line is exact.
	publishCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	}

	// leaveBehind publishes the order the consumer dead-letters: 0 cents.
	leaveBehind := func() (string, error) {
		if !cfg.leaveBehind {
			return "", nil
		}
		o := next()
		o.Amount = 0
		pctx, cancel := publishCtx()
		defer cancel()
		pctx, span := tracer.Start(pctx, "publish order", trace.WithSpanKind(trace.SpanKindProducer))
		id, err := p.Publish(pctx, o)
		span.End()
		if err != nil {
			return "", fmt.Errorf("the order to dead-letter: %w", err)
		}
		fmt.Fprintf(cfg.out, "published %s (%s, 0 cents: the consumer dead-letters it) as %s, trace %s\n",
			o.ID, o.UserID, id, span.SpanContext().TraceID())
		return id, nil
	}

	if cfg.n > 0 {
		var lastID string
		for published < cfg.n && ctx.Err() == nil {
			batch := make([]Order, min(batchSize, cfg.n-published))
			for i := range batch {
				batch[i] = next()
			}
			pctx, cancel := publishCtx()
			pctx, span := tracer.Start(pctx, "publish orders", trace.WithSpanKind(trace.SpanKindProducer))
			ids, err := p.PublishBatch(pctx, batch)
			span.End()
			cancel()
			if err != nil {
				return fmt.Errorf("after %d orders: %w", published-len(batch), err)
			}
			lastID = ids[len(ids)-1]
			fmt.Fprintf(cfg.out, "published %s .. %s as %s .. %s, trace %s\n",
				batch[0].ID, batch[len(batch)-1].ID, ids[0], lastID, span.SpanContext().TraceID())
		}
		id, err := leaveBehind()
		if err != nil {
			return err
		}
		if id != "" {
			lastID = id
		}
		fmt.Fprintf(cfg.out, "producer: published %d orders to %s, last entry %s\n", published, stream, lastID)
		return nil
	}

	ticker := time.NewTicker(cfg.every)
	defer ticker.Stop()
	for {
		o := next()
		pctx, cancel := publishCtx()
		pctx, span := tracer.Start(pctx, "publish order", trace.WithSpanKind(trace.SpanKindProducer))
		id, err := p.Publish(pctx, o)
		span.End()
		cancel()
		if err != nil {
			return fmt.Errorf("after %d orders: %w", published-1, err)
		}
		fmt.Fprintf(cfg.out, "published %s (%s, %d cents) as %s, trace %s\n", o.ID, o.UserID, o.Amount, id, span.SpanContext().TraceID())
		select {
		case <-ticker.C:
		case <-ctx.Done():
			if _, err := leaveBehind(); err != nil {
				return err
			}
			fmt.Fprintf(cfg.out, "producer: stopped; published %d orders to %s\n", published, stream)
			return nil
		}
	}
}

func consume(ctx context.Context, rdb *redis.Client, stream string, cfg config, tel *telemetry, log *slog.Logger) error {
	opts := []redstream.ConsumerOption{
		redstream.WithLogger(log),
		redstream.WithConcurrency(cfg.concurrency),
		// A billing group created after orders were published must still
		// bill them: start a new group at the beginning of the stream, not
		// at "$" (the default, new entries only).
		redstream.WithGroupStart("0"),
		// Each handler call runs in a span continuing the publisher's trace.
		redstreamotel.TraceMiddleware(tel.tracer, nil),
	}
	if tel.observer != nil {
		opts = append(opts, redstream.WithObserver(tel.observer))
		gauges, err := redstreamotel.RegisterStreamGauges(tel.meter, rdb, stream)
		if err != nil {
			return err
		}
		defer func() { _ = gauges.Unregister() }()
	}
	if cfg.name != "" {
		opts = append(opts, redstream.WithConsumerName(cfg.name))
	}
	if cfg.leaveBehind {
		opts = append(opts, redstream.WithShutdownTimeout(leaveBehindTimeout))
	}
	c, err := redstream.NewConsumer(rdb, cfg.group, opts...)
	if err != nil {
		return err
	}
	var charged, failed atomic.Int64
	var keeping atomic.Bool // -leave-behind: an order is kept until the consumer stops
	err = redstream.Handle(c, stream, func(ctx context.Context, m *redstream.Message[Order]) error {
		if cfg.leaveBehind && keeping.CompareAndSwap(false, true) {
			log.Info("keeping this order until the consumer stops (-leave-behind)", "id", m.ID, "order", m.Payload.ID)
			<-ctx.Done() // cancelled when the shutdown timeout passes
			return ctx.Err()
		}
		if m.Payload.Amount <= 0 {
			// Retrying cannot fix it: dead-letter it now.
			return fmt.Errorf("order %s: amount %d cents: %w", m.Payload.ID, m.Payload.Amount, redstream.ErrDeadLetter)
		}
		if err := charge(ctx, m.Payload, cfg.failOneIn); err != nil {
			failed.Add(1)
			return err // not acknowledged: retried after a backoff
		}
		charged.Add(1)
		log.Info("order charged", "stream", m.Stream, "id", m.ID, "order", m.Payload.ID,
			"user", m.Payload.UserID, "amount", m.Payload.Amount, "deliveries", m.Deliveries,
			"trace", trace.SpanContextFromContext(ctx).TraceID().String())
		return nil
	})
	if err != nil {
		return err
	}

	log.Info("consuming; Ctrl-C to stop", "stream", stream, "group", c.Group(), "consumer", c.Name(),
		"metrics", tel.metricsURL())
	runCtx := ctx
	if cfg.runFor > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.runFor)
		defer cancel()
	}
	runErr := c.Run(runCtx)
	if cfg.leaveBehind && errors.Is(runErr, redstream.ErrShutdownTimeout) {
		runErr = nil // the kept order: left pending on purpose
	}

	// Run has sent its last acknowledgements: the counts are current.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	pending, deadLetters := "unknown", "unknown"
	if p, err := rdb.XPending(qctx, stream, c.Group()).Result(); err == nil {
		pending = strconv.FormatInt(p.Count, 10)
	}
	if dl, err := redstream.NewDeadLetters(rdb, stream); err == nil {
		if n, err := dl.Len(qctx); err == nil {
			deadLetters = strconv.FormatInt(n, 10)
		}
	}
	fmt.Fprintf(cfg.out, "consumer %s/%s: charged %d orders; failed attempts %d; group pending %s; dead letters %s\n",
		c.Group(), c.Name(), charged.Load(), failed.Load(), pending, deadLetters)
	return runErr
}

// errDeclined is the simulated failure.
var errDeclined = errors.New("card declined (simulated)")

// charge simulates billing an order: a few milliseconds of work, failing
// about one attempt in failOneIn (never when it is 0).
func charge(ctx context.Context, o Order, failOneIn int) error {
	t := time.NewTimer(time.Duration(5+rand.IntN(45)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	if failOneIn > 0 && rand.IntN(failOneIn) == 0 {
		return fmt.Errorf("charge %s: %w", o.ID, errDeclined)
	}
	return nil
}

// telemetry is the program's OpenTelemetry setup. Metrics go to a meter
// provider read by the Prometheus exporter and served at /metrics, when an
// address is given; spans get trace IDs but are not exported.
type telemetry struct {
	tracer   *sdktrace.TracerProvider
	meter    *sdkmetric.MeterProvider // nil without a metrics address
	observer redstream.Observer       // nil without a metrics address
	server   *http.Server
	addr     net.Addr
	served   chan error // Serve's result
}

// startTelemetry sets up tracing, and metrics served at cfg.metricsAddr
// unless it is empty.
func startTelemetry(cfg config, log *slog.Logger) (*telemetry, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName("orders-"+cfg.mode)))
	if err != nil {
		return nil, err
	}
	tel := &telemetry{tracer: sdktrace.NewTracerProvider(sdktrace.WithResource(res))}
	if cfg.metricsAddr == "" {
		return tel, nil
	}
	ln, err := net.Listen("tcp", cfg.metricsAddr)
	if err != nil && cfg.metricsFallback {
		// Another process (a second consumer) has the default port.
		log.Info("metrics: default address taken, using a free port", "taken", cfg.metricsAddr, "error", err)
		ln, err = net.Listen("tcp", fallbackMetricsAddr)
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	tel.meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res))
	if tel.observer, err = redstreamotel.NewObserver(tel.meter); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	tel.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	tel.addr = ln.Addr()
	tel.served = make(chan error, 1)
	go func() {
		err := tel.server.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "error", err)
		}
		tel.served <- err
	}()
	return tel, nil
}

// metricsURL returns where the metrics are served, or "off".
func (t *telemetry) metricsURL() string {
	if t.addr == nil {
		return "off"
	}
	return "http://" + t.addr.String() + "/metrics"
}

// shutdown stops the metrics server, waiting for scrapes in progress until
// ctx ends, then the providers.
func (t *telemetry) shutdown(ctx context.Context) error {
	var errs []error
	if t.server != nil {
		errs = append(errs, t.server.Shutdown(ctx))
		if err := <-t.served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
		errs = append(errs, t.meter.Shutdown(ctx))
	}
	errs = append(errs, t.tracer.Shutdown(ctx))
	return errors.Join(errs...)
}
