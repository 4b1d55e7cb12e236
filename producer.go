package redstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Producer publishes payloads of type T to one stream. Create it with
// [NewProducer]. A Producer is safe for concurrent use; it holds no
// connection of its own and never closes the client it was given.
type Producer[T any] struct {
	rdb     redis.UniversalClient
	stream  string   // the logical stream
	streams []string // its partitions, or just stream
	// batches and asyncBatches hold one batcher per partition, of
	// synchronous and asynchronous publishes.
	batches      []*batcher
	asyncBatches []*batcher
	// clocks holds, with WithMaxAge, one server clock per partition: on a
	// cluster each partition may be on a node with its own clock.
	clocks       []*serverClock
	seedMu       sync.Mutex  // held while seedClocks reads TIME
	clocksSeeded atomic.Bool // seedClocks has run
	cfg          producerConfig
	fields       bool // T is Fields
	keyFunc      func(T) string
	turn         atomic.Uint32 // the next partition of a message without a key
	// pending holds a token per asynchronous publish not yet answered,
	// which bounds them (WithMaxPending); flushes tells Flush when those
	// queued before it are answered.
	pending chan struct{}
	flushes flushTracker

	// dedupeKeyFunc is WithDedupeKeyFunc's (dedupe.go), or nil.
	dedupeKeyFunc func(T) string
}

// NewProducer returns a Producer of T for stream. rdb may be any
// [redis.UniversalClient]: a plain, cluster or failover client. With
// [WithPartitions], stream is the logical stream's base name and the
// producer writes to its partitions. The error wraps [ErrInvalidOption] or
// [ErrInvalidStreamName].
func NewProducer[T any](rdb redis.UniversalClient, stream string, opts ...ProducerOption) (*Producer[T], error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalidOption)
	}
	if err := ValidateStream(stream); err != nil {
		return nil, err
	}
	cfg, err := newProducerConfig(opts)
	if err != nil {
		return nil, err
	}
	p := &Producer[T]{rdb: rdb, stream: stream, streams: []string{stream}, cfg: cfg, fields: isFields[T]()}
	if cfg.keyFunc != nil {
		fn, ok := cfg.keyFunc.(func(T) string)
		if !ok {
			var zero T
			return nil, fmt.Errorf("%w: WithKeyFunc takes %T, but the producer's payload type is %T", ErrInvalidOption, cfg.keyFunc, zero)
		}
		p.keyFunc = fn
	}
	if p.dedupeKeyFunc, err = dedupeFunc[T](&cfg); err != nil {
		return nil, err
	}
	if cfg.partitions > 0 {
		if p.streams, err = Partitions(stream, cfg.partitions); err != nil {
			return nil, err
		}
	}
	if cfg.minReplicas > 0 {
		if err := checkReplicaTimeout(rdb, cfg.replicaTimeout); err != nil {
			return nil, err
		}
	}
	p.pending = make(chan struct{}, cfg.maxPending)
	p.batches = make([]*batcher, len(p.streams))
	p.asyncBatches = make([]*batcher, len(p.streams))
	for i, s := range p.streams {
		p.batches[i] = &batcher{rdb: rdb, stream: s, maxLeaders: syncLeaders, minReplicas: cfg.minReplicas, replicaTimeout: cfg.replicaTimeout, sendq: make(chan *xaddReq)}
		p.asyncBatches[i] = &batcher{rdb: rdb, stream: s, maxLeaders: 1, minReplicas: cfg.minReplicas, replicaTimeout: cfg.replicaTimeout}
	}
	if cfg.maxAge > 0 {
		p.clocks = make([]*serverClock, len(p.streams))
		for i := range p.clocks {
			p.clocks[i] = &serverClock{now: cfg.now}
		}
	}
	return p, nil
}

// Stream returns the stream key the producer writes to; for a partitioned
// producer, the logical stream's base name.
func (p *Producer[T]) Stream() string { return p.stream }

// Partitions returns the stream keys the producer writes to: its
// partitions, or its one stream.
func (p *Producer[T]) Partitions() []string { return slices.Clone(p.streams) }

// route returns the partition a message with key (hasKey false: none)
// goes to.
func (p *Producer[T]) route(key string, hasKey bool) int {
	n := len(p.streams)
	switch {
	case n == 1:
		return 0
	case hasKey:
		return PartitionOf(key, n)
	default:
		return int(p.turn.Add(1) % uint32(n))
	}
}

