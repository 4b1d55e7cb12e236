package redstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
)

// Long retries ([WithLongRetryAfter]). A failed message whose next
// delivery is far off does not wait in the consumer's memory, holding its
// in-flight room: one script (scheduleretry.lua) writes it to the stream's
// schedule (schedule.go), with its group, its original entry ID and its
// failed attempts, and acknowledges the entry, atomically. When due, the
// mover appends it again with those in fields (RetryGroupField,
// RetryOfField, AttemptsField); the group's consumers handle it counting
// the attempts so far (dispatch), and other groups of the stream, to which
// it is not new, acknowledge it without handling it.

// Fields the mover adds to a retry it appends again.
const (
	// RetryGroupField names the group a re-appended retry is for: other
	// groups' consumers acknowledge the entry without handling it.
	RetryGroupField = "redstream-retry-group"
	// RetryOfField holds the ID of the message's first entry, before its
	// first long retry ([Message.RetryOf]).
	RetryOfField = "redstream-retry-of"
	// AttemptsField holds the handler attempts that failed before the
	// entry was re-appended: the group's consumer goes on counting from it
	// ([WithMaxDeliveries]).
	AttemptsField = "redstream-attempts"
)

// WithLongRetryAfter sets the delay from which a retry leaves the
// consumer's memory: a message whose handler failed and whose next
// delivery ([WithRetryBackoff], or the handler's [RetryAfter]) is d or more
// away is written to the stream's schedule and acknowledged, in one
// script, freeing its in-flight room ([WithMaxInFlight]) for other
// messages; when due, a Consumer or [Reaper] of the stream appends it
// again as a new entry (its fields plus [RetryGroupField], [RetryOfField]
// and [AttemptsField]), which this group handles as the message's next
// delivery, attempts counted across the move, and which other groups of
// the stream acknowledge without handling. Shorter retries wait in memory.
//
// Routes with [WithOrderedKeys] keep every retry in memory, which keeps a
// key's order: the key's later messages wait behind its failing one, and
// hold in-flight room while they wait, so a key that keeps failing holds
// as many slots as it has messages read. Batch routes ([HandleBatch])
// move long retries of their messages one by one, as plain routes do.
//
// The default is the consumer's MinIdle ([WithMinIdle]); 0 keeps every
// retry in memory; negative is an error wrapping [ErrInvalidOption].
func WithLongRetryAfter(d time.Duration) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if d < 0 {
			return fmt.Errorf("%w: WithLongRetryAfter(%v): must not be negative", ErrInvalidOption, d)
		}
		c.longRetryAfter, c.longRetrySet = d, true
		return nil
	})
}

// RetryOf returns the ID of the message's first entry when this entry is a
// retry the consumer re-appended ([WithLongRetryAfter]), or "" when the
// message is in its first entry.
func (m *Message[T]) RetryOf() string { return m.Header(RetryOfField) }

// retryResult is what the retry script did.
type retryResult string

const (
	retryScheduled  retryResult = "ok"          // scheduled and acknowledged
	retryNotPending retryResult = "not-pending" // acknowledged by someone else meanwhile
	retryNotOwner   retryResult = "not-owner"   // pending for another consumer
	retryDeleted    retryResult = "deleted"     // trimmed from the stream: nothing scheduled
)

// scheduleRetry moves entry id of stream, pending for consumer in group,
// to the stream's schedule, due delay after the server's time, and
// acknowledges it. attempts counts the failed handler attempts, this one
// included; the script carries the higher of it and the count recorded in
// Redis, and returns it with what it did and, when it scheduled, the due
// time.
func scheduleRetry(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer, id string, delay time.Duration, attempts int64) (res retryResult, counted int64, due time.Time, err error) {
	return newScheduleRetryCall(stream, group, consumer, id, delay, attempts, DefaultMinIdle).run(ctx, rdb)
}

// retryRecordFor is how long a long retry's move records its entry as
// taken (scheduleretry.lua): long enough for a consumer that lost every
// reply of the move to look again (its lease keeper runs every MinIdle/3),
// much shorter than a takeover's hour.
func retryRecordFor(minIdle time.Duration) time.Duration {
	return min(max(2*time.Minute, 2*minIdle), takenFor)
}

// scheduleRetryCall is one move of a retry to the schedule, which may be
// sent more than once: each send is the same call (the same once marker,
// the same retry ID), so that one sent again after a lost reply gets the
// reply of the run that happened instead of running again, which would
// find the entry no longer pending.
type scheduleRetryCall struct {
	keys []string
	args []any
}

