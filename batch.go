package redstream

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Batch handlers (HandleBatch). A batch route buffers the messages
// dispatch hands it in its gatherer, which sends them to the workers as one
// unit of work (an entry whose batch field is set) when maxSize are
// buffered or maxWait after the first. A worker runs the handler on the
// whole batch (processBatch) and settles each message on its own, as
// workers.go settles a plain handler's message: acknowledgement, retry or
// dead letter. Every message of a batch stays held on its own, so room
// tokens, leases, key turns and the hand-off work per message as for any
// other route. A failed message is retried alone, in a batch of one
// (route.handle), through the ordinary worker path. The gatherer starts no
// goroutine of its own: its timer's function only hands a batch over.

// BatchHandlerFunc handles a batch of messages of one stream (one
// partition, with [WithPartitions]), oldest first. What it returns decides
// the fate of each message:
//
//   - nil acknowledges every message, with multi-ID XACKs.
//   - A [*BatchFailures] (wrapped or not) gives each message its own
//     outcome: a nil error acknowledges that message; any other error is
//     that message's handler error, with the same meaning as for a
//     [HandlerFunc] ([ErrDeadLetter], [ErrDrop], [RetryAfter], or a plain
//     error that retries it and counts towards [WithMaxDeliveries]).
//   - Any other error applies to every message of the batch, as if each
//     had returned it.
//   - A panic is recovered and fails every message with a [*PanicError]
//     (its stack is logged once).
//
// Failed messages are retried one by one: each is delivered again after
// its own backoff, alone, in a batch of one; the others of the batch are
// acknowledged meanwhile. Entries that cannot be decoded into T are left
// out of the batch and dead-lettered at once with reason [ReasonDecode].
//
// ctx is cancelled when a shutdown outlasts the shutdown timeout, and when
// the consumer finds that any message of the batch was reclaimed by
// another consumer (see [HandlerFunc]): the handler should then return
// promptly; its error applies to the messages still this consumer's.
//
// The slice and the Messages belong to the handler only until it returns.
type BatchHandlerFunc[T any] func(ctx context.Context, msgs []*Message[T]) error

// BatchFailures is the error a [BatchHandlerFunc] returns to fail some
// messages of its batch and not others. Errs has one element per message,
// in the order of the batch: nil for a message handled successfully, the
// message's error otherwise. Create it with [NewBatchFailures] and mark
// failures with [BatchFailures.Fail]; return [BatchFailures.Err], which is
// nil when nothing failed. A BatchFailures whose Errs does not have one
// element per message fails the whole batch (a bug in the handler, which
// the error says). It is not safe for concurrent use.
//
// (It is named apart from [BatchError], which [Producer.PublishBatch]
// returns.)
type BatchFailures struct {
	Errs []error
}

// NewBatchFailures returns a BatchFailures for a batch of n messages, none
// failed yet.
func NewBatchFailures(n int) *BatchFailures {
	return &BatchFailures{Errs: make([]error, max(n, 0))}
}

// Fail records err as the outcome of the message at index i of the batch.
// A nil err is replaced by a generic error, so that a call to Fail always
// fails the message. It panics if i is out of range, as an index would.
func (f *BatchFailures) Fail(i int, err error) {
	if err == nil {
		err = errors.New("redstream: failed in its batch")
	}
	f.Errs[i] = err
}

// Failed returns how many messages have an error.
func (f *BatchFailures) Failed() int {
	n := 0
	for _, err := range f.Errs {
		if err != nil {
			n++
		}
	}
	return n
}

// Err returns f when some message failed and nil when none did, so that a
// handler can end with "return failures.Err()" (returning a nil
// *BatchFailures as an error would not be a nil error).
func (f *BatchFailures) Err() error {
	if f == nil || f.Failed() == 0 {
		return nil
	}
	return f
}

func (f *BatchFailures) Error() string {
	var first error
	for _, err := range f.Errs {
		if err != nil {
			first = err
			break
		}
	}
	if first == nil {
		return fmt.Sprintf("redstream: 0 of %d messages of the batch failed", len(f.Errs))
	}
	return fmt.Sprintf("redstream: %d of %d messages of the batch failed; first: %v", f.Failed(), len(f.Errs), first)
}

