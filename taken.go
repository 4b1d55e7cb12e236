package redstream

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
)

// The taken record: which entries of a group were taken over from the
// consumer they were delivered to (claimed by another consumer's reaper or
// by an operator, dead-lettered by a reaper, acknowledged by an operator)
// in the last takenFor.
//
// A consumer that stalled longer than MinIdle (a long GC pause, a frozen VM,
// a cut connection) can find a message it holds pending for no one when it
// looks again. Either another consumer took it over meanwhile and finished
// it, and the stalled one must let it go, or Redis forgot it (its consumer
// deleted by hand, its group created again), and the stalled one must
// finish it from memory, dead-lettering it if its handler fails, or it is
// lost. Redis keeps no trace of the first: this record is that trace. The
// lease script (claimown.lua) and a consumer's dead-letter move
// (deadletter.lua) read it.
//
// The record is a hash per stream and group, in the stream's hash slot,
// naming who took each entry, and a sorted set of the same IDs scored by
// when (Redis's clock, Unix ms). A consumer ignores a takeover by itself.
// Every write drops what is older than takenFor and sets the keys to
// expire after it:
// it holds only the takeovers of the last takenFor, which are rare (a
// consumer's crash, a stall), and is gone when there are none. A consumer
// stalled longer than takenFor before it looks again treats what it finds
// pending for no one as vanished: a second dead letter, at worst, never a
// lost message.

// takenFor is how long a takeover is remembered.
const takenFor = time.Hour

// scriptIDsMax caps the entry IDs one script call takes: Lua's unpack,
// which the scripts use to pass IDs on to Redis commands, fails past about
// 8,000 values, and an operator may name more.
const scriptIDsMax = 1000

// takenKey and takenAgesKey are the keys of the taken record of stream's
// entries in group, in stream's hash slot: a hash of entry ID to the
// consumer that took it ("" for an operator or a reaper that is no
// consumer), and a sorted set of entry ID by when it was taken.
func takenKey(stream, group string) string {
	return slotted(stream) + ":redstream-taken:" + group
}

func takenAgesKey(stream, group string) string {
	return slotted(stream) + ":redstream-taken-at:" + group
}

// markClaimed records, of ids of stream claimed by consumer in group, those
// still pending for it: one acknowledged since by the consumer it was
// taken from keeps that consumer's record (ackLapsed). The reaper calls it
// right after its XAUTOCLAIM; an operator's claim (claimTo) records in the
// claim's own step.
func markClaimed(ctx context.Context, rdb redis.UniversalClient, stream, group, consumer string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	args := scripts.WithIDs(ids, consumer, takenFor.Milliseconds(), group)
	keys := []string{takenKey(stream, group), takenAgesKey(stream, group), stream}
	return scripts.MarkTaken.Run(ctx, rdb, keys, args...).Err()
}

// ackLapsed acknowledges ids of stream in group, finished by consumer after
// its lease on them may have lapsed: it records those pending for another
// consumer as taken back by consumer, and deletes their failed-attempts
// records, so that the consumer that took them over lets them go instead
// of dead-lettering them as vanished. It returns how many were pending. It
// sends the script's source (EVAL), so it works in a pipeline, where
// EVALSHA's fallback cannot; it is sent rarely.
func ackLapsed(ctx context.Context, rdb redis.Scripter, stream, group, consumer string, ids []string) *redis.Cmd {
	args := scripts.WithIDs(ids, group, consumer, takenFor.Milliseconds())
	keys := []string{stream, attemptsKey(stream, group), takenKey(stream, group), takenAgesKey(stream, group)}
	return scripts.AckLapsed.Eval(ctx, rdb, keys, args...)
}
