package redstream

import (
	"fmt"
	"time"
)

// Options that consumers and standalone reapers share ([ReclaimOption]):
// reclaiming, dead-lettering after MaxDeliveries, idle-consumer cleanup and
// the handling of background errors. Their defaults are in options.go.

// reclaimConfig is what consumers and standalone reapers share.
type reclaimConfig struct {
	minIdle         time.Duration
	reapInterval    time.Duration
	reapBatch       int
	maxDeliveries   int
	idleConsumerTTL time.Duration
	idleTTLSet      bool // WithIdleConsumerTTL given: whose error a TTL under MinIdle is
	errorBackoffMin time.Duration
	errorBackoffMax time.Duration
	onError         func(error)
	trim            *TrimPolicy // nil: no periodic trim
	trimEvery       time.Duration
	schedulePoll    time.Duration // [WithSchedulePoll]
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
		schedulePoll:    DefaultSchedulePoll,
	}
}

func (c reclaimConfig) validate() error {
	if c.idleConsumerTTL > 0 && c.idleConsumerTTL < c.minIdle && !c.idleTTLSet {
		return fmt.Errorf("%w: WithMinIdle(%v) is longer than the default IdleConsumerTTL (%v): a consumer would be deleted before its entries can be reclaimed; give WithIdleConsumerTTL of at least MinIdle, or 0", ErrInvalidOption, c.minIdle, c.idleConsumerTTL)
	}
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
// [DefaultMinIdle]; d must be from 30ms to [MaxDelay] (100 years), or the
// option is an error wrapping [ErrInvalidOption]. A d above
// [DefaultIdleConsumerTTL] (24h) needs [WithIdleConsumerTTL] of at least d,
// or 0.
func WithMinIdle(d time.Duration) ReclaimOption {
	return reclaimOption(func(c *reclaimConfig) error {
		if d < 30*time.Millisecond || d > MaxDelay {
			return fmt.Errorf("%w: WithMinIdle(%v): must be from 30ms to MaxDelay (%v)", ErrInvalidOption, d, MaxDelay)
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
		c.idleConsumerTTL, c.idleTTLSet = d, true
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
// consumer or reaper: failed Redis calls (a failed dead-letter move
// included), handler errors and panics, decode failures, held messages that
// vanished. Each is an [*OpError]. A successful dead-letter move is not an
// error: it is logged and reported to [Observer.DeadLettered]. The callback runs
// on background goroutines and must not block; nil, the default, means
// errors are only logged.
func WithErrorHandler(fn func(error)) ReclaimOption {
	return reclaimOption(func(c *reclaimConfig) error {
		c.onError = fn
		return nil
	})
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
