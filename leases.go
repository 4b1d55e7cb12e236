package redstream

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
)

// The lease keeper: one goroutine, started by runner.run and stopped once
// the last handler returned, renews every held message's lease (its idle
// time) every MinIdle/3 and records, through the heldSet, what Redis says
// of each: lost to another consumer, trimmed, or vanished. handOff, at the
// end of runner.run, marks what the consumer leaves unfinished idle for
// other consumers. It owns no state of its own.

// monoNow is the time on the monotonic clock, in ns since monoBase: lease
// ages are measured on it, which wall clock steps do not move.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// stampLeases sets the lease time of entries just read or claimed to
// sent, when (monoNow) the read or claim was sent: Redis delivered them
// after, and a stall between its reply and the entries' dispatch must
// count. A read that blocked W before entries came makes them look W older
// than they are: at worst an acknowledgement by script (ackLapsed) until
// the lease keeper's next round, for entries of a stream quiet enough to
// block on.
func stampLeases(entries []*entry, sent int64) {
	for _, e := range entries {
		e.leasedAt.Store(sent)
	}
}

// leaseMayHaveLapsed reports whether another consumer may have claimed e:
// its handler finished after its lease was found lost; its lease was last
// known fresh (e.leasedAt, taken before the command that refreshed it was
// sent, so never later than Redis's own) three quarters of minIdle or more
// ago, for a reaper; or it is of an exclusive partition whose lease may
// have lapsed by the time the acknowledgement reaches Redis (partitionLeaseEnding),
// which the next owner claims whatever the entries' idle time. The
// quarter is room for the acknowledgement's own way to Redis; a healthy
// consumer renews every minIdle/3, so its leases are younger than the
// threshold by more than a third of minIdle. A false alarm costs one
// script call (ackLapsed) instead of a bare XACK. (A partition given up
// keeps its lease until nothing of it is held: no script needed.)
func (r *runner) leaseMayHaveLapsed(e *entry, now int64) bool {
	return e.ackLapsed ||
		time.Duration(now-e.leasedAt.Load()) >= r.c.cfg.minIdle*3/4 ||
		partitionLeaseEnding(e.route, now, r.c.cfg.minIdle)
}

// leaseBatch caps the IDs renewed by one script call.
const leaseBatch = 200

// keepLeases keeps the idle time of every held message low, so reapers
// leave them alone, until stop is closed; a message found to belong to
// another consumer has its handler's context cancelled.
func (r *runner) keepLeases(stop <-chan struct{}) {
	ticker := time.NewTicker(max(r.c.cfg.minIdle/3, 10*time.Millisecond))
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
			r.renewOnce()
		}
	}
}

func (r *runner) renewOnce() {
	for rt, ids := range r.held.ids() {
		for chunk := range slices.Chunk(ids, leaseBatch) {
			sent := monoNow()
			ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
			res, err := renewLeases(ctx, r.c.rdb, rt.stream, r.c.group, r.c.cfg.name, 0, 0, chunk)
			cancel()
			if err != nil {
				r.report(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, Err: err})
				break
			}
			r.held.renewed(rt, chunk, res, sent)
			for _, id := range res.lost {
				r.held.markLost(rt, id)
			}
			for _, id := range res.deleted {
				r.markTrimmed(rt, id)
			}
			for _, id := range res.vanished {
				r.markVanished(rt, id)
			}
			for _, id := range res.unrecorded {
				if r.held.markUnrecorded(rt, id) {
					r.reportVanished(rt, id)
				}
			}
		}
	}
}

// markVanished records that id is no longer pending in Redis at all, for
// any consumer (its stream or group was deleted, flushed or evicted; an
// operator deleted this consumer): its handler is not cancelled, since no
// one else can run it, and a failure dead-letters it from memory. An
// entry whose acknowledgement is already queued is left alone: it stopped
// being pending because it was handled.
func (r *runner) markVanished(rt *route, id string) {
	if r.held.markVanished(rt, id) {
		r.reportVanished(rt, id)
	}
}

// reportVanished logs and reports a held message found vanished.
func (r *runner) reportVanished(rt *route, id string) {
	r.log.Warn("redstream: a held message is no longer pending in Redis (stream, group or consumer deleted?); finishing it from memory, dead-lettering it if its handler fails",
		slog.String("stream", rt.stream), slog.String("id", id))
	r.notify(&OpError{Op: "lease", Stream: rt.stream, Group: r.c.group, ID: id, Err: ErrVanished})
	if obs := r.c.cfg.observer; obs != nil {
		// Not event(e): a worker may be writing e's delivery count.
		obs.Vanished(r.c.eventOf(rt.stream, id, 0, time.Now()))
	}
}

// markRouteVanished marks every held message of rt vanished: its reader
// found the stream or the group gone. It runs before the reader creates the
// group again, after which the held messages, pending for no one, gone
// from the (new) stream, would look trimmed to the lease keeper.
func (r *runner) markRouteVanished(rt *route) {
	for _, id := range r.held.ids()[rt] {
		r.markVanished(rt, id)
	}
}

// markTrimmed records that id was deleted from the stream while held.
func (r *runner) markTrimmed(rt *route, id string) {
	if r.held.markTrimmed(rt, id) {
		r.log.Warn("redstream: a held message was trimmed from the stream; it will be dead-lettered if its handler fails", slog.String("stream", rt.stream), slog.String("id", id))
	}
}

// leaseResult sorts the IDs a lease renewal did not renew.
type leaseResult struct {
	lost     []string // pending for another consumer
	deleted  []string // gone from the stream (trimmed, XDEL)
	vanished []string // in the stream but pending for no one, unfinished; or no group
	// unrecorded are in the stream, pending for no one, with no failed
	// attempt recorded: finished by another consumer if this one had
	// recorded one (entry.recorded), else vanished.
	unrecorded []string
}

