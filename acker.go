package redstream

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// The acknowledger: one goroutine, started by runner.run and stopped when
// the acks channel closes (after the workers are done), owns the batch of
// acknowledgements in the making and sends it as multi-ID XACKs, retrying
// failures; it forgets what it acknowledged from the heldSet.

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
		if err := r.flushAcks(ctx, runCtx, batch, failed); err != nil {
			r.acksGivenUp += len(entries)
			r.ackErr = err
		}
		r.held.forget(entries...)
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
// few more attempts. It returns the last error when it gave up.
func (r *runner) flushAcks(ctx, runCtx context.Context, batch, failed map[*route][]string) error {
	const lastAttempts = 5
	last := 0
	for attempt := 1; ; attempt++ {
		err := r.sendAcks(batch, failed)
		if err == nil {
			return nil
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
			r.log.Warn("redstream: acknowledgements given up; the messages stay pending and will be delivered again", slog.Int("count", countIDs(batch)), slog.Any("error", err))
			return err
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

// countIDs counts the IDs of a batch.
func countIDs(batch map[*route][]string) int {
	n := 0
	for _, ids := range batch {
		n += len(ids)
	}
	return n
}
