package redstream

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// PublishAsync, its futures and Flush: publishes that do not wait for
// Redis. The flush epochs are in flush.go, the pipelines in batcher.go.

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