// Publish appends v to the stream and returns the entry's ID. Concurrent
// calls are pipelined: while up to four round trips are in flight, the
// calls that arrive queue and go together in the next, each getting its own ID or
// error; a lone call is sent at once. A call whose ctx ends while it queues
// returns ctx's error and is not sent; one whose ctx ends while its round
// trip is in flight returns at once with an error wrapping both ctx's error
// and [ErrUncertain] (the round trip goes on; the entry may be written).
// The XADD is sent once: when the connection fails after it may have run,
// the error wraps [ErrUncertain] rather than the client sending it again
// and appending a second entry. The entry holds
// v encoded by the codec in the payload field, plus header fields from
// [HeaderSource] and [WithHeader]. Trimming set with [WithMaxLen],
// [WithMaxAge] or [WithMinID] happens in the same XADD.
//
// With [WithID], a publish whose ID already holds an entry returns the ID and
// [ErrDuplicate], so retrying a publish is safe; an ID not above the stream's
// last entry that holds no entry returns [ErrIDTooSmall]. A WithID publish
// whose reply was lost looks the ID up and returns it when the entry is
// there. With [WithDelay] or [WithDeliverAt] it returns a schedule ID
// instead of an entry ID (and the schedule ID with an error wrapping
// ErrUncertain when the outcome is unknown: [Producer.Cancel] makes
// sure); with [WithDedupeKey], a key published within the window returns
// the first entry's ID and [ErrDuplicate]. Safe for concurrent use.
func (p *Producer[T]) Publish(ctx context.Context, v T, opts ...PublishOption) (string, error) {
	part, args, pc, err := p.prepare(ctx, v, opts)
	if err != nil {
		return "", err
	}
	if call := p.scriptCallFor(part, args, &pc); call != nil {
		ids, errs := p.runScripts(ctx, []*scriptCall{call})
		return ids[0], errs[0]
	}
	b := p.batches[part]
	id, err := b.add(ctx, args)
	p.learnClock(part, pc.id, id)
	return p.result(ctx, b.stream, pc.id, id, err)
}

// PublishFuture is the result of a [Producer.PublishAsync] to come. Its
// methods are safe for concurrent use.
type PublishFuture struct {
	done chan struct{}
	id   string
	err  error
}

// Done returns a channel that is closed once the publish has its result.
func (f *PublishFuture) Done() <-chan struct{} { return f.done }

// Result waits for the publish and returns what [Producer.Publish] would
// have: the entry's ID, or an error. Select on [PublishFuture.Done] to wait
// with a deadline.
func (f *PublishFuture) Result() (string, error) {
	<-f.done
	return f.id, f.err
}

// PublishAsync queues v for publishing and returns without waiting for
// Redis: the entry is sent in the next pipelined round trip, with the other
// asynchronous publishes queued meanwhile, and the returned future gets its
// ID or error, the same as [Producer.Publish] would return. One goroutine
// can so keep many publishes in flight; entries of one partition (or of an
// unpartitioned producer) are sent in the order PublishAsync was called, one
// pipeline at a time. Order holds among the publishes that succeed: when a
// round trip fails, its publishes fail while later ones may succeed, so a
// failed publish that is retried lands after them; where that matters, stop
// at the first error and retry in order. A [Producer.Publish] does not wait
// for earlier PublishAsync calls and may overtake them.
//
// At most [WithMaxPending] publishes wait for their results at once (default
// [DefaultMaxPending]); beyond that PublishAsync blocks until one is
// answered, or returns ctx's error when ctx ends first. The error it returns
// is for a publish it did not queue: a bad option, a payload that does not
// encode, ctx's end. Once queued, a publish is sent even if ctx ends (ctx's
// values still serve [WithContextHeaders]): a request's context may well end
// before the pipeline goes out. Queued publishes live in memory only: call
// [Producer.Flush] before the process exits. Futures complete in call order,
// except those of [WithID] publishes that find their ID taken (telling a
// duplicate apart takes another round trip), and scheduled ([WithDelay])
// and deduplicated ([WithDedupeKey]) publishes, which are scripts sent on
// their own round trips, in no order with the others.
func (p *Producer[T]) PublishAsync(ctx context.Context, v T, opts ...PublishOption) (*PublishFuture, error) {
	part, args, pc, err := p.prepare(ctx, v, opts)
	if err != nil {
		return nil, err
	}
	b := p.asyncBatches[part]
	if ctx.Err() != nil {
		return nil, fmt.Errorf("redstream: publish to %s: %w", b.stream, ctx.Err())
	}
	select {
	case p.pending <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("redstream: publish to %s: %w", b.stream, ctx.Err())
	}
	epoch := p.flushes.queued()
	f := &PublishFuture{done: make(chan struct{})}
	explicitID := pc.id
	ctx = context.WithoutCancel(ctx)
	if call := p.scriptCallFor(part, args, &pc); call != nil {
		go func() {
			ids, errs := p.runScripts(ctx, []*scriptCall{call})
			f.id, f.err = ids[0], errs[0]
			<-p.pending
			close(f.done)
			p.flushes.answered(epoch)
		}()
		return f, nil
	}
	b.addAsync(ctx, args, func(id string, err error) {
		p.learnClock(part, explicitID, id)
		complete := func() {
			f.id, f.err = p.result(ctx, b.stream, explicitID, id, err)
			<-p.pending
			close(f.done)
			p.flushes.answered(epoch)
		}
		if explicitID != "" && redis.HasErrorPrefix(err, xaddIDTooSmall) {
			// Telling a duplicate apart takes a round trip: not on the
			// goroutine that leads the pipelines.
			go complete()
			return
		}
		complete()
	})
	return f, nil
}

