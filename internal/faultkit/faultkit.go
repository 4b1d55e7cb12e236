// Package faultkit holds the helpers that the fault tests of the core
// module (restart, NOGROUP, ACL) and of the faulttests module (toxiproxy)
// share: a hook counting failed calls, a ledger of what was published and
// handled, and small test utilities.
//
// It does not import redstream, so the core's in-package tests can use it;
// the faulttests module, whose path is under the core's, may import it too.
// It is internal: no API promise.
package faultkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
)

// CallFailures is a go-redis hook that timestamps every failed call the
// library makes on the client it is added to: a command, or a pipeline
// counted once. redis.Nil (an empty reply, such as a blocking read that
// timed out) is no failure, nor is NOSCRIPT, the designed first step of
// EVALSHA-then-EVAL. The commands go-redis sends to set up a new
// connection (HELLO, CLIENT SETINFO) run inside the call that needed the
// connection and fail with it: they are not counted again. It is safe for
// concurrent use.
type CallFailures struct {
	mu    sync.Mutex
	times []time.Time
	byCmd map[string]int
}

// inCall marks the context of a call being counted.
type inCall struct{}

// DialHook implements redis.Hook.
func (h *CallFailures) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (h *CallFailures) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(inCall{}) != nil {
			return next(ctx, cmd)
		}
		err := next(context.WithValue(ctx, inCall{}, true), cmd)
		h.record(cmd.FullName(), err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (h *CallFailures) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(inCall{}) != nil {
			return next(ctx, cmds)
		}
		err := next(context.WithValue(ctx, inCall{}, true), cmds)
		name := "pipeline"
		if len(cmds) > 0 {
			name = "pipeline:" + cmds[0].FullName()
		}
		h.record(name, err)
		return err
	}
}

func (h *CallFailures) record(name string, err error) {
	if err == nil || errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "NOSCRIPT") {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.times = append(h.times, time.Now())
	if h.byCmd == nil {
		h.byCmd = make(map[string]int)
	}
	h.byCmd[name]++
}

// Total returns the failures so far.
func (h *CallFailures) Total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.times)
}

// Between returns the failures timestamped in [from, to] and the most of
// them in any sliding one-second window there: a stricter measure than
// per-second buckets, which can split a burst in two.
func (h *CallFailures) Between(from, to time.Time) (n, peak int) {
	h.mu.Lock()
	in := make([]time.Time, 0, len(h.times))
	for _, at := range h.times {
		if !at.Before(from) && !at.After(to) {
			in = append(in, at)
		}
	}
	h.mu.Unlock()
	slices.SortFunc(in, func(a, b time.Time) int { return a.Compare(b) })
	lo := 0
	for hi := range in {
		for in[hi].Sub(in[lo]) >= time.Second {
			lo++
		}
		peak = max(peak, hi-lo+1)
	}
	return len(in), peak
}

// Commands returns the failures per command, most first, for reports.
func (h *CallFailures) Commands() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.byCmd))
	for name := range h.byCmd {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return h.byCmd[names[i]] > h.byCmd[names[j]] })
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s=%d", name, h.byCmd[name])
	}
	return strings.Join(parts, " ")
}

// Ledger records what producers published and what handlers handled, by
// message key (the Order ID), with the times needed for recovery figures.
// It is safe for concurrent use.
type Ledger struct {
	mu        sync.Mutex
	published map[string]string // key -> ID Publish returned without error
	failed    int               // publishes that returned an error
	handled   map[string]int    // key -> times handled
	handles   []handleAt
}

// handleAt is one successful handling: when, and the time in the entry's ID
// (when Redis appended it).
type handleAt struct {
	by           string
	at, appended time.Time
}

// NewLedger returns an empty Ledger.
func NewLedger() *Ledger {
	return &Ledger{published: make(map[string]string), handled: make(map[string]int)}
}

// PublishedOK records that the message with key was published as id.
func (l *Ledger) PublishedOK(key, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.published[key] = id
}

// PublishFailed records a publish that returned an error.
func (l *Ledger) PublishFailed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed++
}

// Handle records that consumer by handled the message with key, appended
// to its stream at appended (the time in its ID).
func (l *Ledger) Handle(by, key string, appended time.Time) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.handled[key]++
	l.handles = append(l.handles, handleAt{by: by, at: now, appended: appended})
}

// Counts returns the publishes that succeeded and failed, and the distinct
// keys handled.
func (l *Ledger) Counts() (ok, failed, handled int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.published), l.failed, len(l.handled)
}

// Published returns a copy of what was published: key to the ID Publish
// returned.
func (l *Ledger) Published() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.published)
}

// Times returns how many times the message with key was handled.
func (l *Ledger) Times(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.handled[key]
}

// Missing returns the published keys not handled yet (at most limit).
func (l *Ledger) Missing(limit int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for key := range l.published {
		if l.handled[key] == 0 {
			out = append(out, key)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

// WaitAllHandled waits until every published key has been handled,
// failing the test with some that were not after timeout.
func (l *Ledger) WaitAllHandled(t testing.TB, timeout time.Duration, what string) {
	t.Helper()
	if !assert.Eventually(t, func() bool { return len(l.Missing(1)) == 0 }, timeout, 5*time.Millisecond, what) {
		t.Fatalf("%s: not handled, e.g. %v", what, l.Missing(5))
	}
}

// Duplicates returns the handlings beyond the first, over all keys.
func (l *Ledger) Duplicates() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.handled {
		n += c - 1
	}
	return n
}

// FirstHandledAppendedAfter returns when the first message appended at or
// after since was handled by consumer by ("": any), and whether there is
// one: the consumer is reading from Redis again, not only finishing what
// it had buffered.
func (l *Ledger) FirstHandledAppendedAfter(since time.Time, by string) (time.Time, bool) {
	// IDs have millisecond precision.
	since = since.Truncate(time.Millisecond)
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, h := range l.handles {
		if (by == "" || h.by == by) && !h.appended.Before(since) && (first.IsZero() || h.at.Before(first)) {
			first = h.at
		}
	}
	return first, !first.IsZero()
}

// PublishSteadily calls publish with unique keys (prefix<worker>-<n>) from
// workers goroutines, each at most once per every, until ctx ends,
// recording results in l. A failed publish is counted and the worker moves
// on to its next message. It returns a func that waits for the workers.
func PublishSteadily(ctx context.Context, publish func(ctx context.Context, key string) (string, error), l *Ledger, prefix string, workers int, every time.Duration) (wait func()) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				key := fmt.Sprintf("%s%d-%d", prefix, w, i)
				// Each publish gets its own bound: a call stuck on a dead
				// connection must not stall the worker past the test.
				pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				id, err := publish(pubCtx, key)
				cancel()
				if err != nil {
					l.PublishFailed()
					continue
				}
				l.PublishedOK(key, id)
			}
		})
	}
	return wg.Wait
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers (an slog
// handler's output).
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// DumpOnFailure logs the captured log output if the test fails, to help
// tell what the consumer was doing.
func DumpOnFailure(t testing.TB, logs *SyncBuffer) {
	t.Cleanup(func() {
		if t.Failed() {
			out := logs.String()
			if len(out) > 20000 {
				out = "...\n" + out[len(out)-20000:]
			}
			t.Logf("captured log:\n%s", out)
		}
	})
}

// HoldFault waits d while a fault is in place, failing the test if ctx ends
// first. Fault tests hold a fault for a set time: that duration is the
// experiment, not a wait for a condition.
func HoldFault(ctx context.Context, t testing.TB, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		t.Fatalf("test context ended while holding a fault: %v", ctx.Err())
	}
}
