package redstreamtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/streamid"
)

const (
	// DefaultTimeout is how long a Wait helper (and [Start], for the
	// consumer to become ready) waits before it fails the test. A test
	// whose deadline (go test -timeout) comes sooner gets most of what is
	// left of it instead, so that the failure says what was awaited rather
	// than the test binary panicking.
	DefaultTimeout = 30 * time.Second

	// PollInterval is how often a Wait helper asks Redis.
	PollInterval = 10 * time.Millisecond

	// checkTimeout bounds one round of a Wait helper's questions to Redis.
	checkTimeout = 5 * time.Second
)

// Start runs c.Run in a goroutine until the test ends, and returns once c
// is ready (its groups exist and it reads): publishing after Start is seen
// even by a group that starts at "$". It fails the test if Run returns
// before that or c is not ready within [DefaultTimeout].
//
// The returned stop cancels Run's context and returns Run's error (nil
// after a graceful drain), waiting at most DefaultTimeout plus
// [redstream.DefaultShutdownTimeout]; later calls return the same error.
// Call it to check what a shutdown leaves behind; otherwise the test's
// cleanup calls it and fails the test if Run returned an error. stop is
// safe for concurrent use. c must not be running already.
//
// A stop waits for the XREADGROUP in progress, up to the consumer's block
// ([redstream.DefaultBlock], 1 s): give consumers in tests a short one,
// [redstream.WithBlock](50*time.Millisecond), so that each test ends
// quickly.
func Start(tb testing.TB, c *redstream.Consumer) (stop func() error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	var (
		once   sync.Once
		runErr error
	)
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(DefaultTimeout + redstream.DefaultShutdownTimeout):
				runErr = errors.New("redstreamtest: Run did not return after its context was cancelled")
			}
		})
		return runErr
	}
	tb.Cleanup(func() {
		if err := stop(); err != nil {
			tb.Errorf("redstreamtest: consumer Run: %v", err)
		}
	})

	timer := time.NewTimer(timeout(tb))
	defer timer.Stop()
	select {
	case <-c.Ready():
		return stop
	case err := <-done:
		once.Do(cancel) // reported here, not again by the cleanup
		tb.Fatalf("redstreamtest: consumer Run returned before it was ready: %v", err)
	case <-timer.C:
		tb.Fatalf("redstreamtest: consumer not ready after %v", timeout(tb))
	}
	return stop
}