// Flush waits until every publish queued by [Producer.PublishAsync] before
// it has its result, and returns nil, or ctx's error as soon as ctx ends
// (the publishes go on; a later Flush waits for them too). PublishAsync
// calls made while Flush waits are not held up, and Flush does not wait for
// them. Call it before the process exits: queued publishes live only in
// memory. Safe for concurrent use.
func (p *Producer[T]) Flush(ctx context.Context) error {
	return p.flushes.wait(ctx)
}

// prepare encodes one publish and picks its partition.
func (p *Producer[T]) prepare(ctx context.Context, v T, opts []PublishOption) (int, *redis.XAddArgs, publishConfig, error) {
	pc, err := applyPublishOptions(opts)
	if err != nil {
		return 0, nil, pc, err
	}
	if err := checkSpecial(&pc, false); err != nil {
		return 0, nil, pc, err
	}
	p.applyKey(v, &pc)
	if pc.id != "" && len(p.streams) > 1 && !pc.hasKey {
		return 0, nil, pc, fmt.Errorf("%w: WithID on a partitioned producer needs a key (WithKey or WithKeyFunc), so that a retry goes to the same partition", ErrInvalidOption)
	}
	part, err := p.routeOf(v, &pc)
	if err != nil {
		return 0, nil, pc, err
	}
	p.seedClocks(ctx)
	args, err := p.xaddArgs(ctx, v, part, &pc)
	if err != nil {
		return 0, nil, pc, err
	}
	return part, args, pc, nil
}

// xaddIDTooSmall starts Redis's error for an explicit ID not above the top.
const xaddIDTooSmall = "The ID specified in XADD is equal or smaller"

// result turns one XADD's outcome into what Publish returns, reporting it
// to the observer.
func (p *Producer[T]) result(ctx context.Context, stream, explicitID, id string, err error) (string, error) {
	if obs := p.cfg.observer; obs != nil {
		obs.Published(stream, 1, err)
	}
	if err == nil {
		return id, nil
	}
	var replErr *ReplicationError
	if errors.As(err, &replErr) {
		return id, err
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return "", fmt.Errorf("redstream: publish to %s: %w", stream, err)
	}
	refreshTopology(p.rdb, err)
	if explicitID != "" && redis.HasErrorPrefix(err, xaddIDTooSmall) {
		return p.explicitIDConflict(context.WithoutCancel(ctx), stream, explicitID)
	}
	if explicitID != "" && mayHaveRun(err) && p.holds(context.WithoutCancel(ctx), stream, explicitID) {
		// The entry is there: the publish did what it was asked.
		return explicitID, nil
	}
	return "", fmt.Errorf("redstream: publish to %s: %w", stream, uncertain(err))
}

