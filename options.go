package redstream

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redstream/redstream/internal/streamid"
)

// Defaults used when an option is not given.
const (
	// DefaultPayloadField is the entry field that holds the encoded payload.
	DefaultPayloadField = "payload"
	// DefaultConcurrency is the number of handler goroutines of a Consumer.
	DefaultConcurrency = 10
	// DefaultBatchSize is the COUNT of each XREADGROUP call.
	DefaultBatchSize = 100
	// DefaultMaxInFlight bounds the messages a Consumer holds at once, read
	// but not yet handled, summed over its streams.
	DefaultMaxInFlight = 256
	// DefaultBlock is how long an XREADGROUP waits for new entries. It also
	// bounds how long a shutdown waits for a read in progress.
	DefaultBlock = time.Second
	// DefaultShutdownTimeout is how long Run lets in-flight handlers finish
	// after its context ends, before cancelling their contexts.
	DefaultShutdownTimeout = 30 * time.Second
	// DefaultGroupStart is the ID a new consumer group starts at: "$", only
	// entries added after the group is created.
	DefaultGroupStart = "$"
	// DefaultErrorBackoffMin and DefaultErrorBackoffMax bound the exponential
	// backoff (with jitter) after a failed Redis call in the consumer's loops.
	DefaultErrorBackoffMin = 50 * time.Millisecond
	DefaultErrorBackoffMax = 5 * time.Second
	// DefaultMaxDeliveries is how many times a message's handler may run
	// and fail before the message is dead-lettered.
	DefaultMaxDeliveries = 5
	// CrashLoopDeliveries is how many deliveries beyond MaxDeliveries Redis
	// may count for a message before it is dead-lettered with reason
	// [ReasonCrashLoop], whatever its handler did. Redis's counter also
	// counts deliveries no handler saw (a consumer that died with the
	// message buffered, a read whose reply was lost), so it is only a guard
	// against a message that kills its consumer each time.
	CrashLoopDeliveries = 10
	// DefaultRetryBackoffMin and DefaultRetryBackoffMax bound the exponential
	// backoff (with jitter) between deliveries of a message whose handler
	// failed: about min before the second delivery, doubling up to max.
	DefaultRetryBackoffMin = time.Second
	DefaultRetryBackoffMax = time.Minute
	// DefaultMinIdle is how long a pending entry must sit untouched before
	// a reaper reclaims it from its consumer, presumed dead. Live consumers
	// renew the entries they hold every MinIdle/3, so a long handler is not
	// reclaimed.
	DefaultMinIdle = 30 * time.Second
	// DefaultReapInterval is how often a reaper looks for idle entries.
	DefaultReapInterval = 5 * time.Second
	// DefaultReapBatch is the most entries one reaper call claims (COUNT).
	DefaultReapBatch = 100
	// DefaultMaxPending bounds the asynchronous publishes of a Producer
	// waiting for their results ([Producer.PublishAsync]).
	DefaultMaxPending = 4096
	// DefaultIdleConsumerTTL is how long a consumer may be idle before a
	// reaper deletes it from its group, which it does only when the
	// consumer holds no pending entries.
	DefaultIdleConsumerTTL = 24 * time.Hour
)

// ProducerOption configures a [Producer]. Options that configure both
// producers and consumers have type [Option].
type ProducerOption interface {
	applyProducer(*producerConfig) error
}

// ConsumerOption configures a [Consumer]. Options that configure both
// producers and consumers have type [Option].
type ConsumerOption interface {
	applyConsumer(*consumerConfig) error
}

// PublishOption configures one call of [Producer.Publish] or
// [Producer.PublishBatch].
type PublishOption interface {
	applyPublish(*publishConfig) error
}

// ReaperOption configures a standalone [Reaper].
type ReaperOption interface {
	applyReaper(*reaperConfig) error
}

// Option configures what producers and consumers share (codec, payload field,
// logger); it can be passed to [NewProducer], [NewConsumer] and [NewReaper]
// (which has no payloads and uses only the logger).
type Option interface {
	ProducerOption
	ConsumerOption
	ReaperOption
}

