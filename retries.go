package redstream

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"time"
)

// The retry scheduler: one goroutine, started by runner.run and stopped by
// Run's context, owns the heap of failed messages waiting for their next
// delivery and hands each back to the workers when due (after reclaiming
// it, in the worker, with reclaimForRetry). Retries still waiting at
// shutdown stay held, for the hand-off; those of a partition given up are
// let go at once.

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

// reclaimForRetry renews e's lease and sets its delivery count before a
// retry; it reports false (having released e) when e is no longer this
// consumer's to handle.
func (r *runner) reclaimForRetry(handlerCtx context.Context, e *entry) bool {
	ctx, cancel := context.WithTimeout(handlerCtx, ackFlushTimeout)
	defer cancel()
	sent := monoNow()
	res, err := renewLeases(ctx, r.c.rdb, e.route.stream, r.c.group, r.c.cfg.name, e.deliveries, 0, []string{e.id})
	if err != nil {
		r.report(&OpError{Op: "lease", Stream: e.route.stream, Group: r.c.group, ID: e.id, Err: err})
		r.retries <- retryAt{at: time.Now().Add(r.backoff.Delay(int(e.deliveries))), e: e}
		return false
	}
	switch {
	case len(res.lost) > 0:
		r.log.Info("redstream: message taken over by another consumer; not retrying", slog.String("stream", e.route.stream), slog.String("id", e.id))
		r.release(e)
		return false
	case len(res.unrecorded) > 0 && e.recorded.Load():
		// Its failure was recorded, and the record is gone with its
		// pending entry: whoever took it over (its lease had lapsed)
		// finished it.
		r.log.Info("redstream: message finished by another consumer meanwhile; not retrying", slog.String("stream", e.route.stream), slog.String("id", e.id))
		r.release(e)
		return false
	case len(res.vanished) > 0 || len(res.unrecorded) > 0:
		r.markVanished(e.route, e.id)
		r.deadLetter(handlerCtx, e, ReasonVanished, errors.New("no longer pending in Redis while waiting for a retry"))
		return false
	case len(res.deleted) > 0 || r.held.isTrimmed(e):
		// Only this consumer's memory holds it now: dead-letter it rather
		// than retry something a crash would lose.
		r.deadLetter(handlerCtx, e, ReasonTrimmed, errors.New("trimmed from the stream while waiting for a retry"))
		return false
	}
	e.leasedAt.Store(sent)
	e.retry = false
	return true
}
