package redstream

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// Producer publishes payloads of type T to one stream. Create it with
// [NewProducer]. A Producer is safe for concurrent use; it holds no
// connection of its own and never closes the client it was given.
type Producer[T any] struct {
	rdb    redis.UniversalClient
	stream string
	cfg    producerConfig
	fields bool // T is Fields
	batch  *batcher
}

// NewProducer returns a Producer of T for stream. rdb may be any
// [redis.UniversalClient]: a plain, cluster or failover client. The error
// wraps [ErrInvalidOption] or [ErrInvalidStreamName].
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
	return &Producer[T]{rdb: rdb, stream: stream, cfg: cfg, fields: isFields[T](), batch: &batcher{rdb: rdb}}, nil
}

// Stream returns the stream key the producer writes to.
func (p *Producer[T]) Stream() string { return p.stream }

// Publish appends v to the stream and returns the entry's ID. Concurrent
// calls are pipelined: while one round trip is in flight, the calls that
// arrive queue and go together in the next, each getting its own ID or
// error; a lone call is sent at once. A call whose ctx ends while it queues
// returns ctx's error and is not sent; once sent, it waits for the round
// trip, which the client's read and write timeouts bound. The entry holds
// v encoded by the codec in the payload field, plus header fields from
// [HeaderSource] and [WithHeader]. Trimming set with [WithMaxLen],
// [WithMaxAge] or [WithMinID] happens in the same XADD.
//
// With [WithID], a publish whose ID already holds an entry returns the ID and
// [ErrDuplicate], so retrying a publish is safe; an ID not above the stream's
// last entry that holds no entry returns [ErrIDTooSmall].
func (p *Producer[T]) Publish(ctx context.Context, v T, opts ...PublishOption) (string, error) {
	pc, err := applyPublishOptions(opts)
	if err != nil {
		return "", err
	}
	args, err := p.xaddArgs(ctx, v, &pc)
	if err != nil {
		return "", err
	}
	id, err := p.batch.add(ctx, args)
	if obs := p.cfg.observer; obs != nil {
		obs.Published(p.stream, 1, err)
	}
	if err == nil {
		return id, nil
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return "", fmt.Errorf("redstream: publish to %s: %w", p.stream, err)
	}
	if pc.id != "" && redis.HasErrorPrefix(err, "The ID specified in XADD is equal or smaller") {
		return p.explicitIDConflict(ctx, pc.id)
	}
	return "", fmt.Errorf("redstream: publish to %s: %w", p.stream, err)
}

// explicitIDConflict tells a retried publish (the ID holds an entry) from an
// ID that cannot be written.
func (p *Producer[T]) explicitIDConflict(ctx context.Context, id string) (string, error) {
	existing, err := p.rdb.XRangeN(ctx, p.stream, id, id, 1).Result()
	if err != nil {
		return "", fmt.Errorf("redstream: publish to %s: ID %s rejected, and checking for an existing entry failed: %w", p.stream, id, err)
	}
	if len(existing) == 1 {
		return id, ErrDuplicate
	}
	return "", fmt.Errorf("%w: %s, stream %s", ErrIDTooSmall, id, p.stream)
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

// PublishBatch appends every payload of vs to the stream in one round trip
// (a pipeline of XADDs, in order) and returns their IDs, in order. The
// entries are not appended atomically: when some fail, their IDs are ""
// and the error is a [*BatchError] telling which. An encoding error publishes
// nothing. [WithID] is not allowed; other publish options apply to every entry.
func (p *Producer[T]) PublishBatch(ctx context.Context, vs []T, opts ...PublishOption) ([]string, error) {
	pc, err := applyPublishOptions(opts)
	if err != nil {
		return nil, err
	}
	if pc.id != "" {
		return nil, fmt.Errorf("%w: WithID is not allowed with PublishBatch", ErrInvalidOption)
	}
	if len(vs) == 0 {
		return nil, nil
	}
	args := make([]*redis.XAddArgs, len(vs))
	for i, v := range vs {
		if args[i], err = p.xaddArgs(ctx, v, &pc); err != nil {
			return nil, fmt.Errorf("redstream: batch entry %d: %w", i, err)
		}
	}
	cmds := make([]*redis.StringCmd, len(vs))
	_, _ = p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, a := range args {
			cmds[i] = pipe.XAdd(ctx, a)
		}
		return nil
	})
	ids := make([]string, len(vs))
	var batchErr *BatchError
	for i, cmd := range cmds {
		id, err := cmd.Result()
		if err != nil {
			if batchErr == nil {
				batchErr = &BatchError{Errs: make([]error, len(vs))}
			}
			batchErr.Errs[i] = fmt.Errorf("redstream: publish to %s: %w", p.stream, err)
			continue
		}
		ids[i] = id
	}
	if obs := p.cfg.observer; obs != nil {
		var err error
		if batchErr != nil {
			err = batchErr
		}
		obs.Published(p.stream, len(vs), err)
	}
	if batchErr != nil {
		return ids, batchErr
	}
	return ids, nil
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

