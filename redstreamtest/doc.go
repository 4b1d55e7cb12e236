// Package redstreamtest gives tests of redstream handlers a Redis and the
// helpers such a test needs.
//
//	func TestBilling(t *testing.T) {
//		r := redstreamtest.New(t) // a real redis-server if installed, miniredis otherwise
//		rdb, stream := r.Client(), r.Stream(t, "orders:order:created")
//
//		c, err := redstream.NewConsumer(rdb, "billing", redstream.WithBlock(50*time.Millisecond)) // stops quickly
//		require.NoError(t, err)
//		require.NoError(t, redstream.Handle(c, stream, billing.Handle))
//		redstreamtest.Start(t, c) // Run until the test ends; waits until it is ready
//
//		redstreamtest.PublishAndWait(t, rdb, stream, "billing", Order{ID: "o-1", Amount: -5})
//		letters := redstreamtest.DeadLetters(t, rdb, stream)
//		require.Len(t, letters, 1) // a negative amount is refused
//	}
//
// # Which Redis
//
// [New] picks, in this order: miniredis when the test asks for it
// ([Miniredis], needed by [Redis.Advance]); the server named by the
// REDIS_ADDR environment variable; a redis-server of the test's own,
// started on a free loopback port when the binary is on PATH; miniredis
// otherwise. With [RealRedis], or with REDSTREAM_REQUIRE_REDIS=1 in the
// environment (as in CI), there is no falling back to miniredis: a test
// that finds no real server is skipped ([RealRedis]) or failed
// (REDSTREAM_REQUIRE_REDIS=1). Everything New starts is stopped through
// t.Cleanup.
//
// miniredis is fast and needs nothing installed, but it is a fake: it runs
// redstream's Lua scripts with another interpreter, does not block
// XREADGROUP the way Redis does and has no cluster. Run the tests against a
// real server too (install redis-server, or set REDIS_ADDR) before trusting
// behaviour that depends on those.
//
// # What "handled" means
//
// [WaitHandled] and [PublishAndWait] look at Redis, not at the consumer: an
// entry is handled by a group once the group has read past it (its
// last-delivered ID, XINFO GROUPS) and it is no longer in the group's
// pending entries list (XPENDING). That is exactly when its handler
// succeeded and the acknowledgement reached Redis, or it was acknowledged
// without handling ([redstream.ErrDrop]), or it was moved to the
// dead-letter stream (the move acknowledges it in the same script). So
// after the wait, what a test reads from Redis agrees: [DeadLetters] holds
// the dead-lettered ones and nothing of them is pending. It works for any
// consumer, in the test's process or not, and needs no option on it. It
// does not tell which handler ran, nor how often (delivery is at least
// once); count that in the handler if it matters.
//
// One trap: a group created at "$" (redstream's default start) after an
// entry was added never reads that entry, and its last-delivered ID is past
// it, so the entry looks handled. [PublishAndWait] therefore waits for the
// group to exist before it publishes; with [WaitHandled] on entries
// published earlier, start the consumer first ([Start] waits until it is
// ready) or give it [redstream.WithGroupStart]("0").
//
// # Waiting
//
// Every Wait polls Redis every [PollInterval] until its condition holds,
// and fails the test after [DefaultTimeout] (sooner if the test's deadline,
// go test -timeout, comes first) with what it saw last: which entries were
// not yet read, which were pending, for whom and how often delivered. No
// helper sleeps to let time pass.
//
// # Concurrency
//
// A [Redis] is safe for concurrent use. The helpers may be called from
// parallel tests: each touches only the keys it is given, and [Redis.Stream]
// gives each test keys of its own, which matters when REDIS_ADDR makes
// tests share a server. Like the rest of the testing package's helpers,
// those that fail the test must be called from the test's goroutine.
package redstreamtest
