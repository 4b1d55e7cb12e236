package redstream

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/backoff"
)

// HandlerFunc handles one message. What it returns decides the message's
// fate:
//
//   - nil acknowledges it (XACK, coalesced with others).
//   - An error leaves it pending; the consumer delivers it again after an
//     exponential backoff ([WithRetryBackoff]), or after the delay of a
//     [RetryAfter] error. After the last of MaxDeliveries deliveries
//     ([WithMaxDeliveries]) it is dead-lettered with reason
//     [ReasonMaxDeliveries] and the error's text.
//   - [ErrDeadLetter] (wrapped or not) dead-letters it at once, with reason
//     [ReasonHandler]; [ErrDrop] acknowledges it without handling.
//   - A panic is recovered, logged with its stack, and counts as an error
//     ([*PanicError]).
//
// Entries that cannot be decoded into T never reach the handler: they are
// dead-lettered at once with reason [ReasonDecode].
//
// ctx is cancelled when a shutdown outlasts the shutdown timeout
// ([WithShutdownTimeout]), and when the consumer finds the message has been
// reclaimed by another consumer (its lease was lost, which happens only if
// this consumer could not renew it for MinIdle, say while cut off from
// Redis). A handler should return promptly then: its error leaves the
// message to the new owner. A handler that returns nil anyway still has the
// message acknowledged: it was handled, and the other consumer's delivery
// is a duplicate that at-least-once delivery allows.
//
// The Message belongs to the handler only until it returns.
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

	ready chan struct{} // closed once the groups exist and reading starts

	mu      sync.Mutex
	routes  []*route
	started bool
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
	return &Consumer{rdb: rdb, group: group, cfg: cfg, ready: make(chan struct{})}, nil
}

// Ready returns a channel that is closed once Run has created (or found)
// the consumer group on every stream and starts reading. With the default
// group start "$", entries published before that may predate the group and
// not be delivered to it; wait on Ready before publishing when that
// matters. It is never closed if Run fails or its context ends first.
func (c *Consumer) Ready() <-chan struct{} { return c.ready }

// Group returns the consumer group's name.
func (c *Consumer) Group() string { return c.group }

// Name returns the consumer's name within its group.
func (c *Consumer) Name() string { return c.cfg.name }

// Handle registers fn as the handler of stream's entries on c, decoding the
// payload field into T with the consumer's codec (for T = [Fields], every
// field is passed as is). A consumer serves several streams with one Handle
// call each. With [WithPartitions], stream is a logical stream's base name
// and fn handles all its partitions ([Message.Stream] tells which); with
// [WithOrderedKeys], messages of one key run one at a time, in order.
//
// It returns an error wrapping [ErrInvalidStreamName] for a bad stream key,
// and one wrapping [ErrInvalidOption] for a nil fn, a bad option, a stream
// that already has a handler, or a consumer that has started.
func Handle[T any](c *Consumer, stream string, fn HandlerFunc[T], opts ...HandleOption) error {
	if err := ValidateStream(stream); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("%w: nil handler for %s", ErrInvalidOption, stream)
	}
	var hc handleConfig
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyHandle(&hc); err != nil {
			return err
		}
	}
	if err := hc.batch.check(stream, c.cfg.maxInFlight); err != nil {
		return err
	}
	streams := []string{stream}
	if hc.partitions > 0 {
		var err error
		if streams, err = Partitions(stream, hc.partitions); err != nil {
			return err
		}
	}
	timeout := c.cfg.handlerTimeout
	if hc.hasHandlerTimeout {
		timeout = hc.handlerTimeout
	}
	routes := make([]*route, len(streams))
	for i, s := range streams {
		routes[i] = &route{stream: s, handle: typedHandler(c, s, fn), alloc: allocWithMessage[T], ordered: hc.ordered, timeout: timeout, limit: hc.limit.forRoute()}
		hc.batch.attach(routes[i])
		if hc.exclusive {
			routes[i].exclusive = true
			routes[i].lease = leaseKey(s, c.group)
			routes[i].members = membersKey(stream, c.group)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return fmt.Errorf("%w: Handle(%s) after Run started", ErrInvalidOption, stream)
	}
	for _, other := range c.routes {
		if slices.Contains(streams, other.stream) {
			return fmt.Errorf("%w: stream %s already has a handler", ErrInvalidOption, other.stream)
		}
	}
	c.routes = append(c.routes, routes...)
	return nil
}

