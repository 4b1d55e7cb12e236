package redstream

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/backoff"
	"github.com/redstream/redstream/internal/scripts"
	"github.com/redstream/redstream/internal/streamid"
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

// route is one stream's handler, with the payload type erased.
type route struct {
	stream string
	handle func(ctx context.Context, e *entry) error
	// ordered runs the entries of one key one at a time (WithOrderedKeys).
	ordered bool
	// exclusive routes are read only while this consumer holds their lease
	// (WithExclusivePartitions); owned tells whether it does, for the
	// reaper. members is the key of the registration's member set.
	exclusive bool
	lease     string
	members   string
	owned     atomic.Bool
	// claimMu is held by the reaper from a claim to its dispatch, and by
	// the own goroutine to check that nothing is held before releasing.
	claimMu sync.Mutex
	// drained is set once the reader has gone through this consumer's own
	// pending entries; the reaper waits for it, so that it does not claim
	// them a second time.
	drained atomic.Bool
}

// entry is a message the consumer holds, from its read until it is
// acknowledged, dead-lettered or given up.
type entry struct {
	route  *route
	id     string
	values map[string]any // nil: deleted from the stream while pending
	// deliveries is the number of this handler attempt, the one the
	// handler sees: failed attempts + 1.
	deliveries int64
	// attempts counts the handler's failures on this entry, recorded in
	// Redis (attempts.go) so that they survive this consumer.
	attempts int64
	// redisDeliveries is Redis's delivery counter as last read: it also
	// counts deliveries no handler saw, and serves as the crash-loop guard.
	redisDeliveries int64
	// settled is set once the entry's acknowledgement is queued: it may
	// stop being pending before the acknowledger forgets it.
	settled atomic.Bool
	// retry marks a message waiting for its next delivery, which must first
	// be reclaimed by this consumer.
	retry bool
	// lost, trimmed and cancel are guarded by runner.mu: lost is set when
	// another consumer has taken the message, trimmed when it was deleted
	// from the stream while held (only this consumer's memory has it now),
	// cancel while its handler runs.
	lost    bool
	trimmed bool
	// vanished is set (guarded by runner.mu) when the entry is no longer
	// pending at all, for anyone: only this consumer's memory has it now.
	vanished bool
	cancel   context.CancelFunc
	// keyed is set while the entry holds its key's turn on an ordered
	// route (guarded by runner.mu); key is then its key.
	keyed bool
	key   string
	// deadLetterLater is set while a failed dead-letter move waits to be
	// tried again, instead of a handler call.
	deadLetterLater *deadLetterLater
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
	streams := []string{stream}
	if hc.partitions > 0 {
		var err error
		if streams, err = Partitions(stream, hc.partitions); err != nil {
			return err
		}
	}
	routes := make([]*route, len(streams))
	for i, s := range streams {
		routes[i] = &route{stream: s, handle: typedHandler(c, s, fn), ordered: hc.ordered}
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

// typedHandler returns the erased handler that decodes an entry into a
// Message[T] and calls fn through the consumer's middleware and observer,
// turning a panic into a *PanicError.
func typedHandler[T any](c *Consumer, stream string, fn HandlerFunc[T]) func(context.Context, *entry) error {
	cfg := c.cfg
	untyped := isFields[T]()
	return func(ctx context.Context, e *entry) (err error) {
		m, err := decodeMessage[T](cfg.commonConfig, untyped, stream, e.id, e.deliveries, e.values)
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
// *DecodeError, so the entry is dead-lettered rather than retried.
func decodeMessage[T any](cfg commonConfig, untyped bool, stream, id string, deliveries int64, values map[string]any) (m *Message[T], err error) {
	m = &Message[T]{ID: id, Stream: stream, Deliveries: deliveries, values: values}
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
// starts reading: [ErrAlreadyStarted], [ErrNoHandlers], an error wrapping
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
		c.warnCapacity(r.log, len(routes))
		close(c.ready)
	}
	return r.run(ctx)
}

// warnCapacity logs setups where readers, each blocking a connection and
// holding in-flight room while it waits, can starve one another: more
// streams (partitions) than in-flight room, or than the client's pool.
func (c *Consumer) warnCapacity(log *slog.Logger, readers int) {
	if readers > c.cfg.maxInFlight {
		log.Warn("redstream: more streams than in-flight room: readers blocked on quiet streams hold the room the others need; raise WithMaxInFlight",
			slog.Int("streams", readers), slog.Int("max_in_flight", c.cfg.maxInFlight))
	}
	if rc, ok := c.rdb.(*redis.Client); ok && rc.Options().PoolSize < readers+2 {
		log.Warn("redstream: the client's pool is smaller than the consumer's readers (one blocked connection per stream) plus acknowledgements; raise redis.Options.PoolSize",
			slog.Int("streams", readers), slog.Int("pool_size", rc.Options().PoolSize))
	}
}

// runner is one Run's state: the readers, workers, acker, retry scheduler,
// lease keeper and reaper it owns.
type runner struct {
	c       *Consumer
	routes  []*route
	log     *slog.Logger
	backoff backoff.Policy // after failed Redis calls
	retry   backoff.Policy // between deliveries of a failed message

	// room holds one token per message the consumer may still take in. A
	// message holds its token from its read until it is acknowledged,
	// dead-lettered or given up, retries included.
	room    chan struct{}
	work    chan *entry
	acks    chan *entry
	retries chan retryAt
	// leftRoutes tells the retry scheduler of exclusive routes given up:
	// their waiting retries are let go.
	leftRoutes chan *route

	// held is every message the consumer holds, for lease renewal.
	mu   sync.Mutex
	held map[heldKey]*entry
	// keys has an element for each key of an ordered route that has an
	// entry in the workers' hands (retries included): the entries of that
	// key read since, waiting their turn in stream order.
	keys map[heldKey][]*entry
	// draining is set when the work channel closes: an entry whose turn
	// comes after that stays pending for a later run.
	draining bool

	// owned holds the exclusive routes this consumer holds the lease of;
	// only the own goroutine uses it. ownReaders counts their readers;
	// readersClosed (guarded by mu) is set when Run stops waiting for
	// readers to start.
	owned         map[*route]*owned
	ownReaders    sync.WaitGroup
	readersClosed bool

	// leftPending (guarded by mu) holds the entries let go during the
	// shutdown without being finished: handOff marks them idle for others.
	leftPending []*entry
	// undrained counts the readers of non-exclusive routes that have not
	// yet gone through their own pending entries; drainedAll is closed
	// when it reaches zero, and the reaper's first round waits for it.
	undrained  atomic.Int64
	drainedAll chan struct{}

	names *nameLease

	// A read of pending entries (the own-pending drain, a reaper's claim)
	// may return an entry this consumer finished while the read was on
	// the wire: it was pending when Redis answered. forget records what it
	// finishes in finished, numbered by finishGen, while such reads are in
	// flight (pendingReads counts them), and hold refuses an entry
	// finished after the read began. All three are guarded by mu.
	finishGen    uint64
	finished     map[heldKey]uint64
	pendingReads int
}

type heldKey struct {
	route *route
	id    string
}

func newRunner(c *Consumer, routes []*route) *runner {
	r := &runner{
		c:       c,
		routes:  routes,
		log:     c.cfg.logger.With(slog.String("group", c.group), slog.String("consumer", c.cfg.name)),
		backoff: backoff.Policy{Base: c.cfg.errorBackoffMin, Max: c.cfg.errorBackoffMax},
		retry:   backoff.Policy{Base: c.cfg.retryBackoffMin, Max: c.cfg.retryBackoffMax},
		room:    make(chan struct{}, c.cfg.maxInFlight),
		work:    make(chan *entry, c.cfg.maxInFlight),
		acks:    make(chan *entry, c.cfg.maxInFlight),
		retries: make(chan retryAt, c.cfg.maxInFlight),

		leftRoutes: make(chan *route, len(routes)),
		held:       make(map[heldKey]*entry),
		keys:       make(map[heldKey][]*entry),
		owned:      make(map[*route]*owned),

		drainedAll: make(chan struct{}),
		finished:   make(map[heldKey]uint64),
	}
	for range c.cfg.maxInFlight {
		r.room <- struct{}{}
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
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()

	// Feeders put messages in r.work and stop with ctx; workers drain it.
	var feeders, workers sync.WaitGroup
	perRead := max(1, min(r.c.cfg.batchSize, r.c.cfg.maxInFlight/len(r.routes)))
	exclusive := false
	for _, rt := range r.routes {
		if rt.exclusive {
			exclusive = true
			continue // read while this consumer holds its lease
		}
		feeders.Go(func() { r.read(ctx, rt, perRead) })
	}
	// Partition leases are kept until the last acknowledgements are sent.
	stopOwn := make(chan struct{})
	var ownership sync.WaitGroup
	if exclusive {
		ownership.Go(func() { r.own(ctx, stopOwn, perRead) })
	}
	feeders.Go(func() { r.scheduleRetries(ctx) })
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
		r.mu.Lock()
		r.readersClosed = true
		r.mu.Unlock()
		r.ownReaders.Wait()
		r.mu.Lock()
		r.draining = true
		close(r.work)
		r.mu.Unlock()
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
	close(stopLeases)
	close(r.acks)
	background.Wait()
	r.handOff()
	close(stopOwn)
	ownership.Wait()
	return err
}

// ensureGroup creates the group on stream (and the stream if missing),
// retrying failures that may pass until ctx ends, when it returns the last
// failure wrapped in ErrNotReady.
//
// A group that exists already needs no write: when XGROUP CREATE fails
// (a Redis out of memory refuses it before it would answer BUSYGROUP; a
// user may lack the permission), the group is looked up instead, so a
// consumer can start and drain a full Redis, which is what frees memory.
// Creating first keeps the usual start at one round trip.
func (r *runner) ensureGroup(ctx context.Context, stream string) error {
	redisCtx := context.WithoutCancel(ctx)
	for attempt := 1; ; attempt++ {
		err := createGroup(redisCtx, r.c.rdb, stream, r.c.group, r.c.cfg.groupStart)
		if err == nil {
			return nil
		}
		if exists, lookErr := lookupGroup(redisCtx, r.c.rdb, stream, r.c.group); lookErr == nil && exists {
			r.log.Info("redstream: consumer group exists; starting without creating it", slog.String("stream", stream), slog.Any("create_error", err))
			return nil
		}
		opErr := &OpError{Op: "create-group", Stream: stream, Group: r.c.group, Err: err}
		if isPermanent(err) {
			return opErr
		}
		r.report(opErr)
		if !sleepCtx(ctx, r.backoff.Delay(attempt)) {
			return fmt.Errorf("%w: %w", ErrNotReady, opErr)
		}
	}
}

// lookupGroup reports whether stream has group, reading only.
func lookupGroup(ctx context.Context, rdb redis.UniversalClient, stream, group string) (bool, error) {
	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "ERR no such key") {
			return false, nil
		}
		return false, err
	}
	for _, g := range groups {
		if g.Name == group {
			return true, nil
		}
	}
	return false, nil
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
	for _, transient := range []string{"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "MOVED", "ASK", "OOM"} {
		if redis.HasErrorPrefix(err, transient) {
			return false
		}
	}
	return true
}

// read is one stream's reader: it drains this consumer's own pending
// entries, then reads new ones, taking in no more than there is room for.
//
// A read that fails may have been executed by Redis with its reply lost (a
// timeout, a dropped connection): the entries it delivered are pending for
// this consumer, unseen. So after a failure the reader goes through its own
// pending entries again (reading them by XPENDING and XRANGE, which does
// not count deliveries; entries it already holds are skipped), and after a
// timeout it asks for fewer entries, down to one, until a read succeeds.
func (r *runner) read(ctx context.Context, rt *route, perRead int) {
	redisCtx := context.WithoutCancel(ctx)
	cursor := "0" // after this ID come own pending entries; "" once drained
	attempt := 0
	count := perRead
	drained := func() {
		if !rt.drained.Swap(true) && !rt.exclusive && r.undrained.Add(-1) == 0 {
			close(r.drainedAll)
		}
	}
	for {
		n := r.takeRoom(ctx, count)
		if n == 0 {
			return
		}
		var (
			entries []*entry
			next    string
			err     error
		)
		var since *uint64 // nil: entries read with ">", never held before
		if cursor != "" {
			gen := r.beginPendingRead()
			since = &gen
			entries, next, err = r.readPending(redisCtx, rt, cursor, n)
			if err == nil && next == "" {
				cursor = ""
				drained()
			} else if err == nil {
				cursor = next
			}
		} else {
			entries, err = r.readNew(redisCtx, rt, n)
		}
		if err != nil {
			if since != nil {
				r.endPendingRead()
			}
			r.giveRoom(n)
			attempt++
			// A read blocked when the stream key is deleted gets UNBLOCKED
			// (Redis 7) instead of NOGROUP: the group went with the key.
			if redis.HasErrorPrefix(err, "NOGROUP") || redis.HasErrorPrefix(err, "UNBLOCKED") {
				cursor = "" // the group's pending list went with it
				drained()
				r.recreateGroup(redisCtx, rt.stream)
			} else {
				r.report(&OpError{Op: "read", Stream: rt.stream, Group: r.c.group, Err: err})
				cursor = "0"
				if isTimeout(err) {
					count = max(1, count/2)
				}
			}
			if !sleepCtx(ctx, r.backoff.Delay(attempt)) {
				return
			}
			continue
		}
		attempt = 0
		count = min(perRead, count*2)
		r.giveRoom(n - len(entries))
		r.dispatch(ctx, entries, since)
		if since != nil {
			r.endPendingRead()
		}
	}
}

// beginPendingRead notes a read of pending entries about to start and
// returns the generation of finished entries it must not take back.
func (r *runner) beginPendingRead() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pendingReads++
	return r.finishGen
}

// endPendingRead notes a read of pending entries dispatched; with none
// left in flight, nothing finished needs remembering.
func (r *runner) endPendingRead() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pendingReads--
	if r.pendingReads == 0 {
		clear(r.finished)
	}
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dispatch hands read or claimed entries to the workers. Entries deleted
// from the stream while pending have nothing left to handle: they are
// acknowledged, which clears them from the pending list.
// Entries delivered more than MaxDeliveries times (the last delivery went
// to a consumer that died with it) are dead-lettered instead.
//
// An entry the consumer holds already (in a handler, buffered, waiting for
// a retry or an acknowledgement) is skipped, whatever path brought it
// again: a group rewound with XGROUP SETID, a reread of its own pending
// entries, a claim. Each entry has one live handler per process.
//
// Entries whose handler failed MaxDeliveries times already (recorded in
// Redis; the move to the dead-letter stream did not happen) are
// dead-lettered instead, and so are entries Redis delivered more than
// MaxDeliveries + CrashLoopDeliveries times (consumers died holding them).
//
// since is nil for entries read with ">"; for entries read from a pending
// list, it is the generation of finished entries when the read began:
// those finished after it are not taken back.
func (r *runner) dispatch(ctx context.Context, entries []*entry, since *uint64) {
	for _, e := range entries {
		if !r.hold(e, since) {
			r.giveRoom(1)
			continue
		}
		e.deliveries = e.attempts + 1
		switch {
		case e.values == nil:
			r.log.Warn("redstream: pending entry was deleted from the stream; clearing it", slog.String("stream", e.route.stream), slog.String("id", e.id))
			e.settled.Store(true)
			r.acks <- e
			r.giveRoom(1)
		case e.attempts >= int64(r.c.cfg.maxDeliveries):
			r.deadLetter(ctx, e, ReasonMaxDeliveries, fmt.Errorf("handler failed %d times", e.attempts))
		case e.redisDeliveries > int64(r.c.cfg.maxDeliveries+CrashLoopDeliveries):
			r.deadLetter(ctx, e, ReasonCrashLoop, fmt.Errorf("delivered %d times, %d handler failures recorded", e.redisDeliveries, e.attempts))
		default:
			r.toWork(e)
		}
	}
}

// toWork hands e to the workers, or, on an ordered route whose key has an
// entry in the workers' hands, queues it behind that key's earlier entries.
func (r *runner) toWork(e *entry) {
	if e.route.ordered {
		if key, _ := e.values[KeyField].(string); key != "" {
			k := heldKey{e.route, key}
			r.mu.Lock()
			if waiting, busy := r.keys[k]; busy {
				r.keys[k] = append(waiting, e)
				r.mu.Unlock()
				return
			}
			r.keys[k] = nil
			e.keyed, e.key = true, key
			r.mu.Unlock()
		}
	}
	r.work <- e
}

// nextOfKey gives e's key's turn to the next entry of that key, if one
// waits: the consumer is done with e. The send never blocks: the work
// channel has room for every message the consumer may hold.
func (r *runner) nextOfKey(e *entry) {
	if !e.route.ordered {
		return // only entries of ordered routes take a key's turn
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !e.keyed {
		return
	}
	e.keyed = false
	k := heldKey{e.route, e.key}
	waiting := r.keys[k]
	if len(waiting) == 0 {
		delete(r.keys, k)
		return
	}
	if givenUp(e.route) {
		// Let the key's held-back messages go with it, pending, in order,
		// for the partition's next owner.
		delete(r.keys, k)
		for _, w := range waiting {
			r.forgetLocked(heldKey{w.route, w.id})
		}
		r.giveRoom(len(waiting)) // never blocks: these held the tokens
		return
	}
	next := waiting[0]
	r.keys[k] = waiting[1:]
	next.keyed, next.key = true, e.key
	if r.draining {
		// Shutting down: next and those behind it stay pending, in order,
		// for this consumer's next run or a reaper.
		return
	}
	r.work <- next
}

// takeRoom waits for room for at least one message and takes up to want.
// It returns 0 when ctx ends first.
func (r *runner) takeRoom(ctx context.Context, want int) int {
	// A select with both cases ready picks at random: check ctx first, so a
	// shutdown never starts another blocking read.
	if ctx.Err() != nil {
		return 0
	}
	select {
	case <-r.room:
	case <-ctx.Done():
		return 0
	}
	return 1 + r.takeRoomNow(want-1)
}

// takeRoomNow takes up to want tokens without waiting.
func (r *runner) takeRoomNow(want int) int {
	n := 0
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

// hold records e as held and reports true, or reports false when an entry
// with its ID is held already, or (since not nil) was finished after
// generation since.
func (r *runner) hold(e *entry, since *uint64) bool {
	k := heldKey{e.route, e.id}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, held := r.held[k]; held {
		return false
	}
	if gen, ok := r.finished[k]; since != nil && ok && gen > *since {
		return false
	}
	r.held[k] = e
	return true
}

// release forgets e and frees its room: the consumer is done with it
// (dead-lettered, lost to another consumer, or left pending on purpose).
func (r *runner) release(e *entry) {
	r.forget(e)
	r.giveRoom(1)
	r.nextOfKey(e)
}

// acknowledge queues e's acknowledgement and frees its room.
func (r *runner) acknowledge(e *entry) {
	e.settled.Store(true)
	r.acks <- e
	r.giveRoom(1)
	r.nextOfKey(e)
}

// leave releases e, which stays pending for this consumer unfinished
// during the shutdown: handOff marks it idle for another consumer.
func (r *runner) leave(e *entry) {
	r.mu.Lock()
	r.leftPending = append(r.leftPending, e)
	r.mu.Unlock()
	r.release(e)
}

func (r *runner) forget(e *entry) {
	r.mu.Lock()
	r.forgetLocked(heldKey{e.route, e.id})
	r.mu.Unlock()
}

// forgetLocked drops k from held, remembering it as finished while reads
// of pending entries are in flight. r.mu must be held.
func (r *runner) forgetLocked(k heldKey) {
	delete(r.held, k)
	if r.pendingReads > 0 {
		r.finishGen++
		r.finished[k] = r.finishGen
	}
}

// readNew reads up to n entries never delivered to the group, waiting up to
// the block time for some to arrive.
func (r *runner) readNew(ctx context.Context, rt *route, n int) ([]*entry, error) {
	return r.readGroup(ctx, rt, ">", n, r.c.cfg.block)
}

// readGroup runs one XREADGROUP of up to n entries of rt's stream from id;
// a negative block does not block. Entries read with ">" are on their
// first delivery.
func (r *runner) readGroup(ctx context.Context, rt *route, id string, n int, block time.Duration) ([]*entry, error) {
	streams, err := r.c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    r.c.group,
		Consumer: r.c.cfg.name,
		Streams:  []string{rt.stream, id},
		Count:    int64(n),
		Block:    block,
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
			entries = append(entries, &entry{route: rt, id: m.ID, values: m.Values, redisDeliveries: 1})
		}
	}
	return entries, nil
}

// readPending reads up to n of this consumer's own pending entries with IDs
// above cursor ("0" for all), with their delivery counts and recorded
// failures, and returns the cursor to go on from ("" when there are no
// more). It reads with XPENDING and XRANGE rather than XREADGROUP from an
// ID, which Redis would count as one more delivery of each entry: a
// consumer restarting, or rereading after a lost reply, must not inflate
// the counts. Entries deleted from the stream come back without values.
// Both commands only read, so a client's retry of them is harmless.
func (r *runner) readPending(ctx context.Context, rt *route, cursor string, n int) ([]*entry, string, error) {
	start := "-"
	if cursor != "0" {
		start = "(" + cursor
	}
	pending, err := r.c.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: rt.stream, Group: r.c.group, Consumer: r.c.cfg.name, Start: start, End: "+", Count: int64(n),
	}).Result()
	if err != nil {
		return nil, "", err
	}
	if len(pending) == 0 {
		return nil, "", nil
	}
	entries := make([]*entry, len(pending))
	for i, p := range pending {
		entries[i] = &entry{route: rt, id: p.ID, redisDeliveries: max(1, p.RetryCount)}
	}
	if err := r.fillEntries(ctx, rt.stream, entries, false); err != nil {
		return nil, "", err
	}
	r.log.Info("redstream: redelivering own pending entries", slog.String("stream", rt.stream), slog.Int("count", len(entries)))
	return entries, pending[len(pending)-1].ID, nil
}