// xaddArgs encodes v with its headers into the arguments of one XADD.
func (p *Producer[T]) xaddArgs(ctx context.Context, v T, pc *publishConfig) (*redis.XAddArgs, error) {
	headers := pc.headers
	if p.cfg.contextHeaders != nil {
		headers = slices.Clone(headers)
		p.cfg.contextHeaders(ctx, func(name, value string) { headers = append(headers, name, value) })
	}
	values, err := p.encode(v, headers)
	if err != nil {
		return nil, err
	}
	a := &redis.XAddArgs{Stream: p.stream, Values: values, ID: pc.id}
	writeTrim(a, p.cfg, pc)
	return a, nil
}

// encode returns the entry's fields as name, value pairs: headers first,
// then the payload field, as the guide lays entries out.
func (p *Producer[T]) encode(v T, extra []string) ([]any, error) {
	var fromPayload map[string]string
	if hs, ok := any(v).(HeaderSource); ok {
		fromPayload = hs.Headers()
	} else if hs, ok := any(&v).(HeaderSource); ok {
		// Headers declared on *T count for a Producer of T too.
		fromPayload = hs.Headers()
	}
	if p.fields {
		return p.encodeFields(any(v).(Fields), extra)
	}
	data, err := p.cfg.codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("redstream: encode payload for %s: %w", p.stream, err)
	}
	n := len(fromPayload) + len(extra)/2
	values := make([]any, 0, 2*n+2)
	if n > 0 {
		seen := make(map[string]struct{}, n)
		for name, value := range fromPayload {
			if values, err = appendHeader(values, seen, name, value, p.cfg.payloadField); err != nil {
				return nil, err
			}
		}
		for i := 0; i < len(extra); i += 2 {
			if values, err = appendHeader(values, seen, extra[i], extra[i+1], p.cfg.payloadField); err != nil {
				return nil, err
			}
		}
	}
	return append(values, p.cfg.payloadField, data), nil
}

// encodeFields writes an untyped payload as the entry's fields.
func (p *Producer[T]) encodeFields(f Fields, extra []string) ([]any, error) {
	values := make([]any, 0, 2*len(f)+len(extra))
	seen := make(map[string]struct{}, len(f)+len(extra)/2)
	var err error
	for name, value := range f {
		if name == "" {
			return nil, fmt.Errorf("%w: empty field name", ErrInvalidOption)
		}
		seen[name] = struct{}{}
		values = append(values, name, value)
	}
	for i := 0; i < len(extra); i += 2 {
		if values, err = appendHeader(values, seen, extra[i], extra[i+1], ""); err != nil {
			return nil, err
		}
	}
	if len(values) == 0 {
		return nil, errors.New("redstream: cannot publish an entry with no fields")
	}
	return values, nil
}
