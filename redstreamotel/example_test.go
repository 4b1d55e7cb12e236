package redstreamotel_test

import (
	"context"
	"log"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/redstreamotel"
)

type Order struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"`
}

// A service that publishes and handles orders, with metrics and traces.
// Any metric reader serves: the Prometheus exporter, a periodic OTLP one.
func Example() {
	if err := serve(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func serve(ctx context.Context) error {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	const stream = "orders:order:created"

	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider() // add an exporter with sdktrace.WithBatcher
	obs, err := redstreamotel.NewObserver(mp)
	if err != nil {
		return err
	}
	gauges, err := redstreamotel.RegisterStreamGauges(mp, rdb, stream)
	if err != nil {
		return err
	}
	defer func() { _ = gauges.Unregister() }()

	orders, err := redstream.NewProducer[Order](rdb, stream,
		redstream.WithObserver(obs),
		redstreamotel.ContextHeaders(nil), // W3C trace context unless a global propagator is set
	)
	if err != nil {
		return err
	}
	ctx, span := tp.Tracer("checkout").Start(ctx, "checkout")
	_, err = orders.Publish(ctx, Order{ID: "o-1", Amount: 1250}) // the entry carries span's context
	span.End()
	if err != nil {
		return err
	}

	c, err := redstream.NewConsumer(rdb, "billing",
		redstream.WithObserver(obs),
		redstreamotel.TraceMiddleware(tp, nil),
	)
	if err != nil {
		return err
	}
	err = redstream.Handle(c, stream, func(ctx context.Context, m *redstream.Message[Order]) error {
		// ctx carries the "orders:order:created process" span, a child of "checkout".
		return nil
	})
	if err != nil {
		return err
	}
	return c.Run(ctx)
}
