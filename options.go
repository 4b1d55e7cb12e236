package redstream

import (
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
	// DefaultSchedulePoll is how often a Consumer or a standalone Reaper
	// moves due scheduled messages ([WithDelay]) to each of its streams:
	// a message is appended within about this long after it is due.
	DefaultSchedulePoll = 250 * time.Millisecond
	// ScheduleBatch is the most due messages one move appends to a stream;
	// a mover that fills it moves again at once, up to 10 times a poll.
	ScheduleBatch = 100
	// DefaultDedupeWindow is how long a publish's dedupe key
	// ([WithDedupeKey]) keeps later publishes of the key out.
	DefaultDedupeWindow = 24 * time.Hour
)

// MaxDelay is the longest wait redstream schedules: 100 years (of 365
// days), far beyond any real delay yet well inside what a time.Duration
// and a due time in Unix milliseconds can hold. [WithDelay] and
// [WithDeliverAt] refuse a wait beyond it with an error wrapping
// [ErrInvalidOption]; a retry delay beyond it ([RetryAfter],
// [RateLimited], [WithRetryBackoff]) is cut to it.
const MaxDelay = 100 * 365 * 24 * time.Hour

// Upper bounds of a Consumer's sizes; an option above one is an error
// wrapping [ErrInvalidOption]. Both are far above what a real service
// needs: handlers of I/O-bound work saturate a process's connections and
// CPU well below ConcurrencyLimit (every worker goroutine is started by
// Run), and MaxInFlightLimit held messages is already a memory budget of
// its own.
const (
	// ConcurrencyLimit is the most [WithConcurrency] takes.
	ConcurrencyLimit = 10_000
	// MaxInFlightLimit is the most [WithMaxInFlight] takes.
	MaxInFlightLimit = 1_000_000
)

