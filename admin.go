package redstream

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
	"github.com/redstream/redstream/internal/streamid"
)

// Operator actions: what an operator does to a consumer group by hand when
// its work is stuck (the admin CLI's "pending", "group" and "consumers"
// commands run these). Each checks first that the stream and the group
// exist, so a mistyped name fails with [ErrNoStream] or [ErrNoGroup]
// instead of doing nothing. Every call touches keys of one hash slot, so
// they work on a [redis.ClusterClient]; all are safe for concurrent use,
// also with running consumers of the group.

// operatorErrorText is the error text of an entry [DeadLetterPending]
// moves, shown by "dlq list".
const operatorErrorText = "dead-lettered by an operator"

// consumerPage bounds the pending entries [DeleteConsumer] moves per call.
const consumerPage = 100

// deleteConsumerRounds bounds how often [DeleteConsumer] moves what a
// consumer read meanwhile before it gives up: a consumer that keeps
// reading is alive and must be stopped first.
const deleteConsumerRounds = 5

// AckPending acknowledges pending entries of group on stream without
// handling them, as a handler returning [ErrDrop] would: they leave the
// group's pending entries list and are never delivered to it again (other
// groups are unaffected). Their failed-attempts record goes with them. A
// consumer still holding one lets it go when it next looks (its handler's
// context is cancelled with [ErrLeaseLost]), as for a message another
// consumer took over.
//
// It returns how many entries were acknowledged. IDs that are not pending
// are skipped and listed in a [*NotPendingError] (wrapping [ErrNotPending])
// while the others are acknowledged. Other errors wrap [ErrInvalidID] (an
// ID that is not a complete "<ms>-<seq>" stream ID; nothing is done),
// [ErrInvalidOption] (no IDs, or an empty group), [ErrInvalidStreamName],
// [ErrNoStream] or [ErrNoGroup], or [ErrUncertain] when the connection
// failed after the acknowledgements may have been applied (acknowledging
// again is safe). IDs go to Redis up to 1,000 per call, each call atomic:
// on an error, the count is of the calls that succeeded before it.
func AckPending(ctx context.Context, rdb redis.UniversalClient, stream, group string, ids ...string) (int, error) {
	if err := checkPendingAction(ctx, rdb, "ack", stream, group, ids); err != nil {
		return 0, err
	}
	// One script per chunk: the entries are recorded as taken by an
	// operator, and their failed attempts forgotten, in the step that
	// acknowledges them, so a consumer still holding one never finds it
	// pending for no one and unrecorded. Sent once: a resend after a lost
	// reply would count every entry as not pending.
	keys := []string{stream, attemptsKey(stream, group), takenKey(stream, group), takenAgesKey(stream, group)}
	done := 0
	var skipped []string
	for chunk := range slices.Chunk(ids, scriptIDsMax) {
		args := scripts.WithIDs(chunk, group, "", takenFor.Milliseconds())
		acks, err := evalOnce(ctx, rdb, scripts.AckLapsed.Hash(), scripts.AckLapsedSource(), keys, args...).Int64Slice()
		if err == nil && len(acks) != len(chunk) {
			err = fmt.Errorf("unexpected reply of %d results for %d IDs", len(acks), len(chunk))
		}
		if err != nil {
			return done, fmt.Errorf("redstream: ack %s group %s: %w", stream, group, uncertain(groupErr(stream, group, err)))
		}
		for i, id := range chunk {
			if acks[i] == 1 {
				done++
			} else {
				skipped = append(skipped, id)
			}
		}
	}
	return done, notPendingErr(stream, group, skipped)
}

// DeadLetterPending moves pending entries of group on stream to the
// stream's dead-letter stream ([DeadLetterKey]) with reason
// [ReasonOperator], by the same atomic step a consumer uses: each entry is
// copied with its metadata (its consumer and delivery count among them) and
// acknowledged in one Lua script, so it is dead-lettered exactly once and
// never lost, even when a consumer or reaper races with the operator. It can
// then be replayed with [DeadLetters.Replay].
//
// It returns how many entries were dead-lettered. An entry deleted from the
// stream (trimmed) while pending has nothing left to copy: it is only
// cleared from the pending list, and not counted. IDs that are not pending
// are skipped and listed in a [*NotPendingError]; the errors are otherwise
// those of [AckPending].
func DeadLetterPending(ctx context.Context, rdb redis.UniversalClient, stream, group string, ids ...string) (int, error) {
	if err := checkPendingAction(ctx, rdb, "dead-letter", stream, group, ids); err != nil {
		return 0, err
	}
	// The failed handler attempts, when more than Redis's delivery count,
	// are the deliveries recorded, as when a consumer dead-letters.
	attempts, err := rdb.HMGet(ctx, attemptsKey(stream, group), ids...).Result()
	if err != nil {
		return 0, fmt.Errorf("redstream: dead-letter %s group %s: failed attempts: %w", stream, group, err)
	}
	done := 0
	var skipped []string
	for i, id := range ids {
		res, _, err := deadLetterMove(ctx, rdb, stream, group, "", id, ReasonOperator, operatorErrorText, -1, parseAttempts(attempts[i]), byOther, nil)
		if err != nil {
			return done, fmt.Errorf("redstream: dead-letter %s group %s id %s: %w", stream, group, id, err)
		}
		switch res {
		case moved:
			done++
		case notPending:
			skipped = append(skipped, id)
		}
	}
	return done, notPendingErr(stream, group, skipped)
}