// renewLeases resets the idle time of ids this consumer still owns, raising
// their delivery count to deliveries when it is lower; with a positive
// idle, it sets their idle time to that instead, handing them to the next
// reaper. It returns the IDs it left untouched, sorted by why.
func renewLeases(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer string, deliveries int64, idle time.Duration, ids []string) (leaseResult, error) {
	args := scripts.WithIDs(ids, group, consumer, deliveries, idle.Milliseconds())
	res, err := scripts.ClaimOwn.Run(ctx, rdb, []string{stream, attemptsKey(stream, group), takenKey(stream, group)}, args...).Slice()
	if err != nil {
		return leaseResult{}, err
	}
	if len(res) != 4 {
		return leaseResult{}, fmt.Errorf("redstream: lease script returned %d lists, want 4", len(res))
	}
	return leaseResult{lost: stringList(res[0]), deleted: stringList(res[1]), vanished: stringList(res[2]), unrecorded: stringList(res[3])}, nil
}

// handOffIdle is the idle time handOff gives the entries it lets go:
// longer than any MinIdle, shorter than the server's clock (Redis computes
// now minus it).
const handOffIdle = 365 * 24 * time.Hour

// handOff marks every entry this Run leaves pending unfinished idle for a
// year, so that another consumer's reaper takes them on its next round
// instead of after MinIdle: those it holds (waiting for a retry, held back
// behind its key), those let go at the shutdown timeout, and every other
// entry pending under its name on a stream the group shares (ownPending):
// let go while the stream was paused, behind a key's entry taken over by
// another consumer, delivered by a read whose reply was lost, claimed by
// a reaper round that failed, or left by an earlier run of the name. The
// script marks only entries still this consumer's. It runs once, when the
// workers are done and the last acknowledgements sent, and returns how
// many it handed over and how many it could not, with the last error.
func (r *runner) handOff() (handedOver, notHandedOver int, lastErr error) {
	left := r.held.unfinished()
	r.ownPending(left)
	for rt, ids := range left {
		slices.Sort(ids)
		ids = slices.Compact(ids)
		handed := 0
		tried := 0
		for chunk := range slices.Chunk(ids, leaseBatch) {
			ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
			res, err := renewLeases(ctx, r.c.rdb, rt.stream, r.c.group, r.c.cfg.name, 0, handOffIdle, chunk)
			cancel()
			if err != nil {
				r.report(&OpError{Op: "hand-off", Stream: rt.stream, Group: r.c.group, Err: err})
				// This chunk and the rest stay pending under this name.
				notHandedOver += len(ids) - tried
				lastErr = err
				break
			}
			handed += len(chunk) - len(res.lost) - len(res.deleted) - len(res.vanished) - len(res.unrecorded)
			tried += len(chunk)
		}
		if handed > 0 {
			r.log.Info("redstream: handed unfinished messages over to the group", slog.String("stream", rt.stream), slog.Int("count", handed))
		}
		handedOver += handed
	}
	return handedOver, notHandedOver, lastErr
}

// ownPending adds to byRoute the IDs pending under this consumer's name
// on each stream the group shares, but those whose acknowledgement was
// given up (counted as such, and handled already). Exclusive partitions
// are left out: their next owner claims whatever is pending on them,
// however idle. It runs once every reader and the reaper have stopped, so
// nothing is read under the name meanwhile; the first page of every
// stream comes in one pipeline. A stream it cannot list keeps what it has
// under the name pending until MinIdle, as before the hand-off: reported,
// not counted as not handed over (its count is unknown).
func (r *runner) ownPending(byRoute map[*route][]string) {
	if r.ackErr != nil {
		// Acknowledgements were just given up: Redis is likely out of
		// reach, and the sweep would only add its timeout to the
		// shutdown. What is pending waits for MinIdle, as before.
		return
	}
	var shared []*route
	for _, rt := range r.routes {
		if !rt.exclusive {
			shared = append(shared, rt)
		}
	}
	if len(shared) == 0 {
		return
	}
	page := func(ctx context.Context, pipe redis.Cmdable, rt *route, start string) *redis.XPendingExtCmd {
		return pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: rt.stream, Group: r.c.group, Consumer: r.c.cfg.name, Start: start, End: "+", Count: leaseBatch})
	}
	ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
	cmds := make([]*redis.XPendingExtCmd, len(shared))
	_, _ = r.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, rt := range shared {
			cmds[i] = page(ctx, pipe, rt, "-")
		}
		return nil
	})
	cancel()
	for i, rt := range shared {
		cmd := cmds[i]
		for {
			pending, err := cmd.Result()
			if err != nil {
				if !redis.HasErrorPrefix(err, "NOGROUP") { // no group, nothing pending
					r.report(&OpError{Op: "hand-off", Stream: rt.stream, Group: r.c.group, Err: err})
				}
				break
			}
			for _, p := range pending {
				if _, given := r.acksLeft[heldKey{rt, p.ID}]; !given {
					byRoute[rt] = append(byRoute[rt], p.ID)
				}
			}
			if len(pending) < leaseBatch {
				break
			}
			ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
			cmd = page(ctx, r.c.rdb, rt, "("+pending[len(pending)-1].ID)
			cancel()
		}
	}
}

// stringList converts a script's array reply of strings.
func stringList(v any) []string {
	items, _ := v.([]any)
	out := make([]string, 0, len(items))
	for _, item := range items {
		if s, ok := item.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
