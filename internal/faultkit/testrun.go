package faultkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// The test utilities both modules' tests use: unique stream names, a
// consumer's Run in a goroutine, waits, and a set of handled IDs.

// UniqueStream returns a stream key no other test uses, so tests can share
// one Redis server and run in parallel.
func UniqueStream(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	return "test:" + name + ":" + hex.EncodeToString(b)
}

// Ctx returns a context that ends after a minute or with the test.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Runner is what Start runs: a redstream.Consumer (faultkit does not
// import redstream, so that the core's in-package tests can use it).
type Runner interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// Running is a Runner's Run in a goroutine. Done receives Run's error once;
// a test that takes it must put it back for Stop.
type Running struct {
	cancel context.CancelFunc
	Done   chan error
}

// Start runs c until Stop (or the end of the test).
func Start(t testing.TB, c Runner) *Running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, Done: make(chan error, 1)}
	go func() { r.Done <- c.Run(ctx) }()
	t.Cleanup(func() { _ = r.Stop(t) })
	return r
}

// StartReady is Start, then waits until c is ready, failing the test if
// Run returns first or c is not ready within 30 seconds.
func StartReady(t testing.TB, c Runner) *Running {
	t.Helper()
	r := Start(t, c)
	select {
	case <-c.Ready():
	case err := <-r.Done:
		r.Done <- err // for Stop
		t.Fatalf("Run returned before the consumer was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("consumer not ready after 30s")
	}
	return r
}

// Stop cancels Run and returns its error, failing if it takes more than 30
// seconds. Stopping again returns nil.
func (r *Running) Stop(t testing.TB) error {
	r.cancel()
	select {
	case err, ok := <-r.Done:
		if !ok {
			return nil
		}
		close(r.Done)
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return 30s after its context was cancelled")
		return nil
	}
}

// Eventually polls cond every 5 ms until it holds, failing the test after
// timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	require.Eventually(t, cond, timeout, 5*time.Millisecond, msgAndArgs...)
}

// PendingCount returns the group's pending entries count.
func PendingCount(t testing.TB, rdb redis.UniversalClient, stream, group string) int64 {
	p, err := rdb.XPending(context.Background(), stream, group).Result()
	require.NoError(t, err)
	return p.Count
}

// DeliverTo reads up to n new entries as consumer name without handling
// them, creating the group at "0" if needed: a consumer that then dies
// holding them.
func DeliverTo(t testing.TB, rdb redis.UniversalClient, stream, group, name string, n int) []string {
	t.Helper()
	ctx := context.Background()
	err := rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		require.NoError(t, err)
	}
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: name, Streams: []string{stream, ">"}, Count: int64(n), Block: -1}).Result()
	require.NoError(t, err)
	var ids []string
	for _, m := range res[0].Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

// Seen counts handled message IDs; it is safe for concurrent handlers.
type Seen struct {
	mu  sync.Mutex
	ids map[string]int
}

// NewSeen returns an empty Seen.
func NewSeen() *Seen { return &Seen{ids: map[string]int{}} }

// Add counts one handling of id.
func (s *Seen) Add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[id]++
}

// Len returns how many distinct IDs were handled.
func (s *Seen) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// Count returns how often id was handled.
func (s *Seen) Count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id]
}

// Counts returns a copy of how often each ID was handled.
func (s *Seen) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.ids)
}