// Unwrap returns the messages' errors, so that errors.Is and errors.As
// look through them.
func (f *BatchFailures) Unwrap() []error {
	return slices.DeleteFunc(slices.Clone(f.Errs), func(err error) bool { return err == nil })
}

// BatchObserver is an optional interface of an [Observer] given to
// [WithObserver]: a consumer calls BatchHandled once per batch handler
// call, besides the per-message Delivered and Handled it reports as for a
// plain handler (each message with the batch's duration and its own
// error). Like the Observer's, the method is called synchronously on the
// worker's goroutine, so it must be fast, must not block and must be safe
// for concurrent use.
type BatchObserver interface {
	// BatchHandled reports a batch handler's return: the batch, how long
	// the handler ran, and how many of its messages failed.
	BatchHandled(ev BatchEvent, took time.Duration, failed int)
}

// BatchEvent describes one batch handler call for a [BatchObserver].
type BatchEvent struct {
	Stream   string
	Group    string
	Consumer string
	// Size is the number of messages handed to the handler.
	Size int
	// Age is the age of the batch's oldest message when the handler
	// started (the time in its ID to then): the batch's worst end-to-end
	// latency so far.
	Age time.Duration
}

// WithBatch sets how [HandleBatch] forms batches: a batch is handed to the
// handler once it holds maxSize messages, or maxWait after its first
// message arrived, whichever comes first. maxSize must be at least 1 and
// at most the consumer's in-flight room ([WithMaxInFlight]), which counts
// every buffered message; maxWait must not be negative, and zero hands a
// batch over without waiting for more messages (it then holds what arrived
// together). The defaults are [DefaultBatchMaxSize] and
// [DefaultBatchMaxWait]. Given to [Handle], it is an error: plain handlers
// take one message at a time. Errors wrap [ErrInvalidOption].
//
// WithBatch is not [WithBatchSize], which sets how many entries one read
// asks Redis for.
func WithBatch(maxSize int, maxWait time.Duration) HandleOption {
	return handleOption(func(c *handleConfig) error {
		if maxSize < 1 {
			return fmt.Errorf("%w: WithBatch(%d, %v): maxSize must be at least 1", ErrInvalidOption, maxSize, maxWait)
		}
		if maxWait < 0 {
			return fmt.Errorf("%w: WithBatch(%d, %v): maxWait must not be negative", ErrInvalidOption, maxSize, maxWait)
		}
		c.batch.set, c.batch.maxSize, c.batch.maxWait = true, maxSize, maxWait
		return nil
	})
}

// HandleBatch registers fn as the batch handler of stream's entries on c,
// as [Handle] registers a plain one: decoding into T, with the same
// options ([WithPartitions], [WithOrderedKeys], [WithExclusivePartitions])
// and [WithBatch] for the batches' shape. See [BatchHandlerFunc] for what
// fn's outcome means.
//
// Batches and the consumer's other machinery:
//
//   - Concurrency: a batch takes one of the consumer's handler goroutines
//     ([WithConcurrency]); several batches of a stream may run at once.
//     Every message of a batch, buffered or in the handler, takes its own
//     in-flight room ([WithMaxInFlight]).
//   - Ordered keys ([WithOrderedKeys]): a batch holds at most one message
//     per key. A key's next message joins a later batch once the batch
//     holding the previous one is done with it (acknowledged or
//     dead-lettered), so one key's messages are handled one at a time, in
//     stream order; a failed message holds its key's later messages back
//     while it is retried. Many keys fill a batch quickly; a run of
//     messages of one hot key goes one per batch.
//   - Leases: every message of a batch, buffered or in the handler, has its
//     lease renewed, so a long batch on a live consumer is never stolen. If
//     the consumer finds any message of the batch reclaimed by another
//     consumer, the batch's context is cancelled (see [BatchHandlerFunc]).
//   - Middleware ([WithMiddleware]) wraps each batch handler call once,
//     with the [MessageInfo] of the batch's first message and
//     MessageInfo.BatchSize set to the batch's size; its error is the
//     batch's outcome.
//   - Observer: Delivered and Handled per message, and, if the observer
//     implements [BatchObserver], BatchHandled per batch.
//   - Shutdown: when Run's context ends, a partial batch is handed to the
//     handler at once, without waiting for maxWait; Run waits for it as for
//     any handler (up to [WithShutdownTimeout]).
//
// It returns the errors Handle returns, and one wrapping
// [ErrInvalidOption] for a nil fn or a bad [WithBatch].
func HandleBatch[T any](c *Consumer, stream string, fn BatchHandlerFunc[T], opts ...HandleOption) error {
	if fn == nil {
		return fmt.Errorf("%w: nil batch handler for %s", ErrInvalidOption, stream)
	}
	bind := handleOption(func(hc *handleConfig) error {
		hc.batch.bind = func(rt *route) batchRun { return typedBatchHandler(c, rt.stream, fn) }
		return nil
	})
	unused := func(context.Context, *Message[T]) error { return nil } // replaced by bind
	return Handle(c, stream, unused, append(slices.Clip(opts), bind)...)
}

