package redstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/serverinfo"
	"github.com/redstream/redstream/internal/slot"
	"github.com/redstream/redstream/internal/streamid"
)

// DeadLetterPrefix starts every dead-letter stream key; see [DeadLetterKey].
const DeadLetterPrefix = "dead-letter:"

// Message is one stream entry as a handler sees it.
type Message[T any] struct {
	// ID is the entry's stream ID, such as "1694012345678-0".
	ID string
	// Stream is the stream key the entry was read from.
	Stream string
	// Payload is the decoded payload field. For a handler of [Fields] it
	// holds every field of the entry.
	Payload T
	// Deliveries is the number of this handler attempt: the failed attempts
	// recorded for the entry in its group, plus one (1 on the first). Only
	// handler runs count, not deliveries no handler saw (see
	// [WithMaxDeliveries]).
	Deliveries int64

	values map[string]any // the entry's fields as go-redis read them
}

// Header returns the value of the entry field name, such as a header
// written next to the payload, or "" when it is absent.
func (m *Message[T]) Header(name string) string {
	s, _ := m.values[name].(string)
	return s
}

// Key returns the message's key ([WithKey], [WithKeyFunc]), stored in
// [KeyField], or "" when it has none.
func (m *Message[T]) Key() string { return m.Header(KeyField) }

// Fields returns every field of the entry as stored, the payload field and
// headers included, in a new map the caller may keep.
func (m *Message[T]) Fields() map[string]string {
	fields := make(map[string]string, len(m.values))
	for k, v := range m.values {
		fields[k], _ = v.(string)
	}
	return fields
}

// Time returns the time encoded in the entry's ID: when Redis appended it
// (for auto-generated IDs), to the millisecond. It returns the zero Time when
// the ID does not parse.
func (m *Message[T]) Time() time.Time {
	id, err := streamid.Parse(m.ID)
	if err != nil {
		return time.Time{}
	}
	return id.Time()
}

// StreamName builds a stream key following the service:entity:action
// convention, such as "orders:order:created". Each part must be non-empty
// and contain no ':', braces, spaces or control characters; the error wraps
// [ErrInvalidStreamName].
func StreamName(service, entity, action string) (string, error) {
	for _, part := range [...]struct{ what, text string }{
		{"service", service}, {"entity", entity}, {"action", action},
	} {
		if part.text == "" {
			return "", fmt.Errorf("%w: %s part is empty", ErrInvalidStreamName, part.what)
		}
		if i := strings.IndexFunc(part.text, func(r rune) bool {
			return r == ':' || r == '{' || r == '}' || unicode.IsSpace(r) || unicode.IsControl(r)
		}); i >= 0 {
			return "", fmt.Errorf("%w: %s part %q contains %q", ErrInvalidStreamName, part.what, part.text, part.text[i:i+1])
		}
	}
	return service + ":" + entity + ":" + action, nil
}

// ValidateStream reports whether redstream can use stream as a stream key:
// it must be non-empty, and braces in it must either form a Redis Cluster
// hash tag ("{...}" with text inside) or be only opening braces, so that
// [DeadLetterKey] can put the dead-letter stream in the same hash slot; and
// it must not be only a hash tag ("{x}"), whose keys (dead letters,
// schedule, dedupe, leases) would be those of the stream named by the tag
// ("x"), which redstream keeps in the slot of "{x}". The error wraps
// [ErrInvalidStreamName].
func ValidateStream(stream string) error {
	if stream == "" {
		return fmt.Errorf("%w: empty", ErrInvalidStreamName)
	}
	tag, ok := slot.Tag(stream)
	if !ok && strings.ContainsRune(stream, '}') {
		return fmt.Errorf("%w: %q has a '}' but no non-empty {hash tag}, so no dead-letter key can share its cluster slot", ErrInvalidStreamName, stream)
	}
	if ok && stream == "{"+tag+"}" {
		return fmt.Errorf("%w: %q is only a hash tag: its dead letters, schedule and other keys would be those of stream %q; name it %q or add to it, as in %q", ErrInvalidStreamName, stream, tag, tag, stream+":events")
	}
	return nil
}

// DeadLetterKey returns the key of stream's dead-letter stream. It lives in
// the same Redis Cluster hash slot as stream, so one script can move an
// entry between them: "orders:order:created" gives
// "dead-letter:{orders:order:created}", and a stream that already has a hash
// tag keeps it ("orders:{eu}:created" gives "dead-letter:orders:{eu}:created").
// The result is meaningful only for streams that [ValidateStream] accepts.
func DeadLetterKey(stream string) string {
	if _, ok := slot.Tag(stream); ok {
		return DeadLetterPrefix + stream
	}
	return DeadLetterPrefix + "{" + stream + "}"
}