// fillEntries reads, in one round trip, each entry's fields (XRANGE; nil
// when it was deleted from the stream), its recorded handler failures and,
// with counts, its delivery count (XPENDING; 0 when it is not pending for
// this consumer any more).
func (r *runner) fillEntries(ctx context.Context, stream string, entries []*entry, counts bool) error {
	ranges := make([]*redis.XMessageSliceCmd, len(entries))
	var pendings []*redis.XPendingExtCmd
	ids := make([]string, len(entries))
	var attempts *redis.SliceCmd
	_, err := r.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, e := range entries {
			ids[i] = e.id
			if e.values == nil {
				ranges[i] = pipe.XRange(ctx, stream, e.id, e.id)
			}
			if counts {
				pendings = append(pendings, pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: r.c.group, Start: e.id, End: e.id, Count: 1}))
			}
		}
		attempts = pipe.HMGet(ctx, attemptsKey(stream, r.c.group), ids...)
		return nil
	})
	if err != nil {
		return err
	}
	for i, e := range entries {
		if ranges[i] != nil {
			if msgs := ranges[i].Val(); len(msgs) == 1 {
				e.values = msgs[0].Values
			}
		}
		if counts {
			// Not pending for this consumer any more (acknowledged or
			// claimed since): 0, for the caller to drop.
			e.redisDeliveries = 0
			if p := pendings[i].Val(); len(p) == 1 && p[0].Consumer == r.c.cfg.name {
				e.redisDeliveries = max(1, p[0].RetryCount)
			}
		}
		e.attempts = parseAttempts(attempts.Val()[i])
	}
	return nil
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
	// One cancellable context per worker, made anew only after a lost
	// lease cancelled it: a worker runs one handler at a time.
	ctx, cancel := context.WithCancel(handlerCtx)
	defer func() { cancel() }()
	for e := range r.work {
		if handlerCtx.Err() != nil {
			r.leave(e)
			continue
		}
		if ctx.Err() != nil {
			ctx, cancel = context.WithCancel(handlerCtx)
		}
		r.process(handlerCtx, ctx, cancel, e)
	}
}

