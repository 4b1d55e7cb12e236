package redstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// The dispatcher and the workers: dispatch takes what the reader, the
// reaper or a partition take-over read, holds it and hands it to the
// workers (in key order on ordered routes); WithConcurrency workers,
// started by runner.run and stopped when the work channel closes, run the
// handlers and settle each outcome: acknowledgement (acker.go), retry
// (retries.go) or dead letter. They own nothing but the message in hand;
// what is held, and key turns, are the heldSet's.

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
		if !r.held.hold(e, since) {
			r.held.giveRoom(1)
			continue
		}
		retry, ours, attempts := retryFor(e.values, r.c.group)
		if ours {
			// A long retry re-appended (longretry.go): its attempts go on
			// from those before the move.
			e.attempts = max(e.attempts, attempts)
		}
		e.deliveries = e.attempts + 1
		switch {
		case retry && !ours:
			// Another group's retry, re-appended: this group handled the
			// message in its first entry.
			r.held.uncount(e)
			e.settled.Store(true)
			r.acks <- e
			r.held.giveRoom(1)
		case e.values == nil:
			r.log.Warn("redstream: pending entry was deleted from the stream; clearing it", slog.String("stream", e.route.stream), slog.String("id", e.id))
			r.held.uncount(e)
			e.settled.Store(true)
			r.acks <- e
			r.held.giveRoom(1)
		case e.attempts >= int64(r.c.cfg.maxDeliveries):
			r.deadLetter(ctx, e, ReasonMaxDeliveries, fmt.Errorf("handler failed %d times", e.attempts))
		case e.redisDeliveries > int64(r.c.cfg.maxDeliveries+CrashLoopDeliveries):
			r.deadLetter(ctx, e, ReasonCrashLoop, fmt.Errorf("delivered %d times, %d handler failures recorded", e.redisDeliveries, e.attempts))
		case givenUp(e.route) || leaseExpired(e.route) || paused(e.route):
			// Read after the partition was given up (the read was on the
			// wire), or after its lease may have expired: starting it could
			// overtake what was let go before it. It stays pending for the
			// next owner. Read after the stream was paused: it stays
			// pending for this consumer, which reads it again on resume.
			r.release(e)
		default:
			r.toWork(e)
		}
	}
}

// toWork hands e to the workers, or, on an ordered route whose key has an
// entry in the workers' hands, queues it behind that key's earlier entries.
func (r *runner) toWork(e *entry) {
	if e.route.ordered {
		if key, _ := e.values[KeyField].(string); key != "" && !r.held.takeTurn(e, key) {
			return
		}
	}
	r.enqueue(e)
}

// nextOfKey gives e's key's turn to the next entry of that key, if one
// waits: the consumer is done with e. The send never blocks: the work
// channel has room for every message the consumer may hold. On a route
// given up, the key's waiting entries are let go instead, pending, in
// order, for the partition's next owner.
func (r *runner) nextOfKey(e *entry) {
	if !e.route.ordered {
		return // only entries of ordered routes take a key's turn
	}
	r.held.giveRoom(r.held.passTurn(e, givenUp(e.route), r.enqueue))
}

// release forgets e and frees its room: the consumer is done with it
// (dead-lettered, lost to another consumer, or left pending on purpose).
func (r *runner) release(e *entry) {
	r.held.forget(e)
	r.held.giveRoom(1)
	r.nextOfKey(e)
}

// acknowledge queues e's acknowledgement and frees its room.
func (r *runner) acknowledge(e *entry) {
	r.held.uncount(e)
	e.settled.Store(true)
	r.acks <- e
	r.held.giveRoom(1)
	r.nextOfKey(e)
}

// leave releases e, which stays pending for this consumer unfinished
// during the shutdown: handOff marks it idle for another consumer.
func (r *runner) leave(e *entry) {
	r.held.leave(e)
	r.release(e)
}

// work1 is one worker: it runs handlers until the work channel closes.
// Once handlerCtx is cancelled (shutdown timeout) it leaves the remaining
// messages pending without handling them.
func (r *runner) work1(handlerCtx context.Context) {
	// One cancellable context per worker, made anew only after a lost
	// lease cancelled it: a worker runs one handler at a time.
	ctx, cancelCause := context.WithCancelCause(handlerCtx)
	defer func() { cancelCause(nil) }()
	cancel := func() { cancelCause(ErrLeaseLost) }
	for e := range r.work {
		if e.batch != nil {
			r.processBatch(handlerCtx, e) // batch.go
			continue
		}
		if handlerCtx.Err() != nil {
			r.leave(e)
			continue
		}
		if ctx.Err() != nil {
			ctx, cancelCause = context.WithCancelCause(handlerCtx)
			cancel = func() { cancelCause(ErrLeaseLost) }
		}
		r.process(handlerCtx, ctx, cancel, e)
	}
}