// ClaimPending moves pending entries of group on stream to consumer (XCLAIM
// with JUSTID), creating the consumer in the group if needed. Their delivery
// counts and failed attempts are kept; their idle time restarts at zero. A
// redstream consumer of that name reads them when it starts (its own
// pending entries first); a running one gets them from a reaper once they
// have been idle for MinIdle. A consumer that was running the handler of
// one has lost its lease: the handler's context is cancelled.
//
// It returns how many entries were claimed. IDs that are not pending are
// skipped and listed in a [*NotPendingError]; so is an entry deleted from
// the stream while pending, which Redis (7.0 and later) clears from the
// pending list instead. An empty consumer is an [ErrInvalidOption]; the
// other errors are those of [AckPending].
func ClaimPending(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer string, ids ...string) (int, error) {
	if consumer == "" {
		return 0, fmt.Errorf("%w: claim: empty consumer name", ErrInvalidOption)
	}
	if err := checkPendingAction(ctx, rdb, "claim", stream, group, ids); err != nil {
		return 0, err
	}
	claimed, err := claimTo(ctx, rdb, stream, group, consumer, ids)
	if err != nil {
		return len(claimed), err
	}
	got := make(map[string]bool, len(claimed))
	for _, id := range claimed {
		got[id] = true
	}
	var skipped []string
	for _, id := range ids {
		if !got[id] {
			skipped = append(skipped, id)
		}
	}
	return len(claimed), notPendingErr(stream, group, skipped)
}

// claimTo moves the pending entries ids to consumer and returns the IDs
// it moved, recording each claim for the consumer it was taken from in the
// same step (claim.lua). It claims only the IDs it finds pending: XCLAIM
// on Valkey creates the consumer even when it claims nothing, and an
// action that does nothing must change nothing.
func claimTo(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer string, ids []string) ([]string, error) {
	var claimed []string
	for chunk := range slices.Chunk(ids, scriptIDsMax) {
		got, err := scripts.Claim.Run(ctx, rdb, []string{stream, takenKey(stream, group), takenAgesKey(stream, group)},
			scripts.WithIDs(chunk, group, consumer, takenFor.Milliseconds())...).StringSlice()
		if err != nil {
			return claimed, fmt.Errorf("redstream: claim %s group %s for %s: %w", stream, group, consumer, groupErr(stream, group, err))
		}
		claimed = append(claimed, got...)
	}
	return claimed, nil
}

// checkPendingAction validates the arguments of an action on pending
// entries and checks that the stream and group exist.
func checkPendingAction(ctx context.Context, rdb redis.UniversalClient, op, stream, group string, ids []string) error {
	if err := checkGroupArgs(op, stream, group); err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("%w: %s: no entry IDs given", ErrInvalidOption, op)
	}
	for _, id := range ids {
		if _, err := streamid.Parse(id); err != nil {
			return fmt.Errorf("%w: %s: %q: %w", ErrInvalidID, op, id, err)
		}
	}
	_, err := groupInfo(ctx, rdb, stream, group)
	return err
}

func checkGroupArgs(op, stream, group string) error {
	if err := ValidateStream(stream); err != nil {
		return err
	}
	if group == "" {
		return fmt.Errorf("%w: %s: empty group name", ErrInvalidOption, op)
	}
	return nil
}

// groupInfo returns group's XINFO GROUPS record, or an error wrapping
// [ErrNoStream] or [ErrNoGroup].
func groupInfo(ctx context.Context, rdb redis.UniversalClient, stream, group string) (redis.XInfoGroup, error) {
	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "no such key") {
			return redis.XInfoGroup{}, fmt.Errorf("%w: %s", ErrNoStream, stream)
		}
		return redis.XInfoGroup{}, fmt.Errorf("redstream: groups of %s: %w", stream, err)
	}
	for _, g := range groups {
		if g.Name == group {
			return g, nil
		}
	}
	return redis.XInfoGroup{}, fmt.Errorf("%w: %s has no group %s", ErrNoGroup, stream, group)
}

// groupErr turns a NOGROUP reply (the group or stream vanished after the
// check) into [ErrNoGroup].
func groupErr(stream, group string, err error) error {
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return fmt.Errorf("%w: %s has no group %s", ErrNoGroup, stream, group)
	}
	return err
}

func notPendingErr(stream, group string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return &NotPendingError{Stream: stream, Group: group, IDs: ids}
}

