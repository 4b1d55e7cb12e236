package redstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/backoff"
)

// HandlerFunc handles one message. Returning nil acknowledges the message
// (XACK). Returning an error leaves it pending in the group, so it is
// delivered again: to this consumer when it restarts (it drains its own
// pending entries first), or to another through reclaiming. A panic is
// recovered, logged with its stack, and counts as an error ([*PanicError]).
//
// ctx is cancelled only when a shutdown outlasts the shutdown timeout
// ([WithShutdownTimeout]); a handler should return promptly then. The
// Message belongs to the handler only until it returns.
type HandlerFunc[T any] func(ctx context.Context, m *Message[T]) error

// Consumer reads streams as one consumer of a consumer group and runs the
// registered handlers on their entries. Create it with [NewConsumer],
// register one handler per stream with [Handle], then call [Consumer.Run].
//
// Handle and Run are safe for concurrent use, but handlers must be
// registered before Run starts. A Consumer runs once. It never closes the
// client it was given.
type Consumer struct {
	rdb   redis.UniversalClient
	group string
	cfg   consumerConfig

	mu      sync.Mutex
	routes  []*route
	started bool
}

// route is one stream's handler, with the payload type erased.
type route struct {
	stream string
	handle func(ctx context.Context, e *entry) error
}

// entry is a message between the reader and a worker.
type entry struct {
	route      *route
	id         string
	values     map[string]any
	deliveries int64
}

// NewConsumer returns a Consumer in group. rdb may be any
// [redis.UniversalClient]: a plain, cluster or failover client. The group
// is created on each stream when Run starts, if it does not exist. The
// error wraps [ErrInvalidOption].
func NewConsumer(rdb redis.UniversalClient, group string, opts ...ConsumerOption) (*Consumer, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalidOption)
	}
	if group == "" {
		return nil, fmt.Errorf("%w: empty group name", ErrInvalidOption)
	}
	cfg, err := newConsumerConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Consumer{rdb: rdb, group: group, cfg: cfg}, nil
}

// Group returns the consumer group's name.
func (c *Consumer) Group() string { return c.group }

// Name returns the consumer's name within its group.
func (c *Consumer) Name() string { return c.cfg.name }

// Handle registers fn as the handler of stream's entries on c, decoding the
// payload field into T with the consumer's codec (for T = [Fields], every
// field is passed as is). A consumer serves several streams with one Handle
// call each. It returns an error wrapping [ErrInvalidStreamName] for a bad
// stream key, and one wrapping [ErrInvalidOption] for a nil fn, a stream
// that already has a handler, or a consumer that has started.
func Handle[T any](c *Consumer, stream string, fn HandlerFunc[T]) error {
	if err := ValidateStream(stream); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("%w: nil handler for %s", ErrInvalidOption, stream)
	}
	rt := &route{stream: stream, handle: typedHandler(c.cfg.commonConfig, stream, fn)}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return fmt.Errorf("%w: Handle(%s) after Run started", ErrInvalidOption, stream)
	}
	for _, other := range c.routes {
		if other.stream == stream {
			return fmt.Errorf("%w: stream %s already has a handler", ErrInvalidOption, stream)
		}
	}
	c.routes = append(c.routes, rt)
	return nil
}

// typedHandler returns the erased handler that decodes an entry into a
// Message[T] and calls fn, turning a panic into a *PanicError.
func typedHandler[T any](cfg commonConfig, stream string, fn HandlerFunc[T]) func(context.Context, *entry) error {
	untyped := isFields[T]()
	return func(ctx context.Context, e *entry) (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = &PanicError{Value: v, Stack: debug.Stack()}
			}
		}()
		m := &Message[T]{ID: e.id, Stream: stream, Deliveries: e.deliveries, Fields: make(map[string]string, len(e.values))}
		for k, v := range e.values {
			s, _ := v.(string)
			m.Fields[k] = s
		}
		if untyped {
			m.Payload = any(Fields(m.Fields)).(T)
		} else {
			raw, ok := m.Fields[cfg.payloadField]
			if !ok {
				return &DecodeError{Stream: stream, ID: e.id, Field: cfg.payloadField}
			}
			if err := cfg.codec.Unmarshal([]byte(raw), &m.Payload); err != nil {
				return &DecodeError{Stream: stream, ID: e.id, Field: cfg.payloadField, Err: err}
			}
		}
		return fn(ctx, m)
	}
}