// ReclaimOption configures reclaiming, retries and dead-lettering; it can be
// passed to [NewConsumer] and to [NewReaper].
type ReclaimOption interface {
	ConsumerOption
	ReaperOption
}

// commonConfig is what producers and consumers share.
type commonConfig struct {
	codec        Codec
	payloadField string
	logger       *slog.Logger
	observer     Observer // nil: none
}

func defaultCommon() commonConfig {
	return commonConfig{codec: JSON, payloadField: DefaultPayloadField, logger: discardLogger}
}

var discardLogger = slog.New(slog.DiscardHandler)

type sharedOption func(*commonConfig) error

func (o sharedOption) applyProducer(c *producerConfig) error { return o(&c.commonConfig) }
func (o sharedOption) applyConsumer(c *consumerConfig) error { return o(&c.commonConfig) }
func (o sharedOption) applyReaper(c *reaperConfig) error     { return o(&c.commonConfig) }

// WithCodec sets the codec of the payload field. The default is [JSON]; nil
// is an error. Handlers of [Fields] use no codec.
func WithCodec(codec Codec) Option {
	return sharedOption(func(c *commonConfig) error {
		if codec == nil {
			return fmt.Errorf("%w: nil codec", ErrInvalidOption)
		}
		c.codec = codec
		return nil
	})
}

// WithPayloadField sets the entry field that holds the encoded payload. The
// default is [DefaultPayloadField] ("payload"); empty is an error.
func WithPayloadField(name string) Option {
	return sharedOption(func(c *commonConfig) error {
		if name == "" {
			return fmt.Errorf("%w: empty payload field name", ErrInvalidOption)
		}
		c.payloadField = name
		return nil
	})
}

// WithLogger sets the logger for background events (retries, reconnects,
// recovered panics). nil, the default, discards them.
func WithLogger(logger *slog.Logger) Option {
	return sharedOption(func(c *commonConfig) error {
		if logger == nil {
			logger = discardLogger
		}
		c.logger = logger
		return nil
	})
}

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
	c := producerConfig{commonConfig: defaultCommon(), maxPending: DefaultMaxPending, now: time.Now}
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
}

type publishOption func(*publishConfig) error

func (o publishOption) applyPublish(c *publishConfig) error { return o(c) }

