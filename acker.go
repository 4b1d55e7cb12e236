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
	round := &ackRound{
		plain:  make(map[*route][]string),
		failed: make(map[*route][]string),
		lapsed: make(map[*route][]string),
	}
	// gather adds what waits in r.acks, up to ackBatchMax, and reports
	// whether r.acks is still open.
	gather := func() bool {
		for len(round.entries) < ackBatchMax {
			select {
			case e, ok := <-r.acks:
				if !ok {
					return false
				}
				round.entries = append(round.entries, e)
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
		round.entries = append(round.entries, e)
		if gather() && lingers && len(round.entries) < ackLingerBelow {
			linger.Reset(lingerFor)
			<-linger.C
			gather()
		}
		if err := r.flushAcks(ctx, runCtx, round); err != nil {
			r.acksGivenUp += len(round.entries)
			r.ackErr = err
			for _, e := range round.entries {
				r.acksLeft[e.heldKey()] = struct{}{}
			}
		}
		r.held.forget(round.entries...)
		clear(round.entries)
		round.entries = round.entries[:0]
	}
}

// ackRound is one round of acknowledgements: the entries, and their IDs
// per route as sort last sorted them.
type ackRound struct {
	entries []*entry
	// plain holds the IDs for a bare XACK; failed, of those, the ones that
	// may have failed attempts recorded, to delete with it; lapsed the
	// IDs whose lease may have lapsed, acknowledged by ackLapsed.
	plain, failed, lapsed map[*route][]string
}

// sort sorts the round's IDs, now: an entry's lease ages while its
// acknowledgement waits for Redis.
func (a *ackRound) sort(r *runner) {
	clear(a.plain)
	clear(a.failed)
	clear(a.lapsed)
	now := monoNow()
	for _, e := range a.entries {
		switch {
		case r.leaseMayHaveLapsed(e, now):
			// Another consumer may have taken it over: it must learn
			// that this one finished it.
			a.lapsed[e.route] = append(a.lapsed[e.route], e.id)
		case e.attempts > 0 || e.redisDeliveries > 1:
			// A claimed entry too: its last owner may have recorded a
			// failure after this consumer read the record.
			a.failed[e.route] = append(a.failed[e.route], e.id)
			fallthrough
		default:
			a.plain[e.route] = append(a.plain[e.route], e.id)
		}
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
func (r *runner) flushAcks(ctx, runCtx context.Context, round *ackRound) error {
	const lastAttempts = 5
	last := 0
	for attempt := 1; ; attempt++ {
		round.sort(r)
		err := r.sendAcks(round)
		if err == nil {
			return nil
		}
		round.eachRoute(func(rt *route, n int) {
			r.report(&OpError{Op: "ack", Stream: rt.stream, Group: r.c.group, Err: fmt.Errorf("%d IDs: %w", n, err)})
		})
		if runCtx.Err() == nil && !isPermanent(err) {
			// A shutdown cuts the wait short.
			sleepCtx(runCtx, r.backoff.Delay(attempt))
			continue
		}
		last++
		if last == lastAttempts || !sleepCtx(ctx, r.backoff.Delay(last)) {
			r.log.Warn("redstream: acknowledgements given up; the messages stay pending and will be delivered again", slog.Int("count", len(round.entries)), slog.Any("error", err))
			return err
		}
	}
}

// eachRoute calls fn with each of the round's routes once, and the number
// of its IDs acknowledged either way.
func (a *ackRound) eachRoute(fn func(rt *route, n int)) {
	for rt, ids := range a.plain {
		fn(rt, len(ids)+len(a.lapsed[rt]))
	}
	for rt, ids := range a.lapsed {
		if _, ok := a.plain[rt]; !ok {
			fn(rt, len(ids))
		}
	}
}

// sendAcks sends the round's XACKs, one per stream, deleting the failed
// attempts recorded for the entries in failed, and the lapsed entries'
// acknowledgements (ackLapsed).
func (r *runner) sendAcks(round *ackRound) error {
	ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
	defer cancel()
	var err error
	if len(round.plain) == 1 && len(round.failed) == 0 && len(round.lapsed) == 0 {
		for rt, ids := range round.plain {
			err = r.c.rdb.XAck(ctx, rt.stream, r.c.group, ids...).Err()
		}
	} else {
		_, err = r.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for rt, ids := range round.plain {
				pipe.XAck(ctx, rt.stream, r.c.group, ids...)
			}
			for rt, ids := range round.failed {
				pipe.HDel(ctx, attemptsKey(rt.stream, r.c.group), ids...)
			}
			for rt, ids := range round.lapsed {
				ackLapsed(ctx, pipe, rt.stream, r.c.group, r.c.cfg.name, ids)
			}
			return nil
		})
	}
	if obs := r.c.cfg.observer; obs != nil && err == nil {
		round.eachRoute(func(rt *route, n int) { obs.Acked(rt.stream, r.c.group, n) })
	}
	return err
}
