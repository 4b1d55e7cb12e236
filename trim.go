package redstream

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
	"github.com/redstream/redstream/internal/streamid"
)

// writeTrim sets the trimming an XADD does atomically with its write: MINID
// given per publish ([WithMinID]) wins over the producer's [WithMaxLen] or
// [WithMaxAge], whose MINID the caller computed from the server's clock as
// ageBound ("": none yet). Trimming is approximate ("~"): Redis removes whole
// macro-nodes only, which is much cheaper, so a stream keeps somewhat more
// than asked. Trimming at write does not know about consumer groups and may
// remove entries a group has not read yet.
func writeTrim(a *redis.XAddArgs, cfg producerConfig, pc *publishConfig, ageBound string) {
	switch {
	case pc.minID != "":
		a.MinID, a.Approx = pc.minID, true
	case cfg.maxLen > 0:
		a.MaxLen, a.Approx = cfg.maxLen, true
	case ageBound != "":
		a.MinID, a.Approx = ageBound, true
	}
}

// TrimPolicy says what [Trim] removes from a stream. The zero policy is the
// safe trim alone: it removes the entries every consumer group has consumed
// (delivered and acknowledged), and nothing when the stream has no groups.
type TrimPolicy struct {
	// MaxLen keeps about this many of the newest entries; 0 means no length
	// bound, negative is an error.
	MaxLen int64
	// MaxAge removes entries older than this, by the time in their IDs
	// against the Redis server's clock (TIME, which an ACL must allow); 0
	// means no age bound, negative is an error.
	MaxAge time.Duration
	// AllowUnconsumed lets MaxLen and MaxAge remove entries that a group has
	// not been delivered yet or still has pending. Without it (the default)
	// they never do: the trim stops at the oldest entry any group still
	// needs. Entries removed because of it are counted in
	// [TrimResult.Dropped]; the periodic trim of [WithTrim] also reports
	// them to the Observer and logs a warning. Streams with no groups are
	// trimmed by MaxLen and MaxAge alone.
	AllowUnconsumed bool
}

func (p TrimPolicy) validate() error {
	if p.MaxLen < 0 || p.MaxAge < 0 {
		return fmt.Errorf("%w: TrimPolicy{MaxLen: %d, MaxAge: %v}: must not be negative", ErrInvalidOption, p.MaxLen, p.MaxAge)
	}
	if p.AllowUnconsumed && p.MaxLen == 0 && p.MaxAge == 0 {
		return fmt.Errorf("%w: TrimPolicy.AllowUnconsumed needs MaxLen or MaxAge", ErrInvalidOption)
	}
	return nil
}

// TrimResult is what one [Trim] did.
type TrimResult struct {
	// Removed is the number of entries removed.
	Removed int64
	// Dropped is how many of them some group had not consumed yet; non-zero
	// only with [TrimPolicy.AllowUnconsumed].
	Dropped int64
	// MinID is the lowest ID kept (the XTRIM MINID used); "" when nothing
	// needed trimming. It is "+" when every group was delivered up to the
	// greatest ID, 18446744073709551615-18446744073709551615: no ID comes
	// after it, so no group needs an entry and the whole stream was removed.
	MinID string
}

// trimBatch bounds the entries one script call removes for MaxLen.
const trimBatch = 10_000

// Trim removes entries from stream as policy says. The bound that protects
// consumer groups (the lowest of each group's oldest pending ID and the ID
// after its last-delivered ID) is computed and applied in one Lua script,
// so a group reading at the same time never loses an entry it needs. IDs
// are compared and incremented exactly over both unsigned 64-bit parts,
// never as floating-point numbers, so an ID with a part above 2^53 is not
// mistaken for its neighbours. A
// length trim removes at most 10,000 entries per script call and loops. A
// stream that does not exist is not an error: nothing is removed.
func Trim(ctx context.Context, rdb redis.UniversalClient, stream string, policy TrimPolicy) (TrimResult, error) {
	if err := ValidateStream(stream); err != nil {
		return TrimResult{}, err
	}
	if err := policy.validate(); err != nil {
		return TrimResult{}, err
	}
	ageBound := ""
	if policy.MaxAge > 0 {
		// Entry IDs carry the server's time: age them by its clock, not
		// this process's, which may be off by any amount.
		now, err := serverTime(ctx, rdb, stream)
		if err != nil {
			return TrimResult{}, fmt.Errorf("redstream: trim %s: read the server's clock (TIME) for MaxAge: %w", stream, err)
		}
		ageBound = streamid.FromTime(now.Add(-policy.MaxAge)).String()
	}
	var total TrimResult
	for {
		allow := 0
		if policy.AllowUnconsumed {
			allow = 1
		}
		res, err := scripts.Trim.Run(ctx, rdb, []string{stream, onceKey(stream)}, policy.MaxLen, ageBound, allow, trimBatch).Slice()
		if err != nil {
			if redis.HasErrorPrefix(err, "no such key") {
				return total, nil
			}
			return total, fmt.Errorf("redstream: trim %s: %w", stream, err)
		}
		if len(res) != 4 {
			return total, fmt.Errorf("redstream: trim %s: script returned %d values, want 4", stream, len(res))
		}
		removed, _ := res[0].(int64)
		dropped, _ := res[1].(int64)
		bound, _ := res[2].(string)
		more, _ := res[3].(int64)
		total.Removed += removed
		total.Dropped += dropped
		if bound != "" {
			total.MinID = bound
		}
		if more == 0 || removed == 0 {
			return total, nil
		}
	}
}

// WithTrim trims the streams every interval with [Trim] and policy: inside
// a Consumer (its streams) or a standalone [Reaper] (its streams). Removed
// counts are logged, and entries dropped under
// [TrimPolicy.AllowUnconsumed] are logged as warnings with their count.
// Every consumer of a group that has it trims; the trim is idempotent, so
// running it in one process is enough. every must be positive; the default
// is no periodic trimming.
func WithTrim(policy TrimPolicy, every time.Duration) ReclaimOption {
	return reclaimOption(func(c *reclaimConfig) error {
		if err := policy.validate(); err != nil {
			return err
		}
		if every <= 0 {
			return fmt.Errorf("%w: WithTrim interval %v: must be positive", ErrInvalidOption, every)
		}
		c.trim, c.trimEvery = &policy, every
		return nil
	})
}

// trimLoop trims streams every interval until ctx ends.
func trimLoop(ctx context.Context, rdb redis.UniversalClient, streams []string, policy TrimPolicy, every time.Duration, log *slog.Logger, obs Observer, onError func(*OpError)) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for _, stream := range streams {
			if ctx.Err() != nil {
				return
			}
			res, err := Trim(context.WithoutCancel(ctx), rdb, stream, policy)
			if err != nil {
				log.Warn("redstream: trim failed", slog.String("stream", stream), slog.Any("error", err))
				refreshTopology(rdb, err)
				onError(&OpError{Op: "trim", Stream: stream, Err: err})
				continue
			}
			if obs != nil {
				obs.Trimmed(stream, res.Removed, res.Dropped)
			}
			if res.Dropped > 0 {
				log.Warn("redstream: trim dropped entries a group had not consumed", slog.String("stream", stream),
					slog.Int64("dropped", res.Dropped), slog.Int64("removed", res.Removed), slog.String("min_id", res.MinID))
			} else if res.Removed > 0 {
				log.Info("redstream: trimmed stream", slog.String("stream", stream), slog.Int64("removed", res.Removed), slog.String("min_id", res.MinID))
			}
		}
	}
}
