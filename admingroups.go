package redstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/streamid"
)

// Operator actions on a consumer group as a whole: create it at a
// position, move it (forgetting its takeover record on a rewind), destroy
// it. The actions on its pending entries and consumers are in admin.go.

// GroupStartAt returns the position that makes a consumer group's next
// delivery the first entry added at or after t (by the time in its ID, to
// the millisecond): the greatest ID before t's millisecond, such as
// "1699999999999-18446744073709551615" for 1700000000000 ms. Pass it to
// [SetGroupID] to rewind or fast-forward a group to a time, or to
// [CreateGroup]. Times at or before the Unix epoch give "0" (the whole
// stream).
func GroupStartAt(t time.Time) string {
	id := streamid.FromTime(t)
	if id.Ms == 0 {
		return "0"
	}
	return streamid.ID{Ms: id.Ms - 1, Seq: math.MaxUint64}.String()
}

// CreateGroup creates consumer group group on stream, positioned at start:
// the group is delivered the entries after it. start is "$" (entries added
// from now on), "0" (the whole stream), an entry ID, or a time through
// [GroupStartAt]; "" means "$" ([DefaultGroupStart]). A consumer creates its
// groups itself when it starts ([WithGroupStart]); CreateGroup positions one
// before any consumer runs.
//
// Unlike a consumer, it does not create a missing stream: the error then
// wraps [ErrNoStream], so a mistyped name is noticed. A group that exists
// is left as it is and the error wraps [ErrGroupExists]. Bad arguments
// wrap [ErrInvalidID], [ErrInvalidOption] or [ErrInvalidStreamName].
func CreateGroup(ctx context.Context, rdb redis.UniversalClient, stream, group, start string) error {
	if start == "" {
		start = DefaultGroupStart
	}
	if err := checkGroupArgs("create group", stream, group); err != nil {
		return err
	}
	if err := checkStart("create group", start); err != nil {
		return err
	}
	_, err := groupInfo(ctx, rdb, stream, group)
	switch {
	case err == nil:
		return fmt.Errorf("%w: %s has a group %s", ErrGroupExists, stream, group)
	case !errors.Is(err, ErrNoGroup):
		return err
	}
	if err := rdb.XGroupCreate(ctx, stream, group, start).Err(); err != nil {
		if redis.HasErrorPrefix(err, "BUSYGROUP") {
			return fmt.Errorf("%w: %s has a group %s", ErrGroupExists, stream, group)
		}
		return fmt.Errorf("redstream: create group %s of %s: %w", group, stream, err)
	}
	return nil
}

// SetGroupID moves consumer group group of stream to id (XGROUP SETID): the
// group is next delivered the entries after id. id is "$" (skip to the
// end), "0" (the whole stream again), an entry ID, or a time through
// [GroupStartAt]. Rewinding delivers entries again that the group handled
// already; moving forward skips entries it was not delivered. Its pending
// entries stay pending, and a running consumer keeps reading from the new
// position. Redis's lag count for the group is unknown afterwards
// ([Inspect] counts it). A rewind also forgets the group's takeover record
// (which consumer took which entry over, kept an hour; see the README's
// delivery promise): an entry delivered again is a new delivery, and a
// record of its last one could make a consumer that stalls holding it let
// it go. A consumer stalled across the rewind, holding an entry another
// consumer finished, then finishes it again from memory: a duplicate,
// never a loss.
//
// Errors wrap [ErrNoStream], [ErrNoGroup], [ErrInvalidID],
// [ErrInvalidOption] or [ErrInvalidStreamName].
func SetGroupID(ctx context.Context, rdb redis.UniversalClient, stream, group, id string) error {
	if err := checkGroupArgs("set group ID", stream, group); err != nil {
		return err
	}
	if err := checkStart("set group ID", id); err != nil {
		return err
	}
	g, err := groupInfo(ctx, rdb, stream, group)
	if err != nil {
		return err
	}
	_, err = rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.XGroupSetID(ctx, stream, group, id)
		if rewinds(g.LastDeliveredID, id) {
			pipe.Del(ctx, takenKey(stream, group), takenAgesKey(stream, group))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redstream: set ID of group %s of %s: %w", group, stream, groupErr(stream, group, err))
	}
	return nil
}

// rewinds reports whether moving a group whose last delivered entry is
// last to id ("$", "0" or an entry ID) delivers entries again. When last
// cannot be read, it says yes.
func rewinds(last, id string) bool {
	if id == "$" {
		return false
	}
	from, err := streamid.Parse(last)
	if err != nil {
		return true
	}
	if id == "0" {
		return from != streamid.ID{}
	}
	to, err := streamid.Parse(id)
	return err != nil || to.Compare(from) < 0
}

// DestroyGroup deletes consumer group group of stream with its consumers,
// its pending entries list and redstream's record of its failed attempts,
// and returns how many entries were pending. The stream's entries stay; but
// the group's pending entries are never delivered to it again, and running
// consumers of the group recreate it at their start position
// ([WithGroupStart]) when they next read. Dead-letter those that matter
// first ([DeadLetterPending]).
//
// Errors wrap [ErrNoStream], [ErrNoGroup], [ErrInvalidOption] or
// [ErrInvalidStreamName], or [ErrUncertain] when the connection failed
// after the command may have run.
func DestroyGroup(ctx context.Context, rdb redis.UniversalClient, stream, group string) (int64, error) {
	if err := checkGroupArgs("destroy group", stream, group); err != nil {
		return 0, err
	}
	g, err := groupInfo(ctx, rdb, stream, group)
	if err != nil {
		return 0, err
	}
	var destroyed *redis.IntCmd
	// Sent once: a resend after a lost reply would find no group.
	_, err = rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		destroy := onceIntCmd{redis.NewIntCmd(ctx, "xgroup", "destroy", stream, group)}
		_ = pipe.Process(ctx, destroy)
		destroyed = destroy.IntCmd
		pipe.Del(ctx, attemptsKey(stream, group), takenKey(stream, group), takenAgesKey(stream, group))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("redstream: destroy group %s of %s: %w", group, stream, uncertain(err))
	}
	if destroyed.Val() == 0 {
		return 0, fmt.Errorf("%w: %s has no group %s", ErrNoGroup, stream, group)
	}
	return g.Pending, nil
}