// process runs e's handler with ctx, which markLost cancels through cancel
// while the handler runs, and settles the outcome.
func (r *runner) process(handlerCtx, ctx context.Context, cancel context.CancelFunc, e *entry) {
	if paused(e.route) {
		// Paused (pause.go): it stays pending for this consumer, which
		// reads it again when the stream is resumed.
		r.release(e)
		return
	}
	if dl := e.deadLetterLater; dl != nil {
		e.deadLetterLater = nil
		r.deadLetter(handlerCtx, e, dl.reason, dl.cause)
		return
	}
	if e.retry && !r.reclaimForRetry(handlerCtx, e) {
		return
	}
	if !r.admit(handlerCtx, e) {
		return // waits for a grant of the group's rate limit
	}
	if leaseExpired(e.route) {
		// The partition's lease may have expired (fence.go): its next
		// owner may run this message. It stays pending for that owner.
		r.release(e)
		return
	}
	if r.held.start(e, cancel) { // lost
		r.release(e)
		return
	}
	r.running.Add(1)
	err := r.runHandler(ctx, e)
	r.running.Add(-1)
	lost, vanished := r.held.finish(e)
	r.settle(handlerCtx, e, err, lost, vanished)
}

// runHandler runs e's handler with ctx, bounded by its route's handler
// timeout (timedHandler).
func (r *runner) runHandler(ctx context.Context, e *entry) error {
	tctx, blame, cancel := timedHandler(ctx, e.route)
	defer cancel()
	return blame(e.route.handle(tctx, e))
}

// timedHandler bounds a handler call's ctx by rt's handler timeout, if it
// has one: the returned context then ends with ErrHandlerTimeout as its
// cause, and blame wraps an error the handler returns after that with
// ErrHandlerTimeout (unless ctx itself ended first). Call cancel when the
// handler has returned.
func timedHandler(ctx context.Context, rt *route) (tctx context.Context, blame func(error) error, cancel context.CancelFunc) {
	if rt.timeout <= 0 {
		return ctx, blameNothing, func() {}
	}
	// A func of its own: the closure's variables would otherwise be on the
	// heap for every handler call, timeout or not.
	return withHandlerTimeout(ctx, rt.timeout)
}

func blameNothing(err error) error { return err }

// withHandlerTimeout is timedHandler for a route with a timeout.
func withHandlerTimeout(ctx context.Context, timeout time.Duration) (context.Context, func(error) error, context.CancelFunc) {
	tctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrHandlerTimeout)
	blame := func(err error) error {
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(tctx), ErrHandlerTimeout) && !errors.Is(err, ErrHandlerTimeout) {
			return fmt.Errorf("%w after %v: %w", ErrHandlerTimeout, timeout, err)
		}
		return err
	}
	return tctx, blame, cancel
}