// batchOptions is what WithBatch and HandleBatch set in a handleConfig.
type batchOptions struct {
	set     bool // WithBatch was given
	maxSize int
	maxWait time.Duration
	// bind, set by HandleBatch, builds a route's typed batch handler.
	bind func(rt *route) batchRun
}

// check validates the options of the registration of stream, whose
// consumer has room for maxInFlight messages.
func (o *batchOptions) check(stream string, maxInFlight int) error {
	if o.bind == nil {
		if o.set {
			return fmt.Errorf("%w: WithBatch given to Handle(%s): use HandleBatch", ErrInvalidOption, stream)
		}
		return nil
	}
	if !o.set {
		o.maxSize, o.maxWait = DefaultBatchMaxSize, DefaultBatchMaxWait
	}
	if o.maxSize > maxInFlight {
		return fmt.Errorf("%w: HandleBatch(%s): batches of %d cannot fill with room for %d messages in flight (WithMaxInFlight)", ErrInvalidOption, stream, o.maxSize, maxInFlight)
	}
	return nil
}

// attach makes rt a batch route, if the registration is HandleBatch's.
func (o *batchOptions) attach(rt *route) {
	if o.bind == nil {
		return
	}
	run := o.bind(rt)
	rt.batch = &gatherer{route: rt, maxSize: o.maxSize, maxWait: o.maxWait, run: run}
	// A message alone (a retry) is a batch of one.
	rt.handle = func(ctx context.Context, e *entry) error { return run(ctx, []*entry{e})[0] }
}

// batchRun runs a batch handler on entries and returns each one's outcome.
type batchRun func(ctx context.Context, entries []*entry) []error

// processBatch runs a batch's handler and settles each message, as
// process does for one message. The batch's context is cancelled when any
// of its messages is lost to another consumer (markLost).
func (r *runner) processBatch(handlerCtx context.Context, unit *entry) {
	rt := unit.route
	if handlerCtx.Err() != nil {
		// Shutdown timeout passed: left pending, handed over.
		for _, e := range unit.batch {
			r.leave(e)
		}
		return
	}
	if givenUp(rt) || leaseExpired(rt) || paused(rt) {
		// The partition's next owner may run them (fence.go), or, paused,
		// this consumer reads them again on resume (pause.go).
		for _, e := range unit.batch {
			r.release(e)
		}
		return
	}
	if !r.admitBatch(handlerCtx, unit) {
		for _, e := range unit.batch {
			r.leave(e) // shutdown while waiting for a grant
		}
		return
	}
	ctx, cancelCause := context.WithCancelCause(handlerCtx)
	defer cancelCause(nil)
	cancel := func() { cancelCause(ErrLeaseLost) }
	ctx, blame, stop := timedHandler(ctx, rt)
	defer stop()
	live := make([]*entry, 0, len(unit.batch))
	for _, e := range unit.batch {
		if r.held.start(e, cancel) { // lost
			r.release(e)
			continue
		}
		live = append(live, e)
	}
	if len(live) == 0 {
		return
	}
	r.running.Add(int64(len(live)))
	errs := rt.batch.run(ctx, live)
	r.running.Add(-int64(len(live)))
	for i, err := range errs {
		errs[i] = blame(err)
	}
	stackLogged := false
	for i, e := range live {
		lost, vanished := r.held.finish(e)
		if panicErr := (*PanicError)(nil); errors.As(errs[i], &panicErr) {
			// One panic, one stack in the log.
			e.stackLogged = e.stackLogged || stackLogged
			stackLogged = true
		}
		r.settle(handlerCtx, e, errs[i], lost, vanished)
	}
}