// process runs e's handler with ctx, which markLost cancels through cancel
// while the handler runs, and settles the outcome.
func (r *runner) process(handlerCtx, ctx context.Context, cancel context.CancelFunc, e *entry) {
	if dl := e.deadLetterLater; dl != nil {
		e.deadLetterLater = nil
		r.deadLetter(handlerCtx, e, dl.reason, dl.cause)
		return
	}
	if e.retry && !r.reclaimForRetry(handlerCtx, e) {
		return
	}
	r.mu.Lock()
	lost := e.lost
	e.cancel = cancel
	r.mu.Unlock()
	if lost {
		r.release(e)
		return
	}
	err := e.route.handle(ctx, e)
	r.mu.Lock()
	lost = e.lost
	vanished := e.vanished
	e.cancel = nil
	r.mu.Unlock()
	r.settle(handlerCtx, e, err, lost, vanished)
}

// settle acts on a handler's outcome. A successful handler's message is
// acknowledged even if its lease was lost meanwhile: it was handled, and
// the acknowledgement only spares the new owner's duplicate.
//
// A failure counts as one handler attempt, recorded in Redis before the
// message is retried; after MaxDeliveries of them it is dead-lettered. A
// message no longer pending in Redis at all (vanished) cannot be retried:
// only this consumer's memory has it, so it is dead-lettered from there.
func (r *runner) settle(handlerCtx context.Context, e *entry, err error, lost, vanished bool) {
	if err == nil {
		r.acknowledge(e)
		return
	}
	var decodeErr *DecodeError
	switch {
	case errors.Is(err, ErrDrop):
		r.log.Info("redstream: handler dropped the message", slog.String("stream", e.route.stream), slog.String("id", e.id), slog.Any("error", err))
		r.acknowledge(e)
	case lost:
		r.log.Warn("redstream: lease lost while handling; the message is another consumer's now", slog.String("stream", e.route.stream), slog.String("id", e.id), slog.Any("error", err))
		r.release(e)
	case handlerCtx.Err() != nil:
		r.handlerFailed(e, err, "left pending (shutdown)")
		r.leave(e)
	case errors.As(err, &decodeErr):
		r.handlerFailed(e, err, "dead-lettering")
		r.deadLetter(handlerCtx, e, ReasonDecode, err)
	case errors.Is(err, ErrDeadLetter):
		r.handlerFailed(e, err, "dead-lettering")
		r.deadLetter(handlerCtx, e, ReasonHandler, err)
	case vanished:
		r.handlerFailed(e, err, "dead-lettering: no longer pending in Redis")
		r.deadLetter(handlerCtx, e, ReasonVanished, err)
	case r.isTrimmed(e):
		r.handlerFailed(e, err, "dead-lettering: trimmed from the stream")
		r.deadLetter(handlerCtx, e, ReasonTrimmed, err)
	case r.countFailure(handlerCtx, e) >= int64(r.c.cfg.maxDeliveries):
		r.handlerFailed(e, err, "dead-lettering after the last delivery")
		r.deadLetter(handlerCtx, e, ReasonMaxDeliveries, err)
	default:
		delay := r.retry.Delay(int(e.attempts))
		var retryErr *RetryError
		if errors.As(err, &retryErr) {
			delay = retryErr.Delay
		}
		if givenUp(e.route) {
			r.handlerFailed(e, err, "left pending for the partition's next owner")
			r.release(e)
			return
		}
		r.handlerFailed(e, err, "retrying in "+delay.Round(time.Millisecond).String())
		if obs := r.c.cfg.observer; obs != nil {
			obs.Retried(r.c.event(e, time.Now()), delay)
		}
		e.deliveries = e.attempts + 1
		e.retry = true
		r.retries <- retryAt{at: time.Now().Add(delay), e: e}
	}
}

