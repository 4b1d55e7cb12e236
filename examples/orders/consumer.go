package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/redstreamotel"
)

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
