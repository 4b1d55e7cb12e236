package redstreamtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/redistest"
)

const (
	// EnvAddr names the environment variable that points [New] at an
	// existing server ("host:port") instead of starting one. Tests then
	// share that server: give each its own keys ([Redis.Stream]).
	EnvAddr = redistest.EnvAddr

	// EnvRequire names the environment variable that, set to a true value
	// ("1", "true"), makes [New] fail a test that finds no real server
	// instead of falling back to miniredis (or, with [RealRedis], instead
	// of skipping it). CI sets it so that a missing redis-server cannot
	// pass unnoticed.
	EnvRequire = redistest.EnvRequire
)

// Option configures [New].
type Option func(*config)

type config struct {
	mini, real bool
}

// Miniredis makes [New] always use an in-memory miniredis, whatever is
// installed or set in the environment (REDIS_ADDR, REDSTREAM_REQUIRE_REDIS).
// Its clock then stands still except for [Redis.Advance], so idle times and
// ages grow, and delayed messages ([redstream.WithDelay]) come due, only
// when the test says. Tests that call Advance need it.
// Given with [RealRedis], the last one wins.
func Miniredis() Option {
	return func(c *config) { c.mini, c.real = true, false }
}

// RealRedis makes [New] never fall back to miniredis: the test runs against
// REDIS_ADDR or a redis-server of its own, and is skipped, with a message
// saying why, when neither exists (failed instead with
// REDSTREAM_REQUIRE_REDIS=1). Use it for behaviour miniredis fakes
// differently (blocking reads, Lua, XAUTOCLAIM of deleted entries). Given
// with [Miniredis], the last one wins.
func RealRedis() Option {
	return func(c *config) { c.mini, c.real = false, true }
}

// Redis is a Redis server for one test, from [New]. It is safe for
// concurrent use.
type Redis struct {
	client *redis.Client
	addr   string
	mr     *miniredis.Miniredis // nil on a real server
	shared bool                 // REDIS_ADDR: other tests use it too

	mu    sync.Mutex
	clock time.Time // miniredis's frozen clock, moved by Advance
}

// New returns a Redis for the test tb and stops it (and closes its client)
// when tb's cleanup runs: miniredis with [Miniredis]; else the server at
// REDIS_ADDR when set; else a redis-server started for this test alone on a
// free loopback port (tens of milliseconds; the binary is found on PATH);
// else miniredis. With [RealRedis] or REDSTREAM_REQUIRE_REDIS=1 the last
// step is a skip or a failure instead (see the package doc). New fails the
// test when REDIS_ADDR does not answer PING within 10 seconds, or when a
// server cannot be started.
func New(tb testing.TB, opts ...Option) *Redis {
	tb.Helper()
	var cfg config
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	switch {
	case cfg.mini:
		return newMiniredis(tb, true)
	case os.Getenv(EnvAddr) != "":
		return newShared(tb, os.Getenv(EnvAddr))
	case redistest.Installed() || cfg.real || redistest.Required():
		// Without a binary, Start skips the test or, when required by
		// the environment, fails it, saying why.
		s := redistest.Start(tb)
		return newClient(tb, &Redis{addr: s.Addr()})
	default:
		tb.Logf("redstreamtest: no redis-server on PATH and %s unset: using miniredis", EnvAddr)
		return newMiniredis(tb, false)
	}
}

// OnEachBackend runs fn twice, as the subtests "miniredis" (a Redis made
// with [Miniredis]) and "redis" (made with [RealRedis]: skipped without a
// real server, failed with REDSTREAM_REQUIRE_REDIS=1), for behaviour that
// should hold on both. The subtests run one after the other; fn may call
// t.Parallel.
func OnEachBackend(t *testing.T, fn func(t *testing.T, r *Redis)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) { fn(t, New(t, Miniredis())) })
	t.Run("redis", func(t *testing.T) { fn(t, New(t, RealRedis())) })
}

func newMiniredis(tb testing.TB, frozen bool) *Redis {
	tb.Helper()
	mr := miniredis.RunT(tb)
	r := &Redis{addr: mr.Addr(), mr: mr}
	if frozen {
		r.clock = time.Now()
		mr.SetTime(r.clock)
	}
	return newClient(tb, r)
}