// Run creates the consumer group on every stream that lacks it, then reads
// and handles entries until ctx ends: first the entries still pending for
// this consumer's name (left by an earlier run), then new ones.
//
// When ctx ends, Run stops reading (a read in progress finishes within the
// block time, [WithBlock]), lets in-flight handlers finish, sends the last
// acknowledgements, hands what is left pending under its name (failures
// waiting for a retry, messages let go while paused or behind a key's
// message taken over, on streams not read as exclusive partitions) over
// to the group, and returns nil. When it could not finish what it took in,
// it returns a [*ShutdownError] that says what and how many: handlers
// still running after the shutdown timeout had their contexts cancelled
// ([ErrShutdownTimeout]); acknowledgements could not be sent
// ([ErrAcksGivenUp]: those messages will be delivered again); unfinished
// messages could not be handed over ([ErrNotHandedOver]). Messages not
// acknowledged stay pending.
//
// Failed Redis calls are retried with exponential backoff and reported to
// the logger and error callback; a group that disappears (NOGROUP, the
// stream was deleted) is created again. Apart from a [*ShutdownError] on
// its way out, Run returns an error only before it starts reading: [ErrAlreadyStarted], [ErrNoHandlers], an error wrapping
// [ErrConsumerNameInUse] when a live consumer of the group already uses
// this consumer's name on one of its streams, a group it cannot create
// because Redis refuses (wrong key type, no permission), or, when ctx ends
// before the consumer became ready ([Consumer.Ready]), an error wrapping
// [ErrNotReady] and the failure that kept it from starting (a Redis that
// could not be reached, say).
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
	if err := r.names.acquire(ctx); err != nil {
		return err
	}
	defer r.names.release()
	for _, rt := range routes {
		if err := r.ensureGroup(ctx, rt.stream); err != nil {
			return err
		}
	}
	// If ctx ended during setup, run drains at once.
	if ctx.Err() == nil {
		streams := make([]string, len(routes))
		for i, rt := range routes {
			streams[i] = rt.stream
		}
		r.log.Info("redstream: consumer started", slog.Any("streams", streams), slog.Int("concurrency", c.cfg.concurrency))
		c.warnCapacity(r.log, routes)
		close(c.ready)
	}
	return r.run(ctx)
}

// runner is one Run's state and wiring. Its components, each in a file
// of its own, share the held messages (held.go) and talk through the
// channels below; what else each keeps is its own:
//
//   - multireader.go, reader.go: one reader per group of streams one
//     command can read (a group of one has reader.go's reader), and one
//     per owned exclusive partition; started by run or by partition
//     ownership, stopped by Run's context;
//   - workers.go: the dispatch of read messages and the workers that run
//     handlers and settle their outcome, started by run, stopped when the
//     work channel closes;
//   - acker.go: the acknowledger, started by run, stopped when acks closes;
//   - retries.go: the retry scheduler, started by run, stopped by Run's
//     context;
//   - leases.go: the lease keeper, started by run, stopped after the last
//     handler returned; and the hand-off at the end of run;
//   - reaper.go, ownership.go, namelease.go, trim.go: the reaper, partition
//     ownership, the consumer-name lease and the periodic trim;
//   - scheduler.go: the mover of due scheduled messages, started by run,
//     stopped by Run's context.
type runner struct {
	c       *Consumer
	routes  []*route
	log     *slog.Logger
	backoff backoff.Policy // after failed Redis calls
	retry   backoff.Policy // between deliveries of a failed message

	held *heldSet
	// work carries messages to the workers, acks to the acknowledger,
	// retries to the retry scheduler; leftRoutes tells the retry scheduler
	// of exclusive routes given up, whose waiting retries are let go.
	work       chan *entry
	acks       chan *entry
	retries    chan retryAt
	leftRoutes chan *route

	// owned holds the exclusive routes this consumer holds the lease of;
	// only the ownership goroutine uses it. ownReaders counts their
	// readers; readersClosed (guarded by readersMu) is set when Run stops
	// waiting for readers to start.
	owned         map[*route]*owned
	ownReaders    sync.WaitGroup
	readersMu     sync.Mutex
	readersClosed bool

	// undrained counts the readers of non-exclusive routes that have not
	// yet gone through their own pending entries; drainedAll is closed
	// when it reaches zero, and the reaper's first round waits for it.
	undrained  atomic.Int64
	drainedAll chan struct{}

	names *nameLease

	// running counts the handlers running now. acksGivenUp, acksLeft (the
	// entries of those acknowledgements, for the hand-off to leave alone)
	// and ackErr are the acknowledger's, read once it has returned.
	running     atomic.Int64
	acksGivenUp int
	acksLeft    map[heldKey]struct{}
	ackErr      error
}

func newRunner(c *Consumer, routes []*route) *runner {
	r := &runner{
		c:       c,
		routes:  routes,
		log:     c.cfg.logger.With(slog.String("group", c.group), slog.String("consumer", c.cfg.name)),
		backoff: backoff.Policy{Base: c.cfg.errorBackoffMin, Max: c.cfg.errorBackoffMax},
		retry:   backoff.Policy{Base: c.cfg.retryBackoffMin, Max: c.cfg.retryBackoffMax},
		held:    newHeldSet(c.cfg.maxInFlight),
		work:    make(chan *entry, c.cfg.maxInFlight),
		acks:    make(chan *entry, c.cfg.maxInFlight),
		retries: make(chan retryAt, c.cfg.maxInFlight),

		leftRoutes: make(chan *route, len(routes)),
		owned:      make(map[*route]*owned),
		drainedAll: make(chan struct{}),
		acksLeft:   make(map[heldKey]struct{}),
	}
	for _, rt := range routes {
		if !rt.exclusive {
			r.undrained.Add(1)
		}
	}
	if r.undrained.Load() == 0 {
		close(r.drainedAll)
	}
	r.names = newNameLease(r)
	return r
}

