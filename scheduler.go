package redstream

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/backoff"
)

// The mover of due scheduled messages (schedule.go): inside a Consumer,
// one goroutine, started by runner.run and stopped by Run's context; in a
// standalone Reaper, one goroutine started and stopped by Reaper.Run. It
// owns only its timer and its count of failed polls. Every poll it runs
// the mover script once per stream (again at once while a full batch comes
// back, up to maxMovesPerPoll), so a due message is appended within about
// one poll interval by whichever mover polls first, and about at its due
// time when it was waiting at the last poll; the script makes the race
// harmless.

// maxMovesPerPoll bounds the mover script calls of one stream in one poll:
// a backlog larger than this many batches waits for the next poll.
const maxMovesPerPoll = 10

// WithSchedulePoll sets how often a Consumer, or a standalone [Reaper],
// appends the due scheduled messages ([WithDelay], [WithDeliverAt]) of
// each of its streams: a message is appended within about d after it is
// due, by whichever of the stream's consumers and reapers polls first, and
// about at its due time when it was already waiting at the last poll (the
// mover then wakes at that time, one extra call). Each poll is one script
// call per stream (partition) per consumer, cheap when nothing is due. A Consumer moves due messages even with
// [WithoutReaper]. The default is [DefaultSchedulePoll]; d must be at
// least 1ms (else an error wrapping [ErrInvalidOption]).
func WithSchedulePoll(d time.Duration) ReclaimOption {
	return reclaimOption(func(c *reclaimConfig) error {
		if d < time.Millisecond {
			return fmt.Errorf("%w: WithSchedulePoll(%v): must be at least 1ms", ErrInvalidOption, d)
		}
		c.schedulePoll = d
		return nil
	})
}

// moveScheduled is the mover inside a Consumer, over the streams (and
// partitions) it has handlers for.
func (r *runner) moveScheduled(ctx context.Context) {
	streams := make([]string, len(r.routes))
	for i, rt := range r.routes {
		streams[i] = rt.stream
	}
	moveLoop(ctx, r.c.rdb, streams, r.c.cfg.schedulePoll, r.backoff, r.log, func(stream string, err error) {
		r.report(&OpError{Op: "move scheduled", Stream: stream, Group: r.c.group, Err: err})
	})
}

// startMover starts the mover of a standalone Reaper and returns the
// function that stops it and waits for it.
func (rp *Reaper) startMover(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errBackoff := backoff.Policy{Base: rp.cfg.errorBackoffMin, Max: rp.cfg.errorBackoffMax}
	wg.Go(func() {
		moveLoop(ctx, rp.rdb, rp.streams, rp.cfg.schedulePoll, errBackoff, rp.log, func(stream string, err error) {
			_ = rp.fail("move scheduled", stream, err)
		})
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// moveLoop moves due scheduled messages to streams every poll until ctx
// ends, backing off after a poll that failed. A poll that sees a message
// due before the next one wakes the loop at its due time instead
// (nextWait), so a message scheduled before the last poll is appended
// about when it is due rather than up to a poll later.
func moveLoop(ctx context.Context, rdb redis.UniversalClient, streams []string, poll time.Duration, errBackoff backoff.Policy, log *slog.Logger, fail func(stream string, err error)) {
	timer := time.NewTimer(poll)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		failed := false
		var soonest time.Time
		for _, stream := range streams {
			for range maxMovesPerPoll {
				moved, taken, next, err := moveDue(ctx, rdb, stream)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					fail(stream, err)
					failed = true
					break
				}
				if moved > 0 {
					log.Debug("redstream: moved due scheduled messages", slog.String("stream", stream), slog.Int("count", moved))
				}
				if taken < ScheduleBatch {
					if !next.IsZero() && (soonest.IsZero() || next.Before(soonest)) {
						soonest = next
					}
					break
				}
			}
		}
		if !failed {
			failures = 0
			timer.Reset(nextWait(poll, soonest, time.Now()))
			continue
		}
		failures++
		if !sleepCtx(ctx, errBackoff.Delay(failures)) {
			return
		}
		timer.Reset(poll)
	}
}

// nextWait is how long the mover waits for its next poll: poll, or less
// when the soonest message waiting (by the server's clock) is due before
// then by this machine's clock. A clock ahead of the server's costs one
// poll that moves nothing; a clock behind it, nothing (the regular poll
// comes first). A soonest already past by this clock, which the server
// did not find due, means the server's clock is behind: the regular poll.
func nextWait(poll time.Duration, soonest, now time.Time) time.Duration {
	if soonest.IsZero() {
		return poll
	}
	// Due means its millisecond has begun on the server: wake just after.
	d := soonest.Sub(now) + time.Millisecond
	if d <= time.Millisecond || d >= poll {
		return poll
	}
	return d
}