// WithID publishes with an explicit entry ID instead of letting Redis pick
// one, so that a retried publish is idempotent: if an entry with this ID
// already exists, Publish returns the ID and [ErrDuplicate]. id must be a
// complete ID ("1694012345678-0") greater than 0-0, else Publish returns an
// error wrapping [ErrInvalidID]. Not allowed with [Producer.PublishBatch].
func WithID(id string) PublishOption {
	return publishOption(func(c *publishConfig) error {
		parsed, err := streamid.Parse(id)
		if err != nil {
			return fmt.Errorf("%w: WithID(%q): %w", ErrInvalidID, id, err)
		}
		if parsed.IsZero() {
			return fmt.Errorf("%w: WithID(%q): must be greater than 0-0", ErrInvalidID, id)
		}
		c.id = id
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

// reclaimConfig is what consumers and standalone reapers share.
type reclaimConfig struct {
	minIdle         time.Duration
	reapInterval    time.Duration
	reapBatch       int
	maxDeliveries   int
	idleConsumerTTL time.Duration
	errorBackoffMin time.Duration
	errorBackoffMax time.Duration
	onError         func(error)
	trim            *TrimPolicy // nil: no periodic trim
	trimEvery       time.Duration
}

func defaultReclaim() reclaimConfig {
	return reclaimConfig{
		minIdle:         DefaultMinIdle,
		reapInterval:    DefaultReapInterval,
		reapBatch:       DefaultReapBatch,
		maxDeliveries:   DefaultMaxDeliveries,
		idleConsumerTTL: DefaultIdleConsumerTTL,
		errorBackoffMin: DefaultErrorBackoffMin,
		errorBackoffMax: DefaultErrorBackoffMax,
	}
}

func (c reclaimConfig) validate() error {
	if c.idleConsumerTTL > 0 && c.idleConsumerTTL < c.minIdle {
		return fmt.Errorf("%w: WithIdleConsumerTTL(%v) is shorter than MinIdle (%v): a consumer would be deleted before its entries can be reclaimed", ErrInvalidOption, c.idleConsumerTTL, c.minIdle)
	}
	return nil
}

type reclaimOption func(*reclaimConfig) error

func (o reclaimOption) applyConsumer(c *consumerConfig) error { return o(&c.reclaimConfig) }
func (o reclaimOption) applyReaper(c *reaperConfig) error     { return o(&c.reclaimConfig) }

// WithMinIdle sets how long a pending entry must sit untouched before a
// reaper reclaims it from its consumer, presumed dead: a consumer that
// crashed mid-handler has its message handled elsewhere after about this
// long. Live consumers renew the leases of the entries they hold every
// MinIdle/3, so a handler may run longer than MinIdle. The default is
// [DefaultMinIdle]; d must be at least 30ms.
func WithMinIdle(d time.Duration) ReclaimOption {
	return reclaimOption(func(c *reclaimConfig) error {
		if d < 30*time.Millisecond {
			return fmt.Errorf("%w: WithMinIdle(%v): must be at least 30ms", ErrInvalidOption, d)
		}
		c.minIdle = d
		return nil
	})
}

// WithReapInterval sets how often a reaper looks for idle entries to
// reclaim. The default is [DefaultReapInterval]; d must be positive.
func WithReapInterval(d time.Duration) ReclaimOption {
	return reclaimOption(func(c *reclaimConfig) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithReapInterval(%v): must be positive", ErrInvalidOption, d)
		}
		c.reapInterval = d
		return nil
	})
}

// WithReapBatch sets the most entries one reaper call examines and claims
// (XAUTOCLAIM COUNT). The default is [DefaultReapBatch]; n must be positive.
func WithReapBatch(n int) ReclaimOption {
	return reclaimOption(func(c *reclaimConfig) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithReapBatch(%d): must be positive", ErrInvalidOption, n)
		}
		c.reapBatch = n
		return nil
	})
}

// WithMaxDeliveries sets how many times a message's handler may run and
// fail before the message is dead-lettered with reason
// [ReasonMaxDeliveries]. Only handler attempts count: deliveries no handler
// saw (a consumer that died with the message buffered, a read whose reply
// was lost) do not, up to the crash-loop guard ([CrashLoopDeliveries]).
// The default is [DefaultMaxDeliveries]; n must be positive (1 means no
// retries).
func WithMaxDeliveries(n int) ReclaimOption {
	return reclaimOption(func(c *reclaimConfig) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithMaxDeliveries(%d): must be positive", ErrInvalidOption, n)
		}
		c.maxDeliveries = n
		return nil
	})
}

// WithIdleConsumerTTL sets how long a consumer may stay idle before a
// reaper deletes it from its group. A consumer is deleted only when it holds
// no pending entries, checked and deleted in one atomic step; the entries
// of a dead consumer are reclaimed first (after MinIdle). The default is
// [DefaultIdleConsumerTTL]; zero never deletes consumers; negative, or less
// than MinIdle, is an error.
func WithIdleConsumerTTL(d time.Duration) ReclaimOption {
	return reclaimOption(func(c *reclaimConfig) error {
		if d < 0 {
			return fmt.Errorf("%w: WithIdleConsumerTTL(%v): must not be negative", ErrInvalidOption, d)
		}
		c.idleConsumerTTL = d
		return nil
	})
}

// consumerConfig is a Consumer's configuration after options.
type consumerConfig struct {
	commonConfig
	reclaimConfig
	name            string
	concurrency     int
	batchSize       int
	maxInFlight     int
	block           time.Duration
	shutdownTimeout time.Duration
	groupStart      string
	retryBackoffMin time.Duration
	retryBackoffMax time.Duration
	reaper          bool
	middleware      Middleware
}

