package redstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// PublishBatch and its error: many payloads in one round trip.

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