// typedBatchHandler returns the erased batch handler that decodes entries
// into Messages of T and calls fn on those that decode, through the
// consumer's middleware and observer, turning a panic into a *PanicError.
// Each entry's outcome is returned in order; those that do not decode get
// their *DecodeError.
func typedBatchHandler[T any](c *Consumer, stream string, fn BatchHandlerFunc[T]) batchRun {
	cfg := c.cfg
	untyped := isFields[T]()
	return func(ctx context.Context, entries []*entry) []error {
		errs := make([]error, len(entries))
		msgs := make([]*Message[T], 0, len(entries))
		in := make([]*entry, 0, len(entries)) // the entries of msgs
		at := make([]int, 0, len(entries))    // their indexes in entries
		for i, e := range entries {
			m, err := decodeMessage(cfg.commonConfig, untyped, stream, e.id, e.deliveries, e.values, spareMessage[T](e))
			if err != nil {
				errs[i] = err
				continue
			}
			msgs = append(msgs, m)
			in = append(in, e)
			at = append(at, i)
		}
		if len(msgs) == 0 {
			return errs
		}
		began := time.Now()
		var evs []Event
		if cfg.observer != nil {
			evs = make([]Event, len(in))
			for j, e := range in {
				evs[j] = c.event(e, began)
				cfg.observer.Delivered(evs[j])
			}
		}
		call := func(ctx context.Context) error { return callBatchHandler(ctx, fn, msgs) }
		var err error
		if cfg.middleware != nil {
			e := in[0]
			info := MessageInfo{Stream: stream, Group: c.group, Consumer: cfg.name, ID: e.id, Deliveries: e.deliveries, BatchSize: len(msgs), values: e.values}
			err = cfg.middleware(ctx, info, call)
		} else {
			err = call(ctx)
		}
		outcomes := batchOutcomes(err, len(msgs))
		failed := 0
		for j, i := range at {
			errs[i] = outcomes[j]
			if outcomes[j] != nil {
				failed++
			}
		}
		if cfg.observer != nil {
			took := time.Since(began)
			for j := range in {
				cfg.observer.Handled(evs[j], took, outcomes[j])
			}
			if bo, ok := cfg.observer.(BatchObserver); ok {
				bo.BatchHandled(BatchEvent{Stream: stream, Group: c.group, Consumer: cfg.name, Size: len(msgs), Age: evs[0].Age}, took, failed)
			}
		}
		return errs
	}
}

// batchOutcomes spreads a batch handler's error over its n messages.
func batchOutcomes(err error, n int) []error {
	out := make([]error, n)
	if err == nil {
		return out
	}
	var failures *BatchFailures
	if errors.As(err, &failures) {
		if len(failures.Errs) == n {
			copy(out, failures.Errs)
			return out
		}
		// Not errors.Unwrap-able into the messages' errors: one of them
		// may be ErrDeadLetter, which must not apply to all.
		err = fmt.Errorf("redstream: batch handler returned %d outcomes for a batch of %d: %s", len(failures.Errs), n, strings.TrimPrefix(failures.Error(), "redstream: "))
	}
	for i := range out {
		out[i] = err
	}
	return out
}

// callBatchHandler calls fn, turning a panic into a *PanicError.
func callBatchHandler[T any](ctx context.Context, fn BatchHandlerFunc[T], msgs []*Message[T]) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn(ctx, msgs)
}
