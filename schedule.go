package redstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/keys"
	"github.com/redstream/redstream/internal/scripts"
)

// Delayed and scheduled delivery ([WithDelay], [WithDeliverAt]). A
// scheduled message waits outside its stream, in two keys of the stream's
// hash slot: a sorted set of schedule IDs by due time (milliseconds of the
// Redis server's clock) and a hash of their records (the entry's fields).
// When it is due, one script (movedue.lua) appends it to the stream and
// removes it from the schedule at once, so it is appended exactly once
// however many movers race: every Consumer of the stream and every
// standalone Reaper moves due messages (scheduler.go).

// Fields the mover adds to an entry that was scheduled.
const (
	// ScheduleIDField holds the schedule ID a scheduled publish returned
	// ([Message.ScheduleID]).
	ScheduleIDField = "redstream-schedule-id"
	// DueField holds the time the message was due, in Unix milliseconds of
	// the Redis server's clock ([Message.ScheduledFor]).
	DueField = "redstream-due"
)

// scheduleAt is when a scheduled publish is due: at (when abs), or delay
// after the Redis server's time when the schedule script runs.
type scheduleAt struct {
	delay time.Duration
	at    time.Time
	abs   bool
}

// WithDelay publishes the message d from now, instead of at once: the
// message is stored in Redis (durably, as the stream is) and appended to
// the stream when due by a Consumer or a standalone [Reaper] of the
// stream, within about their poll interval ([WithSchedulePoll], default
// [DefaultSchedulePoll]) after it is due, and never before: "now" and
// "due" are the Redis server's clock, the one that stamps the entry's ID.
// Publish then returns a schedule ID, not an entry ID: [Producer.Cancel]
// takes it, and the entry carries it ([Message.ScheduleID]).
//
// d is rounded up to a whole millisecond; zero is due at once (still
// through the schedule); negative, or more than [MaxDelay] (100 years), is
// an error wrapping [ErrInvalidOption], as is giving WithDelay or
// [WithDeliverAt] twice, or with [WithID] or [WithDedupeKey]. Nothing moves a due message unless a Consumer or Reaper
// of its stream runs. The entry is appended without the producer's trim
// ([WithMaxLen], [WithMaxAge]).
func WithDelay(d time.Duration) PublishOption {
	return publishOption(func(c *publishConfig) error {
		if d < 0 || d > MaxDelay {
			return fmt.Errorf("%w: WithDelay(%v): must be from 0 to MaxDelay (%v)", ErrInvalidOption, d, MaxDelay)
		}
		if c.schedule != nil {
			return fmt.Errorf("%w: WithDelay or WithDeliverAt given twice", ErrInvalidOption)
		}
		c.schedule = &scheduleAt{delay: d}
		return nil
	})
}

// WithDeliverAt publishes the message at t instead of at once, as
// [WithDelay] does: t is compared with the Redis server's clock, to the
// millisecond, so a producer whose clock is off shifts it by as much. A t
// in the past is due at once. The zero Time, or a t more than [MaxDelay]
// (100 years) from now by the producer's clock, is an error wrapping
// [ErrInvalidOption], as is giving WithDeliverAt or WithDelay twice, or
// with [WithID] or [WithDedupeKey].
func WithDeliverAt(t time.Time) PublishOption {
	return publishOption(func(c *publishConfig) error {
		if t.IsZero() {
			return fmt.Errorf("%w: WithDeliverAt: zero time", ErrInvalidOption)
		}
		if time.Until(t) > MaxDelay {
			// Further out, its Unix milliseconds may not fit an int64.
			return fmt.Errorf("%w: WithDeliverAt(%v): more than MaxDelay (%v) from now", ErrInvalidOption, t, MaxDelay)
		}
		if c.schedule != nil {
			return fmt.Errorf("%w: WithDelay or WithDeliverAt given twice", ErrInvalidOption)
		}
		c.schedule = &scheduleAt{at: t, abs: true}
		return nil
	})
}

// checkScheduled refuses what a scheduled publish cannot carry.
func checkScheduled(pc *publishConfig) error {
	if pc.schedule == nil {
		return nil
	}
	if pc.id != "" {
		return fmt.Errorf("%w: WithID cannot be combined with WithDelay or WithDeliverAt (the entry's ID is taken when it is due)", ErrInvalidOption)
	}
	if pc.dedupeKey != "" {
		return fmt.Errorf("%w: WithDedupeKey cannot be combined with WithDelay or WithDeliverAt", ErrInvalidOption)
	}
	return nil
}

