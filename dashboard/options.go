package dashboard

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redstream/redstream"
)

// Defaults of the options.
const (
	// DefaultSampleInterval is how often the sampler reads every stream's
	// figures for the charts ([WithSampleInterval]).
	DefaultSampleInterval = 5 * time.Second
	// DefaultRingSize is how many samples each stream keeps
	// ([WithRingSize]): half an hour at the default interval.
	DefaultRingSize = 360
	// DefaultPageSize is how many entries a page of pending entries, dead
	// letters or the tail shows ([WithPageSize]).
	DefaultPageSize = 50
	// DefaultReplayRate is the rate, in entries a second, of a replay of
	// every dead letter when the form does not set one ([WithReplayRate]).
	DefaultReplayRate = 500.0
	// DefaultRefresh is how often a page updates itself in the browser.
	DefaultRefresh = 5 * time.Second
)

// ErrInvalidOption is wrapped by the error of [New] for an option out of
// range.
var ErrInvalidOption = errors.New("dashboard: invalid option")

// Option configures [New].
type Option func(*config) error

type config struct {
	actions        bool
	middleware     func(http.Handler) http.Handler
	streams        []string
	sampleInterval time.Duration
	ringSize       int
	pageSize       int
	replayRate     float64
	refresh        time.Duration
	noScan         bool
}

func defaultConfig() config {
	return config{
		sampleInterval: DefaultSampleInterval,
		ringSize:       DefaultRingSize,
		pageSize:       DefaultPageSize,
		replayRate:     DefaultReplayRate,
		refresh:        DefaultRefresh,
	}
}

// WithActions turns on the actions: acknowledge, dead-letter and claim
// pending entries, replay and delete dead letters, pause and resume a
// group. Without it the dashboard is read-only: it shows no action button
// and answers every action request with 403 Forbidden. Give it only
// behind an authentication ([WithMiddleware]).
func WithActions() Option {
	return func(c *config) error {
		c.actions = true
		return nil
	}
}

// WithMiddleware wraps every request of the dashboard, pages, actions and
// assets alike, in mw: typically authentication, such as the service's
// own session check or basic auth. Given more than once, the middlewares
// compose, the first given outermost (it sees a request first): adding a
// logger after an authentication keeps the authentication. A nil mw is an
// error.
func WithMiddleware(mw func(http.Handler) http.Handler) Option {
	return func(c *config) error {
		if mw == nil {
			return fmt.Errorf("%w: nil middleware", ErrInvalidOption)
		}
		if outer := c.middleware; outer != nil {
			c.middleware = func(h http.Handler) http.Handler { return outer(mw(h)) }
			return nil
		}
		c.middleware = mw
		return nil
	}
}

// WithStreams names streams to show even when the scan does not find them
// (a stream not created yet is shown as missing), or when the Redis user
// may not run SCAN ([WithoutScan]). To show a partitioned stream, name its
// partitions ([redstream.Partitions]): the overview sums "<base>:p0" to
// "<base>:p<n-1>" under base, as it does for the streams it scans. Names
// must pass [redstream.ValidateStream]; the option may be given more than
// once.
func WithStreams(names ...string) Option {
	return func(c *config) error {
		for _, n := range names {
			if err := redstream.ValidateStream(n); err != nil {
				return fmt.Errorf("%w: WithStreams: %w", ErrInvalidOption, err)
			}
		}
		c.streams = append(c.streams, names...)
		return nil
	}
}

// WithoutScan shows only the streams named with [WithStreams]: no SCAN of
// the keyspace, for a Redis user without the SCAN permission or a large
// keyspace where a scan every sample is too dear.
func WithoutScan() Option {
	return func(c *config) error {
		c.noScan = true
		return nil
	}
}

// WithSampleInterval sets how often the sampler reads the figures of every
// stream for the charts (default [DefaultSampleInterval]). It must be
// positive; each sample costs one SCAN of the keyspace and two pipelined
// round trips.
func WithSampleInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithSampleInterval(%v): must be positive", ErrInvalidOption, d)
		}
		c.sampleInterval = d
		return nil
	}
}

// WithRingSize sets how many samples each stream keeps for its charts
// (default [DefaultRingSize]); older samples are dropped. Memory is about
// 48 bytes a sample a stream. It must be at least 2.
func WithRingSize(n int) Option {
	return func(c *config) error {
		if n < 2 {
			return fmt.Errorf("%w: WithRingSize(%d): must be at least 2", ErrInvalidOption, n)
		}
		c.ringSize = n
		return nil
	}
}

// WithPageSize sets how many entries a page of pending entries, dead
// letters or the tail shows (default [DefaultPageSize]), between 1 and
// 1000. A filtered dead-letter page reads at most 10 pages' worth of
// entries per request.
func WithPageSize(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1000 {
			return fmt.Errorf("%w: WithPageSize(%d): must be between 1 and 1000", ErrInvalidOption, n)
		}
		c.pageSize = n
		return nil
	}
}

// WithReplayRate sets the rate, in entries a second, of a replay of every
// dead letter when the form leaves the rate empty (default
// [DefaultReplayRate]). It must lie between [redstream.MinReplayRate]
// and [redstream.MaxReplayRate]; else New returns an error wrapping
// [ErrInvalidOption].
func WithReplayRate(perSecond float64) Option {
	return func(c *config) error {
		if err := redstream.CheckReplayRate(perSecond); err != nil {
			return fmt.Errorf("%w: WithReplayRate(%v): %w", ErrInvalidOption, perSecond, err)
		}
		c.replayRate = perSecond
		return nil
	}
}

// WithRefresh sets how often an open page updates its figures and charts
// in the browser without a reload (default [DefaultRefresh]), rounded to
// whole seconds, at least one. It must be positive. An overview updating
// itself shows the sampler's figures while they are younger than this, so
// a refresh shorter than [WithSampleInterval] makes updates read Redis
// themselves.
func WithRefresh(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithRefresh(%v): must be positive", ErrInvalidOption, d)
		}
		c.refresh = d
		return nil
	}
}