// Publish publishes payloads to stream, in order, with a
// [redstream.Producer] of default options, and returns their entry IDs. It
// fails the test if a publish fails. For producer options (partitions,
// headers, codecs), publish with a Producer of your own and pass the IDs
// to [WaitHandled].
func Publish[T any](tb testing.TB, rdb redis.UniversalClient, stream string, payloads ...T) []string {
	tb.Helper()
	if len(payloads) == 0 {
		return nil
	}
	p, err := redstream.NewProducer[T](rdb, stream)
	if err != nil {
		tb.Fatalf("redstreamtest: Publish to %s: %v", stream, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout(tb))
	defer cancel()
	ids, err := p.PublishBatch(ctx, payloads)
	if err != nil {
		tb.Fatalf("redstreamtest: Publish to %s: %v", stream, err)
	}
	return ids
}

// PublishAndWait waits until group exists on stream, publishes payloads
// there ([Publish]) and waits until the group has handled them all
// ([WaitHandled]); it returns their entry IDs. Waiting for the group first
// means a group that starts at "$" cannot skip them. It fails the test if
// the group does not appear, or the entries are not all handled, within
// [DefaultTimeout] each.
func PublishAndWait[T any](tb testing.TB, rdb redis.UniversalClient, stream, group string, payloads ...T) []string {
	tb.Helper()
	poll(tb, fmt.Sprintf("group %q on stream %s", group, stream), func(ctx context.Context) (bool, string) {
		_, state := findGroup(ctx, rdb, stream, group)
		return state == "", state
	})
	ids := Publish(tb, rdb, stream, payloads...)
	WaitHandled(tb, rdb, stream, group, ids...)
	return ids
}

// WaitHandled waits until group has handled every entry ids names on
// stream: read it and no longer holds it pending, because its handler
// succeeded and the acknowledgement reached Redis, or it was dropped
// ([redstream.ErrDrop]) or dead-lettered (see "What handled means" in the
// package doc, and its trap with groups created at "$"). It fails the test
// after [DefaultTimeout] with the entries not yet read and those still
// pending, or at once if an ID does not parse. No ids returns at once.
func WaitHandled(tb testing.TB, rdb redis.UniversalClient, stream, group string, ids ...string) {
	tb.Helper()
	if len(ids) == 0 {
		return
	}
	parsed := make([]streamid.ID, len(ids))
	for i, id := range ids {
		var err error
		if parsed[i], err = streamid.Parse(id); err != nil {
			tb.Fatalf("redstreamtest: WaitHandled: entry ID %q: %v", id, err)
		}
	}
	what := fmt.Sprintf("group %q to handle %d entries of %s", group, len(ids), stream)
	poll(tb, what, func(ctx context.Context) (bool, string) {
		g, state := findGroup(ctx, rdb, stream, group)
		if state != "" {
			return false, state
		}
		lastID := g.LastDeliveredID
		if !strings.Contains(lastID, "-") {
			lastID += "-0" // miniredis says "0" for a group created at "0"
		}
		last, err := streamid.Parse(lastID)
		if err != nil {
			return false, fmt.Sprintf("last-delivered-id %q: %v", g.LastDeliveredID, err)
		}
		var unread, read []string
		for i, id := range parsed {
			if id.Compare(last) > 0 {
				unread = append(unread, ids[i])
			} else {
				read = append(read, ids[i])
			}
		}
		pending, err := pendingOf(ctx, rdb, stream, group, read)
		if err != nil {
			return false, err.Error()
		}
		if len(unread) == 0 && len(pending) == 0 {
			return true, ""
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d of %d handled", len(ids)-len(unread)-len(pending), len(ids))
		if len(unread) > 0 {
			fmt.Fprintf(&b, "; not yet read by the group (it has read up to %s): %s"+
				" (is a consumer of the group running, with a handler for this stream?)",
				last, strings.Join(unread, " "))
		}
		if len(pending) > 0 {
			b.WriteString("; still pending:")
			for _, p := range pending {
				fmt.Fprintf(&b, " %s (consumer %s, delivered %d times, idle %v)", p.ID, p.Consumer, p.RetryCount, p.Idle)
			}
		}
		return false, b.String()
	})
}

// WaitNoPending waits until group holds nothing pending on stream: every
// entry it read is acknowledged or dead-lettered. An empty group means
// every group of stream, and a stream that does not exist has nothing
// pending; a named group must exist. It fails the test after
// [DefaultTimeout] with what is still pending, for which consumers.
func WaitNoPending(tb testing.TB, rdb redis.UniversalClient, stream, group string) {
	tb.Helper()
	what := fmt.Sprintf("nothing pending for group %q on %s", group, stream)
	if group == "" {
		what = "nothing pending on " + stream
	}
	poll(tb, what, func(ctx context.Context) (bool, string) {
		groups, err := rdb.XInfoGroups(ctx, stream).Result()
		if group == "" && err != nil && strings.Contains(err.Error(), "no such key") {
			return true, ""
		}
		if err != nil {
			return false, fmt.Sprintf("XINFO GROUPS %s: %v", stream, err)
		}
		var busy []string
		found := false
		for _, g := range groups {
			if group != "" && g.Name != group {
				continue
			}
			found = true
			if g.Pending > 0 {
				busy = append(busy, describePending(ctx, rdb, stream, g.Name))
			}
		}
		switch {
		case !found && group != "":
			return false, fmt.Sprintf("group %q does not exist on %s", group, stream)
		case len(busy) > 0:
			return false, strings.Join(busy, "; ")
		}
		return true, ""
	})
}

// WaitDeadLetters waits until stream's dead-letter stream holds at least n
// entries and returns them all, oldest first. After [WaitHandled] the
// dead letters are already there: use [DeadLetters]. It fails the test
// after [DefaultTimeout] with how many there were; n <= 0 does not wait.
func WaitDeadLetters(tb testing.TB, rdb redis.UniversalClient, stream string, n int) []redstream.DeadLetter {
	tb.Helper()
	key := redstream.DeadLetterKey(stream)
	poll(tb, fmt.Sprintf("%d dead letters in %s", n, key), func(ctx context.Context) (bool, string) {
		have, err := rdb.XLen(ctx, key).Result()
		if err != nil {
			return false, fmt.Sprintf("XLEN %s: %v", key, err)
		}
		return have >= int64(n), fmt.Sprintf("%d there", have)
	})
	return DeadLetters(tb, rdb, stream)
}

// DeadLetters returns every entry of stream's dead-letter stream, oldest
// first, with its metadata parsed (reason, error, origin ID, deliveries).
// An absent dead-letter stream gives none. It fails the test if Redis does
// not answer.
func DeadLetters(tb testing.TB, rdb redis.UniversalClient, stream string) []redstream.DeadLetter {
	tb.Helper()
	dlq, err := redstream.NewDeadLetters(rdb, stream)
	if err != nil {
		tb.Fatalf("redstreamtest: DeadLetters of %s: %v", stream, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout(tb))
	defer cancel()
	var all []redstream.DeadLetter
	for after := ""; ; {
		page, next, err := dlq.List(ctx, redstream.ListOptions{After: after})
		if err != nil {
			tb.Fatalf("redstreamtest: DeadLetters of %s: %v", stream, err)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		after = next
	}
}

// findGroup returns stream's group, or why there is none.
func findGroup(ctx context.Context, rdb redis.UniversalClient, stream, group string) (redis.XInfoGroup, string) {
	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return redis.XInfoGroup{}, fmt.Sprintf("stream %s does not exist", stream)
		}
		return redis.XInfoGroup{}, fmt.Sprintf("XINFO GROUPS %s: %v", stream, err)
	}
	names := make([]string, 0, len(groups))
	for _, g := range groups {
		if g.Name == group {
			return g, ""
		}
		names = append(names, g.Name)
	}
	return redis.XInfoGroup{}, fmt.Sprintf("group %q does not exist on %s (groups: %q)", group, stream, names)
}

// pendingOf returns the entries among ids that group holds pending.
func pendingOf(ctx context.Context, rdb redis.UniversalClient, stream, group string, ids []string) ([]redis.XPendingExt, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.XPendingExtCmd, len(ids))
	_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: id, End: id, Count: 1})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("XPENDING %s %s: %w", stream, group, err)
	}
	var pending []redis.XPendingExt
	for _, cmd := range cmds {
		pending = append(pending, cmd.Val()...)
	}
	return pending, nil
}