type consumerOption func(*consumerConfig) error

func (o consumerOption) applyConsumer(c *consumerConfig) error { return o(c) }

// WithConsumerName sets the consumer's name within its group. The default
// is "<hostname>-<pid>-<n>", n counting the Consumers of the process, so
// every Consumer gets a name of its own. A stable name (a pod name, say)
// is for a restart: the restarted consumer drains the pending entries its
// predecessor left at once, instead of waiting for a reaper to find them
// idle after MinIdle. Two live consumers of a group must never share a
// name on a stream: Run refuses to start under a name a live consumer
// holds ([ErrConsumerNameInUse]), after waiting up to MinIdle (10s at most) for the
// name's lease of a consumer that died to expire.
func WithConsumerName(name string) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if name == "" {
			return fmt.Errorf("%w: empty consumer name", ErrInvalidOption)
		}
		c.name = name
		return nil
	})
}

// WithConcurrency sets how many handlers run at once, over all streams of
// the consumer. The default is [DefaultConcurrency]; n must be positive.
func WithConcurrency(n int) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithConcurrency(%d): must be positive", ErrInvalidOption, n)
		}
		c.concurrency = n
		return nil
	})
}

// WithBatchSize sets the most entries one XREADGROUP asks for (COUNT). The
// default is [DefaultBatchSize]; n must be positive.
func WithBatchSize(n int) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithBatchSize(%d): must be positive", ErrInvalidOption, n)
		}
		c.batchSize = n
		return nil
	})
}

// WithMaxInFlight bounds the messages the consumer holds at once (read and
// not yet finished), over all its streams. A read asks for no more than the
// free room, so memory stays bounded however long the backlog. The default
// is [DefaultMaxInFlight]; n must be positive, and is raised to the
// concurrency if lower.
func WithMaxInFlight(n int) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithMaxInFlight(%d): must be positive", ErrInvalidOption, n)
		}
		c.maxInFlight = n
		return nil
	})
}

// WithBlock sets how long XREADGROUP waits for new entries (BLOCK), which
// is also the longest a shutdown waits for a read in progress. The default
// is [DefaultBlock]; d must be at least 1ms.
func WithBlock(d time.Duration) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if d < time.Millisecond {
			return fmt.Errorf("%w: WithBlock(%v): must be at least 1ms", ErrInvalidOption, d)
		}
		c.block = d
		return nil
	})
}

// WithShutdownTimeout sets how long [Consumer.Run] lets in-flight handlers
// finish after its context ends. When it passes, their contexts are
// cancelled, Run waits for them to return and returns [ErrShutdownTimeout];
// the messages they held stay pending. The default is
// [DefaultShutdownTimeout]; zero cancels handlers at once; negative is an
// error.
func WithShutdownTimeout(d time.Duration) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if d < 0 {
			return fmt.Errorf("%w: WithShutdownTimeout(%v): must not be negative", ErrInvalidOption, d)
		}
		c.shutdownTimeout = d
		return nil
	})
}

// WithGroupStart sets where a consumer group that does not exist yet starts:
// "$" (the default, [DefaultGroupStart]) for entries added from now on, "0"
// for the whole stream, or a complete entry ID. It has no effect on a group
// that exists.
func WithGroupStart(id string) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if id != "$" && id != "0" {
			if _, err := streamid.Parse(id); err != nil {
				return fmt.Errorf("%w: WithGroupStart(%q): want \"$\", \"0\" or a stream ID", ErrInvalidOption, id)
			}
		}
		c.groupStart = id
		return nil
	})
}