func newScheduleRetryCall(stream, group, consumer, id string, delay time.Duration, attempts int64, minIdle time.Duration) *scheduleRetryCall {
	ms := delayMillis(delay)
	return &scheduleRetryCall{
		keys: []string{stream, scheduledKey(stream), scheduledDataKey(stream), attemptsKey(stream, group), takenKey(stream, group), takenAgesKey(stream, group), onceKey(stream)},
		args: []any{group, consumer, id, ms, attempts, newRetryID(), takenFor.Milliseconds(), retryRecordFor(minIdle).Milliseconds()},
	}
}

func (c *scheduleRetryCall) run(ctx context.Context, rdb redis.UniversalClient) (res retryResult, counted int64, due time.Time, err error) {
	stream, id := c.keys[0], c.args[2]
	reply, err := scripts.ScheduleRetry.Run(ctx, rdb, c.keys, c.args...).Slice()
	if err != nil {
		return "", 0, time.Time{}, err
	}
	if len(reply) == 0 {
		return "", 0, time.Time{}, fmt.Errorf("redstream: schedule retry of %s on %s: empty reply", id, stream)
	}
	s, _ := reply[0].(string)
	res = retryResult(s)
	if len(reply) == 3 {
		if s, _ := reply[1].(string); s != "" {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				due = time.UnixMilli(n)
			}
		}
		counted, _ = reply[2].(int64)
	}
	return res, counted, due, nil
}

// scheduleRetryAttempts caps the sends of one move of a retry to the
// schedule: after a failure that may pass (a cut connection), the same
// call is sent again, within the once marker's life (scripts.OnceTTL).
const scheduleRetryAttempts = 3

// newRetryID returns a schedule ID for a retry: "retry-" and 24 random hex
// digits. [CancelScheduled] takes it; [Producer.Cancel] does not, a retry
// being no producer's.
func newRetryID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "retry-" + hex.EncodeToString(b[:])
}

// longRetry reports whether a retry of e in delay leaves memory.
func (r *runner) longRetry(e *entry, delay time.Duration) bool {
	after := r.c.cfg.longRetryAfter
	return after > 0 && delay >= after && !e.route.ordered
}

// moveRetry counts e's failure with err and, when its retry is a long
// one, schedules it, acknowledges e and releases it, in one script; it
// reports false when e is still the consumer's to settle as before: a
// short retry, a script that could not run (the failure is then counted
// by the caller), or an entry trimmed from the stream.
func (r *runner) moveRetry(handlerCtx context.Context, e *entry, cause error) bool {
	delay := r.retryDelay(e.attempts+1, cause)
	if !r.longRetry(e, delay) {
		return false
	}
	call := newScheduleRetryCall(e.route.stream, r.c.group, r.c.cfg.name, e.id, delay, e.attempts+1, r.c.cfg.minIdle)
	var (
		res     retryResult
		counted int64
		due     time.Time
		err     error
	)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(handlerCtx, ackFlushTimeout)
		res, counted, due, err = call.run(ctx, r.c.rdb)
		cancel()
		if err == nil {
			break
		}
		r.report(&OpError{Op: "schedule-retry", Stream: e.route.stream, Group: r.c.group, ID: e.id, Err: err})
		if attempt == scheduleRetryAttempts || isPermanent(err) || !sleepCtx(handlerCtx, r.backoff.Delay(attempt)) {
			// Kept in memory: if a send ran after all, the retry's
			// lease renewal finds the entry pending for no one and
			// taken (the script records it), and lets it go: the
			// schedule delivers it.
			return false
		}
	}
	switch res {
	case retryScheduled:
		e.attempts = counted
		r.handlerFailed(e, cause, "retrying in "+delay.Round(time.Millisecond).String()+" from the schedule")
		if obs := r.c.cfg.observer; obs != nil {
			obs.Retried(r.c.event(e, time.Now()), delay)
		}
		r.log.Debug("redstream: retry moved to the schedule", slog.String("stream", e.route.stream), slog.String("id", e.id), slog.Time("due", due))
		r.release(e)
		return true
	case retryNotOwner:
		r.handlerFailed(e, cause, "not retrying: "+string(res))
		r.release(e)
		return true
	case retryNotPending:
		// Pending for no one: finished by a consumer that took it over
		// (the move refuses it then), or forgotten by Redis (its consumer
		// or group deleted), when only this consumer's memory has it.
		r.handlerFailed(e, cause, "dead-lettering: no longer pending in Redis")
		r.deadLetter(handlerCtx, e, ReasonVanished, cause)
		return true
	default:
		return false
	}
}

// retryFor reads the fields of a re-appended retry: whether it is one, and
// if so whether it is this group's and the attempts that failed before.
func retryFor(values map[string]any, group string) (retry, ours bool, attempts int64) {
	g, ok := values[RetryGroupField].(string)
	if !ok {
		return false, false, 0
	}
	s, _ := values[AttemptsField].(string)
	return true, g == group, parseAttempts(s)
}
