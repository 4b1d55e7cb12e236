// Package redstreamotel connects redstream to OpenTelemetry: metrics of
// what producers and consumers do, gauges of each stream's state, and W3C
// trace context carried in entry fields from the publishing code to the
// handler. It lives outside the core package so that services which do not
// use OpenTelemetry do not depend on it.
//
//	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
//	obs, err := redstreamotel.NewObserver(mp) // nil: otel.GetMeterProvider()
//
//	orders, err := redstream.NewProducer[Order](rdb, "orders:order:created",
//		redstream.WithObserver(obs),
//		redstreamotel.ContextHeaders(nil), // traceparent (and tracestate) next to the payload
//	)
//
//	c, err := redstream.NewConsumer(rdb, "billing",
//		redstream.WithObserver(obs),
//		redstreamotel.TraceMiddleware(nil, nil), // a consumer span per handler call
//	)
//
//	gauges, err := redstreamotel.RegisterStreamGauges(mp, rdb, "orders:order:created")
//	defer gauges.Unregister()
//
// # Metrics
//
// [NewObserver] returns a [redstream.Observer] that records, under the
// instrumentation scope [ScopeName]:
//
//	instrument                  kind       unit       attributes
//	redstream.published         counter    {message}  stream, outcome
//	redstream.delivered         counter    {message}  stream, group
//	redstream.handled           counter    {message}  stream, group, outcome
//	redstream.handler.duration  histogram  s          stream, group, outcome
//	redstream.e2e.latency       histogram  s          stream, group
//	redstream.acked             counter    {message}  stream, group
//	redstream.retried           counter    {message}  stream, group
//	redstream.claimed           counter    {message}  stream, group
//	redstream.dead_lettered     counter    {message}  stream, group, reason
//	redstream.trimmed           counter    {entry}    stream
//	redstream.trim.dropped      counter    {entry}    stream
//
// [RegisterStreamGauges] adds gauges read with [redstream.Inspect] at each
// collection:
//
//	redstream.stream.length             gauge  {entry}    stream
//	redstream.dead_letter.length        gauge  {entry}    stream
//	redstream.group.lag                 gauge  {entry}    stream, group
//	redstream.group.pending             gauge  {message}  stream, group
//	redstream.group.oldest_pending_age  gauge  s          stream, group
//
// The attributes are named after the OpenTelemetry messaging semantic
// conventions, so that metrics and spans share them:
//
//	stream   messaging.destination.name     the stream key, such as "orders:order:created"
//	group    messaging.consumer.group.name  the consumer group
//	outcome  outcome                        "ok" or "error" (any non-nil error, ErrDeadLetter and ErrDrop included)
//	reason   reason                         the dead-letter reason: redstream.ReasonMaxDeliveries, ...
//
// The Prometheus exporter turns them into labels such as
// messaging_destination_name, and the instruments into names such as
// redstream_handled_total and redstream_handler_duration_seconds. The
// consumer name is not an attribute: it changes with every restart unless
// set with [redstream.WithConsumerName], and would make a new series each
// time.
//
// The histograms suggest bucket boundaries in seconds, since the SDK's
// default ones suit milliseconds; a View can replace them.
// redstream.handler.duration uses those of the messaging semantic
// conventions, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1,
// 2.5, 5, 7.5 and 10; redstream.e2e.latency goes from 0.001 to 3600 (an
// hour), for backlogs and retried messages.
//
// # Traces
//
// [ContextHeaders] makes a producer write the trace context of the publish
// call's context into header fields of each entry ("traceparent" and, when
// set, "tracestate", with the W3C propagator), and [TraceMiddleware] starts
// a consumer span around each handler call, as a child of the span that
// published the message. The handler's context carries that span, so spans
// and logs of the handler's own work join the producer's trace.
package redstreamotel

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/redstream/redstream"
)

// ScopeName is the instrumentation scope of the meters and tracers of this
// package, as Views and exporters see it.
const ScopeName = "github.com/redstream/redstream/redstreamotel"

// Attribute keys of the metrics besides the semantic-convention ones
// (semconv.MessagingDestinationNameKey for the stream,
// semconv.MessagingConsumerGroupNameKey for the group).
const (
	// OutcomeKey tells whether a handler or publish succeeded: "ok" or "error".
	OutcomeKey = attribute.Key("outcome")
	// ReasonKey is why a message was dead-lettered: one of redstream's
	// Reason constants, such as [redstream.ReasonMaxDeliveries].
	ReasonKey = attribute.Key("reason")
)

