package redstreamotel

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/redistest"
)

// handlerSpans records the span context each handler call's ctx carries,
// by order ID.
type handlerSpans struct {
	mu    sync.Mutex
	spans map[string]trace.SpanContext
}

func (h *handlerSpans) record(ctx context.Context, id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.spans == nil {
		h.spans = map[string]trace.SpanContext{}
	}
	h.spans[id] = trace.SpanContextFromContext(ctx)
}

func (h *handlerSpans) get(id string) (trace.SpanContext, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sc, ok := h.spans[id]
	return sc, ok
}

// recordingTracer returns a tracer provider whose ended spans recorder
// keeps, shut down at the end of the test.
func recordingTracer(t testing.TB) (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return recorder, tp
}

func TestTraceContinuesFromProducerToHandler(t *testing.T) {
	t.Parallel()
	ctx, stream := testCtx(t), uniqueStream(t)
	rdb := redistest.Client(t)
	recorder, tp := recordingTracer(t)
	prop := propagation.TraceContext{}

	p, err := redstream.NewProducer[order](rdb, stream, ContextHeaders(prop))
	require.NoError(t, err)
	publish := func(ctx context.Context, id string) string {
		entryID, err := p.Publish(ctx, order{ID: id})
		require.NoError(t, err)
		return entryID
	}
	tracer := tp.Tracer("checkout")
	sendCtx, sendSpan := tracer.Start(ctx, "send order", trace.WithSpanKind(trace.SpanKindProducer))
	tracedID := publish(sendCtx, "traced")
	sendSpan.End()
	failCtx, failSpan := tracer.Start(ctx, "send bad order", trace.WithSpanKind(trace.SpanKindProducer))
	publish(failCtx, "fails")
	failSpan.End()
	publish(ctx, "untraced")

	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 3)
	assert.Equal(t, fmt.Sprintf("00-%s-%s-01", sendSpan.SpanContext().TraceID(), sendSpan.SpanContext().SpanID()),
		entries[0].Values["traceparent"], "W3C trace context next to the payload")
	assert.NotContains(t, entries[2].Values, "traceparent", "no span, no header")

	var seen handlerSpans
	c := newConsumer(t, "billing", redstream.WithConsumerName("billing-1"), TraceMiddleware(tp, prop))
	require.NoError(t, redstream.Handle(c, stream, func(ctx context.Context, m *redstream.Message[order]) error {
		seen.record(ctx, m.Payload.ID)
		if m.Payload.ID == "fails" {
			return fmt.Errorf("card declined: %w", redstream.ErrDeadLetter)
		}
		return nil
	}))
	run(t, c)

	consumerSpans := func() map[string]sdktrace.ReadOnlySpan {
		spans := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range recorder.Ended() {
			if s.SpanKind() == trace.SpanKindConsumer {
				for _, kv := range s.Attributes() {
					if kv.Key == semconv.MessagingMessageIDKey {
						spans[kv.Value.AsString()] = s
					}
				}
			}
		}
		return spans
	}
	var spans map[string]sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool { spans = consumerSpans(); return len(spans) == 3 },
		10*time.Second, 10*time.Millisecond, "a consumer span per message")

	span := spans[tracedID]
	assert.Equal(t, stream+" process", span.Name())
	assert.Equal(t, sendSpan.SpanContext().TraceID(), span.SpanContext().TraceID(), "same trace")
	assert.Equal(t, sendSpan.SpanContext().SpanID(), span.Parent().SpanID(), "child of the producer's span")
	assert.True(t, span.Parent().IsRemote())
	assert.Equal(t, codes.Unset, span.Status().Code)
	handlerSC, found := seen.get("traced")
	require.True(t, found)
	assert.Equal(t, span.SpanContext(), handlerSC, "the handler's ctx carries the consumer span")
	assert.Subset(t, span.Attributes(), []attribute.KeyValue{
		semconv.MessagingSystemKey.String("redis"),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingDestinationName(stream),
		semconv.MessagingConsumerGroupName("billing"),
		semconv.MessagingClientID("billing-1"),
		semconv.MessagingMessageID(tracedID),
		DeliveriesKey.Int64(1),
	})

	for id, s := range spans {
		switch id {
		case tracedID:
		case entries[1].ID:
			assert.Equal(t, failSpan.SpanContext().TraceID(), s.SpanContext().TraceID())
			assert.Equal(t, codes.Error, s.Status().Code, "a failed handler sets the status")
			assert.Contains(t, s.Status().Description, "card declined")
			if assert.Len(t, s.Events(), 1) {
				assert.Equal(t, "exception", s.Events()[0].Name, "and records the error")
			}
		case entries[2].ID:
			assert.False(t, s.Parent().IsValid(), "a message without trace context starts a new trace")
			assert.NotEqual(t, sendSpan.SpanContext().TraceID(), s.SpanContext().TraceID())
		default:
			t.Errorf("unexpected consumer span for %s", id)
		}
	}
}

