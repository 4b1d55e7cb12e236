package redstream

import (
	"context"
	"fmt"
	"time"

	"github.com/redstream/redstream/internal/streamid"
)

// Options of a Producer ([ProducerOption]) and of one publish
// ([PublishOption]). Their defaults are in options.go.

// producerConfig is a Producer's configuration after options.
type producerConfig struct {
	commonConfig
	maxLen         int64
	maxAge         time.Duration
	contextHeaders func(ctx context.Context, set func(name, value string))
	partitions     int // 0: not partitioned
	keyFunc        any // func(T) string, checked by NewProducer
	minReplicas    int
	replicaTimeout time.Duration
	maxPending     int
	dedupeWindow   time.Duration // [WithDedupeWindow]
	dedupeKeyFunc  any           // func(T) string, checked by NewProducer
	// now is the producer's clock; tests set it to one that is ahead or
	// behind. Only its monotonic reading is used ([WithMaxAge]).
	now func() time.Time
}

type producerOption func(*producerConfig) error

func (o producerOption) applyProducer(c *producerConfig) error { return o(c) }

// WithMaxLen trims the stream at every publish to about n entries (XADD
// MAXLEN ~ n), atomically with the write. Redis trims whole macro-nodes, so
// the stream may hold somewhat more than n. n must be positive; the default
// is no trimming. This trim may drop entries no group has read yet: see the
// trimming section of the README before using it. It cannot be combined with
// [WithMaxAge].
func WithMaxLen(n int64) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithMaxLen(%d): must be positive", ErrInvalidOption, n)
		}
		c.maxLen = n
		return nil
	})
}

// WithMaxAge trims, at every publish, entries older than d (XADD MINID ~
// now-d), atomically with the write. now is the Redis server's time, which
// entry IDs carry, never the producer's: a producer clock ahead of the
// server's would trim the entries it writes, one behind would trim nothing.
// The producer keeps it per stream (a cluster's nodes each have their own
// clock) as the last ID Redis generated for the stream plus the time
// elapsed since on its own monotonic clock. Before any ID is back, the
// first publish reads TIME, one round trip per server (per node on a
// cluster), even for [Producer.PublishAsync]; if that fails (an ACL
// without +time), it logs and does not trim until an ID is back. IDs given
// with [WithID] do not count, and the bound never passes the last ID, so a
// producer idle for longer than d trims a little less at its next publish.
// d must be positive; the default is no trimming. It cannot be combined
// with [WithMaxLen].
func WithMaxAge(d time.Duration) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithMaxAge(%v): must be positive", ErrInvalidOption, d)
		}
		c.maxAge = d
		return nil
	})
}

// WithMinReplicas makes every publish wait (WAIT) until at least n
// replicas of the stream's primary have the write, up to timeout. A write
// they did not confirm in time is still in the stream: Publish returns its
// ID with a [*ReplicationError] wrapping [ErrNotReplicated], so the caller
// can decide whether to retry (with [WithID], idempotently) or go on. This
// narrows what a failover can lose, since Redis replicates asynchronously,
// but does not close it: WAIT does not make Redis a consensus store. It costs
// a WAIT round trip per pipelined batch, and each partition (or stream)
// gets its own batches. n must be positive and timeout at least 1ms (WAIT
// counts whole milliseconds, and WAIT 0 would block forever); the default
// is not to wait. The client must be a *redis.Client or a
// *redis.ClusterClient, and timeout at most half its ReadTimeout (the WAIT
// goes in the pipeline of the writes, read with that timeout), else
// NewProducer returns an error wrapping [ErrInvalidOption].
//
// A retry with [WithID] of a publish that returned a ReplicationError finds
// the entry and returns [ErrDuplicate]: that says the entry is on the
// primary, not that a replica has it.
func WithMinReplicas(n int, timeout time.Duration) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithMinReplicas(%d, %v): n must be positive", ErrInvalidOption, n, timeout)
		}
		if timeout < time.Millisecond {
			return fmt.Errorf("%w: WithMinReplicas(%d, %v): timeout must be at least 1ms", ErrInvalidOption, n, timeout)
		}
		c.minReplicas, c.replicaTimeout = n, timeout
		return nil
	})
}