func newShared(tb testing.TB, addr string) *Redis {
	tb.Helper()
	r := newClient(tb, &Redis{addr: addr, shared: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		tb.Fatalf("redstreamtest: %s=%s does not answer PING: %v", EnvAddr, addr, err)
	}
	return r
}

func newClient(tb testing.TB, r *Redis) *Redis {
	r.client = redis.NewClient(&redis.Options{Addr: r.addr})
	tb.Cleanup(func() { _ = r.client.Close() })
	return r
}

// Client returns a client of the server, closed when the test ends. Make
// more with [Redis.Addr] if the test needs them (and close them).
func (r *Redis) Client() *redis.Client { return r.client }

// Addr returns the server's address, "host:port".
func (r *Redis) Addr() string { return r.addr }

// Real reports whether the server is a real Redis (REDIS_ADDR or a
// redis-server started by [New]) rather than miniredis.
func (r *Redis) Real() bool { return r.mr == nil }

// MiniredisServer returns the miniredis behind r, for what it alone offers
// (such as inspecting keys without a client), or nil on a real server.
func (r *Redis) MiniredisServer() *miniredis.Miniredis { return r.mr }

// Advance moves the server's clock forward by d, as if d had passed: the
// idle time of every pending entry grows by d, so a reaper's XAUTOCLAIM
// takes over entries a dead consumer left once MinIdle has passed, and keys
// with a TTL (consumer-name leases, partition leases, recorded attempts)
// expire. It does not make a consumer's own timers run faster: a retry
// backoff or a reap interval is local time, so keep those short in tests
// ([redstream.WithRetryBackoff], [redstream.WithReapInterval]) and wait for
// their effect with the Wait helpers.
//
// Advance needs a Redis made with [Miniredis]; any other fails the test,
// saying so — also when New fell back to miniredis — so that a test does
// not pass on a machine without redis-server and fail on one with it. A
// real server's clock cannot be moved. Zero d does nothing; negative d
// fails the test.
func (r *Redis) Advance(tb testing.TB, d time.Duration) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock() // also when Fatalf ends the goroutine
	if r.mr == nil || r.clock.IsZero() {
		tb.Fatalf("redstreamtest: Advance needs a Redis made with redstreamtest.New(t, redstreamtest.Miniredis()): "+
			"a real server's clock cannot be moved (this one is %s)", r.describe())
	}
	if d < 0 {
		tb.Fatalf("redstreamtest: Advance(%v): a clock only moves forward", d)
	}
	r.clock = r.clock.Add(d)
	r.mr.SetTime(r.clock)
	r.mr.FastForward(d)
}

// Now returns the server's clock as [Redis.Advance] left it: the time a
// Redis made with [Miniredis] shows. On any other it returns the zero Time.
func (r *Redis) Now() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clock
}

func (r *Redis) describe() string {
	switch {
	case r.shared:
		return "the server at " + EnvAddr + "=" + r.addr
	case r.mr != nil:
		return "a miniredis New fell back to"
	default:
		return "a redis-server at " + r.addr
	}
}

// Stream returns a stream key of the test's own: base, the test's name and
// a random suffix ("orders:order:created:TestBilling:3fa2c1d0"), so that
// tests sharing a server (REDIS_ADDR, parallel tests) never see each
// other's entries or groups. On a shared server, the stream, its
// dead-letter stream, its partitions and the keys redstream made for them
// are deleted when the test ends; servers of the test's own just stop.
// Call it from the test's goroutine; base must be a stream name
// [redstream.ValidateStream] accepts, or the test fails.
func (r *Redis) Stream(tb testing.TB, base string) string {
	tb.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
			return c
		case c == '/':
			return '.'
		default:
			return '_'
		}
	}, tb.Name())
	stream := base + ":" + name + ":" + hex.EncodeToString(b)
	if err := redstream.ValidateStream(stream); err != nil {
		tb.Fatalf("redstreamtest: Stream(%q): %v", base, err)
	}
	if r.shared {
		tb.Cleanup(func() { r.deleteKeys(tb, stream) })
	}
	return stream
}

// deleteKeys deletes stream and every key redstream derives from it: its
// partitions, dead-letter streams and the {stream}-tagged bookkeeping.
func (r *Redis) deleteKeys(tb testing.TB, stream string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	glob := globEscape(stream)
	patterns := []string{
		glob + "*",       // the stream, its partitions; a tagged stream's own keys
		"{" + glob + "*", // {stream}:redstream-*, {stream:p0}:redstream-*
		redstream.DeadLetterPrefix + "{" + glob + "*",
		redstream.DeadLetterPrefix + glob + "*", // a tagged stream's dead letters
	}
	for _, pattern := range patterns {
		iter := r.client.Scan(ctx, 0, pattern, 100).Iterator()
		for iter.Next(ctx) {
			if err := r.client.Del(ctx, iter.Val()).Err(); err != nil {
				tb.Logf("redstreamtest: deleting %s: %v", iter.Val(), err)
			}
		}
		if err := iter.Err(); err != nil {
			tb.Logf("redstreamtest: scanning for %s: %v", pattern, err)
		}
	}
}

// globEscape quotes the characters SCAN MATCH treats specially.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}