// countFailure records one failed handler attempt of e in Redis and returns
// e's failed attempts. When Redis cannot be reached the count is kept in
// memory only: a later consumer may then give the message an attempt more,
// never one less.
func (r *runner) countFailure(handlerCtx context.Context, e *entry) int64 {
	e.attempts++
	ctx, cancel := context.WithTimeout(handlerCtx, ackFlushTimeout)
	defer cancel()
	n, err := recordAttempt(ctx, r.c.rdb, e.route.stream, r.c.group, e.id, e.attempts)
	if err != nil {
		r.report(&OpError{Op: "record-attempt", Stream: e.route.stream, Group: r.c.group, ID: e.id, Err: err})
		return e.attempts
	}
	e.attempts = max(e.attempts, n)
	return e.attempts
}

// reclaimForRetry renews e's lease and sets its delivery count before a
// retry; it reports false (having released e) when e is no longer this
// consumer's to handle.
func (r *runner) reclaimForRetry(handlerCtx context.Context, e *entry) bool {
	ctx, cancel := context.WithTimeout(handlerCtx, ackFlushTimeout)
	defer cancel()
	res, err := renewLeases(ctx, r.c.rdb, e.route.stream, r.c.group, r.c.cfg.name, e.deliveries, 0, []string{e.id})
	if err != nil {
		r.report(&OpError{Op: "lease", Stream: e.route.stream, Group: r.c.group, ID: e.id, Err: err})
		r.retries <- retryAt{at: time.Now().Add(r.backoff.Delay(int(e.deliveries))), e: e}
		return false
	}
	switch {
	case len(res.lost) > 0:
		r.log.Info("redstream: message pending for another consumer now; not retrying", slog.String("stream", e.route.stream), slog.String("id", e.id))
		r.release(e)
		return false
	case len(res.vanished) > 0:
		r.markVanished(e.route, e.id)
		r.deadLetter(handlerCtx, e, ReasonVanished, errors.New("no longer pending in Redis while waiting for a retry"))
		return false
	case len(res.deleted) > 0 || r.isTrimmed(e):
		// Only this consumer's memory holds it now: dead-letter it rather
		// than retry something a crash would lose.
		r.deadLetter(handlerCtx, e, ReasonTrimmed, errors.New("trimmed from the stream while waiting for a retry"))
		return false
	}
	e.retry = false
	return true
}