// WithMaxPending bounds the publishes of [Producer.PublishAsync] waiting
// for their results at once; beyond it PublishAsync blocks. n must be
// positive; the default is [DefaultMaxPending].
func WithMaxPending(n int) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithMaxPending(%d): must be positive", ErrInvalidOption, n)
		}
		c.maxPending = n
		return nil
	})
}

func newProducerConfig(opts []ProducerOption) (producerConfig, error) {
	c := producerConfig{commonConfig: defaultCommon(), maxPending: DefaultMaxPending, dedupeWindow: DefaultDedupeWindow, now: time.Now}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyProducer(&c); err != nil {
			return producerConfig{}, err
		}
	}
	if c.maxLen > 0 && c.maxAge > 0 {
		return producerConfig{}, fmt.Errorf("%w: WithMaxLen and WithMaxAge cannot be combined (XADD takes one trim strategy)", ErrInvalidOption)
	}
	return c, nil
}

// publishConfig is one publish call's configuration.
type publishConfig struct {
	key     string
	hasKey  bool
	id      string
	minID   string
	headers []string // name, value pairs
	// schedule is set by WithDelay and WithDeliverAt (schedule.go).
	schedule *scheduleAt
	// dedupeKey is set by WithDedupeKey (dedupe.go); "" for none.
	dedupeKey string
}

type publishOption func(*publishConfig) error

func (o publishOption) applyPublish(c *publishConfig) error { return o(c) }

// WithID publishes with an explicit entry ID instead of letting Redis pick
// one, so that a retried publish is idempotent: if an entry with this ID
// already exists, Publish returns the ID and [ErrDuplicate]. id must be a
// complete ID ("1694012345678-0") greater than 0-0, else Publish returns an
// error wrapping [ErrInvalidID]. Not allowed with [Producer.PublishBatch].
//
// Redis appends only IDs above the stream's last one: an ID that is not, and
// holds no entry, returns [ErrIDTooSmall]. So explicit IDs suit one writer
// per stream (or per partition) that derives them from its own increasing
// sequence (a source record's commit time in milliseconds and a counter, for
// example); several producers picking IDs for one stream refuse each other.
// Without explicit IDs, a publish whose outcome is unknown reports
// [ErrUncertain], and publishing again may write a duplicate that
// consumers must tolerate.
func WithID(id string) PublishOption {
	return publishOption(func(c *publishConfig) error {
		parsed, err := streamid.Parse(id)
		if err != nil {
			return fmt.Errorf("%w: WithID(%q): %w", ErrInvalidID, id, err)
		}
		if parsed.IsZero() {
			return fmt.Errorf("%w: WithID(%q): must be greater than 0-0", ErrInvalidID, id)
		}
		c.id = parsed.String() // as Redis writes it: "007-1" is 7-1
		return nil
	})
}

// WithMinID trims, with this publish, entries with IDs below id (XADD MINID
// ~ id), atomically with the write. id must be a complete stream ID. It
// overrides the producer's [WithMaxLen] or [WithMaxAge] for this call.
func WithMinID(id string) PublishOption {
	return publishOption(func(c *publishConfig) error {
		if _, err := streamid.Parse(id); err != nil {
			return fmt.Errorf("%w: WithMinID(%q): %w", ErrInvalidID, id, err)
		}
		c.minID = id
		return nil
	})
}

// WithHeader adds a field next to the payload field of the published entry.
// name must be non-empty, distinct from the payload field and from the
// other headers (including those of a [HeaderSource] payload).
func WithHeader(name, value string) PublishOption {
	return publishOption(func(c *publishConfig) error {
		c.headers = append(c.headers, name, value)
		return nil
	})
}
