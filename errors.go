package redstream

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalidOption is wrapped by every error that reports a bad option or
// argument, before anything is sent to Redis: by the constructors
// ([NewProducer], [NewConsumer], [NewReaper], [NewDeadLetters]), [Handle]
// and [HandleBatch] (a bad [WithBatch] too),
// [Producer.Publish], [Producer.PublishAsync] and [Producer.PublishBatch]
// (a bad publish option, a header that clashes with the payload field or
// another header, [WithID] given to PublishBatch, [WithMinReplicas] on a
// client that cannot WAIT), [DeadLetters.List] (a negative count) and
// [DeadLetters.Replay] (a bad rate, or not exactly one of [ReplayAll] and
// [ReplayIDs]), [Trim] and [TrimPartitions] (a negative
// policy), [Partitions], [InspectPartitions] and [TrimPartitions] (a
// partition count out of range).
var ErrInvalidOption = errors.New("redstream: invalid option")

// ErrInvalidStreamName is wrapped by the errors that [StreamName],
// [ValidateStream], [NewProducer] and [Handle] return for a stream key that
// redstream cannot use (empty, or with braces that do not form a Redis
// Cluster hash tag).
var ErrInvalidStreamName = errors.New("redstream: invalid stream name")

// ErrInvalidID is wrapped by the errors returned for an ID that is not a
// complete stream ID ("<milliseconds>-<sequence>"): by [Producer.Publish],
// [Producer.PublishAsync] and [Producer.PublishBatch] for [WithID] (which
// must also be greater than 0-0) or [WithMinID], by [DeadLetters.List] for
// ListOptions.After, by [DeadLetters.Replay] for [ReplayIDs], by
// [DeadLetters.Delete], and by the operator actions ([AckPending],
// [DeadLetterPending], [ClaimPending]; [CreateGroup] and [SetGroupID],
// which also take "$" and "0").
var ErrInvalidID = errors.New("redstream: invalid stream ID")

// ErrDuplicate is returned, with the ID, by [Producer.Publish] when an
// explicit ID given with [WithID] already holds an entry in the stream: an
// earlier attempt of the same publish succeeded, so a retry is a no-op. It
// is also wrapped, with the first entry's ID, by the error of a publish
// whose dedupe key ([WithDedupeKey], [WithDedupeKeyFunc]) was published
// within the dedupe window (by Publish, PublishAsync's future, and per
// entry in PublishBatch's [*BatchError]). The stored entry is not compared
// with the new payload.
var ErrDuplicate = errors.New("redstream: an entry with this ID already exists")

// ErrNotScheduled is wrapped by the error [Producer.Cancel] and
// [CancelScheduled] return when the schedule ID is not waiting in the
// schedule: it was appended to the stream already (too late to cancel),
// cancelled before, or never scheduled on that stream.
var ErrNotScheduled = errors.New("redstream: not scheduled: already delivered, cancelled, or unknown")

// ErrUncertain is wrapped by the error a publish returns when the connection
// failed after the XADD may have reached Redis: the entry may or may not be
// in the stream, and no ID is known. redstream never lets the client send an
// auto-ID XADD a second time behind the caller's back (that would append a
// second entry), so this is the caller's call: publish again when a
// duplicate is acceptable (consumers should be idempotent anyway), or make
// the retry safe with [WithID], or check the stream first. The error also
// wraps the network error. [Producer.PublishBatch] and futures of
// [Producer.PublishAsync] report it per entry; [DeadLetters.Delete] and
// [DeadLetters.Purge] return it, with a count of 0, when their reply was
// lost.
var ErrUncertain = errors.New("redstream: write may or may not have been applied")

// ErrIDTooSmall is returned by [Producer.Publish] when an explicit ID given
// with [WithID] is not greater than the stream's last ID and no entry holds
// it (it was never written, or it was trimmed or deleted). Redis cannot
// append it, and it is not a duplicate either.
var ErrIDTooSmall = errors.New("redstream: ID is not greater than the stream's last ID")

// ErrNoStream is wrapped by the error [Inspect] returns for a stream key
// that does not exist, by the error [InspectPartitions] returns when none
// of the partitions exists, and by the operator actions ([AckPending],
// [DeadLetterPending], [ClaimPending], [CreateGroup], [SetGroupID],
// [DestroyGroup], [DeleteConsumer]). [Trim] does not return it: trimming a
// missing stream removes nothing, as XTRIM does.
var ErrNoStream = errors.New("redstream: no such stream")

// ErrNoGroup is wrapped by the error the operator actions ([AckPending],
// [DeadLetterPending], [ClaimPending], [SetGroupID], [DestroyGroup],
// [DeleteConsumer]) return when the stream exists but has no consumer group
// of the given name.
var ErrNoGroup = errors.New("redstream: no such consumer group")