// Run creates the consumer group on every stream that lacks it, then reads
// and handles entries until ctx ends: first the entries still pending for
// this consumer's name (left by an earlier run), then new ones.
//
// When ctx ends, Run stops reading (a read in progress finishes within the
// block time, [WithBlock]), lets in-flight handlers finish, sends the last
// acknowledgements and returns nil. Handlers still running after the
// shutdown timeout have their contexts cancelled; Run waits for them and
// returns [ErrShutdownTimeout]. Messages not acknowledged stay pending.
//
// Failed Redis calls are retried with exponential backoff and reported to
// the logger and error callback; a group that disappears (NOGROUP, the
// stream was deleted) is created again. Run returns an error only before it
// starts reading: [ErrAlreadyStarted], [ErrNoHandlers], or a group it
// cannot create because Redis refuses (wrong key type, no permission).
func (c *Consumer) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return ErrAlreadyStarted
	}
	c.started = true
	routes := c.routes
	c.mu.Unlock()
	if len(routes) == 0 {
		return ErrNoHandlers
	}

	r := newRunner(c, routes)
	for _, rt := range routes {
		if err := r.ensureGroup(ctx, rt.stream); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return r.run(ctx)
}

// runner is one Run's state: the readers, workers and acker it owns.
type runner struct {
	c       *Consumer
	routes  []*route
	log     *slog.Logger
	backoff backoff.Policy

	// room holds one token per message the consumer may still take in.
	room chan struct{}
	work chan *entry
	acks chan *entry
}

func newRunner(c *Consumer, routes []*route) *runner {
	r := &runner{
		c:       c,
		routes:  routes,
		log:     c.cfg.logger.With(slog.String("group", c.group), slog.String("consumer", c.cfg.name)),
		backoff: backoff.Policy{Base: c.cfg.errorBackoffMin, Max: c.cfg.errorBackoffMax},
		room:    make(chan struct{}, c.cfg.maxInFlight),
		work:    make(chan *entry, c.cfg.maxInFlight),
		acks:    make(chan *entry, c.cfg.maxInFlight),
	}
	for range c.cfg.maxInFlight {
		r.room <- struct{}{}
	}
	return r
}

func (r *runner) run(ctx context.Context) error {
	// Handlers and Redis calls outlive ctx: a shutdown lets them finish.
	// Reads are never cut short, so no delivered entry is dropped unread.
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()

	var readers, workers sync.WaitGroup
	perRead := max(1, min(r.c.cfg.batchSize, r.c.cfg.maxInFlight/len(r.routes)))
	for _, rt := range r.routes {
		readers.Go(func() { r.read(ctx, rt, perRead) })
	}
	for range r.c.cfg.concurrency {
		workers.Go(func() { r.work1(handlerCtx) })
	}
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		r.ack(handlerCtx)
	}()

	<-ctx.Done()
	r.log.Debug("redstream: consumer draining")
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		readers.Wait()
		close(r.work)
		workers.Wait()
	}()
	timer := time.NewTimer(r.c.cfg.shutdownTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-drained:
	case <-timer.C:
		r.log.Warn("redstream: shutdown timeout passed; cancelling in-flight handlers")
		err = ErrShutdownTimeout
		cancelHandlers()
		<-drained
	}
	close(r.acks)
	<-ackerDone
	return err
}

// ensureGroup creates the group on stream (and the stream if missing),
// retrying failures that may pass until ctx ends.
func (r *runner) ensureGroup(ctx context.Context, stream string) error {
	for attempt := 1; ; attempt++ {
		err := createGroup(context.WithoutCancel(ctx), r.c.rdb, stream, r.c.group, r.c.cfg.groupStart)
		if err == nil {
			return nil
		}
		opErr := &OpError{Op: "create-group", Stream: stream, Group: r.c.group, Err: err}
		if isPermanent(err) {
			return opErr
		}
		r.report(opErr)
		if !sleepCtx(ctx, r.backoff.Delay(attempt)) {
			return ctx.Err()
		}
	}
}

// createGroup creates group on stream at start, creating the stream too;
// a group that exists already is no error.
func createGroup(ctx context.Context, rdb redis.UniversalClient, stream, group, start string) error {
	err := rdb.XGroupCreateMkStream(ctx, stream, group, start).Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return err
	}
	return nil
}