// checkStart validates a group position: "$", "0" or a complete ID.
func checkStart(op, id string) error {
	if id == "$" || id == "0" {
		return nil
	}
	if _, err := streamid.Parse(id); err != nil {
		return fmt.Errorf("%w: %s: %q: want $, 0 or <ms>-<seq>: %w", ErrInvalidID, op, id, err)
	}
	return nil
}

// DeleteConsumer deletes consumer from group of stream without dropping
// what it holds: its pending entries are first claimed to heir (as
// [ClaimPending] does, keeping their delivery counts), and the consumer is
// deleted only once it holds nothing, checked and deleted in one script.
// heir "" picks the group's most recently active other consumer (the
// lowest idle time). It returns the heir and how many entries moved to it.
//
// A consumer that keeps reading while it is deleted is alive: after a few
// rounds of moving what it read meanwhile, DeleteConsumer gives up with an
// error, having moved what it could; stop the consumer first. A consumer
// that holds nothing needs no heir.
//
// Errors wrap [ErrNoStream], [ErrNoGroup], [ErrNoConsumer],
// [ErrInvalidOption] (an empty consumer name, heir equal to consumer, or no
// heir given for pending entries in a group with no other consumer) or
// [ErrInvalidStreamName].
func DeleteConsumer(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer, heir string) (string, int, error) {
	if err := checkGroupArgs("delete consumer", stream, group); err != nil {
		return "", 0, err
	}
	if consumer == "" {
		return "", 0, fmt.Errorf("%w: delete consumer: empty consumer name", ErrInvalidOption)
	}
	if heir == consumer {
		return "", 0, fmt.Errorf("%w: delete consumer: %s cannot take over its own pending entries", ErrInvalidOption, consumer)
	}
	if _, err := groupInfo(ctx, rdb, stream, group); err != nil {
		return "", 0, err
	}
	consumers, err := rdb.XInfoConsumers(ctx, stream, group).Result()
	if err != nil {
		return "", 0, fmt.Errorf("redstream: consumers of %s group %s: %w", stream, group, groupErr(stream, group, err))
	}
	if !slices.ContainsFunc(consumers, func(c redis.XInfoConsumer) bool { return c.Name == consumer }) {
		return "", 0, fmt.Errorf("%w: group %s of %s has no consumer %s", ErrNoConsumer, group, stream, consumer)
	}
	if heir == "" {
		heir = mostRecentlyActive(consumers, consumer)
	}
	moved := 0
	for range deleteConsumerRounds {
		n, err := moveAllPending(ctx, rdb, stream, group, consumer, heir)
		moved += n
		if err != nil {
			return heir, moved, err
		}
		deleted, err := scripts.DelConsumer.Run(ctx, rdb, []string{stream}, group, consumer).Int()
		if err != nil {
			return heir, moved, fmt.Errorf("redstream: delete consumer %s of %s group %s: %w", consumer, stream, group, groupErr(stream, group, err))
		}
		if deleted == 1 {
			return heir, moved, nil
		}
	}
	return heir, moved, fmt.Errorf("redstream: delete consumer %s of %s group %s: it keeps reading new entries (moved %d to %s): stop it first", consumer, stream, group, moved, heir)
}

// mostRecentlyActive returns the name of the consumer other than except
// with the lowest idle time, or "" when there is none.
func mostRecentlyActive(consumers []redis.XInfoConsumer, except string) string {
	best, bestIdle := "", time.Duration(math.MaxInt64)
	for _, c := range consumers {
		if c.Name != except && c.Idle < bestIdle {
			best, bestIdle = c.Name, c.Idle
		}
	}
	return best
}

// moveAllPending claims every pending entry of consumer to heir, a page at
// a time, and returns how many moved.
func moveAllPending(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer, heir string) (int, error) {
	moved := 0
	for {
		page, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: consumerPage, Consumer: consumer}).Result()
		if err != nil {
			return moved, fmt.Errorf("redstream: pending entries of consumer %s of %s group %s: %w", consumer, stream, group, groupErr(stream, group, err))
		}
		if len(page) == 0 {
			return moved, nil
		}
		if heir == "" {
			return moved, fmt.Errorf("%w: delete consumer: %s holds pending entries and group %s of %s has no other consumer to take them: name one", ErrInvalidOption, consumer, group, stream)
		}
		ids := make([]string, len(page))
		for i, p := range page {
			ids[i] = p.ID
		}
		claimed, err := claimTo(ctx, rdb, stream, group, heir, ids)
		if err != nil {
			return moved, err
		}
		moved += len(claimed)
		// Entries deleted from the stream are cleared from the pending
		// list by the claim (Redis 7); anything else left means no
		// progress, which must not loop.
		left, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: ids[0], End: ids[len(ids)-1], Count: 1, Consumer: consumer}).Result()
		if err != nil {
			return moved, fmt.Errorf("redstream: pending entries of consumer %s of %s group %s: %w", consumer, stream, group, groupErr(stream, group, err))
		}
		if len(left) > 0 {
			return moved, fmt.Errorf("redstream: delete consumer %s of %s group %s: entry %s could not be claimed", consumer, stream, group, left[0].ID)
		}
	}
}
