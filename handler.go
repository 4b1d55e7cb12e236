package redstream

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redstream/redstream/internal/streamid"
)

// A registered handler, with its payload type erased (route), and the
// typed side of running it: decoding an entry into a Message[T], calling
// the handler through the middleware and observer, and turning a panic into
// an error. No goroutines: the workers (workers.go) call what Handle built
// here. A route's own state (owned, drained, claimMu) is for the reaper and
// partition ownership.

// route is one stream's handler, with the payload type erased.
type route struct {
	stream string
	handle func(ctx context.Context, e *entry) error
	// alloc allocates an entry for newEntry (allocWithMessage); nil: new.
	alloc func() *entry
	// ordered runs the entries of one key one at a time (WithOrderedKeys).
	ordered bool
	// batch gathers the entries of a HandleBatch route (batch.go); nil for
	// a plain handler.
	batch *gatherer
	// exclusive routes are read only while this consumer holds their lease
	// (WithExclusivePartitions); owned tells whether it does, for the
	// reaper. members is the key of the registration's member set.
	exclusive bool
	lease     string
	members   string
	owned     atomic.Bool
	// paused is set while the group's consumption of the stream is paused
	// (pause.go): nothing of it is read or started.
	paused atomic.Bool
	// limit is the group-wide rate limit of handler starts
	// (WithRateLimit, ratelimit.go); nil: none.
	limit *rateLimit
	// timeout bounds each handler call (WithHandlerTimeout); 0: none.
	timeout time.Duration
	// leaseUntil is when this consumer's lease of an exclusive route
	// may expire, on the monotonic clock (fence.go): set by the ownership
	// goroutine, read by the workers before starting a handler.
	leaseUntil atomic.Int64
	// claimMu is held by the reaper from a claim to its dispatch, and by
	// the own goroutine to check that nothing is held before releasing.
	claimMu sync.Mutex
	// drained is set once the reader has gone through this consumer's own
	// pending entries; the reaper waits for it, so that it does not claim
	// them a second time.
	drained atomic.Bool
}

// newEntry returns a new entry of rt: its ID, its fields and Redis's
// delivery count as read.
func (rt *route) newEntry(id string, values map[string]any, redisDeliveries int64) *entry {
	var e *entry
	if rt.alloc != nil {
		e = rt.alloc()
	} else {
		e = new(entry)
	}
	e.route, e.id, e.values, e.redisDeliveries = rt, id, values, redisDeliveries
	return e
}

// withMessage is an entry allocated together with the Message its handler
// receives on its first attempt: one allocation per message fewer.
type withMessage[T any] struct {
	entry
	msg Message[T]
}

// allocWithMessage allocates an entry beside a Message[T], left in its
// spare field for the first decode (spareMessage).
func allocWithMessage[T any]() *entry {
	w := new(withMessage[T])
	w.spare = &w.msg
	return &w.entry
}

// spareMessage returns the Message allocated with e for its first decode,
// or nil after that (a handler may keep the Message of an earlier attempt)
// or when there is none. Only the worker running e's handler calls it.
func spareMessage[T any](e *entry) *Message[T] {
	m, _ := e.spare.(*Message[T])
	e.spare = nil
	return m
}

// typedHandler returns the erased handler that decodes an entry into a
// Message[T] and calls fn through the consumer's middleware and observer,
// turning a panic into a *PanicError.
func typedHandler[T any](c *Consumer, stream string, fn HandlerFunc[T]) func(context.Context, *entry) error {
	cfg := c.cfg
	untyped := isFields[T]()
	return func(ctx context.Context, e *entry) (err error) {
		m, err := decodeMessage(cfg.commonConfig, untyped, stream, e.id, e.deliveries, e.values, spareMessage[T](e))
		if err != nil {
			return err
		}
		if cfg.middleware == nil && cfg.observer == nil {
			return callHandler(ctx, fn, m)
		}
		call := func(ctx context.Context) error { return callHandler(ctx, fn, m) }
		var ev Event
		began := time.Now()
		if cfg.observer != nil {
			ev = c.event(e, began)
			cfg.observer.Delivered(ev)
		}
		if cfg.middleware != nil {
			info := MessageInfo{Stream: stream, Group: c.group, Consumer: cfg.name, ID: e.id, Deliveries: e.deliveries, values: e.values}
			err = cfg.middleware(ctx, info, call)
		} else {
			err = call(ctx)
		}
		if cfg.observer != nil {
			cfg.observer.Handled(ev, time.Since(began), err)
		}
		return err
	}
}

// decodeMessage builds the Message a handler of T receives from an entry's
// fields. Whatever goes wrong, a panicking codec included, is a
// *DecodeError, so the entry is dead-lettered rather than retried. It
// decodes into into, when not nil, rather than a new Message.
func decodeMessage[T any](cfg commonConfig, untyped bool, stream, id string, deliveries int64, values map[string]any, into *Message[T]) (m *Message[T], err error) {
	m = into
	if m == nil {
		m = new(Message[T])
	}
	*m = Message[T]{ID: id, Stream: stream, Deliveries: deliveries, values: values}
	if untyped {
		m.Payload = any(Fields(m.Fields())).(T)
		return m, nil
	}
	raw, ok := values[cfg.payloadField].(string)
	if !ok {
		return nil, &DecodeError{Stream: stream, ID: id, Field: cfg.payloadField}
	}
	defer func() {
		if v := recover(); v != nil {
			m, err = nil, &DecodeError{Stream: stream, ID: id, Field: cfg.payloadField, Err: fmt.Errorf("codec panicked: %v", v)}
		}
	}()
	if err := unmarshal(cfg.codec, raw, &m.Payload); err != nil {
		return nil, &DecodeError{Stream: stream, ID: id, Field: cfg.payloadField, Err: err}
	}
	return m, nil
}

// callHandler calls fn, turning a panic into a *PanicError.
func callHandler[T any](ctx context.Context, fn HandlerFunc[T], m *Message[T]) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn(ctx, m)
}

// event describes e for the observer; now dates its age.
func (c *Consumer) event(e *entry, now time.Time) Event {
	return c.eventOf(e.route.stream, e.id, e.deliveries, now)
}

// eventOf describes the entry id of stream, on its given delivery.
func (c *Consumer) eventOf(stream, id string, deliveries int64, now time.Time) Event {
	ev := Event{Stream: stream, Group: c.group, Consumer: c.cfg.name, ID: id, Deliveries: deliveries}
	if parsed, err := streamid.Parse(id); err == nil {
		ev.Age = max(0, now.Sub(parsed.Time()))
	}
	return ev
}