// applyKey sets pc's key from the producer's key func when the call gave
// none, or else from a Fields entry's own key field; an empty key counts
// as none.
func (p *Producer[T]) applyKey(v T, pc *publishConfig) {
	if !pc.hasKey && p.keyFunc != nil {
		pc.key = p.keyFunc(v)
		pc.hasKey = true
	}
	if !pc.hasKey && p.fields {
		// An untyped entry carrying the key field (copied from a stream)
		// is routed by it, as consumers will read it.
		pc.key, pc.hasKey = any(v).(Fields)[KeyField]
	}
	if pc.key == "" {
		pc.hasKey = false
	}
}

// explicitIDConflict tells a retried publish (the ID holds an entry) from an
// ID that cannot be written.
func (p *Producer[T]) explicitIDConflict(ctx context.Context, stream, id string) (string, error) {
	existing, err := p.rdb.XRangeN(ctx, stream, id, id, 1).Result()
	if err != nil {
		return "", fmt.Errorf("redstream: publish to %s: ID %s rejected, and checking for an existing entry failed: %w", stream, id, err)
	}
	if len(existing) == 1 {
		return id, ErrDuplicate
	}
	return "", fmt.Errorf("%w: %s, stream %s", ErrIDTooSmall, id, stream)
}

// holds reports whether stream has an entry with this ID, false when it
// cannot tell.
func (p *Producer[T]) holds(ctx context.Context, stream, id string) bool {
	existing, err := p.rdb.XRangeN(ctx, stream, id, id, 1).Result()
	return err == nil && len(existing) == 1
}

// BatchError is returned by [Producer.PublishBatch] when some entries were
// not published. Errs has one element per payload: nil for those published.
type BatchError struct {
	Errs []error
}

func (e *BatchError) Error() string {
	failed, first := 0, error(nil)
	for _, err := range e.Errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	return fmt.Sprintf("redstream: %d of %d entries not published; first error: %v", failed, len(e.Errs), first)
}

