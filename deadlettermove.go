package redstream

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
)

// The dead-letter move: one entry copied to its stream's dead-letter stream
// and acknowledged in one script (deadletter.lua), by the consumer holding
// it, a reaper or an operator. Who moves it decides what happens to an
// entry pending for no one (mover).

// maxErrorText caps the error text stored in a dead-letter entry.
const maxErrorText = 4096

// moveResult is what the dead-letter script did.
type moveResult string

const (
	moved      moveResult = "ok"          // copied to the dead-letter stream and acknowledged
	movedGone  moveResult = "deleted"     // the entry was trimmed away: only acknowledged
	notPending moveResult = "not-pending" // someone else acknowledged or dead-lettered it
	notOwner   moveResult = "not-owner"   // another consumer owns it now
	notIdle    moveResult = "not-idle"    // it was touched more recently than required
)

// mover says who runs a dead-letter move, which decides what the script
// does with an entry pending for no one.
type mover string

const (
	// byOther is a reaper's or an operator's move, or a holder's for any
	// reason but vanished: it moves nothing that is not pending, and
	// records what it moves as taken over from its consumer (taken.go;
	// harmless for a holder's own entry, which is finished).
	byOther mover = "0"
	// byHolder is the move of the consumer holding the entry: one pending
	// for no one is written from its memory (its group, stream or pending
	// record vanished), unless it was taken over from this consumer.
	byHolder mover = "1"
	// byHolderRecorded is byHolder's move of an entry whose failed attempt
	// the consumer knows was recorded: not written either when that record
	// is gone, which means another consumer finished it.
	byHolderRecorded mover = "2"
)

// holderMove is the mover of a consumer's move of e for reason. Only a
// move of a vanished entry writes one pending for no one: any other move
// finding it so was finished already, by someone else or by its own first
// run whose reply was lost (a retried move must not write it twice).
func holderMove(e *entry, reason string) mover {
	switch {
	case reason != ReasonVanished:
		return byOther
	case e.recorded.Load():
		return byHolderRecorded
	default:
		return byHolder
	}
}

// deadLetterMove runs the dead-letter script for one entry. owner "" accepts
// any owner; minIdle < 0 skips the idle check. fields, when not nil, are the
// entry's fields as its consumer holds them, written if the entry is gone
// from the stream, with deliveries as its count.
func deadLetterMove(ctx context.Context, rdb redis.UniversalClient, stream, group, owner, id, reason, errText string, minIdle time.Duration, deliveries int64, by mover, fields map[string]any) (moveResult, string, error) {
	if len(errText) > maxErrorText {
		errText = errText[:maxErrorText]
	}
	idleMs := int64(-1)
	if minIdle >= 0 {
		idleMs = minIdle.Milliseconds()
	}
	args := make([]any, 0, 10+2*len(fields))
	args = append(args, group, owner, id, reason, errText, time.Now().UnixMilli(), idleMs, deliveries, string(by), takenFor.Milliseconds())
	for k, v := range fields {
		args = append(args, k, v)
	}
	res, err := scripts.DeadLetter.Run(ctx, rdb, []string{stream, DeadLetterKey(stream), attemptsKey(stream, group), takenKey(stream, group), takenAgesKey(stream, group), onceKey(stream)}, args...).StringSlice()
	if err != nil {
		return "", "", err
	}
	if len(res) == 0 {
		return "", "", errors.New("redstream: dead-letter script returned nothing")
	}
	var dlID string
	if len(res) > 1 {
		dlID = res[1]
	}
	return moveResult(res[0]), dlID, nil
}
