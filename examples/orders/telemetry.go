package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/redstreamotel"
)

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