// WithRetryBackoff sets the exponential backoff (with jitter) between
// deliveries of a message whose handler failed: a delay in [d/2, d] where
// d = min(minDelay*2^(n-1), maxDelay) after the nth delivery. The consumer
// keeps the message (and renews its lease) while it waits. A handler can ask
// for its own delay with [RetryAfter]. Defaults: [DefaultRetryBackoffMin],
// [DefaultRetryBackoffMax]; minDelay must be positive and maxDelay at least
// minDelay.
func WithRetryBackoff(minDelay, maxDelay time.Duration) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if minDelay <= 0 || maxDelay < minDelay {
			return fmt.Errorf("%w: WithRetryBackoff(%v, %v): need 0 < min <= max", ErrInvalidOption, minDelay, maxDelay)
		}
		c.retryBackoffMin, c.retryBackoffMax = minDelay, maxDelay
		return nil
	})
}

// WithoutReaper turns off the reaper that runs inside every Consumer by
// default. Entries left by crashed consumers are then handled only by
// consumers of the group that do run a reaper (or by the crashed consumer
// restarted under its name); a standalone [Reaper] cannot handle them, it
// only dead-letters those at the delivery limit.
func WithoutReaper() ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		c.reaper = false
		return nil
	})
}

// WithErrorBackoff sets the exponential backoff (with jitter) after a failed
// Redis call in the background loops: min before the first retry, doubling
// up to max. Defaults: [DefaultErrorBackoffMin], [DefaultErrorBackoffMax].
// min must be positive and max at least min.
func WithErrorBackoff(minDelay, maxDelay time.Duration) ReclaimOption {
	return reclaimOption(func(c *reclaimConfig) error {
		if minDelay <= 0 || maxDelay < minDelay {
			return fmt.Errorf("%w: WithErrorBackoff(%v, %v): need 0 < min <= max", ErrInvalidOption, minDelay, maxDelay)
		}
		c.errorBackoffMin, c.errorBackoffMax = minDelay, maxDelay
		return nil
	})
}

// WithErrorHandler sets a callback for errors in the background work of a
// consumer or reaper: failed Redis calls, handler errors and panics, decode
// failures, dead-lettered messages. Each is an [*OpError]. The callback runs
// on background goroutines and must not block; nil, the default, means
// errors are only logged.
func WithErrorHandler(fn func(error)) ReclaimOption {
	return reclaimOption(func(c *reclaimConfig) error {
		c.onError = fn
		return nil
	})
}

func newConsumerConfig(opts []ConsumerOption) (consumerConfig, error) {
	c := consumerConfig{
		commonConfig:    defaultCommon(),
		reclaimConfig:   defaultReclaim(),
		concurrency:     DefaultConcurrency,
		batchSize:       DefaultBatchSize,
		maxInFlight:     DefaultMaxInFlight,
		block:           DefaultBlock,
		shutdownTimeout: DefaultShutdownTimeout,
		groupStart:      DefaultGroupStart,
		retryBackoffMin: DefaultRetryBackoffMin,
		retryBackoffMax: DefaultRetryBackoffMax,
		reaper:          true,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyConsumer(&c); err != nil {
			return consumerConfig{}, err
		}
	}
	if err := c.validate(); err != nil {
		return consumerConfig{}, err
	}
	if c.name == "" {
		c.name = defaultConsumerName()
	}
	c.maxInFlight = max(c.maxInFlight, c.concurrency)
	return c, nil
}

// reaperConfig is a standalone Reaper's configuration after options.
type reaperConfig struct {
	commonConfig
	reclaimConfig
}

func newReaperConfig(opts []ReaperOption) (reaperConfig, error) {
	c := reaperConfig{commonConfig: defaultCommon(), reclaimConfig: defaultReclaim()}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyReaper(&c); err != nil {
			return reaperConfig{}, err
		}
	}
	if err := c.validate(); err != nil {
		return reaperConfig{}, err
	}
	return c, nil
}

// consumersMade numbers the Consumers of this process that got a default
// name, so that no two of them share one.
var consumersMade atomic.Int64

// defaultConsumerName is hostname-pid-n, n counting the Consumers of this
// process that got a default name: two Consumers in one process (a config
// reload starting a new one before the old one stops) never share a name,
// and with it a pending list.
func defaultConsumerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "redstream"
	}
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(consumersMade.Add(1), 10)
}
