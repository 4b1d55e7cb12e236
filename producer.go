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
	headerSource headerSource
	// payloadFieldArg is the payload field's name in an interface, for
	// the XADDs' arguments: converted once rather than per publish.
	payloadFieldArg any
	keyFunc         func(T) string
	turn            atomic.Uint32 // the next partition of a message without a key
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
	p := &Producer[T]{rdb: rdb, stream: stream, streams: []string{stream}, cfg: cfg, fields: isFields[T](), headerSource: headerSourceOf[T](), payloadFieldArg: cfg.payloadField}
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
		p.batches[i] = newBatcher(rdb, s, syncSenders, cfg)
		p.asyncBatches[i] = newBatcher(rdb, s, 1, cfg)
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
// calls are pipelined: while up to two round trips are in flight, the
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
	if explicitID != "" && mayHaveRun(err) {
		if held, _ := p.holds(context.WithoutCancel(ctx), stream, explicitID); held {
			// The entry is there: the publish did what it was asked.
			return explicitID, nil
		}
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
	held, err := p.holds(ctx, stream, id)
	if err != nil {
		return "", fmt.Errorf("redstream: publish to %s: ID %s rejected, and checking for an existing entry failed: %w", stream, id, err)
	}
	if held {
		return id, ErrDuplicate
	}
	return "", fmt.Errorf("%w: %s, stream %s", ErrIDTooSmall, id, stream)
}

// holds reports whether stream has an entry with this ID.
func (p *Producer[T]) holds(ctx context.Context, stream, id string) (bool, error) {
	existing, err := p.rdb.XRangeN(ctx, stream, id, id, 1).Result()
	return err == nil && len(existing) == 1, err
}

func applyPublishOptions(opts []PublishOption) (publishConfig, error) {
	if len(opts) == 0 {
		// Without options, pc is never passed to one, and stays off the
		// heap.
		return publishConfig{}, nil
	}
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
		headers = p.contextHeaders(ctx, headers)
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

// contextHeaders returns headers followed by those [WithContextHeaders]
// derives from ctx. (A func of its own: the closure's variable would
// otherwise live on the heap for every publish.)
func (p *Producer[T]) contextHeaders(ctx context.Context, headers []string) []string {
	headers = slices.Clone(headers)
	p.cfg.contextHeaders(ctx, func(name, value string) { headers = append(headers, name, value) })
	return headers
}