// Values of [OutcomeKey].
const (
	OutcomeOK    = "ok"
	OutcomeError = "error"
)

// handlerDurationBuckets are the bucket boundaries, in seconds, that the
// redstream.handler.duration histogram suggests: those of the messaging
// semantic conventions.
var handlerDurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// latencyBuckets are the bucket boundaries, in seconds, that the
// redstream.e2e.latency histogram suggests: from milliseconds, for a
// consumer that keeps up, to an hour, for a backlog or a retried message.
var latencyBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600}

// bg is the context of every measurement: Observer methods have none.
var bg = context.Background()

// observer records redstream events in OpenTelemetry instruments.
type observer struct {
	published, delivered, handled    metric.Int64Counter
	acked, retried, claimed          metric.Int64Counter
	deadLettered, trimmed, trimDrops metric.Int64Counter
	vanished                         metric.Int64Counter
	handlerDuration, e2eLatency      metric.Float64Histogram

	// sets caches the attribute sets of each (stream, group) pair, so that
	// recording an event builds none: setKey -> *attrSets.
	sets sync.Map
}

// NewObserver returns a [redstream.Observer] that records producer and
// consumer events in the instruments listed in the package documentation,
// created from mp (nil: [otel.GetMeterProvider]). Pass it to producers,
// consumers and reapers with [redstream.WithObserver]; one observer can
// serve them all. It is safe for concurrent use, and recording an event
// allocates nothing in the observer itself: attribute sets are built once
// per stream and group and kept for the observer's lifetime.
//
// The error is that of creating an instrument, which the SDK reports only
// for invalid names or options.
func NewObserver(mp metric.MeterProvider) (redstream.Observer, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	o := &observer{}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string, buckets []float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(buckets...))
		errs = append(errs, err)
		return h
	}
	o.published = counter("redstream.published", "{message}", "Messages published, by outcome.")
	o.delivered = counter("redstream.delivered", "{message}", "Decoded messages passed to a handler, retries included.")
	o.handled = counter("redstream.handled", "{message}", "Handler calls that returned, by outcome.")
	o.acked = counter("redstream.acked", "{message}", "Messages acknowledged (XACK).")
	o.retried = counter("redstream.retried", "{message}", "Failed messages scheduled for another delivery.")
	o.claimed = counter("redstream.claimed", "{message}", "Idle pending messages a reaper took over.")
	o.vanished = counter("redstream.vanished", "{message}", "Held messages found pending for no one in Redis (stream or group deleted, flushed or evicted), finished from memory.")
	o.deadLettered = counter("redstream.dead_lettered", "{message}", "Messages moved to the dead-letter stream, by reason.")
	o.trimmed = counter("redstream.trimmed", "{entry}", "Entries removed by periodic trims.")
	o.trimDrops = counter("redstream.trim.dropped", "{entry}", "Entries removed by periodic trims before some group consumed them.")
	o.handlerDuration = histogram("redstream.handler.duration", "Time a handler call took, middleware included.", handlerDurationBuckets)
	o.e2eLatency = histogram("redstream.e2e.latency", "Time from an entry's creation (its ID) to the start of its handling.", latencyBuckets)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

// setKey identifies the attribute sets of one stream and group; group is
// empty for producer and trim events.
type setKey struct{ stream, group string }

// attrSets holds the measurement options of one setKey, built once. The
// slices are shared and never written after construction.
type attrSets struct {
	base             []attribute.KeyValue          // stream (and group)
	add              []metric.AddOption            // base
	rec              []metric.RecordOption         // base
	addOK, addFailed []metric.AddOption            // base plus outcome
	recOK, recFailed []metric.RecordOption         // base plus outcome
	reasons          map[string][]metric.AddOption // base plus each known reason
}

// knownReasons are the dead-letter reasons whose sets are built up front.
var knownReasons = []string{redstream.ReasonMaxDeliveries, redstream.ReasonCrashLoop, redstream.ReasonHandler, redstream.ReasonDecode, redstream.ReasonTrimmed, redstream.ReasonVanished}

