package redstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redstream/redstream/internal/scripts"
)

// Group-wide rate limits (WithRateLimit). Before a worker starts a handler
// of a rate-limited registration it asks Redis for a grant (ratelimit.lua:
// a sliding log of grant times, on the server's clock, shared by every
// consumer of the group); without one, the message waits in the retry
// scheduler until a grant can be made, holding its in-flight room (and its
// key's turn, with WithOrderedKeys) but no worker. A handler that returns
// RateLimited holds the whole group's registration back for the delay it
// gives. Nothing here owns a goroutine.

// rateLimit is a registration's group-wide limit, and this consumer's
// state of it for one stream.
type rateLimit struct {
	window time.Duration // burst grants at most in any window this long
	burst  int

	// mu is held by a worker while it asks Redis for a grant, so that one
	// consumer's waiting messages ask one at a time rather than all at
	// once when a grant becomes possible; notBefore is when the last
	// refusal said a grant may be had.
	mu        sync.Mutex
	notBefore time.Time
}

// forRoute returns l's settings with state of its own, for one stream.
func (l *rateLimit) forRoute() *rateLimit {
	if l == nil {
		return nil
	}
	return &rateLimit{window: l.window, burst: l.burst}
}

// WithRateLimit limits how often handlers of the registration start,
// across every consumer of the group, to perSecond on average: at most
// burst handler starts in any window of burst/perSecond seconds, measured
// on the Redis server's clock (WithRateLimit(200, 20): at most 20 starts in
// any 100 ms). Each start costs one script call; a message that must wait
// waits in the consumer without a worker, holding its in-flight room. Only
// handler starts count: a retry counts when it starts again, a message the
// consumer acknowledges without a handler call does not. A handler can
// also hold the whole group back for a while with [RateLimited].
//
// perSecond must be above 0 and finite, burst at least 1, and the window
// burst/perSecond seconds from 1ms to [MaxDelay] (100 years): above 1,000
// starts a second the burst must be at least perSecond/1000
// (WithRateLimit(5000, 5), not (5000, 1)); otherwise [Handle] returns an
// error wrapping [ErrInvalidOption]. The limit is keyed by
// stream (each partition has its own) and group, in
// {stream}:redstream-rate:<group> (a sorted set of at most burst members)
// and {stream}:redstream-rate-hold:<group>.
func WithRateLimit(perSecond float64, burst int) HandleOption {
	return handleOption(func(c *handleConfig) error {
		if !(perSecond > 0) || math.IsInf(perSecond, 0) || burst < 1 {
			return fmt.Errorf("%w: WithRateLimit(%v, %d): need a rate above 0 and a burst of at least 1", ErrInvalidOption, perSecond, burst)
		}
		// In float64 first: the window may be beyond what a Duration holds.
		window := float64(burst) / perSecond * float64(time.Second)
		if window > float64(MaxDelay) {
			return fmt.Errorf("%w: WithRateLimit(%v, %d): a window of burst/rate over MaxDelay (%v); raise the rate or lower the burst", ErrInvalidOption, perSecond, burst, MaxDelay)
		}
		if window < float64(time.Millisecond) {
			return fmt.Errorf("%w: WithRateLimit(%v, %d): a window of burst/rate under 1ms; raise the burst", ErrInvalidOption, perSecond, burst)
		}
		c.limit = &rateLimit{window: time.Duration(window), burst: burst}
		return nil
	})
}

// RateLimited returns an error that, returned by a handler, tells that the
// downstream pushes back: the message is delivered again after about d,
// and, on a registration with [WithRateLimit], no consumer of the group
// starts another handler of the stream for d. Unlike [RetryAfter], the
// attempt does not count towards MaxDeliveries: the message is not at
// fault (so a handler that always returns it retries the message forever).
// err, which may be nil, says why, and is logged. A negative d is taken
// as 0, and one beyond [MaxDelay] as MaxDelay.
func RateLimited(d time.Duration, err error) error {
	return &RetryError{Delay: min(max(d, 0), MaxDelay), Err: err, rateLimited: true}
}

// rateKey and rateHoldKey are the keys of stream's rate limit in group.
func rateKey(stream, group string) string {
	return slotted(stream) + ":redstream-rate:" + group
}