// Unwrap returns the errors of the entries that failed.
func (e *BatchError) Unwrap() []error {
	var errs []error
	for _, err := range e.Errs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// PublishBatch appends every payload of vs in one round trip (a pipeline
// of XADDs, in order; on a cluster, one per node, in parallel; with
// [WithMinReplicas], one per partition, in parallel, each followed by its
// WAIT) and returns their IDs, in order. For a partitioned producer each entry goes to its
// key's partition. The entries are not appended atomically: when some fail,
// their IDs are "" and the error is a [*BatchError] telling which. An
// encoding error publishes nothing. [WithID] is not allowed; other publish
// options apply to every entry. With [WithMinReplicas], entries written but
// not confirmed by enough replicas have their IDs and a [*ReplicationError].
// Entries whose outcome is unknown (the connection failed after the
// pipeline may have run, or ctx ended during the round trip, which then
// goes on without the caller) have errors wrapping [ErrUncertain]: the XADDs
// are never sent twice. With [WithDelay] or [WithDeliverAt] every entry is
// scheduled and the IDs are schedule IDs; with [WithDedupeKeyFunc] every
// entry is deduplicated, a duplicate getting the first entry's ID and an
// error wrapping [ErrDuplicate] in the BatchError.
func (p *Producer[T]) PublishBatch(ctx context.Context, vs []T, opts ...PublishOption) ([]string, error) {
	pc, err := applyPublishOptions(opts)
	if err != nil {
		return nil, err
	}
	if pc.id != "" {
		return nil, fmt.Errorf("%w: WithID is not allowed with PublishBatch", ErrInvalidOption)
	}
	if err := checkSpecial(&pc, true); err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, nil
	}
	args := make([]*redis.XAddArgs, len(vs))
	parts := make([]int, len(vs))
	calls := make([]*scriptCall, len(vs))
	p.seedClocks(ctx)
	for i, v := range vs {
		epc := pc
		p.applyKey(v, &epc)
		if parts[i], err = p.routeOf(v, &epc); err != nil {
			return nil, fmt.Errorf("redstream: batch entry %d: %w", i, err)
		}
		if args[i], err = p.xaddArgs(ctx, v, parts[i], &epc); err != nil {
			return nil, fmt.Errorf("redstream: batch entry %d: %w", i, err)
		}
		calls[i] = p.scriptCallFor(parts[i], args[i], &epc)
	}
	if calls[0] != nil {
		// Scheduled, or deduplicated by WithDedupeKeyFunc: every entry is.
		return p.publishBatchScripted(ctx, calls)
	}
	// The round trip runs on its own slices: a caller whose ctx ends
	// leaves without waiting for it (awaitCtx).
	sentIDs := make([]string, len(vs))
	sentErrs := make([]error, len(vs))
	send := func() {
		ids, errs := sentIDs, sentErrs
		if p.cfg.minReplicas == 0 {
			cmds := make([]*redis.StringCmd, len(vs))
			_, _ = p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
				for i, a := range args {
					cmd := xaddCmd(ctx, a)
					_ = pipe.Process(ctx, cmd)
					cmds[i] = cmd.StringCmd
				}
				return nil
			})
			for i, cmd := range cmds {
				ids[i], errs[i] = cmd.Result()
			}
		} else {
			// WAIT counts the writes of its own connection: one pipeline per
			// partition, to its primary, the partitions in parallel.
			var wg sync.WaitGroup
			for part, b := range p.batches {
				var idx []int
				for i := range args {
					if parts[i] == part {
						idx = append(idx, i)
					}
				}
				if len(idx) == 0 {
					continue
				}
				wg.Go(func() {
					sub := make([]*redis.XAddArgs, len(idx))
					for j, i := range idx {
						sub[j] = args[i]
					}
					subIDs, subErrs := make([]string, len(idx)), make([]error, len(idx))
					b.exec(ctx, sub, subIDs, subErrs)
					for j, i := range idx {
						ids[i], errs[i] = subIDs[j], subErrs[j]
					}
				})
			}
			wg.Wait()
		}
	}
	ids, errs := sentIDs, sentErrs
	if !awaitCtx(ctx, send) {
		ids, errs = make([]string, len(vs)), make([]error, len(vs))
		for i := range errs {
			errs[i] = &uncertainError{err: ctx.Err()}
		}
	}
	for i, id := range ids {
		p.learnClock(parts[i], "", id)
	}
	var batchErr *BatchError
	for i, err := range errs {
		if err == nil {
			continue
		}
		if batchErr == nil {
			batchErr = &BatchError{Errs: make([]error, len(vs))}
		}
		var replErr *ReplicationError
		if errors.As(err, &replErr) {
			batchErr.Errs[i] = err
			continue
		}
		ids[i] = ""
		refreshTopology(p.rdb, err)
		batchErr.Errs[i] = fmt.Errorf("redstream: publish to %s: %w", args[i].Stream, uncertain(err))
	}
	if obs := p.cfg.observer; obs != nil {
		p.observeBatch(obs, parts, errs)
	}
	if batchErr != nil {
		return ids, batchErr
	}
	return ids, nil
}

// observeBatch reports a batch to obs once per partition it wrote to,
// with a *BatchError of that partition's entries when some failed.
func (p *Producer[T]) observeBatch(obs Observer, parts []int, errs []error) {
	byPart := make([][]error, len(p.streams))
	for i, part := range parts {
		byPart[part] = append(byPart[part], errs[i])
	}
	for part, partErrs := range byPart {
		if len(partErrs) == 0 {
			continue
		}
		var err error
		if slices.ContainsFunc(partErrs, func(e error) bool { return e != nil }) {
			err = &BatchError{Errs: partErrs}
		}
		obs.Published(p.streams[part], len(partErrs), err)
	}
}

func applyPublishOptions(opts []PublishOption) (publishConfig, error) {
	var pc publishConfig
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyPublish(&pc); err != nil {
			return publishConfig{}, err
		}
	}
	return pc, nil
}

// xaddArgs encodes v with its headers into the arguments of one XADD to
// partition part.
func (p *Producer[T]) xaddArgs(ctx context.Context, v T, part int, pc *publishConfig) (*redis.XAddArgs, error) {
	headers := pc.headers
	if p.cfg.contextHeaders != nil {
		headers = slices.Clone(headers)
		p.cfg.contextHeaders(ctx, func(name, value string) { headers = append(headers, name, value) })
	}
	values, err := p.encode(v, headers, pc)
	if err != nil {
		return nil, err
	}
	ageBound := ""
	if p.clocks != nil {
		ageBound = p.clocks[part].ageBound(p.cfg.maxAge)
	}
	a := &redis.XAddArgs{Stream: p.streams[part], Values: values, ID: pc.id}
	writeTrim(a, p.cfg, pc, ageBound)
	return a, nil
}