// StreamInfo is a snapshot of a stream and its consumer groups, as
// [Inspect] returns it.
type StreamInfo struct {
	Stream string
	// Length is the number of entries (XLEN).
	Length int64
	// FirstID and LastID are the IDs of the oldest and newest entries; ""
	// when the stream is empty.
	FirstID, LastID string
	// LastGeneratedID is the last ID Redis assigned, even if since deleted.
	LastGeneratedID string
	// DeadLetterLength is the length of the stream's dead-letter stream.
	DeadLetterLength int64
	// Scheduled is how many messages wait in the stream's schedule
	// ([WithDelay]); NextDue is when the first of them is due, by the Redis
	// server's clock (the zero Time when none waits). A due message still
	// waits until a consumer or reaper of the stream polls. Scheduled is
	// -1 when the Redis user may not read the schedule's keys.
	Scheduled int64
	NextDue   time.Time
	// Groups are the stream's consumer groups, in Redis's order.
	Groups []GroupInfo
}

// GroupInfo describes one consumer group of a stream.
type GroupInfo struct {
	Name string
	// LastDeliveredID is the newest entry delivered to the group.
	LastDeliveredID string
	// Lag is how many entries the group has not been delivered yet. Redis
	// 7 reports it unless entries were deleted in between; redstream then
	// counts them, as it does on Redis 6.2, which reports no lag. LagKnown is false only when counting was cut short
	// (more than a million entries), and Lag is then a lower bound.
	Lag      int64
	LagKnown bool
	// Pending is how many delivered entries are not acknowledged.
	Pending int64
	// OldestPendingID is the lowest pending ID; "" when nothing is pending.
	OldestPendingID string
	// OldestPendingAge is how long ago that entry was added to the stream
	// (from its ID); OldestPendingIdle is how long since it was last
	// delivered or its lease renewed.
	OldestPendingAge  time.Duration
	OldestPendingIdle time.Duration
	// Paused is true while the group's consumption of the stream is
	// paused ([Pause]), since PausedSince. In a sum over partitions
	// ([InspectPartitions]) it is true when any partition is paused.
	// PausedKnown is false when the pause key could not be read (a Redis
	// user without access to the stream's redstream-* keys).
	Paused      bool
	PausedSince time.Time
	PausedKnown bool
	Consumers   []ConsumerInfo
}

// ConsumerInfo describes one consumer of a group.
type ConsumerInfo struct {
	Name string
	// Pending is how many entries the consumer holds.
	Pending int64
	// Idle is the time since the consumer last interacted with the group
	// (read, claimed or renewed).
	Idle time.Duration
	// Inactive is the time since its last successful read or claim. Redis
	// reports it from 7.2 on; before, it is -1 (for a consumer idle 0ms,
	// 0), so test Inactive < 0 rather than convert it.
	Inactive time.Duration
}

// lagCountLimit caps the entries Inspect counts itself when Redis does not
// report a group's lag.
const lagCountLimit = 1_000_000

// Inspect returns a snapshot of stream: its length, first and last IDs,
// dead-letter length, scheduled messages, and for each consumer group its
// lag, pending count, oldest pending entry and consumers. It reads with
// XINFO, XPENDING, XLEN, ZCARD and ZRANGE; the figures are taken one after
// another, not atomically. For a stream that does not exist the error
// wraps [ErrNoStream], unless messages wait in its schedule: the snapshot
// then has only Scheduled and NextDue. Ages are measured with this
// machine's clock.
func Inspect(ctx context.Context, rdb redis.UniversalClient, stream string) (*StreamInfo, error) {
	if err := ValidateStream(stream); err != nil {
		return nil, err
	}
	xinfo, err := rdb.XInfoStream(ctx, stream).Result()
	if redis.HasErrorPrefix(err, "no such key") {
		// Messages may wait in the schedule of a stream not yet created.
		if n, next, err := scheduledSummary(ctx, rdb, stream); err == nil && n > 0 {
			return &StreamInfo{Stream: stream, Scheduled: n, NextDue: next}, nil
		}
		return nil, fmt.Errorf("%w: %s", ErrNoStream, stream)
	}
	if err != nil {
		return nil, fmt.Errorf("redstream: inspect %s: %w", stream, err)
	}
	info := &StreamInfo{
		Stream:          stream,
		Length:          xinfo.Length,
		FirstID:         xinfo.FirstEntry.ID,
		LastID:          xinfo.LastEntry.ID,
		LastGeneratedID: xinfo.LastGeneratedID,
	}
	if info.DeadLetterLength, err = rdb.XLen(ctx, DeadLetterKey(stream)).Result(); err != nil {
		return nil, fmt.Errorf("redstream: inspect %s: dead-letter length: %w", stream, err)
	}
	if info.Scheduled, info.NextDue, err = scheduledSummary(ctx, rdb, stream); err != nil {
		if !redis.HasErrorPrefix(err, "NOPERM") {
			return nil, fmt.Errorf("redstream: inspect %s: scheduled: %w", stream, err)
		}
		info.Scheduled = -1 // a user limited to the stream's own keys
	}
	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return nil, inspectErr(stream, "groups", err)
	}
	now := time.Now()
	for _, g := range groups {
		gi, err := inspectGroup(ctx, rdb, stream, xinfo, g, now)
		switch {
		case redis.HasErrorPrefix(err, "NOGROUP"):
			continue // deleted since XINFO GROUPS
		case err != nil:
			return nil, err
		}
		info.Groups = append(info.Groups, gi)
	}
	return info, nil
}