// isPermanent reports whether err is a Redis refusal that retrying will not
// change, as opposed to a network failure or a server that is loading.
func isPermanent(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	for _, transient := range []string{"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "MOVED", "ASK"} {
		if redis.HasErrorPrefix(err, transient) {
			return false
		}
	}
	return true
}

// read is one stream's reader: it drains this consumer's own pending
// entries, then reads new ones, taking in no more than there is room for.
func (r *runner) read(ctx context.Context, rt *route, perRead int) {
	redisCtx := context.WithoutCancel(ctx)
	cursor := "0" // next own pending entry; "" once they are drained
	attempt := 0
	for {
		n := r.takeRoom(ctx, perRead)
		if n == 0 {
			return
		}
		var (
			entries []*entry
			err     error
		)
		if cursor != "" {
			entries, err = r.readPending(redisCtx, rt, cursor, n)
			if err == nil && len(entries) == 0 {
				cursor = ""
			} else if err == nil {
				cursor = entries[len(entries)-1].id
			}
		} else {
			entries, err = r.readNew(redisCtx, rt, n)
		}
		if err != nil {
			r.giveRoom(n)
			attempt++
			if redis.HasErrorPrefix(err, "NOGROUP") {
				cursor = "" // the group's pending list went with it
				r.recreateGroup(redisCtx, rt.stream)
			} else {
				r.report(&OpError{Op: "read", Stream: rt.stream, Group: r.c.group, Err: err})
			}
			if !sleepCtx(ctx, r.backoff.Delay(attempt)) {
				return
			}
			continue
		}
		attempt = 0
		r.giveRoom(n - len(entries))
		for _, e := range entries {
			if e.values == nil {
				// Trimmed or deleted while pending: nothing left to handle.
				r.log.Warn("redstream: pending entry was deleted from the stream; acknowledging it", slog.String("stream", rt.stream), slog.String("id", e.id))
				r.acks <- e
				continue
			}
			r.work <- e
		}
	}
}

// takeRoom waits for room for at least one message and takes up to want.
// It returns 0 when ctx ends first.
func (r *runner) takeRoom(ctx context.Context, want int) int {
	select {
	case <-r.room:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < want {
		select {
		case <-r.room:
			n++
		default:
			return n
		}
	}
	return n
}

func (r *runner) giveRoom(n int) {
	for range n {
		r.room <- struct{}{}
	}
}

// readNew reads up to n entries never delivered to the group, waiting up to
// the block time for some to arrive.
func (r *runner) readNew(ctx context.Context, rt *route, n int) ([]*entry, error) {
	streams, err := r.c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    r.c.group,
		Consumer: r.c.cfg.name,
		Streams:  []string{rt.stream, ">"},
		Count:    int64(n),
		Block:    r.c.cfg.block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var entries []*entry
	for _, s := range streams {
		for _, m := range s.Messages {
			entries = append(entries, &entry{route: rt, id: m.ID, values: m.Values, deliveries: 1})
		}
	}
	return entries, nil
}

// readPending reads up to n of this consumer's own pending entries after
// cursor, with their delivery counts.
func (r *runner) readPending(ctx context.Context, rt *route, cursor string, n int) ([]*entry, error) {
	streams, err := r.c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    r.c.group,
		Consumer: r.c.cfg.name,
		Streams:  []string{rt.stream, cursor},
		Count:    int64(n),
		Block:    -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var entries []*entry
	for _, s := range streams {
		for _, m := range s.Messages {
			entries = append(entries, &entry{route: rt, id: m.ID, values: m.Values})
		}
	}
	if len(entries) == 0 {
		return nil, nil
	}
	// Reading pending entries by ID counts as a delivery; XPENDING tells how
	// many there have been.
	pending, err := r.c.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream:   rt.stream,
		Group:    r.c.group,
		Start:    entries[0].id,
		End:      entries[len(entries)-1].id,
		Count:    int64(len(entries)),
		Consumer: r.c.cfg.name,
	}).Result()
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int64, len(pending))
	for _, p := range pending {
		counts[p.ID] = p.RetryCount
	}
	for _, e := range entries {
		e.deliveries = max(1, counts[e.id])
	}
	r.log.Info("redstream: redelivering own pending entries", slog.String("stream", rt.stream), slog.Int("count", len(entries)))
	return entries, nil
}

