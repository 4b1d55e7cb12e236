package redstreamotel

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/redstream/redstream"
)

// DeliveriesKey is the span attribute holding how many times the message
// has been delivered to the group, this delivery included
// ([redstream.MessageInfo.Deliveries]). The messaging semantic conventions
// have no system-neutral attribute for it.
const DeliveriesKey = attribute.Key("redstream.message.deliveries")

// MessagingSystem is the value of the messaging.system attribute of the
// consumer spans.
const MessagingSystem = "redis"

// ContextHeaders returns a producer option that writes the trace context of
// each publish call's context into header fields of the entry, with prop.
// With the W3C propagator ([propagation.TraceContext]) these are
// "traceparent" and, when the context has one, "tracestate"; a context
// without a valid span context writes nothing. Give consumers
// [TraceMiddleware] with the same propagator to continue the trace.
//
// When prop is nil, the global propagator ([otel.GetTextMapPropagator]) is
// used, looked up at every publish so that one set later counts; while it
// injects nothing (the global default is an empty composite), the W3C
// propagator is used instead, so traces connect without any setup.
//
// Header fields must not clash with the payload field or other headers: a
// [redstream.HeaderSource] that writes "traceparent" itself makes Publish
// fail. It is a [redstream.WithContextHeaders] option, and those compose:
// a producer given ContextHeaders and other WithContextHeaders options
// writes the fields of all of them, in the order given.
func ContextHeaders(prop propagation.TextMapPropagator) redstream.ProducerOption {
	return redstream.WithContextHeaders(func(ctx context.Context, set func(name, value string)) {
		propagator(prop).Inject(ctx, setCarrier(set))
	})
}

// TraceMiddleware returns a consumer option that starts a span around each
// handler call, with tracers of tp (nil: [otel.GetTracerProvider], looked
// up through the global delegate, so one set later counts). The span:
//
//   - continues the trace the message was published in: its parent is the
//     span context that prop (nil: as for [ContextHeaders]) extracts from
//     the entry's fields, written there by [ContextHeaders]; a message
//     without one gets a span whose parent is the span of the handler's
//     context, if any (none, unless the context given to
//     [redstream.Consumer.Run] carries one), so usually a new trace;
//   - is named "<stream> process", of kind [trace.SpanKindConsumer], with
//     the attributes messaging.system ("redis"), messaging.operation.type
//     and messaging.operation.name ("process"),
//     messaging.destination.name (the stream),
//     messaging.consumer.group.name, messaging.client.id (the consumer
//     name), messaging.message.id (the entry ID) and [DeliveriesKey];
//   - records the handler's error, if any (a panic arrives as a
//     [*redstream.PanicError]), and sets the Error status;
//   - ends when the handler returns.
//
// A batch handler's call ([redstream.HandleBatch]) is one span, described
// by the batch's first message (its trace context, entry ID and
// deliveries), with messaging.batch.message_count set to the batch's size.
//
// The handler's context carries the span, so trace.SpanFromContext(ctx)
// in the handler returns it, and spans the handler starts are its children.
//
// Extraction reads only the fields the propagator asks for by name
// ([redstream.MessageInfo.Header]); the carrier lists no keys, so a
// propagator that needs to enumerate fields finds nothing.
func TraceMiddleware(tp trace.TracerProvider, prop propagation.TextMapPropagator) redstream.ConsumerOption {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	tracer := tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL))
	return redstream.WithMiddleware(func(ctx context.Context, info redstream.MessageInfo, next func(context.Context) error) error {
		ctx = propagator(prop).Extract(ctx, headerCarrier{&info})
		ctx, span := tracer.Start(ctx, info.Stream+" process",
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				semconv.MessagingSystemKey.String(MessagingSystem),
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingOperationName("process"),
				semconv.MessagingDestinationName(info.Stream),
				semconv.MessagingConsumerGroupName(info.Group),
				semconv.MessagingClientID(info.Consumer),
				semconv.MessagingMessageID(info.ID),
				DeliveriesKey.Int64(info.Deliveries),
			))
		defer span.End()
		if info.BatchSize > 0 {
			span.SetAttributes(semconv.MessagingBatchMessageCount(info.BatchSize))
		}
		err := next(ctx)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		return err
	})
}

// propagator returns prop, or when it is nil the global propagator, or the
// W3C one while the global one has no fields (injects nothing).
func propagator(prop propagation.TextMapPropagator) propagation.TextMapPropagator {
	if prop != nil {
		return prop
	}
	if global := otel.GetTextMapPropagator(); len(global.Fields()) > 0 {
		return global
	}
	return propagation.TraceContext{}
}

// setCarrier is an injection carrier that writes header fields with the
// setter of [redstream.WithContextHeaders].
type setCarrier func(name, value string)

func (s setCarrier) Get(string) string      { return "" }
func (s setCarrier) Set(name, value string) { s(name, value) }
func (s setCarrier) Keys() []string         { return nil }

// headerCarrier is an extraction carrier over a message's fields.
type headerCarrier struct{ info *redstream.MessageInfo }

func (h headerCarrier) Get(name string) string { return h.info.Header(name) }
func (h headerCarrier) Set(string, string)     {}
func (h headerCarrier) Keys() []string {
	fields := h.info.Fields()
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	return keys
}