// deadLetter moves e to the dead-letter stream, retrying Redis failures a
// few times. If it cannot, an entry holding its key's turn (WithOrderedKeys)
// keeps it and its lease, and the move is tried again after a backoff, so
// the key's later messages do not overtake it; any other entry is let go,
// pending, and a reaper dead-letters it once it is idle.
func (r *runner) deadLetter(ctx context.Context, e *entry, reason string, cause error) {
	errText := ""
	if cause != nil {
		errText = cause.Error()
	}
	for attempt := 1; ; attempt++ {
		res, dlID, err := deadLetterMove(context.WithoutCancel(ctx), r.c.rdb, e.route.stream, r.c.group, r.c.cfg.name, e.id, reason, errText, -1, e.deliveries, reason == ReasonVanished, e.values)
		if err == nil {
			r.deadLettered(e.route.stream, e.id, e.deliveries, reason, cause, res, dlID)
			if obs := r.c.cfg.observer; obs != nil && res == moved {
				obs.DeadLettered(r.c.event(e, time.Now()), reason)
			}
			r.release(e)
			return
		}
		r.report(&OpError{Op: "dead-letter", Stream: e.route.stream, Group: r.c.group, ID: e.id, Err: err})
		if attempt < 3 && sleepCtx(ctx, r.backoff.Delay(attempt)) {
			continue
		}
		r.mu.Lock()
		keyed := e.keyed
		r.mu.Unlock()
		if keyed && ctx.Err() == nil && !givenUp(e.route) {
			e.deadLetterLater = &deadLetterLater{reason: reason, cause: cause}
			r.retries <- retryAt{at: time.Now().Add(r.backoff.Delay(attempt)), e: e}
			return
		}
		r.leave(e)
		return
	}
}

