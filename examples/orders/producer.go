package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/redstreamotel"
)

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
