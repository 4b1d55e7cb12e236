package redstreamotel

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/redistest"
)

var (
	outcomeOK     = OutcomeKey.String(OutcomeOK)
	outcomeFailed = OutcomeKey.String(OutcomeError)
)

func TestObserverRecordsTheLifecycle(t *testing.T) {
	t.Parallel()
	ctx, stream := testCtx(t), uniqueStream(t)
	mp, reader := newMeterProvider(t)
	obs, err := NewObserver(mp)
	require.NoError(t, err)

	p, err := redstream.NewProducer[order](redistest.Client(t), stream, redstream.WithObserver(obs))
	require.NoError(t, err)
	for _, id := range []string{"ok-1", "ok-2", "flaky", "poison"} {
		_, err := p.Publish(ctx, order{ID: id})
		require.NoError(t, err)
	}

	var flakyCalls atomic.Int64
	c := newConsumer(t, "billing", redstream.WithObserver(obs), redstream.WithRetryBackoff(10*time.Millisecond, 10*time.Millisecond))
	require.NoError(t, redstream.Handle(c, stream, func(_ context.Context, m *redstream.Message[order]) error {
		switch m.Payload.ID {
		case "flaky":
			if flakyCalls.Add(1) == 1 {
				return errors.New("declined once")
			}
		case "poison":
			return fmt.Errorf("cannot bill: %w", redstream.ErrDeadLetter)
		}
		return nil
	}))
	run(t, c)

	dest := semconv.MessagingDestinationName(stream)
	group := semconv.MessagingConsumerGroupName("billing")
	var m collected
	require.Eventually(t, func() bool {
		m = collect(t, reader)
		return m.count("redstream.acked", dest, group) == 3 &&
			m.count("redstream.dead_lettered", dest, group, ReasonKey.String(redstream.ReasonHandler)) == 1
	}, 10*time.Second, 10*time.Millisecond, "3 messages acknowledged and 1 dead-lettered")

	assert.Equal(t, int64(4), m.count("redstream.published", dest, outcomeOK))
	assert.Equal(t, 1, m.points("redstream.published"), "no failed publishes")
	assert.Equal(t, int64(5), m.count("redstream.delivered", dest, group), "4 messages, flaky twice")
	assert.Equal(t, int64(3), m.count("redstream.handled", dest, group, outcomeOK))
	assert.Equal(t, int64(2), m.count("redstream.handled", dest, group, outcomeFailed), "flaky once, poison once")
	assert.Equal(t, int64(1), m.count("redstream.retried", dest, group), "flaky only: poison is dead-lettered at once")
	assert.Equal(t, 1, m.points("redstream.dead_lettered"), "one reason only")

	for _, outcome := range []struct {
		attr attribute.KeyValue
		n    uint64
	}{{outcomeOK, 3}, {outcomeFailed, 2}} {
		h, found := m.histogram("redstream.handler.duration", dest, group, outcome.attr)
		if assert.True(t, found, "handler duration with %v", outcome.attr) {
			assert.Equal(t, outcome.n, h.Count, "handler durations with %v", outcome.attr)
			assert.Positive(t, h.Sum)
			assert.Equal(t, handlerDurationBuckets, h.Bounds, "suggested buckets")
		}
	}
	h, found := m.histogram("redstream.e2e.latency", dest, group)
	if assert.True(t, found, "end-to-end latency") {
		assert.Equal(t, uint64(5), h.Count, "one per delivery")
		assert.Positive(t, h.Sum)
		assert.Less(t, h.Sum, 5*time.Minute.Seconds(), "latencies in seconds, not milliseconds")
	}
}