// TestTraceDefaults leaves the global providers and propagator as they are
// (no-ops), so ContextHeaders falls back to the W3C propagator and the
// handler's ctx carries the producer's span context through a non-recording
// span.
func TestTraceDefaults(t *testing.T) {
	t.Parallel()
	ctx, stream := testCtx(t), uniqueStream(t)
	rdb := redistest.Client(t)
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	p, err := redstream.NewProducer[order](rdb, stream, ContextHeaders(nil))
	require.NoError(t, err)
	sendCtx, sendSpan := tp.Tracer("checkout").Start(ctx, "send order")
	_, err = p.Publish(sendCtx, order{ID: "traced"})
	require.NoError(t, err)
	sendSpan.End()

	var seen handlerSpans
	c := newConsumer(t, "billing", TraceMiddleware(nil, nil))
	require.NoError(t, redstream.Handle(c, stream, func(ctx context.Context, m *redstream.Message[order]) error {
		seen.record(ctx, m.Payload.ID)
		return nil
	}))
	run(t, c)
	var sc trace.SpanContext
	require.Eventually(t, func() bool {
		var found bool
		sc, found = seen.get("traced")
		return found
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, sendSpan.SpanContext().TraceID(), sc.TraceID())
	assert.Equal(t, sendSpan.SpanContext().SpanID(), sc.SpanID(), "no-op tracer: the remote parent itself")
}

// TestTraceBatchIsOneSpan: a batch handler's call is one span, parented by
// its first message's trace context, with the batch's size.
func TestTraceBatchIsOneSpan(t *testing.T) {
	t.Parallel()
	ctx, stream := testCtx(t), uniqueStream(t)
	rdb := redistest.Client(t)
	recorder, tp := recordingTracer(t)
	prop := propagation.TraceContext{}

	p, err := redstream.NewProducer[order](rdb, stream, ContextHeaders(prop))
	require.NoError(t, err)
	sendCtx, sendSpan := tp.Tracer("checkout").Start(ctx, "send orders")
	for i := range 3 {
		_, err = p.Publish(sendCtx, order{ID: fmt.Sprint(i)})
		require.NoError(t, err)
	}
	sendSpan.End()

	c := newConsumer(t, "billing", TraceMiddleware(tp, prop))
	var calls sync.WaitGroup
	calls.Add(1)
	require.NoError(t, redstream.HandleBatch(c, stream, func(context.Context, []*redstream.Message[order]) error {
		calls.Done()
		return nil
	}, redstream.WithBatch(3, time.Minute)))
	run(t, c)
	calls.Wait()
	var span sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, s := range recorder.Ended() {
			if s.Name() == stream+" process" {
				span = s
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, sendSpan.SpanContext().TraceID(), span.Parent().TraceID())
	assert.Contains(t, span.Attributes(), semconv.MessagingBatchMessageCount(3))
}

// TestContextHeadersComposes: ContextHeaders and another
// redstream.WithContextHeaders, in either order, both write their fields.
func TestContextHeadersComposes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	rdb := redistest.Client(t)
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tenant := redstream.WithContextHeaders(func(_ context.Context, set func(name, value string)) { set("tenant", "t-1") })

	for name, opts := range map[string][]redstream.ProducerOption{
		"ContextHeaders first": {ContextHeaders(nil), tenant},
		"ContextHeaders last":  {tenant, ContextHeaders(nil)},
	} {
		t.Run(name, func(t *testing.T) {
			stream := uniqueStream(t)
			p, err := redstream.NewProducer[order](rdb, stream, opts...)
			require.NoError(t, err)
			sendCtx, span := tp.Tracer("checkout").Start(ctx, "send order")
			id, err := p.Publish(sendCtx, order{ID: "o-1"})
			span.End()
			require.NoError(t, err)
			entries, err := rdb.XRange(ctx, stream, id, id).Result()
			require.NoError(t, err)
			require.Len(t, entries, 1)
			assert.Equal(t, "t-1", entries[0].Values["tenant"])
			assert.Contains(t, entries[0].Values["traceparent"], span.SpanContext().TraceID().String())
		})
	}
}