// Defaults of [HandleBatch] without [WithBatch].
const (
	// DefaultBatchMaxSize is the most messages of one batch.
	DefaultBatchMaxSize = 100
	// DefaultBatchMaxWait is how long a batch waits for more messages
	// after its first.
	DefaultBatchMaxWait = 50 * time.Millisecond
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

// Option configures what producers, consumers and standalone reapers share:
// the logger ([WithLogger]) and the observer ([WithObserver]). It can be
// passed to [NewProducer], [NewConsumer] and [NewReaper].
type Option interface {
	ProducerOption
	ConsumerOption
	ReaperOption
}

// PayloadOption configures how payloads are encoded ([WithCodec],
// [WithPayloadField]); it can be passed to [NewProducer] and [NewConsumer].
// A standalone [Reaper] never decodes a payload, so [NewReaper] does not
// take it (a compile error, not an option silently ignored).
type PayloadOption interface {
	ProducerOption
	ConsumerOption
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

// payloadOption is a sharedOption that a Reaper has no use for.
type payloadOption func(*commonConfig) error

func (o payloadOption) applyProducer(c *producerConfig) error { return o(&c.commonConfig) }
func (o payloadOption) applyConsumer(c *consumerConfig) error { return o(&c.commonConfig) }

// WithCodec sets the codec of the payload field. The default is [JSON]; nil
// is an error. Handlers of [Fields] use no codec.
func WithCodec(codec Codec) PayloadOption {
	return payloadOption(func(c *commonConfig) error {
		if codec == nil {
			return fmt.Errorf("%w: nil codec", ErrInvalidOption)
		}
		c.codec = codec
		return nil
	})
}

// WithPayloadField sets the entry field that holds the encoded payload. The
// default is [DefaultPayloadField] ("payload"); empty is an error.
func WithPayloadField(name string) PayloadOption {
	return payloadOption(func(c *commonConfig) error {
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
	handlerTimeout  time.Duration
	// longRetryAfter is WithLongRetryAfter's delay; longRetrySet tells a
	// 0 given from none (MinIdle).
	longRetryAfter time.Duration
	longRetrySet   bool
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
// the consumer: Run starts that many worker goroutines. The default is
// [DefaultConcurrency]; n must be from 1 to [ConcurrencyLimit] (10,000),
// or the option is an error wrapping [ErrInvalidOption].
func WithConcurrency(n int) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if n <= 0 || n > ConcurrencyLimit {
			return fmt.Errorf("%w: WithConcurrency(%d): must be from 1 to ConcurrencyLimit (%d)", ErrInvalidOption, n, ConcurrencyLimit)
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
// is [DefaultMaxInFlight]; n must be from 1 to [MaxInFlightLimit]
// (1,000,000), or the option is an error wrapping [ErrInvalidOption], and
// is raised to the concurrency if lower.
func WithMaxInFlight(n int) ConsumerOption {
	return consumerOption(func(c *consumerConfig) error {
		if n <= 0 || n > MaxInFlightLimit {
			return fmt.Errorf("%w: WithMaxInFlight(%d): must be from 1 to MaxInFlightLimit (%d)", ErrInvalidOption, n, MaxInFlightLimit)
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

// RouteOption configures handlers either for a whole consumer (passed to
// [NewConsumer]) or for one registration (passed to [Handle]), where the
// registration's setting wins.
type RouteOption interface {
	ConsumerOption
	HandleOption
}

// handlerTimeoutOption is WithHandlerTimeout's RouteOption.
type handlerTimeoutOption time.Duration

func (o handlerTimeoutOption) check() error {
	if o < 0 {
		return fmt.Errorf("%w: WithHandlerTimeout(%v): negative", ErrInvalidOption, time.Duration(o))
	}
	return nil
}

func (o handlerTimeoutOption) applyConsumer(c *consumerConfig) error {
	c.handlerTimeout = time.Duration(o)
	return o.check()
}

func (o handlerTimeoutOption) applyHandle(c *handleConfig) error {
	c.handlerTimeout, c.hasHandlerTimeout = time.Duration(o), true
	return o.check()
}

// WithHandlerTimeout bounds each handler call: its context ends d after the
// call starts, with [ErrHandlerTimeout] as its cause ([context.Cause]), and
// an error the handler then returns is recorded wrapping ErrHandlerTimeout
// and retried like any other failure (dead-lettered after MaxDeliveries).
// A handler that returns nil after its timeout still succeeds. The handler
// must watch its context: redstream cannot stop a goroutine, and a handler
// that ignores it keeps its worker (and its message's lease) until it
// returns. Passed to [NewConsumer] it applies to every handler; passed to
// [Handle] it applies to that registration and wins over the consumer's.
// Zero, the default, means no timeout (for that registration: none, even
// if the consumer has one); negative is an error.
//
// A handler's context also ends, with another cause, when the consumer's
// shutdown timeout passes ([ErrShutdownTimeout]) or when another consumer
// took its message ([ErrLeaseLost]).
func WithHandlerTimeout(d time.Duration) RouteOption {
	return handlerTimeoutOption(d)
}

// WithShutdownTimeout sets how long [Consumer.Run] lets in-flight handlers
// finish after its context ends. When it passes, their contexts are
// cancelled, Run waits for them to return and returns a [*ShutdownError]
// wrapping [ErrShutdownTimeout]; the messages they held stay pending. It
// bounds the wait only for handlers that watch their context: redstream
// cannot stop a goroutine, so one that ignores it keeps Run waiting until
// it returns. The default is [DefaultShutdownTimeout]; zero cancels
// handlers at once; negative is an error.
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
// keeps the message (and renews its lease) while it waits, unless the
// delay reaches [WithLongRetryAfter]'s threshold: the message then waits
// in the stream's schedule. A handler can ask
// for its own delay with [RetryAfter]. Defaults: [DefaultRetryBackoffMin],
// [DefaultRetryBackoffMax]; minDelay must be positive and maxDelay at least
// minDelay, or the option is an error wrapping [ErrInvalidOption]; a delay
// beyond [MaxDelay] (100 years) waits MaxDelay.
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
	if !c.longRetrySet {
		c.longRetryAfter = c.minIdle
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