// settle acts on a handler's outcome. A successful handler's message is
// acknowledged even if its lease was lost meanwhile: it was handled, and
// the acknowledgement only spares the new owner's duplicate.
//
// A failure counts as one handler attempt, recorded in Redis before the
// message is retried (a long retry records it in its schedule record,
// longretry.go); after MaxDeliveries of them it is dead-lettered. A
// message no longer pending in Redis at all (vanished) cannot be retried:
// only this consumer's memory has it, so it is dead-lettered from there.
func (r *runner) settle(handlerCtx context.Context, e *entry, err error, lost, vanished bool) {
	if err == nil {
		e.ackLapsed = lost
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
	case r.held.isTrimmed(e):
		r.handlerFailed(e, err, "dead-lettering: trimmed from the stream")
		r.deadLetter(handlerCtx, e, ReasonTrimmed, err)
	case isRateLimited(err) && !givenUp(e.route):
		// The downstream pushes back: not the message's fault, so not
		// counted; the group's registration waits too.
		d := rateLimitDelay(err)
		r.holdBack(handlerCtx, e, d)
		r.handlerFailed(e, err, "rate limited: retrying in "+d.Round(time.Millisecond).String())
		if obs := r.c.cfg.observer; obs != nil {
			obs.Retried(r.c.event(e, time.Now()), d)
		}
		e.retry = true
		r.retries <- retryAt{at: time.Now().Add(d), e: e}
	case e.attempts+1 < int64(r.c.cfg.maxDeliveries) && !givenUp(e.route) && r.moveRetry(handlerCtx, e, err):
		// A long retry (longretry.go): counted, scheduled and acknowledged
		// by one script; the consumer is done with it.
	case r.countFailure(handlerCtx, e) >= int64(r.c.cfg.maxDeliveries):
		r.handlerFailed(e, err, "dead-lettering after the last delivery")
		r.deadLetter(handlerCtx, e, ReasonMaxDeliveries, err)
	default:
		delay := r.retryDelay(e.attempts, err)
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

// retryDelay is how long a message waits for its next delivery after
// its attempts-th failure with err: the handler's RetryAfter, or the
// backoff.
func (r *runner) retryDelay(attempts int64, err error) time.Duration {
	var retryErr *RetryError
	if errors.As(err, &retryErr) {
		return min(retryErr.Delay, MaxDelay)
	}
	return min(r.retry.Delay(int(attempts)), MaxDelay)
}

// countFailure records one failed handler attempt of e in Redis and returns
// e's failed attempts. When Redis cannot be reached, or e is pending for no
// one any more, the count is kept in memory only: a later consumer may then
// give the message an attempt more, never one less.
func (r *runner) countFailure(handlerCtx context.Context, e *entry) int64 {
	e.attempts++
	ctx, cancel := context.WithTimeout(handlerCtx, ackFlushTimeout)
	defer cancel()
	n, err := recordAttempt(ctx, r.c.rdb, e.route.stream, r.c.group, e.id, e.attempts)
	if err != nil {
		r.report(&OpError{Op: "record-attempt", Stream: e.route.stream, Group: r.c.group, ID: e.id, Err: err})
		return e.attempts
	}
	if n == notRecorded {
		// Pending for no one now: the retry's lease renewal (or the
		// dead-letter move) finds out whether another consumer finished it.
		return e.attempts
	}
	e.recorded.Store(true)
	e.attempts = max(e.attempts, n)
	return e.attempts
}

func (r *runner) handlerFailed(e *entry, err error, next string) {
	attrs := []any{slog.String("stream", e.route.stream), slog.String("id", e.id), slog.Int64("deliveries", e.deliveries), slog.String("next", next), slog.Any("error", err)}
	op := "handle"
	var decodeErr *DecodeError
	var panicErr *PanicError
	switch {
	case errors.As(err, &decodeErr):
		op = "decode"
		// The stream and ID are attributes already: log the cause alone.
		cause := "missing"
		if decodeErr.Err != nil {
			cause = decodeErr.Err.Error()
		}
		attrs = []any{slog.String("stream", e.route.stream), slog.String("id", e.id), slog.Int64("deliveries", e.deliveries), slog.String("next", next),
			slog.String("field", decodeErr.Field), slog.String("error", cause)}
		r.log.Error("redstream: cannot decode entry", attrs...)
	case errors.As(err, &panicErr) && !e.stackLogged:
		e.stackLogged = true
		r.log.Error("redstream: handler panicked", append(attrs, slog.String("stack", string(panicErr.Stack)))...)
	case errors.As(err, &panicErr):
		r.log.Error("redstream: handler panicked again (stack logged at its first panic)", attrs...)
	default:
		r.log.Warn("redstream: handler failed", attrs...)
	}
	r.notify(&OpError{Op: op, Stream: e.route.stream, Group: r.c.group, ID: e.id, Err: err})
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
		res, dlID, err := deadLetterMove(context.WithoutCancel(ctx), r.c.rdb, e.route.stream, r.c.group, r.c.cfg.name, e.id, reason, errText, -1, e.deliveries, holderMove(e, reason), e.values)
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
		if r.held.isKeyed(e) && ctx.Err() == nil && !givenUp(e.route) {
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
		// An event, not a failure: logged and observed, not passed to the
		// error callback (the handler's failure was, if there was one).
		r.log.Warn("redstream: message dead-lettered", append(attrs, slog.String("dead_letter_id", dlID), slog.Any("error", cause))...)
	case movedGone:
		r.log.Warn("redstream: message to dead-letter was trimmed from the stream; cleared it from the pending list", attrs...)
	default:
		r.log.Info("redstream: message not dead-lettered: "+string(res), attrs...)
	}
}