func rateHoldKey(stream, group string) string {
	return slotted(stream) + ":redstream-rate-hold:" + group
}

// rateGranted, set by tests only, is told the server time of each grant.
var rateGranted atomic.Pointer[func(stream string, at time.Time)]

// grants numbers this process's grant requests, for unique members.
var grants atomic.Uint64

// admit asks for a grant to start e's handler, on a rate-limited route, and
// reports whether the handler may start now. If not, e waits in the retry
// scheduler until a grant may be had.
func (r *runner) admit(handlerCtx context.Context, e *entry) bool {
	if e.route.limit == nil {
		return true
	}
	wait, ok := r.tryGrant(handlerCtx, e.route, e.id)
	if !ok {
		r.retries <- retryAt{at: time.Now().Add(wait), e: e}
	}
	return ok
}

// tryGrant asks Redis for one grant of rt's rate limit, one request at a
// time per route in this consumer, and returns whether it was granted, or
// how long to wait before asking again.
func (r *runner) tryGrant(handlerCtx context.Context, rt *route, id string) (time.Duration, bool) {
	lim := rt.limit
	lim.mu.Lock()
	defer lim.mu.Unlock()
	if wait := time.Until(lim.notBefore); wait > 0 {
		return wait, false
	}
	ctx, cancel := context.WithTimeout(handlerCtx, ackFlushTimeout)
	defer cancel()
	member := r.c.cfg.name + ":" + id + ":" + strconv.FormatUint(grants.Add(1), 10)
	res, err := scripts.RateLimit.Run(ctx, r.c.rdb, []string{rateKey(rt.stream, r.c.group), rateHoldKey(rt.stream, r.c.group)},
		lim.window.Microseconds(), lim.burst, member).Int64Slice()
	var wait time.Duration
	switch {
	case err != nil:
		r.report(&OpError{Op: "rate-limit", Stream: rt.stream, Group: r.c.group, ID: id, Err: err})
		wait = r.backoff.Delay(1)
	case len(res) >= 2 && res[0] == 1:
		if hook := rateGranted.Load(); hook != nil && len(res) == 3 {
			(*hook)(rt.stream, time.UnixMicro(res[2]))
		}
		return 0, true
	case len(res) == 2:
		wait = time.Duration(res[1]) * time.Millisecond
	default:
		r.report(&OpError{Op: "rate-limit", Stream: rt.stream, Group: r.c.group, ID: id, Err: fmt.Errorf("unexpected reply %v", res)})
		wait = r.backoff.Delay(1)
	}
	lim.notBefore = time.Now().Add(wait)
	return wait, false
}

// holdBack holds every consumer of the group back from starting handlers
// of e's stream for d (a handler returned RateLimited).
func (r *runner) holdBack(handlerCtx context.Context, e *entry, d time.Duration) {
	if d <= 0 || e.route.limit == nil {
		return
	}
	ctx, cancel := context.WithTimeout(handlerCtx, ackFlushTimeout)
	defer cancel()
	if err := r.c.rdb.Set(ctx, rateHoldKey(e.route.stream, r.c.group), r.c.cfg.name, d).Err(); err != nil {
		r.report(&OpError{Op: "rate-limit", Stream: e.route.stream, Group: r.c.group, ID: e.id, Err: err})
	}
}

// isRateLimited reports whether a handler's error is a [RateLimited].
func isRateLimited(err error) bool {
	var retryErr *RetryError
	return errors.As(err, &retryErr) && retryErr.rateLimited
}

// rateLimitDelay is the delay of a [RateLimited] error.
func rateLimitDelay(err error) time.Duration {
	var retryErr *RetryError
	errors.As(err, &retryErr)
	return retryErr.Delay
}

// admitBatch waits, in the worker, for a grant to start a batch handler
// call on a rate-limited route (a batch call takes one grant), and reports
// false if handlerCtx ended first.
func (r *runner) admitBatch(handlerCtx context.Context, unit *entry) bool {
	if unit.route.limit == nil {
		return true
	}
	for {
		wait, ok := r.tryGrant(handlerCtx, unit.route, unit.id)
		if ok {
			return true
		}
		if !sleepCtx(handlerCtx, wait) {
			return false
		}
	}
}