// recreateGroup creates the group again after NOGROUP: the stream was
// deleted (or the group destroyed) under a running consumer. The new group
// starts at "0", so entries written to a recreated stream since then are
// not skipped.
func (r *runner) recreateGroup(ctx context.Context, stream string) {
	err := createGroup(ctx, r.c.rdb, stream, r.c.group, "0")
	if err != nil {
		r.report(&OpError{Op: "create-group", Stream: stream, Group: r.c.group, Err: err})
		return
	}
	r.log.Warn("redstream: consumer group was missing (NOGROUP); created it again", slog.String("stream", stream))
}

// work1 is one worker: it runs handlers until the work channel closes.
// Once handlerCtx is cancelled (shutdown timeout) it leaves the remaining
// messages pending without handling them.
func (r *runner) work1(handlerCtx context.Context) {
	for e := range r.work {
		if handlerCtx.Err() != nil {
			r.giveRoom(1)
			continue
		}
		err := e.route.handle(handlerCtx, e)
		if err == nil {
			r.acks <- e
		} else {
			r.handlerFailed(e, err)
		}
		r.giveRoom(1)
	}
}

func (r *runner) handlerFailed(e *entry, err error) {
	attrs := []any{slog.String("stream", e.route.stream), slog.String("id", e.id), slog.Int64("deliveries", e.deliveries), slog.Any("error", err)}
	op := "handle"
	var decodeErr *DecodeError
	var panicErr *PanicError
	switch {
	case errors.As(err, &decodeErr):
		op = "decode"
		r.log.Error("redstream: cannot decode entry; left pending", attrs...)
	case errors.As(err, &panicErr):
		r.log.Error("redstream: handler panicked; message left pending", append(attrs, slog.String("stack", string(panicErr.Stack)))...)
	default:
		r.log.Warn("redstream: handler failed; message left pending", attrs...)
	}
	r.notify(&OpError{Op: op, Stream: e.route.stream, Group: r.c.group, ID: e.id, Err: err})
}

// ackBatchMax caps the IDs gathered into one round of XACKs.
const ackBatchMax = 512

// ackFlushTimeout bounds each attempt to send acknowledgements.
const ackFlushTimeout = 5 * time.Second

// ack gathers acknowledgements and sends them as multi-ID XACKs, one per
// stream, in one pipeline: whatever arrived while the previous round trip
// was in flight goes together. It returns when r.acks is closed and the
// last acknowledgements are sent (or given up after retries).
func (r *runner) ack(ctx context.Context) {
	batch := make(map[*route][]string)
	count := 0
	add := func(e *entry) {
		batch[e.route] = append(batch[e.route], e.id)
		count++
	}
	for e := range r.acks {
		add(e)
	gather:
		for count < ackBatchMax {
			select {
			case e, ok := <-r.acks:
				if !ok {
					break gather
				}
				add(e)
			default:
				break gather
			}
		}
		r.flushAcks(ctx, batch)
		clear(batch)
		count = 0
	}
}

// flushAcks sends one round of XACKs, retrying with backoff: an
// acknowledgement that never arrives only means a redelivery, but retrying
// a few times keeps those rare.
func (r *runner) flushAcks(ctx context.Context, batch map[*route][]string) {
	const attempts = 5
	for attempt := 1; ; attempt++ {
		err := r.sendAcks(batch)
		if err == nil {
			return
		}
		for rt, ids := range batch {
			r.report(&OpError{Op: "ack", Stream: rt.stream, Group: r.c.group, Err: fmt.Errorf("%d IDs: %w", len(ids), err)})
		}
		if attempt == attempts || !sleepCtx(ctx, r.backoff.Delay(attempt)) {
			return
		}
	}
}

func (r *runner) sendAcks(batch map[*route][]string) error {
	ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
	defer cancel()
	if len(batch) == 1 {
		for rt, ids := range batch {
			return r.c.rdb.XAck(ctx, rt.stream, r.c.group, ids...).Err()
		}
	}
	_, err := r.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for rt, ids := range batch {
			pipe.XAck(ctx, rt.stream, r.c.group, ids...)
		}
		return nil
	})
	return err
}

// report logs a background failure and passes it to the error callback.
func (r *runner) report(err *OpError) {
	r.log.Warn("redstream: "+err.Op+" failed", slog.String("stream", err.Stream), slog.Any("error", err.Err))
	r.notify(err)
}

func (r *runner) notify(err *OpError) {
	if r.c.cfg.onError != nil {
		r.c.cfg.onError(err)
	}
}

// sleepCtx waits for d or until ctx ends, and reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