// ErrGroupExists is wrapped by the error [CreateGroup] returns when the
// stream already has a consumer group of that name (Redis's BUSYGROUP).
var ErrGroupExists = errors.New("redstream: consumer group already exists")

// ErrNoConsumer is wrapped by the error [DeleteConsumer] returns when the
// group has no consumer of that name.
var ErrNoConsumer = errors.New("redstream: no such consumer")

// ErrNotReplayable is wrapped by the error [DeadLetters.Replay] returns for
// dead letters it left in place because they cannot be replayed onto this
// stream: written for another stream, recorded without their fields
// ([DeadLetter.FieldsOmitted]), or not written by redstream.
var ErrNotReplayable = errors.New("redstream: dead letter cannot be replayed")

// ErrNotPending is wrapped by the [*NotPendingError] that [AckPending],
// [DeadLetterPending] and [ClaimPending] return for IDs that are not in the
// group's pending entries list: never delivered, acknowledged or
// dead-lettered already, or not in the stream at all.
var ErrNotPending = errors.New("redstream: entry not pending in the consumer group")

// NotPendingError lists the IDs an operator action ([AckPending],
// [DeadLetterPending], [ClaimPending]) skipped because they were not in the
// group's pending entries list; the other IDs were acted on. It wraps
// [ErrNotPending].
type NotPendingError struct {
	Stream string
	Group  string
	// IDs are the skipped IDs, in the order given.
	IDs []string
}

func (e *NotPendingError) Error() string {
	what := "entry " + e.IDs[0] + " is"
	if len(e.IDs) > 1 {
		what = fmt.Sprintf("%d entries are", len(e.IDs))
		if len(e.IDs) <= 10 {
			what += " (" + strings.Join(e.IDs, ", ") + ")"
		}
	}
	return fmt.Sprintf("redstream: %s not pending in group %s of %s", what, e.Group, e.Stream)
}

// Unwrap returns [ErrNotPending].
func (e *NotPendingError) Unwrap() error { return ErrNotPending }

// ErrAlreadyStarted is returned by [Consumer.Run] when Run was called before
// on the same Consumer; a Consumer runs once.
var ErrAlreadyStarted = errors.New("redstream: consumer already started")

// ErrNoHandlers is returned by [Consumer.Run] when no handler was registered
// with [Handle].
var ErrNoHandlers = errors.New("redstream: no handlers registered")

// ErrNotReady is wrapped, with the failure that kept the consumer from
// starting, by the error [Consumer.Run] returns when its context ended
// before the consumer became ready ([Consumer.Ready]): it never read.
var ErrNotReady = errors.New("redstream: consumer stopped before it was ready")

// ErrConsumerNameInUse is wrapped by the error [Consumer.Run] returns when
// another live consumer of the same group already runs under the same name
// ([WithConsumerName]) on one of its streams. Two consumers under one name
// would share one pending list and run each other's messages; the name is
// held by a short lease, renewed while the consumer runs and released when
// Run returns. Run waits up to one lease time (MinIdle, [WithMinIdle], or
// 10 seconds if that is less) for the lease of a consumer that died without
// releasing it to expire.
var ErrConsumerNameInUse = errors.New("redstream: consumer name in use by another live consumer of the group")

// ErrVanished is wrapped by the [*OpError] passed to the error callback
// ([WithErrorHandler]) when a message the consumer holds is found to be
// pending for no one in Redis any more: its stream or group was deleted,
// flushed or evicted, or an operator deleted the consumer. The consumer
// finishes it from memory: acknowledged if its handler succeeds,
// dead-lettered with reason [ReasonVanished] if it fails. A message taken
// over and finished by another consumer or an operator while this one's
// lease had lapsed is not vanished but lost ([ErrLeaseLost]): the takeover
// is recorded in Redis for an hour.
var ErrVanished = errors.New("redstream: held message no longer pending in Redis")

// ErrShutdownTimeout is wrapped by the [*ShutdownError] that
// [Consumer.Run] returns when handlers were still running when the shutdown
// timeout ([WithShutdownTimeout]) passed: their contexts were cancelled
// (with this error as their [context.Cause]), and the messages they held
// stay pending for redelivery.
var ErrShutdownTimeout = errors.New("redstream: shutdown timeout: in-flight handlers were cancelled")

// ErrHandlerTimeout is the cause ([context.Cause]) of a handler's context
// that ended because the handler ran longer than its timeout
// ([WithHandlerTimeout]), and is wrapped by the error recorded for that
// attempt. The message is retried like after any failure, and
// dead-lettered after MaxDeliveries timeouts.
var ErrHandlerTimeout = errors.New("redstream: handler timeout")

