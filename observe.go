package redstream

import (
	"context"
	"time"
)

// Observer receives what producers, consumers and reapers do, for metrics.
// Its methods are called synchronously on their goroutines, so they must be
// fast, must not block, and must be safe for concurrent use. Embed
// [NopObserver] to implement only some of them. Without [WithObserver],
// nothing is computed for it. An Observer that also implements
// [BatchObserver] is told of every batch handler call ([HandleBatch]).
type Observer interface {
	// Published reports one Publish or PublishAsync (n = 1; for
	// PublishAsync, on an internal goroutine when the result is in) or
	// PublishBatch call and its error, if any; a PublishBatch of a partitioned producer is reported
	// once per partition it wrote to, each with its own [*BatchError].
	Published(stream string, n int, err error)
	// Delivered reports a decoded message about to be handled; ev.Age is
	// its end-to-end latency so far.
	Delivered(ev Event)
	// Handled reports a handler's return: how long it ran and its error
	// (nil when it succeeded; a [*PanicError] when it panicked).
	Handled(ev Event, took time.Duration, err error)
	// Acked reports n acknowledgements sent for stream in one XACK.
	Acked(stream, group string, n int)
	// Retried reports a failed message scheduled for another delivery.
	Retried(ev Event, delay time.Duration)
	// Claimed reports n idle entries a reaper took over.
	Claimed(stream, group string, n int)
	// DeadLettered reports a message moved to the dead-letter stream.
	DeadLettered(ev Event, reason string)
	// Vanished reports a message a consumer holds that is pending in Redis
	// for no one any more (its stream or group was deleted, flushed or
	// evicted): the consumer finishes it from memory ([ErrVanished]).
	Vanished(ev Event)
	// Trimmed reports a periodic trim ([WithTrim]): entries removed, and
	// how many of them a group had not consumed.
	Trimmed(stream string, removed, dropped int64)
}

// Event describes one message for an [Observer].
type Event struct {
	Stream   string
	Group    string
	Consumer string
	ID       string
	// Deliveries is the number of this handler attempt ([Message.Deliveries]).
	Deliveries int64
	// Age is the time from the entry's creation (the time in its ID) to the
	// start of its handling: the end-to-end latency.
	Age time.Duration
}

// NopObserver implements [Observer] with methods that do nothing; embed it
// to implement only the methods you need.
type NopObserver struct{}

// Published does nothing.
func (NopObserver) Published(string, int, error) {}

// Delivered does nothing.
func (NopObserver) Delivered(Event) {}

// Handled does nothing.
func (NopObserver) Handled(Event, time.Duration, error) {}

// Acked does nothing.
func (NopObserver) Acked(string, string, int) {}

// Retried does nothing.
func (NopObserver) Retried(Event, time.Duration) {}

// Claimed does nothing.
func (NopObserver) Claimed(string, string, int) {}

// DeadLettered does nothing.
func (NopObserver) DeadLettered(Event, string) {}

// Vanished does nothing.
func (NopObserver) Vanished(Event) {}

// Trimmed does nothing.
func (NopObserver) Trimmed(string, int64, int64) {}

// WithObserver reports events to o. The default, nil, reports nothing and
// costs nothing.
func WithObserver(o Observer) Option {
	return sharedOption(func(c *commonConfig) error {
		c.observer = o
		return nil
	})
}

// MessageInfo describes the message a [Middleware] wraps.
type MessageInfo struct {
	Stream     string
	Group      string
	Consumer   string
	ID         string
	Deliveries int64
	// BatchSize is the number of messages of the batch handler call
	// ([HandleBatch]) the middleware wraps, whose first message the other
	// fields describe; 0 for a plain handler's call.
	BatchSize int
	values    map[string]any
}

// Header returns the value of the entry field name, or "" when it is absent.
func (i MessageInfo) Header(name string) string {
	s, _ := i.values[name].(string)
	return s
}

// Fields returns every field of the entry, in a new map.
func (i MessageInfo) Fields() map[string]string {
	fields := make(map[string]string, len(i.values))
	for k, v := range i.values {
		fields[k], _ = v.(string)
	}
	return fields
}

// Middleware wraps every handler call of a Consumer, for tracing or
// logging. It must call next once, with ctx or a context derived from it,
// and return next's error (or its own). The message has been decoded when
// it runs; a panic in the handler reaches it as a [*PanicError].
type Middleware func(ctx context.Context, info MessageInfo, next func(context.Context) error) error

// WithMiddleware wraps the consumer's handlers in mw; later calls wrap the
// earlier ones, so the first given runs outermost.
func WithMiddleware(mw Middleware) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if mw == nil {
			return nil
		}
		if prev := c.middleware; prev != nil {
			c.middleware = func(ctx context.Context, info MessageInfo, next func(context.Context) error) error {
				return prev(ctx, info, func(ctx context.Context) error { return mw(ctx, info, next) })
			}
		} else {
			c.middleware = mw
		}
		return nil
	})
}

// WithContextHeaders adds header fields derived from the publish call's
// context to every entry a producer writes, such as W3C trace context:
// fn calls set for each field. Several such options all apply, in order.
// The fields must not clash with the payload field or other headers.
func WithContextHeaders(fn func(ctx context.Context, set func(name, value string))) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		if fn == nil {
			return nil
		}
		if prev := c.contextHeaders; prev != nil {
			c.contextHeaders = func(ctx context.Context, set func(name, value string)) {
				prev(ctx, set)
				fn(ctx, set)
			}
		} else {
			c.contextHeaders = fn
		}
		return nil
	})
}