// deadLetterLater is a dead-letter move that failed, to try again.
type deadLetterLater struct {
	reason string
	cause  error
}

// deadLettered logs what the dead-letter script did.
func (r *runner) deadLettered(stream, id string, deliveries int64, reason string, cause error, res moveResult, dlID string) {
	attrs := []any{slog.String("stream", stream), slog.String("id", id), slog.String("reason", reason), slog.Int64("deliveries", deliveries)}
	switch res {
	case moved:
		r.log.Warn("redstream: message dead-lettered", append(attrs, slog.String("dead_letter_id", dlID), slog.Any("error", cause))...)
		r.notify(&OpError{Op: "dead-letter", Stream: stream, Group: r.c.group, ID: id, Err: fmt.Errorf("%s: %w", reason, errOrReason(cause, reason))})
	case movedGone:
		r.log.Warn("redstream: message to dead-letter was trimmed from the stream; cleared it from the pending list", attrs...)
	default:
		r.log.Info("redstream: message not dead-lettered: "+string(res), attrs...)
	}
}

func errOrReason(err error, reason string) error {
	if err != nil {
		return err
	}
	return errors.New(reason)
}

func (r *runner) handlerFailed(e *entry, err error, next string) {
	attrs := []any{slog.String("stream", e.route.stream), slog.String("id", e.id), slog.Int64("deliveries", e.deliveries), slog.String("next", next), slog.Any("error", err)}
	op := "handle"
	var decodeErr *DecodeError
	var panicErr *PanicError
	switch {
	case errors.As(err, &decodeErr):
		op = "decode"
		r.log.Error("redstream: cannot decode entry", attrs...)
	case errors.As(err, &panicErr):
		r.log.Error("redstream: handler panicked", append(attrs, slog.String("stack", string(panicErr.Stack)))...)
	default:
		r.log.Warn("redstream: handler failed", attrs...)
	}
	r.notify(&OpError{Op: op, Stream: e.route.stream, Group: r.c.group, ID: e.id, Err: err})
}