func (r *runner) run(ctx context.Context) error {
	// Handlers and Redis calls outlive ctx: a shutdown lets them finish.
	// Reads are never cut short, so no delivered entry is dropped unread.
	handlerCtx, cancelHandlers := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelHandlers(nil)

	// Feeders put messages in r.work and stop with ctx; workers drain it.
	var feeders, workers sync.WaitGroup
	groups := readerGroups(r.c.rdb, r.routes)
	if slices.ContainsFunc(groups, func(g []*route) bool { return len(g) > 1 }) {
		r.held.countPerRoute() // for the group readers, before anything is held
	}
	// A paused stream is not read even once.
	r.pollPauses(context.WithoutCancel(ctx))
	feeders.Go(func() { r.watchPauses(ctx) })
	perRead := max(1, min(r.c.cfg.batchSize, r.c.cfg.maxInFlight/len(r.routes)))
	exclusive := slices.ContainsFunc(r.routes, func(rt *route) bool { return rt.exclusive })
	// Exclusive routes are read while this consumer holds their lease
	// (ownership.go); the others by one reader per group of streams one
	// command can read (multireader.go), a group of one by its own.
	for _, group := range groups {
		if len(group) == 1 {
			feeders.Go(func() { r.read(ctx, group[0], perRead) })
			continue
		}
		g := newGroupReader(r, group, len(groups))
		feeders.Go(func() { g.run(ctx) })
	}
	// Partition leases are kept until the last acknowledgements are sent.
	stopOwn := make(chan struct{})
	var ownership sync.WaitGroup
	if exclusive {
		ownership.Go(func() { r.own(ctx, stopOwn, perRead) })
	}
	feeders.Go(func() { r.scheduleRetries(ctx) })
	feeders.Go(func() { r.moveScheduled(ctx) })
	if r.c.cfg.reaper {
		feeders.Go(func() { r.reap(ctx) })
	}
	if r.c.cfg.trim != nil {
		streams := make([]string, len(r.routes))
		for i, rt := range r.routes {
			streams[i] = rt.stream
		}
		feeders.Go(func() {
			trimLoop(ctx, r.c.rdb, streams, *r.c.cfg.trim, r.c.cfg.trimEvery, r.log, r.c.cfg.observer, func(err *OpError) {
				err.Group = r.c.group
				r.notify(err)
			})
		})
	}
	for range r.c.cfg.concurrency {
		workers.Go(func() { r.work1(handlerCtx) })
	}
	// Leases are renewed until the last handler has returned.
	stopLeases := make(chan struct{})
	var background sync.WaitGroup
	background.Go(func() { r.keepLeases(stopLeases) })
	background.Go(func() { r.ack(handlerCtx, ctx) })

	<-ctx.Done()
	r.log.Debug("redstream: consumer draining")
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		feeders.Wait()
		r.readersMu.Lock()
		r.readersClosed = true
		r.readersMu.Unlock()
		r.ownReaders.Wait()
		r.held.drain(func() {
			r.closeBatches() // a partial batch is handled now, not left
			close(r.work)
		})
		workers.Wait()
	}()
	timer := time.NewTimer(r.c.cfg.shutdownTimeout)
	defer timer.Stop()
	var stopErr ShutdownError
	select {
	case <-drained:
	case <-timer.C:
		stopErr.TimedOut = true
		stopErr.Cancelled = int(r.running.Load())
		r.log.Warn("redstream: shutdown timeout passed; cancelling in-flight handlers", slog.Int("handlers", stopErr.Cancelled))
		cancelHandlers(ErrShutdownTimeout)
		<-drained
	}
	close(stopLeases)
	close(r.acks)
	background.Wait()
	handedOver, notHandedOver, handOffErr := r.handOff()
	close(stopOwn)
	ownership.Wait()
	stopErr.AcksGivenUp, stopErr.NotHandedOver = r.acksGivenUp, notHandedOver
	stopErr.Pending = handedOver + notHandedOver + r.acksGivenUp
	stopErr.Err = cmp.Or(handOffErr, r.ackErr)
	if !stopErr.TimedOut && stopErr.AcksGivenUp == 0 && stopErr.NotHandedOver == 0 {
		r.log.Info("redstream: consumer stopped", slog.Int("handed_over", handedOver))
		return nil
	}
	r.log.Warn("redstream: consumer stopped with messages left pending", slog.Any("error", &stopErr))
	return &stopErr
}

// report logs a background failure and passes it to the error callback.
func (r *runner) report(err *OpError) {
	refreshTopology(r.c.rdb, err.Err)
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