func TestObserverAttributes(t *testing.T) {
	t.Parallel()
	mp, reader := newMeterProvider(t)
	obs, err := NewObserver(mp)
	require.NoError(t, err)
	const stream, group = "s:e:a", "g"
	dest, grp := semconv.MessagingDestinationName(stream), semconv.MessagingConsumerGroupName(group)
	ev := redstream.Event{Stream: stream, Group: group, Consumer: "c-1", ID: "1-1", Deliveries: 5, Age: 1500 * time.Millisecond}

	obs.Published(stream, 3, &redstream.BatchError{Errs: []error{nil, errors.New("OOM"), nil}})
	obs.Published(stream, 1, errors.New("timeout"))
	obs.Published(stream, 2, nil)
	obs.Claimed(stream, group, 7)
	obs.Acked(stream, group, 2)
	obs.Trimmed(stream, 10, 4)
	obs.DeadLettered(ev, redstream.ReasonMaxDeliveries)
	obs.DeadLettered(ev, redstream.ReasonMaxDeliveries)
	obs.DeadLettered(ev, "custom")
	obs.Delivered(ev)
	obs.Retried(ev, time.Second)
	obs.Handled(ev, 250*time.Millisecond, nil)

	m := collect(t, reader)
	tests := []struct {
		name  string
		attrs []attribute.KeyValue
		want  int64
	}{
		{"redstream.published", []attribute.KeyValue{dest, outcomeOK}, 4},
		{"redstream.published", []attribute.KeyValue{dest, outcomeFailed}, 2},
		{"redstream.claimed", []attribute.KeyValue{dest, grp}, 7},
		{"redstream.acked", []attribute.KeyValue{dest, grp}, 2},
		{"redstream.trimmed", []attribute.KeyValue{dest}, 10},
		{"redstream.trim.dropped", []attribute.KeyValue{dest}, 4},
		{"redstream.dead_lettered", []attribute.KeyValue{dest, grp, ReasonKey.String(redstream.ReasonMaxDeliveries)}, 2},
		{"redstream.dead_lettered", []attribute.KeyValue{dest, grp, ReasonKey.String("custom")}, 1},
		{"redstream.delivered", []attribute.KeyValue{dest, grp}, 1},
		{"redstream.retried", []attribute.KeyValue{dest, grp}, 1},
		{"redstream.handled", []attribute.KeyValue{dest, grp, outcomeOK}, 1},
	}
	for _, tt := range tests {
		v, found := m.int64(tt.name, tt.attrs...)
		assert.True(t, found, "%s %v", tt.name, tt.attrs)
		assert.Equal(t, tt.want, v, "%s %v", tt.name, tt.attrs)
	}
	if h, found := m.histogram("redstream.e2e.latency", dest, grp); assert.True(t, found) {
		assert.InDelta(t, 1.5, h.Sum, 1e-9, "seconds")
	}
	if h, found := m.histogram("redstream.handler.duration", dest, grp, outcomeOK); assert.True(t, found) {
		assert.InDelta(t, 0.25, h.Sum, 1e-9, "seconds")
	}
	for name, unit := range map[string]string{
		"redstream.published": "{message}", "redstream.trimmed": "{entry}",
		"redstream.handler.duration": "s", "redstream.e2e.latency": "s",
	} {
		assert.Equal(t, unit, m.metric(name).Unit, name)
	}
}

func TestObserverNilMeterProvider(t *testing.T) {
	t.Parallel()
	obs, err := NewObserver(nil) // the global provider, a no-op one here
	require.NoError(t, err)
	obs.Handled(redstream.Event{Stream: "s", Group: "g"}, time.Millisecond, nil)
}

// TestObserverAllocatesNothing is not parallel: AllocsPerRun counts the
// allocations of the whole process.
func TestObserverAllocatesNothing(t *testing.T) {
	obs, err := NewObserver(noop.NewMeterProvider())
	require.NoError(t, err)
	ev := redstream.Event{Stream: "orders:order:created", Group: "billing", ID: "1-1", Deliveries: 1, Age: time.Second}
	errFailed := errors.New("failed")
	obs.Handled(ev, time.Millisecond, nil) // builds the attribute sets
	obs.Published(ev.Stream, 1, nil)
	allocs := testing.AllocsPerRun(1000, func() {
		obs.Published(ev.Stream, 1, nil)
		obs.Delivered(ev)
		obs.Handled(ev, time.Millisecond, nil)
		obs.Handled(ev, time.Millisecond, errFailed)
		obs.Acked(ev.Stream, ev.Group, 10)
		obs.Retried(ev, time.Second)
		obs.DeadLettered(ev, redstream.ReasonHandler)
	})
	assert.Zero(t, allocs)
}

func BenchmarkObserverHandled(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	obs, err := NewObserver(mp)
	require.NoError(b, err)
	ev := redstream.Event{Stream: "orders:order:created", Group: "billing", ID: "1-1", Deliveries: 1, Age: time.Second}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			obs.Delivered(ev)
			obs.Handled(ev, time.Millisecond, nil)
			obs.Acked(ev.Stream, ev.Group, 1)
		}
	})
}