// inspectErr wraps an error of Inspect's step: the stream deleted since
// Inspect began is ErrNoStream.
func inspectErr(stream, step string, err error) error {
	if redis.HasErrorPrefix(err, "no such key") {
		return fmt.Errorf("%w: %s (deleted while inspected)", ErrNoStream, stream)
	}
	return fmt.Errorf("redstream: inspect %s: %s: %w", stream, step, err)
}

// inspectGroup reads Inspect's figures of group g. An error for a group
// deleted meanwhile wraps the NOGROUP reply.
func inspectGroup(ctx context.Context, rdb redis.UniversalClient, stream string, xinfo *redis.XInfoStream, g redis.XInfoGroup, now time.Time) (GroupInfo, error) {
	var err error
	gi := GroupInfo{Name: g.Name, LastDeliveredID: g.LastDeliveredID, Pending: g.Pending, Lag: g.Lag, LagKnown: serverinfo.LagReported(g.Lag, xinfo.EntriesAdded, xinfo.Length)}
	if !gi.LagKnown {
		gi.Lag, gi.LagKnown, err = countAfter(ctx, rdb, stream, g.LastDeliveredID)
		if err != nil {
			return gi, inspectErr(stream, "lag of "+g.Name, err)
		}
	}
	if g.Pending > 0 {
		oldest, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: g.Name, Start: "-", End: "+", Count: 1}).Result()
		if err != nil {
			return gi, inspectErr(stream, "pending of "+g.Name, err)
		}
		if len(oldest) == 1 {
			gi.OldestPendingID = oldest[0].ID
			gi.OldestPendingIdle = oldest[0].Idle
			if id, err := streamid.Parse(oldest[0].ID); err == nil {
				gi.OldestPendingAge = max(0, now.Sub(id.Time()))
			}
		}
	}
	switch gi.Paused, gi.PausedSince, err = PausedSince(ctx, rdb, stream, g.Name); {
	case err == nil:
		gi.PausedKnown = true
	case !redis.HasErrorPrefix(errors.Unwrap(err), "NOPERM"):
		return gi, fmt.Errorf("redstream: inspect %s: %w", stream, err)
	}
	consumers, err := rdb.XInfoConsumers(ctx, stream, g.Name).Result()
	if err != nil {
		return gi, inspectErr(stream, "consumers of "+g.Name, err)
	}
	for _, c := range consumers {
		inactive := c.Inactive
		if inactive == 0 && c.Idle > 0 {
			inactive = -1 // Redis before 7.2 has no inactive time
		}
		gi.Consumers = append(gi.Consumers, ConsumerInfo{Name: c.Name, Pending: c.Pending, Idle: c.Idle, Inactive: inactive})
	}
	return gi, nil
}

// countAfter counts the entries with IDs above after, up to lagCountLimit.
func countAfter(ctx context.Context, rdb redis.UniversalClient, stream, after string) (int64, bool, error) {
	const page = 10_000
	start, ok := "-", true
	if after != "" {
		start, ok = startAfter(after)
	}
	var n int64
	for n < lagCountLimit {
		if !ok {
			return n, true, nil // nothing comes after the greatest ID
		}
		msgs, err := rdb.XRangeN(ctx, stream, start, "+", page).Result()
		if err != nil {
			return 0, false, err
		}
		n += int64(len(msgs))
		if len(msgs) < page {
			return n, true, nil
		}
		start, ok = startAfter(msgs[len(msgs)-1].ID)
	}
	return n, false, nil
}

// startAfter returns the XRANGE start of the IDs above id, "(" + id, and
// reports false when there are none: Redis refuses "(" with the greatest
// ID, 18446744073709551615-18446744073709551615.
func startAfter(id string) (string, bool) {
	if parsed, err := streamid.Parse(id); err == nil && parsed == streamid.Max {
		return "", false
	}
	return "(" + id, true
}

// endBefore returns the XREVRANGE end of the IDs below id, "(" + id, and
// reports false when there are none: Redis refuses "(0-0".
func endBefore(id string) (string, bool) {
	if parsed, err := streamid.Parse(id); err == nil && parsed.IsZero() {
		return "", false
	}
	return "(" + id, true
}