// scheduledKey and scheduledDataKey are stream's schedule: the sorted set
// of schedule IDs by due time and the hash of their records.
func scheduledKey(stream string) string     { return keys.Scheduled(stream) }
func scheduledDataKey(stream string) string { return slotted(stream) + ":redstream-scheduled-data" }

// newScheduleID returns a new schedule ID: "sched-" and 24 random hex
// digits, then "-p" and the partition's index for a partitioned producer,
// so that [Producer.Cancel] finds the partition.
func newScheduleID(part int, partitioned bool) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := "sched-" + hex.EncodeToString(b[:])
	if partitioned {
		id += "-p" + strconv.Itoa(part)
	}
	return id
}

// scheduleIDPartition returns the partition a schedule ID names, 0 for
// one that names none.
func scheduleIDPartition(id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, "sched-")
	if !ok {
		return 0, false
	}
	i := strings.LastIndex(rest, "-p")
	if i < 0 {
		return 0, true
	}
	part, err := strconv.Atoi(rest[i+2:])
	return part, err == nil && part >= 0
}

// delayMillis is d rounded up to whole milliseconds, d taken as at most
// MaxDelay: rounding d itself up would overflow within 1ms of
// math.MaxInt64, into a due time in the past.
func delayMillis(d time.Duration) int64 {
	d = min(d, MaxDelay)
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// scheduleCall is the schedule script's call for one publish to stream
// with XADD arguments a, under schedule ID id.
func scheduleCall(part int, a *redis.XAddArgs, at *scheduleAt, id string) *scriptCall {
	values := a.Values.([]any)
	argv := make([]any, 0, 3+len(values))
	if at.abs {
		argv = append(argv, id, at.at.UnixMilli(), 0)
	} else {
		argv = append(argv, id, "", delayMillis(at.delay))
	}
	argv = append(argv, values...)
	return &scriptCall{
		part:   part,
		script: scripts.Schedule,
		keys:   []string{scheduledKey(a.Stream), scheduledDataKey(a.Stream), onceKey(a.Stream)},
		argv:   argv,
		stream: a.Stream,
		reply: func(any) (string, error) {
			// Whether this run wrote it or found it written (a resend),
			// the message is scheduled under id.
			return id, nil
		},
		knownID: id,
	}
}

// Cancel cancels a message published with [WithDelay] or [WithDeliverAt]
// by this producer (or one with the same stream and partitions), given the
// schedule ID the publish returned. It returns nil when the message was
// waiting: it is never appended. It returns an error wrapping
// [ErrNotScheduled] when it was not waiting: already appended to the stream
// (too late to cancel), cancelled before, or never scheduled. A reply lost
// on the way is safe to resend: the client's resend reports what the first
// run did. Safe for concurrent use.
func (p *Producer[T]) Cancel(ctx context.Context, id string) error {
	part, ok := scheduleIDPartition(id)
	if !ok || part >= len(p.streams) {
		return fmt.Errorf("%w: %q is not a schedule ID of %s", ErrNotScheduled, id, p.stream)
	}
	return CancelScheduled(ctx, p.rdb, p.streams[part], id)
}

// CancelScheduled cancels the scheduled message id of stream (for a
// partitioned stream, the partition's key: [ListScheduled] shows it), as
// [Producer.Cancel] does, for a process without the producer: nil when
// cancelled, an error wrapping [ErrNotScheduled] when it was not waiting.
func CancelScheduled(ctx context.Context, rdb redis.UniversalClient, stream, id string) error {
	if err := ValidateStream(stream); err != nil {
		return err
	}
	n, err := scripts.CancelScheduled.Run(ctx, rdb, []string{scheduledKey(stream), scheduledDataKey(stream), onceKey(stream)}, id).Int()
	if err != nil {
		return fmt.Errorf("redstream: cancel %s on %s: %w", id, stream, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s on %s", ErrNotScheduled, id, stream)
	}
	return nil
}

// ScheduledMessage is a message waiting in a stream's schedule, as
// [ListScheduled] returns it.
type ScheduledMessage struct {
	// ID is its schedule ID.
	ID string
	// Due is when it is due, by the Redis server's clock.
	Due time.Time
	// Fields are the entry's fields as they will be appended (the mover
	// adds [ScheduleIDField] and [DueField]).
	Fields map[string]string
}

// ListScheduled returns up to n messages waiting in stream's schedule (for
// a partitioned stream, one partition's key), in due order, skipping the
// first offset. A stream with nothing scheduled gives none. n must be
// positive and offset not negative, else the error wraps
// [ErrInvalidOption]. Read only; safe for concurrent use.
func ListScheduled(ctx context.Context, rdb redis.UniversalClient, stream string, offset, n int) ([]ScheduledMessage, error) {
	if err := ValidateStream(stream); err != nil {
		return nil, err
	}
	if n <= 0 || offset < 0 {
		return nil, fmt.Errorf("%w: ListScheduled(offset %d, n %d): need n > 0 and offset >= 0", ErrInvalidOption, offset, n)
	}
	stop := -1 // the last: offset+n-1 would overflow
	if n <= math.MaxInt-offset {
		stop = offset + n - 1
	}
	reply, err := scripts.ListScheduled.Run(ctx, rdb, []string{scheduledKey(stream), scheduledDataKey(stream)}, offset, stop).Slice()
	if err != nil {
		return nil, fmt.Errorf("redstream: list scheduled of %s: %w", stream, err)
	}
	out := make([]ScheduledMessage, 0, len(reply)/3)
	for i := 0; i+2 < len(reply); i += 3 {
		id, _ := reply[i].(string)
		dueStr, _ := reply[i+1].(string)
		due, _ := strconv.ParseInt(dueStr, 10, 64)
		raw, _ := reply[i+2].([]any)
		fields := make(map[string]string, len(raw)/2)
		for j := 0; j+1 < len(raw); j += 2 {
			name, _ := raw[j].(string)
			fields[name], _ = raw[j+1].(string)
		}
		out = append(out, ScheduledMessage{ID: id, Due: time.UnixMilli(due), Fields: fields})
	}
	return out, nil
}

// MoveDue appends the scheduled messages of stream that are due (up to
// [ScheduleBatch], in due order) and returns how many it appended.
// Consumers and standalone Reapers call it every poll interval; an
// operator or a test may call it too: racing calls never move a message
// twice. Safe for concurrent use.
func MoveDue(ctx context.Context, rdb redis.UniversalClient, stream string) (int, error) {
	if err := ValidateStream(stream); err != nil {
		return 0, err
	}
	moved, _, _, err := moveDue(ctx, rdb, stream)
	return moved, err
}

// moveDue runs the mover script once on stream: it returns the entries
// appended, the schedule IDs taken off (a full batch means more may be
// due), and the due time of the next message waiting (zero if none).
func moveDue(ctx context.Context, rdb redis.UniversalClient, stream string) (moved, taken int, next time.Time, err error) {
	reply, err := scripts.MoveDue.Run(ctx, rdb, []string{scheduledKey(stream), scheduledDataKey(stream), stream}, ScheduleBatch).Slice()
	if err != nil {
		return 0, 0, time.Time{}, err
	}
	if len(reply) != 3 {
		return 0, 0, time.Time{}, fmt.Errorf("redstream: move due on %s: unexpected reply %v", stream, reply)
	}
	m, _ := reply[0].(int64)
	t, _ := reply[1].(int64)
	if s, _ := reply[2].(string); s != "" {
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			next = time.UnixMilli(ms)
		}
	}
	return int(m), int(t), next, nil
}

// scheduledSummary returns how many messages wait in stream's schedule and
// when the first is due (zero when none), for Inspect.
func scheduledSummary(ctx context.Context, rdb redis.UniversalClient, stream string) (int64, time.Time, error) {
	key := scheduledKey(stream)
	n, err := rdb.ZCard(ctx, key).Result()
	if err != nil || n == 0 {
		return 0, time.Time{}, err
	}
	first, err := rdb.ZRangeWithScores(ctx, key, 0, 0).Result()
	if err != nil || len(first) == 0 {
		return n, time.Time{}, err
	}
	return n, time.UnixMilli(int64(first[0].Score)), nil
}

// ScheduleID returns the schedule ID of a message that was published with
// [WithDelay] or [WithDeliverAt] (what that publish returned), or "" for a
// message published at once: a handler can tell a scheduled message
// appended twice (published twice) from one delivered twice.
func (m *Message[T]) ScheduleID() string { return m.Header(ScheduleIDField) }

// ScheduledFor returns when a message published with [WithDelay] or
// [WithDeliverAt] was due, by the Redis server's clock, to the
// millisecond; [Message.Time] is when it was appended, at or after that.
// It returns the zero Time for a message published at once.
func (m *Message[T]) ScheduledFor() time.Time {
	ms, err := strconv.ParseInt(m.Header(DueField), 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
