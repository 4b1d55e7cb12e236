package redstreamotel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/redstream/redstream"
)

// GaugeTimeout bounds the [redstream.Inspect] calls of one collection of
// the gauges that [RegisterStreamGauges] registers, all streams together.
// A stream not inspected in time is left out of that collection.
const GaugeTimeout = 5 * time.Second

// RegisterStreamGauges registers observable gauges of streams, read with
// [redstream.Inspect] each time the meter provider mp (nil:
// [otel.GetMeterProvider]) collects: redstream.stream.length and
// redstream.dead_letter.length per stream; redstream.group.lag,
// redstream.group.pending and redstream.group.oldest_pending_age (seconds;
// 0 when nothing is pending) per consumer group. The package documentation
// lists their attributes.
//
// The streams are inspected concurrently, within [GaugeTimeout] or the
// collection's own deadline, whichever comes first, with XINFO, XLEN and
// XPENDING calls on rdb: a few commands per stream and group, at every
// collection (every scrape, with the Prometheus exporter). A stream that
// cannot be inspected is left out of that collection without failing it: one
// that does not exist yet silently, any other error reported to
// [otel.Handle]. A group's lag is a lower bound when Redis does not report
// it and it exceeds what Inspect counts (see [redstream.GroupInfo]).
//
// Call Unregister on the result to stop the callbacks. It returns an error
// when streams is empty, a stream is invalid ([redstream.ValidateStream]),
// rdb is nil, or an instrument cannot be created.
func RegisterStreamGauges(mp metric.MeterProvider, rdb redis.UniversalClient, streams ...string) (metric.Registration, error) {
	if rdb == nil {
		return nil, errors.New("redstreamotel: RegisterStreamGauges: nil redis client")
	}
	if len(streams) == 0 {
		return nil, errors.New("redstreamotel: RegisterStreamGauges: no streams")
	}
	for _, s := range streams {
		if err := redstream.ValidateStream(s); err != nil {
			return nil, fmt.Errorf("redstreamotel: RegisterStreamGauges: %w", err)
		}
	}
	streams = slices.Compact(slices.Sorted(slices.Values(streams)))
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	var errs []error
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	length := gauge("redstream.stream.length", "{entry}", "Entries in the stream (XLEN).")
	deadLetters := gauge("redstream.dead_letter.length", "{entry}", "Entries in the stream's dead-letter stream.")
	lag := gauge("redstream.group.lag", "{entry}", "Entries of the stream not yet delivered to the group.")
	pending := gauge("redstream.group.pending", "{message}", "Messages delivered to the group and not yet acknowledged.")
	oldest, err := m.Float64ObservableGauge("redstream.group.oldest_pending_age", metric.WithUnit("s"),
		metric.WithDescription("Age (from its ID) of the group's oldest pending message; 0 when none is pending."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	collect := func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, GaugeTimeout)
		defer cancel()
		infos := make([]*redstream.StreamInfo, len(streams))
		var wg sync.WaitGroup
		for i, stream := range streams {
			wg.Go(func() {
				info, err := redstream.Inspect(ctx, rdb, stream)
				if err != nil {
					if !redis.HasErrorPrefix(err, "no such key") {
						otel.Handle(err)
					}
					return
				}
				infos[i] = info
			})
		}
		wg.Wait()
		for _, info := range infos {
			if info == nil {
				continue
			}
			streamAttr := semconv.MessagingDestinationName(info.Stream)
			byStream := metric.WithAttributeSet(attribute.NewSet(streamAttr))
			o.ObserveInt64(length, info.Length, byStream)
			o.ObserveInt64(deadLetters, info.DeadLetterLength, byStream)
			for _, g := range info.Groups {
				byGroup := metric.WithAttributeSet(attribute.NewSet(streamAttr, semconv.MessagingConsumerGroupName(g.Name)))
				o.ObserveInt64(lag, g.Lag, byGroup)
				o.ObserveInt64(pending, g.Pending, byGroup)
				o.ObserveFloat64(oldest, g.OldestPendingAge.Seconds(), byGroup)
			}
		}
		return nil
	}
	return m.RegisterCallback(collect, length, deadLetters, lag, pending, oldest)
}