// retryAt is a failed message waiting for its next delivery.
type retryAt struct {
	at time.Time
	e  *entry
}

// retryHeap orders waiting retries by due time.
type retryHeap []retryAt

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(retryAt)) }
func (h *retryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// scheduleRetries hands failed messages back to the workers when their
// backoff has passed. Retries still waiting at shutdown stay pending in
// Redis: the next run of this consumer, or a reaper, delivers them.
func (r *runner) scheduleRetries(ctx context.Context) {
	var waiting retryHeap
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		var due <-chan time.Time
		if len(waiting) > 0 {
			timer.Reset(time.Until(waiting[0].at))
			due = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case w := <-r.retries:
			if givenUp(w.e.route) {
				r.release(w.e) // sent after its route's request was handled
				continue
			}
			heap.Push(&waiting, w)
		case rt := <-r.leftRoutes:
			kept := waiting[:0]
			var left []*entry
			for _, w := range waiting {
				if w.e.route == rt {
					left = append(left, w.e)
				} else {
					kept = append(kept, w)
				}
			}
			waiting = kept
			heap.Init(&waiting)
			for _, e := range left {
				r.release(e) // its key's held-back messages go too (nextOfKey)
			}
		case <-due:
			now := time.Now()
			for len(waiting) > 0 && !waiting[0].at.After(now) {
				e := heap.Pop(&waiting).(retryAt).e
				if givenUp(e.route) {
					r.release(e)
					continue
				}
				r.work <- e
			}
		}
	}
}

// leaseBatch caps the IDs renewed by one script call.
const leaseBatch = 200

// keepLeases keeps the idle time of every held message low, so reapers
// leave them alone, until stop is closed; a message found to belong to
// another consumer has its handler's context cancelled.
func (r *runner) keepLeases(stop <-chan struct{}) {
	ticker := time.NewTicker(max(r.c.cfg.minIdle/3, 10*time.Millisecond))
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
			r.renewOnce()
		}
	}
}

func (r *runner) renewOnce() {
	byRoute := make(map[*route][]string)
	r.mu.Lock()
	for k := range r.held {
		byRoute[k.route] = append(byRoute[k.route], k.id)
	}
	r.mu.Unlock()
	for rt, ids := range byRoute {
		for chunk := range slices.Chunk(ids, leaseBatch) {
			ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
			res, err := renewLeases(ctx, r.c.rdb, rt.stream, r.c.group, r.c.cfg.name, 0, 0, chunk)
			cancel()
			if err != nil {
				r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
				break
			}
			for _, id := range res.lost {
				r.markLost(rt, id)
			}
			for _, id := range res.deleted {
				r.markTrimmed(rt, id)
			}
			for _, id := range res.vanished {
				r.markVanished(rt, id)
			}
		}
	}
}

// markLost records that id is no longer this consumer's and cancels its
// handler, if running. An id acknowledged since the snapshot is not held
// any more and is ignored.
func (r *runner) markLost(rt *route, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.held[heldKey{rt, id}]
	if !ok || e.lost {
		return
	}
	e.lost = true
	if e.cancel != nil {
		e.cancel()
	}
}

// markVanished records that id is no longer pending in Redis at all, for
// any consumer (its stream or group was deleted, flushed or evicted; an
// operator deleted this consumer): its handler is not cancelled, since no
// one else can run it, and a failure dead-letters it from memory. An
// entry whose acknowledgement is already queued is left alone: it stopped
// being pending because it was handled.
func (r *runner) markVanished(rt *route, id string) {
	r.mu.Lock()
	e, ok := r.held[heldKey{rt, id}]
	if !ok || e.vanished || e.lost || e.settled.Load() {
		r.mu.Unlock()
		return
	}
	e.vanished = true
	r.mu.Unlock()
	r.log.Warn("redstream: a held message is no longer pending in Redis (stream, group or consumer deleted?); finishing it from memory, dead-lettering it if its handler fails",
		slog.String("stream", rt.stream), slog.String("id", id))
	r.notify(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, ID: id, Err: ErrVanished})
	if obs := r.c.cfg.observer; obs != nil {
		// Not event(e): a worker may be writing e's delivery count.
		obs.Vanished(r.c.eventOf(rt.stream, id, 0, time.Now()))
	}
}

// markTrimmed records that id was deleted from the stream while held.
func (r *runner) markTrimmed(rt *route, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.held[heldKey{rt, id}]; ok && !e.trimmed {
		e.trimmed = true
		r.log.Warn("redstream: a held message was trimmed from the stream; it will be dead-lettered if its handler fails", slog.String("stream", rt.stream), slog.String("id", id))
	}
}

func (r *runner) isTrimmed(e *entry) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return e.trimmed
}

// leaseResult sorts the IDs a lease renewal did not renew.
type leaseResult struct {
	lost     []string // pending for another consumer
	deleted  []string // pending for this one, but gone from the stream
	vanished []string // not pending at all
}

// renewLeases resets the idle time of ids this consumer still owns, raising
// their delivery count to deliveries when it is lower; with a positive
// idle, it sets their idle time to that instead, handing them to the next
// reaper. It returns the IDs it left untouched, sorted by why.
func renewLeases(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer string, deliveries int64, idle time.Duration, ids []string) (leaseResult, error) {
	args := make([]any, 0, 4+len(ids))
	args = append(args, group, consumer, deliveries, idle.Milliseconds())
	for _, id := range ids {
		args = append(args, id)
	}
	res, err := scripts.ClaimOwn.Run(ctx, rdb, []string{stream}, args...).Slice()
	if err != nil {
		return leaseResult{}, err
	}
	if len(res) != 3 {
		return leaseResult{}, fmt.Errorf("redstream: lease script returned %d lists, want 3", len(res))
	}
	return leaseResult{lost: stringList(res[0]), deleted: stringList(res[1]), vanished: stringList(res[2])}, nil
}

