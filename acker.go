package redstream

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
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

// A round of acknowledgements that finds fewer than ackLingerBelow waiting
// waits ackLinger for more before it is sent. Handlers finishing a few at
// a time (a consumer keeping up with its publishers) would otherwise cost
// an XACK round trip per handful of messages: measured with 8 publishers
// and one consumer, 7 IDs per XACK and as much of the client's time in
// XACK's system calls as in the reads'. Acknowledgements waiting hold no
// room (it is given back as they are queued) and delay no handler; a
// backlog (above ackLingerBelow) goes at once.
//
// It lingers only with an acks channel of ackLingerRoom or more (the
// in-flight room, WithMaxInFlight; the default has it), which holds a
// millisecond of acknowledgements at 256k messages per second.
const (
	ackLinger      = time.Millisecond
	ackLingerBelow = 64
	ackLingerRoom  = 256
)

// ackLingerOverride, set by tests only, replaces ackLinger when not 0.
var ackLingerOverride atomic.Int64

// ack gathers acknowledgements and sends them as multi-ID XACKs, one per
// stream, in one pipeline: whatever arrived while the previous round trip
// was in flight goes together. It returns when r.acks is closed and the
// last acknowledgements are sent (or given up after retries). runCtx is
// Run's context: see flushAcks.
func (r *runner) ack(ctx, runCtx context.Context) {
	batch := make(map[*route][]string)
	// failed holds, per route, the acknowledged entries that may have
	// failed attempts recorded, to delete with the acknowledgement.
	failed := make(map[*route][]string)
	var entries []*entry
	add := func(e *entry) {
		batch[e.route] = append(batch[e.route], e.id)
		if e.attempts > 0 || e.redisDeliveries > 1 {
			// A claimed entry too: its last owner may have recorded a
			// failure after this consumer read the record.
			failed[e.route] = append(failed[e.route], e.id)
		}
		entries = append(entries, e)
	}
	// gather adds what waits in r.acks, up to ackBatchMax, and reports
	// whether r.acks is still open.
	gather := func() bool {
		for len(entries) < ackBatchMax {
			select {
			case e, ok := <-r.acks:
				if !ok {
					return false
				}
				add(e)
			default:
				return true
			}
		}
		return true
	}
	lingerFor := ackLinger
	if d := ackLingerOverride.Load(); d != 0 {
		lingerFor = time.Duration(d)
	}
	linger := time.NewTimer(lingerFor)
	linger.Stop()
	defer linger.Stop()
	// The acknowledger sleeps while it lingers (taking each
	// acknowledgement in as it came cost a wake-up each, measured at 2 to
	// 3 µs of CPU per message with 8 publishers and one consumer), so the
	// acks channel must have room for what comes meanwhile: else a
	// handler would wait to queue its acknowledgement, with its room.
	lingers := cap(r.acks) >= ackLingerRoom
	for e := range r.acks {
		add(e)
		if gather() && lingers && len(entries) < ackLingerBelow {
			linger.Reset(lingerFor)
			<-linger.C
			gather()
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
