package redstream

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/faultkit"
	"github.com/redstream/redstream/internal/redistest"
)

// TestRedisRestartWithAOF kills redis-server (SIGKILL) twice while
// producers publish and two consumers of one group handle, restarting it on
// the same port with its append-only file (fsync always). It checks the
// promise for a Redis that survives: every publish Redis acknowledged is in
// the stream afterwards and handled at least once, and the group's pending
// list drains. One consumer's client has go-redis's default options, the
// other's fails fast; both have redstream's default error backoff and must
// reconnect on their own.
func TestRedisRestartWithAOF(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx, stream := testCtx(t), uniqueStream(t)
	const group = "restart"

	logs := &faultkit.SyncBuffer{}
	faultkit.DumpOnFailure(t, logs)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// Producers: no go-redis retries, so a publish that fails is reported
	// as failed (a retried XADD could also be written twice), and short
	// timeouts so the outage costs little time per message.
	pubRDB := redis.NewClient(&redis.Options{
		Addr: srv.Addr(), MaxRetries: -1, DialerRetries: 1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
	})
	t.Cleanup(func() { _ = pubRDB.Close() })
	p, err := NewProducer[Order](pubRDB, stream)
	require.NoError(t, err)

	l := faultkit.NewLedger()
	names := []string{"c1", "c2"}
	var bgErrors [2]atomic.Int64
	runs := make([]*running, 2)
	clientOpts := []*redis.Options{
		// c1 has go-redis's defaults, which the library must cope with:
		// they retry a failed command 3 times, dialing up to 5 times each,
		// so a short outage is mostly hidden from the library.
		{Addr: srv.Addr()},
		// c2 fails fast: every failure reaches the library, whose own
		// backoff and reconnection are then what is tested.
		{
			Addr: srv.Addr(), MaxRetries: -1, DialerRetries: 1,
			DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
		},
	}
	for i, name := range names {
		rdb := redis.NewClient(clientOpts[i])
		t.Cleanup(func() { _ = rdb.Close() })
		c, err := NewConsumer(rdb, group,
			WithConsumerName(name),
			WithGroupStart("0"),
			// A delivery whose reply the kill cut off is pending for a
			// consumer that never got it; a reaper takes it back after
			// MinIdle. Short, to keep the test short.
			WithMinIdle(time.Second),
			WithReapInterval(200*time.Millisecond),
			WithLogger(logger.With(slog.String("test_consumer", name))),
			WithErrorHandler(func(error) { bgErrors[i].Add(1) }),
		)
		require.NoError(t, err)
		require.NoError(t, Handle(c, stream, func(_ context.Context, m *Message[Order]) error {
			l.Handle(name, m.Payload.ID, m.Time())
			return nil
		}))
		runs[i] = startReady(t, c)
	}

	pubCtx, stopPublishing := context.WithCancel(ctx)
	defer stopPublishing()
	waitPublishers := publishSteadily(pubCtx, p, l, "p", 4, 5*time.Millisecond)

	eventually(t, 10*time.Second, func() bool { _, _, handled := l.Counts(); return handled >= 200 }, "warm-up")

	type outage struct {
		down, up     time.Duration    // how long Redis was down; restart (AOF load) time
		producerBack time.Duration    // from the restart to the first publish acknowledged
		consumerBack [2]time.Duration // from the restart to each consumer's first new message handled
	}
	var outages []outage
	downFor := []time.Duration{time.Second, 3 * time.Second}
	for round := 1; round <= len(downFor); round++ {
		_, failedBefore, _ := l.Counts()
		killed := time.Now()
		srv.Kill()
		// Down long enough for the consumers' backoff to grow through
		// several steps, and, the second time, for go-redis's own retries
		// (about 2s with its defaults) to give up too.
		faultkit.HoldFault(ctx, t, downFor[round-1])
		eventually(t, 10*time.Second, func() bool { _, failed, _ := l.Counts(); return failed > failedBefore }, "publishes fail while Redis is down")
		restarting := time.Now()
		srv.Restart(t)
		restarted := time.Now()
		o := outage{down: restarting.Sub(killed), up: restarted.Sub(restarting)}

		okBefore, _, _ := l.Counts()
		eventually(t, 20*time.Second, func() bool { ok, _, _ := l.Counts(); return ok > okBefore }, "producers publish again after restart %d", round)
		o.producerBack = time.Since(restarted)
		// Each consumer, not only one of them, reads from Redis again.
		for i, name := range names {
			var back time.Time
			eventually(t, 30*time.Second, func() bool {
				var ok bool
				back, ok = l.FirstHandledAppendedAfter(restarted, name)
				return ok
			}, "consumer %s handles new messages after restart %d", name, round)
			o.consumerBack[i] = back.Sub(restarted)
		}
		outages = append(outages, o)

		for i, r := range runs {
			select {
			case err := <-r.Done:
				t.Fatalf("consumer %s: Run returned during the outages: %v", names[i], err)
			default:
			}
		}
		// Run a second or so between the kills.
		eventually(t, 10*time.Second, func() bool { return time.Since(restarted) >= time.Second })
	}

	stopPublishing()
	waitPublishers()
	published, failed, _ := l.Counts()
	require.Positive(t, published)
	require.Positive(t, failed, "the outages were seen")

	// Every acknowledged message is handled, at least once...
	l.WaitAllHandled(t, 30*time.Second, "all acknowledged publishes handled")
	// ...and nothing is left pending: deliveries cut off by the kills were
	// reclaimed and acknowledged.
	eventually(t, 30*time.Second, func() bool { return pendingCount(t, pubRDB, stream, group) == 0 }, "pending list drains")

	// Every acknowledged publish survived the kills: with appendfsync
	// always, Redis answers a write only after it is on disk.
	inStream := streamIDs(t, pubRDB, stream)
	lost := 0
	for key, id := range l.Published() {
		if inStream[id] != key {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged publish %s (ID %s) is not in the stream after the restarts", key, id)
			}
		}
	}
	assert.Zero(t, lost, "acknowledged publishes lost")

	// Duplicates are bounded by what was in flight; acknowledgements are
	// retried until Redis is back, so in practice there are none.
	assert.LessOrEqual(t, l.Duplicates(), 2*DefaultMaxInFlight, "duplicates")

	for i, r := range runs {
		select {
		case err := <-r.Done:
			t.Fatalf("consumer %s: Run returned on its own: %v", names[i], err)
		default:
		}
		assert.NoError(t, r.stop(t), "consumer %s shuts down cleanly", names[i])
	}

	_, _, handled := l.Counts()
	t.Logf("published ok %d, failed publishes %d, stream length %d (%d written but not acknowledged), handled %d distinct, duplicates %d, background errors reported by c1 (go-redis defaults) %d and c2 (fail fast) %d",
		published, failed, len(inStream), len(inStream)-published, handled, l.Duplicates(), bgErrors[0].Load(), bgErrors[1].Load())
	for i, o := range outages {
		t.Logf("restart %d: Redis down %v, restart and AOF load %v; after the restart, producers publishing again in %v, c1 (go-redis defaults) handling new messages in %v, c2 (fail fast) in %v",
			i+1, o.down.Round(time.Millisecond), o.up.Round(time.Millisecond), o.producerBack.Round(time.Millisecond),
			o.consumerBack[0].Round(time.Millisecond), o.consumerBack[1].Round(time.Millisecond))
	}
}
