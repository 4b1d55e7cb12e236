package redstream

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
)

// The failed-attempts record: how many times a handler ran on an entry and
// failed, kept in Redis so that it survives the consumer that counted it.
//
// Redis's own delivery counter cannot say this: it also counts reads whose
// reply was lost (a read that timed out and was sent again), deliveries to
// consumers that died before starting the handler, and reclaims. So
// MaxDeliveries ([WithMaxDeliveries]) is checked against this record, and
// Redis's counter serves only as the crash-loop guard ([CrashLoopDeliveries]).
//
// The record is one hash per stream and group, in the stream's hash slot,
// with a field per entry that failed at least once. A field is written only
// when a handler fails (the happy path never touches the hash), only while
// the entry is pending, and deleted with the entry's acknowledgement (by
// whichever consumer holds it, when it had failed or was claimed) or
// dead-letter move. So a consumer that wrote an entry's field and finds the
// entry pending for no one and the field gone knows another consumer
// finished it (claimown.lua, deadletter.lua). The hash expires
// attemptsTTL after its last write, so fields of entries acknowledged by
// other means (an operator's XACK, a deleted group) do not pile up.

// attemptsTTL is how long a failed-attempts hash lives after its last write.
const attemptsTTL = 7 * 24 * time.Hour

// attemptsKey is the key of the failed-attempts hash of stream's entries in
// group, in stream's hash slot.
func attemptsKey(stream, group string) string {
	return slotted(stream) + ":redstream-attempts:" + group
}

// recordAttempt records that id's handler has failed attempts times (this
// failure included) and returns the count recorded, which is higher when
// another consumer recorded more. It writes nothing and returns
// notRecorded when id is not pending in group any more: finished (or
// forgotten) while its handler ran.
func recordAttempt(ctx context.Context, rdb redis.UniversalClient, stream, group, id string, attempts int64) (int64, error) {
	return scripts.Attempt.Run(ctx, rdb, []string{attemptsKey(stream, group), stream}, id, attempts, attemptsTTL.Milliseconds(), group).Int64()
}

// notRecorded is what recordAttempt returns for an entry not pending.
const notRecorded = -1

// parseAttempts reads one field of the failed-attempts hash as HMGET
// returns it: nil (none recorded) and anything malformed count as 0.
func parseAttempts(v any) int64 {
	s, _ := v.(string)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
