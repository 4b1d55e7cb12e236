package redstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/keys"
)

// Pause and resume of a group's consumption of a stream. An operator (or
// code) sets a key in the stream's slot; every consumer of the group polls
// the keys of its streams (one goroutine, the pause watcher, started by
// runner.run, owning nothing but each route's paused flag) about every
// block time. While a route is paused its reader reads nothing, its reaper
// claims nothing, and its workers start nothing: messages already read but
// not started are let go, pending under the consumer, which reads them
// again (its own pending entries first) once the route is resumed.
// Handlers already running finish, and their messages' leases are kept.

// pauseKey is the key that pauses group's consumption of stream, in the
// stream's hash slot.
func pauseKey(stream, group string) string { return keys.Paused(stream, group) }

// Pause pauses group's consumption of stream: within about one block time
// ([WithBlock], 1 s by default) every consumer of the group stops starting
// handlers of the stream, lets the running ones finish (acknowledging them
// as usual) and keeps its leases; messages it read but had not started stay
// pending for it, and it reads them again first when resumed. Other groups
// and other streams are not affected. A pause lasts until [Resume], across
// consumer restarts. Pausing a paused stream is no error.
//
// For a partitioned stream, pause each partition ([Partitions]). Errors
// wrap [ErrInvalidStreamName], [ErrInvalidOption] (an empty group),
// [ErrNoStream] or [ErrNoGroup] (so a mistyped name is noticed). Safe for
// concurrent use.
func Pause(ctx context.Context, rdb redis.UniversalClient, stream, group string) error {
	if err := checkGroupArgs("pause", stream, group); err != nil {
		return err
	}
	if _, err := groupInfo(ctx, rdb, stream, group); err != nil {
		return err
	}
	if err := rdb.Set(ctx, pauseKey(stream, group), time.Now().UTC().Format(time.RFC3339), 0).Err(); err != nil {
		return fmt.Errorf("redstream: pause %s group %s: %w", stream, group, err)
	}
	return nil
}

// Resume ends a [Pause] of group's consumption of stream: within about one
// block time the group's consumers read and start handlers again, first
// the messages they had read when paused. Resuming a stream that is not
// paused is no error, and neither is a missing stream or group (the pause
// key is removed all the same). Errors wrap [ErrInvalidStreamName] or
// [ErrInvalidOption]. Safe for concurrent use.
func Resume(ctx context.Context, rdb redis.UniversalClient, stream, group string) error {
	if err := checkGroupArgs("resume", stream, group); err != nil {
		return err
	}
	if err := rdb.Del(ctx, pauseKey(stream, group)).Err(); err != nil {
		return fmt.Errorf("redstream: resume %s group %s: %w", stream, group, err)
	}
	return nil
}

// PausedSince reports whether group's consumption of stream is paused
// ([Pause]) and since when (zero when not paused). Errors wrap
// [ErrInvalidStreamName] or [ErrInvalidOption]. Safe for concurrent use.
func PausedSince(ctx context.Context, rdb redis.UniversalClient, stream, group string) (bool, time.Time, error) {
	if err := checkGroupArgs("paused", stream, group); err != nil {
		return false, time.Time{}, err
	}
	v, err := rdb.Get(ctx, pauseKey(stream, group)).Result()
	if errors.Is(err, redis.Nil) {
		return false, time.Time{}, nil
	}
	if err != nil {
		return false, time.Time{}, fmt.Errorf("redstream: paused %s group %s: %w", stream, group, err)
	}
	since, _ := time.Parse(time.RFC3339, v)
	return true, since, nil
}

// paused reports whether rt is paused for this consumer, as last polled.
func paused(rt *route) bool { return rt.paused.Load() }

// watchPauses polls the pause keys of the consumer's routes every step
// until ctx ends, setting each route's paused flag. A failed poll changes
// nothing.
func (r *runner) watchPauses(ctx context.Context) {
	ticker := time.NewTicker(max(r.c.cfg.block, 10*time.Millisecond))
	defer ticker.Stop()
	redisCtx := context.WithoutCancel(ctx)
	for {
		r.pollPauses(redisCtx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// pollPauses reads every route's pause key in one pipeline.
func (r *runner) pollPauses(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, ackFlushTimeout)
	defer cancel()
	// GET rather than EXISTS: the consumer's Redis user has +get already.
	cmds := make([]*redis.StringCmd, len(r.routes))
	_, err := r.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, rt := range r.routes {
			cmds[i] = pipe.Get(ctx, pauseKey(rt.stream, r.c.group))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		r.report(&OpError{Op: "pause", Group: r.c.group, Err: err})
		return
	}
	for i, rt := range r.routes {
		err := cmds[i].Err()
		if err != nil && !errors.Is(err, redis.Nil) {
			// Unknown: keep what was last seen.
			r.report(&OpError{Op: "pause", Stream: rt.stream, Group: r.c.group, Err: err})
			continue
		}
		now := err == nil
		if rt.paused.Swap(now) != now {
			if now {
				r.log.Info("redstream: stream paused for the group; starting no handlers", slog.String("stream", rt.stream))
			} else {
				r.log.Info("redstream: stream resumed for the group", slog.String("stream", rt.stream))
			}
		}
	}
}