// ErrLeaseLost is the cause ([context.Cause]) of a handler's context that
// ended because another consumer took its message (the message's lease
// was lost, for example after this consumer was cut off from Redis for
// longer than MinIdle), or another consumer or an operator
// ([AckPending], [DeadLetterPending], [ClaimPending]) took it over and
// finished it. The message is the other's now; the handler's outcome is
// not acted on, except that a success is still acknowledged.
var ErrLeaseLost = errors.New("redstream: message lease lost to another consumer")

// ErrAcksGivenUp is wrapped by the [*ShutdownError] that [Consumer.Run]
// returns when acknowledgements of messages whose handlers succeeded could
// not be sent before Run returned (Redis unreachable): those messages stay
// pending and will be delivered again, to this group's consumers.
var ErrAcksGivenUp = errors.New("redstream: acknowledgements given up: handled messages stay pending and will be delivered again")

// ErrNotHandedOver is wrapped by the [*ShutdownError] that [Consumer.Run]
// returns when unfinished messages could not be handed over to the group at
// shutdown (marked idle so that another consumer's reaper takes them at
// once): they stay pending, and are reclaimed only after MinIdle.
var ErrNotHandedOver = errors.New("redstream: unfinished messages not handed over: reclaimed only after MinIdle")

// ShutdownError is what [Consumer.Run] returns when it could not finish what
// it had taken in before returning. Run returns nil only when every message
// it took in was acknowledged, dead-lettered, or handed over to the group
// (failures waiting for a retry, with their attempts recorded in Redis).
// Test it with errors.Is against [ErrShutdownTimeout], [ErrAcksGivenUp]
// and [ErrNotHandedOver], or errors.As for the counts.
type ShutdownError struct {
	// TimedOut is true when the shutdown timeout ([WithShutdownTimeout])
	// passed with handlers still running; Cancelled is how many messages
	// were in them then (their contexts were cancelled; a batch handler
	// counts its messages). Wraps [ErrShutdownTimeout].
	TimedOut  bool
	Cancelled int
	// AcksGivenUp counts messages handled successfully whose
	// acknowledgement could not be sent: they will be delivered again.
	// Wraps [ErrAcksGivenUp] when above 0.
	AcksGivenUp int
	// NotHandedOver counts unfinished messages the hand-off could not
	// mark idle. Wraps [ErrNotHandedOver] when above 0.
	NotHandedOver int
	// Pending counts every message this consumer left pending for
	// redelivery when Run returned: those handed over (waiting for a
	// retry, never started, cancelled) and the two counts above.
	Pending int
	// Err is the last Redis error behind AcksGivenUp or NotHandedOver, if
	// any.
	Err error
}

func (e *ShutdownError) Error() string {
	var parts []string
	if e.TimedOut {
		parts = append(parts, fmt.Sprintf("shutdown timeout: %d handlers cancelled", e.Cancelled))
	}
	if e.AcksGivenUp > 0 {
		parts = append(parts, fmt.Sprintf("%d acknowledgements given up", e.AcksGivenUp))
	}
	if e.NotHandedOver > 0 {
		parts = append(parts, fmt.Sprintf("%d unfinished messages not handed over", e.NotHandedOver))
	}
	msg := "redstream: consumer stopped: " + strings.Join(parts, ", ") + fmt.Sprintf("; %d messages left pending for redelivery", e.Pending)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the sentinels that apply, and Err.
func (e *ShutdownError) Unwrap() []error {
	var errs []error
	if e.TimedOut {
		errs = append(errs, ErrShutdownTimeout)
	}
	if e.AcksGivenUp > 0 {
		errs = append(errs, ErrAcksGivenUp)
	}
	if e.NotHandedOver > 0 {
		errs = append(errs, ErrNotHandedOver)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// ErrNotReplicated is wrapped by the [*ReplicationError] that
// [Producer.Publish] and [Producer.PublishBatch] return when fewer replicas
// than [WithMinReplicas] asks for confirmed a write in time.
var ErrNotReplicated = errors.New("redstream: write not confirmed by enough replicas")

// ReplicationError reports a write that the primary accepted (ID holds its
// entry ID, which Publish returns too) but fewer than Want replicas confirmed
// within the timeout of [WithMinReplicas]. The entry is in the stream and
// will be delivered, unless the primary fails before its replicas catch up:
// then a failover can lose it. Publishing it again without [WithID] writes a
// second entry; with WithID the retry returns [ErrDuplicate], which does not
// confirm replication either.
type ReplicationError struct {
	// Stream and ID are the entry's stream (the partition, for a
	// partitioned producer) and ID.
	Stream string
	ID     string
	// Want is the n of WithMinReplicas; Replicas is how many confirmed.
	Want     int
	Replicas int
	// Err is the WAIT's own error, if it failed.
	Err error
}

func (e *ReplicationError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("redstream: %s %s written, but waiting for %d replicas failed: %v", e.Stream, e.ID, e.Want, e.Err)
	}
	return fmt.Sprintf("redstream: %s %s written, but only %d of %d replicas confirmed it in time", e.Stream, e.ID, e.Replicas, e.Want)
}

// Unwrap returns [ErrNotReplicated] and the WAIT's error, if any.
func (e *ReplicationError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrNotReplicated, e.Err}
	}
	return []error{ErrNotReplicated}
}