func newAttrSets(stream, group string) *attrSets {
	s := &attrSets{base: []attribute.KeyValue{semconv.MessagingDestinationName(stream)}}
	if group != "" {
		s.base = append(s.base, semconv.MessagingConsumerGroupName(group))
	}
	plain := metric.WithAttributeSet(attribute.NewSet(s.base...))
	ok, failed := s.with(OutcomeKey.String(OutcomeOK)), s.with(OutcomeKey.String(OutcomeError))
	s.add, s.rec = []metric.AddOption{plain}, []metric.RecordOption{plain}
	s.addOK, s.recOK = []metric.AddOption{ok}, []metric.RecordOption{ok}
	s.addFailed, s.recFailed = []metric.AddOption{failed}, []metric.RecordOption{failed}
	s.reasons = make(map[string][]metric.AddOption, len(knownReasons))
	for _, r := range knownReasons {
		s.reasons[r] = []metric.AddOption{s.with(ReasonKey.String(r))}
	}
	return s
}

// with returns the option of the base attributes plus kv.
func (s *attrSets) with(kv attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(append(slices.Clip(s.base), kv)...))
}

// reason returns the options of a dead-letter reason; those of a reason not
// known in advance are built on each call.
func (s *attrSets) reason(r string) []metric.AddOption {
	if opts, ok := s.reasons[r]; ok {
		return opts
	}
	return []metric.AddOption{s.with(ReasonKey.String(r))}
}

// attrs returns the cached sets of stream and group.
func (o *observer) attrs(stream, group string) *attrSets {
	k := setKey{stream, group}
	if s, ok := o.sets.Load(k); ok {
		return s.(*attrSets)
	}
	s, _ := o.sets.LoadOrStore(k, newAttrSets(stream, group))
	return s.(*attrSets)
}

// Published counts n messages; for a [*redstream.BatchError], those that
// failed count as errors and the rest as published.
func (o *observer) Published(stream string, n int, err error) {
	s := o.attrs(stream, "")
	if err == nil {
		o.published.Add(bg, int64(n), s.addOK...)
		return
	}
	failed := n
	var be *redstream.BatchError
	if errors.As(err, &be) {
		failed = 0
		for _, e := range be.Errs {
			if e != nil {
				failed++
			}
		}
	}
	if ok := n - failed; ok > 0 {
		o.published.Add(bg, int64(ok), s.addOK...)
	}
	o.published.Add(bg, int64(failed), s.addFailed...)
}

// Delivered counts the delivery and records its end-to-end latency.
func (o *observer) Delivered(ev redstream.Event) {
	s := o.attrs(ev.Stream, ev.Group)
	o.delivered.Add(bg, 1, s.add...)
	o.e2eLatency.Record(bg, ev.Age.Seconds(), s.rec...)
}

// Handled counts the handler call by outcome and records its duration.
func (o *observer) Handled(ev redstream.Event, took time.Duration, err error) {
	s := o.attrs(ev.Stream, ev.Group)
	add, rec := s.addOK, s.recOK
	if err != nil {
		add, rec = s.addFailed, s.recFailed
	}
	o.handled.Add(bg, 1, add...)
	o.handlerDuration.Record(bg, took.Seconds(), rec...)
}

// Acked counts n acknowledgements.
func (o *observer) Acked(stream, group string, n int) {
	o.acked.Add(bg, int64(n), o.attrs(stream, group).add...)
}

// Retried counts a message scheduled for another delivery.
func (o *observer) Retried(ev redstream.Event, _ time.Duration) {
	o.retried.Add(bg, 1, o.attrs(ev.Stream, ev.Group).add...)
}

// Claimed counts n messages taken over by a reaper.
func (o *observer) Claimed(stream, group string, n int) {
	o.claimed.Add(bg, int64(n), o.attrs(stream, group).add...)
}

// Vanished counts a held message that is pending for no one any more.
func (o *observer) Vanished(ev redstream.Event) {
	o.vanished.Add(bg, 1, o.attrs(ev.Stream, ev.Group).add...)
}

// DeadLettered counts a dead-lettered message by reason.
func (o *observer) DeadLettered(ev redstream.Event, reason string) {
	o.deadLettered.Add(bg, 1, o.attrs(ev.Stream, ev.Group).reason(reason)...)
}

// Trimmed counts the entries a periodic trim removed, and those of them no
// group had consumed.
func (o *observer) Trimmed(stream string, removed, dropped int64) {
	s := o.attrs(stream, "")
	o.trimmed.Add(bg, removed, s.add...)
	o.trimDrops.Add(bg, dropped, s.add...)
}