// describePending says what group holds pending on stream, per consumer.
func describePending(ctx context.Context, rdb redis.UniversalClient, stream, group string) string {
	p, err := rdb.XPending(ctx, stream, group).Result()
	if err != nil {
		return fmt.Sprintf("group %q: XPENDING: %v", group, err)
	}
	consumers := make([]string, 0, len(p.Consumers))
	for name, n := range p.Consumers {
		consumers = append(consumers, fmt.Sprintf("%s: %d", name, n))
	}
	slices.Sort(consumers)
	return fmt.Sprintf("group %q holds %d pending, %s .. %s (%s)", group, p.Count, p.Lower, p.Higher, strings.Join(consumers, ", "))
}

// poll calls check every PollInterval until it reports done, and fails tb
// with the state the last check gave once the time is up. Each check gets
// a context of its own, bounded by checkTimeout, so that a Redis that stops
// answering delays the failure by that much at most, and the last state
// reported is what Redis said rather than an expired context.
func poll(tb testing.TB, what string, check func(ctx context.Context) (done bool, state string)) {
	tb.Helper()
	limit := timeout(tb)
	deadline := time.Now().Add(limit)
	ticker := time.NewTicker(PollInterval)
	defer ticker.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		done, state := check(ctx)
		cancel()
		if done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redstreamtest: waited %v for %s: %s", limit, what, state)
			return
		}
		<-ticker.C
	}
}

// timeout is DefaultTimeout, or most of what is left before tb's deadline
// when that is sooner.
func timeout(tb testing.TB) time.Duration {
	if t, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := t.Deadline(); ok {
			if left := time.Until(deadline) * 9 / 10; left < DefaultTimeout {
				return max(left, time.Second)
			}
		}
	}
	return DefaultTimeout
}