// DecodeError reports an entry whose fields could not be decoded into the
// handler's payload type: the payload field is missing or the codec rejected
// it. The handler is not called: the consumer dead-letters the entry at once
// with reason [ReasonDecode], logs it and passes it to the error callback
// ([WithErrorHandler]).
type DecodeError struct {
	Stream string
	ID     string
	// Field is the payload field that was expected.
	Field string
	// Err is the codec's error, or nil when the field was missing.
	Err error
}

func (e *DecodeError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("redstream: decode %s %s: field %q is missing", e.Stream, e.ID, e.Field)
	}
	return fmt.Sprintf("redstream: decode %s %s: field %q: %v", e.Stream, e.ID, e.Field, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// PanicError is the error a handler's panic is turned into. The consumer
// recovers the panic, logs Stack and treats the message as failed.
type PanicError struct {
	// Value is what the handler passed to panic.
	Value any
	// Stack is the goroutine's stack trace at the panic.
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("redstream: handler panic: %v", e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// OpError is the error passed to the error callback ([WithErrorHandler]) for
// a failure in the consumer's background work: a Redis call that failed, a
// handler that returned an error, or an entry that could not be decoded.
type OpError struct {
	// Op names the operation: "create-group", "read", "ack", "handle"
	// (a handler's error or panic), "decode", "dead-letter",
	// "record-attempt" (recording a failed attempt), "reap", "lease"
	// (keeping held messages or a partition), "name-lease" (the consumer
	// name's lease), "hand-off" (handing unfinished messages over at
	// shutdown), "cleanup" (deleting an idle consumer), "trim"
	// ([WithTrim]), "pause" (reading whether a stream is paused,
	// [Pause]) or "rate-limit" (asking for a grant, [WithRateLimit]).
	Op     string
	Stream string
	Group  string
	// ID is the entry concerned, if any.
	ID  string
	Err error
}

func (e *OpError) Error() string {
	msg := "redstream: " + e.Op + " " + e.Stream
	if e.Group != "" {
		msg += " group " + e.Group
	}
	if e.ID != "" {
		msg += " id " + e.ID
	}
	return msg + ": " + e.Err.Error()
}

func (e *OpError) Unwrap() error { return e.Err }

// ErrDeadLetter is returned by a handler (wrapped or not) to dead-letter the
// message at once with reason [ReasonHandler] and the error's text, without
// further retries. Use it for messages that can never succeed.
var ErrDeadLetter = errors.New("redstream: dead-letter this message")

// ErrDrop is returned by a handler (wrapped or not) to acknowledge the message
// without handling it and without dead-lettering it: it is dropped on
// purpose. The drop is logged with the error's text.
var ErrDrop = errors.New("redstream: drop this message")

// RetryError asks for the message to be delivered again after Delay instead
// of after the consumer's retry backoff (a Delay beyond [MaxDelay] waits
// MaxDelay). Create it with [RetryAfter]. The
// delivery still counts towards the maximum ([WithMaxDeliveries]).
type RetryError struct {
	Delay time.Duration
	// Err is the handler's reason; it may be nil.
	Err error
	// rateLimited is set by RateLimited: not counted as an attempt, and
	// it holds the group back.
	rateLimited bool
}

// RetryAfter returns an error that, returned by a handler, has the message
// delivered again after about d instead of after the retry backoff: a
// negative d is taken as 0, and one beyond [MaxDelay] (100 years) as
// MaxDelay. err, which may be nil, says why; it is what gets logged and,
// after the last delivery, recorded in the dead-letter entry. A d of at
// least [WithLongRetryAfter]'s threshold (default MinIdle) waits in the
// stream's schedule, the consumer's in-flight room freed, as any long
// retry does.
func RetryAfter(d time.Duration, err error) error {
	return &RetryError{Delay: min(max(d, 0), MaxDelay), Err: err}
}

func (e *RetryError) Error() string {
	if e.rateLimited {
		if e.Err == nil {
			return fmt.Sprintf("redstream: rate limited: retry after %v", e.Delay)
		}
		return fmt.Sprintf("redstream: rate limited: retry after %v: %v", e.Delay, e.Err)
	}
	if e.Err == nil {
		return fmt.Sprintf("redstream: retry after %v", e.Delay)
	}
	return fmt.Sprintf("redstream: retry after %v: %v", e.Delay, e.Err)
}

func (e *RetryError) Unwrap() error { return e.Err }