// handOffIdle is the idle time handOff gives the entries it lets go:
// longer than any MinIdle, shorter than the server's clock (Redis computes
// now minus it).
const handOffIdle = 365 * 24 * time.Hour

// handOff marks every entry this Run leaves pending unfinished (waiting
// for a retry, held back behind its key, let go at the shutdown timeout)
// idle for a year, so that another consumer's reaper takes them on its next
// round instead of after MinIdle. The script marks only entries still this
// consumer's. It runs once, when the workers are done and the last
// acknowledgements sent.
func (r *runner) handOff() {
	byRoute := make(map[*route][]string)
	r.mu.Lock()
	for k, e := range r.held {
		if !e.settled.Load() {
			byRoute[k.route] = append(byRoute[k.route], k.id)
		}
	}
	for _, e := range r.leftPending {
		byRoute[e.route] = append(byRoute[e.route], e.id)
	}
	r.leftPending = nil
	r.mu.Unlock()
	for rt, ids := range byRoute {
		slices.Sort(ids)
		ids = slices.Compact(ids)
		handed := 0
		for chunk := range slices.Chunk(ids, leaseBatch) {
			ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
			res, err := renewLeases(ctx, r.c.rdb, rt.stream, r.c.group, r.c.cfg.name, 0, handOffIdle, chunk)
			cancel()
			if err != nil {
				r.report(&OpError{Op: "hand-off", Stream: rt.stream, Group: r.c.group, Err: err})
				break
			}
			handed += len(chunk) - len(res.lost) - len(res.deleted) - len(res.vanished)
		}
		if handed > 0 {
			r.log.Info("redstream: handed unfinished messages over to the group", slog.String("stream", rt.stream), slog.Int("count", handed))
		}
	}
}

// stringList converts a script's array reply of strings.
func stringList(v any) []string {
	items, _ := v.([]any)
	out := make([]string, 0, len(items))
	for _, item := range items {
		if s, ok := item.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// ackBatchMax caps the IDs gathered into one round of XACKs.
const ackBatchMax = 512

// ackFlushTimeout bounds each attempt to send acknowledgements.
const ackFlushTimeout = 5 * time.Second

// ack gathers acknowledgements and sends them as multi-ID XACKs, one per
// stream, in one pipeline: whatever arrived while the previous round trip
// was in flight goes together. It returns when r.acks is closed and the
// last acknowledgements are sent (or given up after retries). runCtx is
// Run's context: see flushAcks.
func (r *runner) ack(ctx, runCtx context.Context) {
	batch := make(map[*route][]string)
	// failed holds, per route, the acknowledged entries that have failed
	// attempts recorded, to delete with the acknowledgement.
	failed := make(map[*route][]string)
	var entries []*entry
	add := func(e *entry) {
		batch[e.route] = append(batch[e.route], e.id)
		if e.attempts > 0 {
			failed[e.route] = append(failed[e.route], e.id)
		}
		entries = append(entries, e)
	}
	for e := range r.acks {
		add(e)
	gather:
		for len(entries) < ackBatchMax {
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
		r.flushAcks(ctx, runCtx, batch, failed)
		r.mu.Lock()
		for _, e := range entries {
			r.forgetLocked(heldKey{e.route, e.id})
		}
		r.mu.Unlock()
		clear(batch)
		clear(failed)
		clear(entries)
		entries = entries[:0]
	}
}

// flushAcks sends one round of XACKs, retrying with backoff. An
// acknowledgement given up means a redelivery of a handled message, so
// while Run runs (runCtx), failures that may pass (a dropped connection, a
// Redis restarting) are retried until the acknowledgements arrive: the
// messages stay held, with their leases renewed, and the acks channel
// filling up holds back the workers and so the reading. Refusals that
// retrying will not change, and any failure once runCtx has ended, get a
// few more attempts.
func (r *runner) flushAcks(ctx, runCtx context.Context, batch, failed map[*route][]string) {
	const lastAttempts = 5
	last := 0
	for attempt := 1; ; attempt++ {
		err := r.sendAcks(batch, failed)
		if err == nil {
			return
		}
		for rt, ids := range batch {
			r.report(&OpError{Op: "ack", Stream: rt.stream, Group: r.c.group, Err: fmt.Errorf("%d IDs: %w", len(ids), err)})
		}
		if runCtx.Err() == nil && !isPermanent(err) {
			// A shutdown cuts the wait short.
			sleepCtx(runCtx, r.backoff.Delay(attempt))
			continue
		}
		last++
		if last == lastAttempts || !sleepCtx(ctx, r.backoff.Delay(last)) {
			return
		}
	}
}

// sendAcks sends batch's XACKs, one per stream, and deletes the failed
// attempts recorded for the entries in failed.
func (r *runner) sendAcks(batch, failed map[*route][]string) error {
	ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
	defer cancel()
	var err error
	if len(batch) == 1 && len(failed) == 0 {
		for rt, ids := range batch {
			err = r.c.rdb.XAck(ctx, rt.stream, r.c.group, ids...).Err()
		}
	} else {
		_, err = r.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for rt, ids := range batch {
				pipe.XAck(ctx, rt.stream, r.c.group, ids...)
			}
			for rt, ids := range failed {
				pipe.HDel(ctx, attemptsKey(rt.stream, r.c.group), ids...)
			}
			return nil
		})
	}
	if obs := r.c.cfg.observer; obs != nil && err == nil {
		for rt, ids := range batch {
			obs.Acked(rt.stream, r.c.group, len(ids))
		}
	}
	return err
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
