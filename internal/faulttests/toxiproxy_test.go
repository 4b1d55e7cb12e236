package faulttests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/faultkit"
	"github.com/redstream/redstream/internal/redistest"
)

// faultProxy is an in-process toxiproxy in front of a Redis server.
type faultProxy struct {
	t     testing.TB
	proxy *toxiproxy.Proxy
	addr  string
}

func newFaultProxy(t testing.TB, upstream string) *faultProxy {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	proxy := toxiproxy.NewProxy(server, "redis-"+hex.EncodeToString(b), "127.0.0.1:0", upstream)
	require.NoError(t, server.Collection.Add(proxy, true))
	t.Cleanup(func() { _ = server.Collection.Clear() })
	// Listen now holds the port the proxy got; it keeps it across
	// disable and enable.
	return &faultProxy{t: t, proxy: proxy, addr: proxy.Listen}
}

// addToxic adds a toxic given as the JSON of toxiproxy's HTTP API.
func (p *faultProxy) addToxic(json string) {
	p.t.Helper()
	_, err := p.proxy.Toxics.AddToxicJson(strings.NewReader(json))
	require.NoError(p.t, err)
}

func (p *faultProxy) removeToxic(name string) {
	p.t.Helper()
	require.NoError(p.t, p.proxy.Toxics.RemoveToxic(context.Background(), name))
}

// TestNetworkFaultsToxiproxy puts a toxiproxy between a consumer and Redis
// and injects latency, dropped connections (refused, then reset) and a
// blackhole, while a producer with a direct connection publishes steadily.
// Nothing may be lost, the group's pending list must drain, the consumer
// must recover by itself, and while Redis is unreachable the consumer's
// failed calls must stay well below a hot loop's rate.
//
// The ceiling on failed calls per second follows from the backoff policy.
// The consumer's client does not retry (MaxRetries -1, one dial attempt),
// so every failure reaches the library and fails fast when the port
// refuses connections: only the library's backoff limits the rate. Its
// goroutines that call Redis:
//   - the reader (one per stream) backs off exponentially from
//     DefaultErrorBackoffMin (50ms; jitter picks in [d/2, d]): at most 6
//     failures in any second (25+50+100+200+400ms < 1s);
//   - the acker retries a batch with the same backoff until it is
//     acknowledged: at most 6 in any second too;
//   - the lease keeper calls once per MinIdle/3 (here 2s/3: about 2/s);
//   - the reaper calls XAUTOCLAIM and XINFO CONSUMERS once per reap
//     interval (here 500ms: 4/s).
//
// That is under 20 per second; the ceiling of 50 leaves room for
// scheduling noise and the EVALSHA-then-EVAL pairs, and is still two orders
// of magnitude below a loop without backoff (thousands per second on a
// refused port).
func TestNetworkFaultsToxiproxy(t *testing.T) {
	t.Parallel()
	const ceiling = 50 // failed calls in any one second; see above
	ctx, stream := faultkit.Ctx(t), faultkit.UniqueStream(t)
	fp := newFaultProxy(t, redistest.Addr(t))

	logs := &faultkit.SyncBuffer{}
	faultkit.DumpOnFailure(t, logs)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	direct := redistest.Client(t)
	p, err := redstream.NewProducer[Order](direct, stream)
	require.NoError(t, err)

	failures := &faultkit.CallFailures{}
	viaProxy := redis.NewClient(&redis.Options{
		Addr: fp.addr, MaxRetries: -1, DialerRetries: 1,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
	})
	viaProxy.AddHook(failures)
	t.Cleanup(func() { _ = viaProxy.Close() })

	l := faultkit.NewLedger()
	c, err := redstream.NewConsumer(viaProxy, "g",
		redstream.WithGroupStart("0"),
		redstream.WithMinIdle(2*time.Second),
		redstream.WithReapInterval(500*time.Millisecond),
		redstream.WithLogger(logger),
	)
	require.NoError(t, err)
	require.NoError(t, redstream.Handle(c, stream, func(_ context.Context, m *redstream.Message[Order]) error {
		l.Handle("c", m.Payload.ID, m.Time())
		return nil
	}))
	run := faultkit.StartReady(t, c)

	pubCtx, stopPublishing := context.WithCancel(ctx)
	defer stopPublishing()
	waitPublisher := publishSteadily(pubCtx, p, l, "m", 1, 5*time.Millisecond)
	faultkit.Eventually(t, 10*time.Second, func() bool { _, _, handled := l.Counts(); return handled >= 50 }, "warm-up")

	type phase struct {
		name          string
		from, to      time.Time // the fault was in place
		failed, peak  int       // failed calls from the fault's start to recovery; most in one second
		recovered     time.Duration
		handledDuring int
	}
	var phases []phase
	// fault runs inject, holds it for d, lifts it with heal, and waits
	// until the consumer handles a message published after that.
	fault := func(name string, d time.Duration, inject, heal func()) {
		_, _, handledBefore := l.Counts()
		ph := phase{name: name, from: time.Now()}
		inject()
		faultkit.HoldFault(ctx, t, d)
		heal()
		ph.to = time.Now()
		_, _, handledAfter := l.Counts()
		ph.handledDuring = handledAfter - handledBefore
		var back time.Time
		faultkit.Eventually(t, 20*time.Second, func() bool {
			var ok bool
			back, ok = l.FirstHandledAppendedAfter(ph.to, "")
			return ok
		}, "consumer recovers after %s", name)
		ph.recovered = back.Sub(ph.to)
		ph.failed, ph.peak = failures.Between(ph.from, back)
		phases = append(phases, ph)
		select {
		case err := <-run.Done:
			t.Fatalf("Run returned during %s: %v", name, err)
		default:
		}
	}

	fault("latency 50ms", 2*time.Second,
		func() {
			fp.addToxic(`{"name":"latency","type":"latency","stream":"downstream","attributes":{"latency":50}}`)
		},
		func() { fp.removeToxic("latency") })
	fault("proxy disabled (connections closed, then refused)", 1500*time.Millisecond,
		fp.proxy.Stop,
		func() { require.NoError(t, fp.proxy.Start()) })
	fault("reset_peer (every connection reset)", 1500*time.Millisecond,
		func() {
			fp.addToxic(`{"name":"reset","type":"reset_peer","stream":"upstream","attributes":{"timeout":0}}`)
		},
		func() { fp.removeToxic("reset") })
	fault("blackhole (timeout toxic, data dropped)", 3*time.Second,
		func() {
			fp.addToxic(`{"name":"blackhole","type":"timeout","stream":"upstream","attributes":{"timeout":0}}`)
		},
		func() { fp.removeToxic("blackhole") })

	stopPublishing()
	waitPublisher()
	published, failedPublishes, _ := l.Counts()
	require.Zero(t, failedPublishes, "the producer's direct connection saw no fault")

	l.WaitAllHandled(t, 30*time.Second, "every published message handled")
	faultkit.Eventually(t, 30*time.Second, func() bool { return faultkit.PendingCount(t, direct, stream, "g") == 0 }, "pending list drains")
	select {
	case err := <-run.Done:
		t.Fatalf("Run returned on its own: %v", err)
	default:
	}
	assert.NoError(t, run.Stop(t))
	// No crash, no lost lease (one consumer): acknowledgements are
	// retried until they arrive, so duplicates stay within what was in
	// flight, and in practice there are none.
	assert.LessOrEqual(t, l.Duplicates(), redstream.DefaultMaxInFlight, "duplicates")

	_, _, handled := l.Counts()
	t.Logf("published %d, handled %d distinct, duplicates %d; failed calls in all %d (%s)",
		published, handled, l.Duplicates(), failures.Total(), failures.Commands())
	for _, ph := range phases {
		dur := ph.to.Sub(ph.from)
		t.Logf("%s for %v: handled during it %d, recovered %v after it ended; failed calls %d (%.1f/s over fault+recovery), peak %d in one second",
			ph.name, dur.Round(time.Millisecond), ph.handledDuring, ph.recovered.Round(time.Millisecond),
			ph.failed, float64(ph.failed)/(dur+ph.recovered).Seconds(), ph.peak)
		assert.Less(t, ph.peak, ceiling, "%s: failed calls per second", ph.name)
	}
	assert.Positive(t, phases[0].handledDuring, "messages are handled while latency is added")
	_, overall := failures.Between(time.Time{}, time.Now())
	assert.Less(t, overall, ceiling, "failed calls per second over the whole test")
}

// TestAcksSurviveAnOutage cuts the consumer off from Redis while its
// handlers finish a batch of messages, for longer than a few quick retries
// of the acknowledgement take. The acknowledgements must still arrive once
// Redis is back: a dropped connection is neither a crash nor a lost lease,
// so nothing may be handled twice.
func TestAcksSurviveAnOutage(t *testing.T) {
	t.Parallel()
	ctx, stream := faultkit.Ctx(t), faultkit.UniqueStream(t)
	fp := newFaultProxy(t, redistest.Addr(t))
	logs := &faultkit.SyncBuffer{}
	faultkit.DumpOnFailure(t, logs)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	direct := redistest.Client(t)
	viaProxy := redis.NewClient(&redis.Options{
		Addr: fp.addr, MaxRetries: -1, DialerRetries: 1,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
	})
	t.Cleanup(func() { _ = viaProxy.Close() })

	const n = 50
	l := faultkit.NewLedger()
	cutOff := make(chan struct{})
	c, err := redstream.NewConsumer(viaProxy, "g",
		redstream.WithGroupStart("0"),
		redstream.WithMinIdle(500*time.Millisecond), // a redelivery would come quickly
		redstream.WithReapInterval(100*time.Millisecond),
		redstream.WithLogger(logger),
		redstream.WithConcurrency(n), // every message in a handler before the cut
	)
	require.NoError(t, err)
	// Handlers finish only once Redis is out of reach.
	var started atomic.Int64
	require.NoError(t, redstream.Handle(c, stream, handleAfter(cutOff, l, &started)))
	publishOrders(t, direct, stream, n)
	run := faultkit.Start(t, c)
	// Every message is in a handler. Pending in Redis is not enough: an
	// XREADGROUP's reply may still be on its way when the proxy stops.
	faultkit.Eventually(t, 10*time.Second, func() bool { return started.Load() == n }, "all delivered")

	fp.proxy.Stop()
	close(cutOff)
	faultkit.Eventually(t, 10*time.Second, func() bool { _, _, handled := l.Counts(); return handled == n }, "handled while cut off")
	faultkit.HoldFault(ctx, t, 2*time.Second) // longer than 5 quick retries (about 0.4 to 0.75s)
	require.NoError(t, fp.proxy.Start())

	faultkit.Eventually(t, 20*time.Second, func() bool { return faultkit.PendingCount(t, direct, stream, "g") == 0 }, "acknowledged after the outage")
	// Long enough for a reaper to have taken back any acknowledgement that
	// was dropped: MinIdle and a few reap intervals.
	faultkit.HoldFault(ctx, t, time.Second)
	require.NoError(t, run.Stop(t))
	assert.Zero(t, l.Duplicates(), "messages handled twice after an outage")
}

// TestShutdownDuringOutageReturns stops a consumer whose acknowledgements
// cannot reach Redis: Run must still return promptly, after a few last
// attempts, leaving the messages pending for redelivery, and say so.
func TestShutdownDuringOutageReturns(t *testing.T) {
	t.Parallel()
	ctx, stream := faultkit.Ctx(t), faultkit.UniqueStream(t)
	fp := newFaultProxy(t, redistest.Addr(t))
	direct := redistest.Client(t)
	viaProxy := redis.NewClient(&redis.Options{
		Addr: fp.addr, MaxRetries: -1, DialerRetries: 1,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
	})
	t.Cleanup(func() { _ = viaProxy.Close() })

	const n = 20
	l := faultkit.NewLedger()
	cutOff := make(chan struct{})
	release := sync.OnceFunc(func() { close(cutOff) })
	t.Cleanup(release)
	c := newTestConsumer(t, viaProxy, "g", redstream.WithGroupStart("0"), redstream.WithConcurrency(n))
	var started atomic.Int64
	require.NoError(t, redstream.Handle(c, stream, handleAfter(cutOff, l, &started)))
	publishOrders(t, direct, stream, n)
	run := faultkit.StartReady(t, c)
	// In handlers, not only pending: a read's reply may be on its way.
	faultkit.Eventually(t, 10*time.Second, func() bool { return started.Load() == n }, "all delivered")
	fp.proxy.Stop()
	release()
	faultkit.Eventually(t, 10*time.Second, func() bool { _, _, handled := l.Counts(); return handled == n }, "handled while cut off")
	faultkit.HoldFault(ctx, t, time.Second) // the acknowledgements are being retried

	began := time.Now()
	err := run.Stop(t)
	took := time.Since(began)
	// Run tells the truth: the handled messages are still pending.
	require.ErrorIs(t, err, redstream.ErrAcksGivenUp)
	var stopErr *redstream.ShutdownError
	require.ErrorAs(t, err, &stopErr)
	assert.Equal(t, n, stopErr.AcksGivenUp)
	assert.Equal(t, n, stopErr.Pending)
	t.Logf("Run returned %v after its context ended", took.Round(time.Millisecond))
	assert.Less(t, took, 5*time.Second, "Run returns promptly though Redis is unreachable")
	assert.Equal(t, int64(n), faultkit.PendingCount(t, direct, stream, "g"), "unacknowledged messages stay pending")
}

// handleAfter returns a handler that counts its calls in started, waits
// for release (or its context's end, returning its error), then records
// the message in l as consumer "c".
func handleAfter(release <-chan struct{}, l *faultkit.Ledger, started *atomic.Int64) redstream.HandlerFunc[Order] {
	return func(ctx context.Context, m *redstream.Message[Order]) error {
		started.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		l.Handle("c", m.Payload.ID, m.Time())
		return nil
	}
}

// TestOwnPendingOverASlowLinkIsNotDeadLettered: consumer w1 restarts
// holding 40 pending entries of 100 KB behind a 2 MB/s link, with a 500ms
// read timeout, so reading them all at once cannot finish in time. Reading
// its own pending entries must count no delivery however often it is
// tried (go-redis retries timed-out reads), and the consumer asks for fewer
// until they get through: when the link recovers, every entry is handled,
// on its first attempt, and none is dead-lettered as max-deliveries.
func TestOwnPendingOverASlowLinkIsNotDeadLettered(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := faultkit.Ctx(t), faultkit.UniqueStream(t)
	const n = 40
	big := Order{ID: "big", UserID: strings.Repeat("x", 100_000)}
	p, err := redstream.NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	for range n {
		_, err := p.Publish(ctx, big)
		require.NoError(t, err)
	}
	faultkit.DeliverTo(t, rdb, stream, "g", "w1", n)

	proxy := newFaultProxy(t, redistest.Addr(t))
	proxy.addToxic(`{"name": "slow", "type": "bandwidth", "stream": "downstream", "attributes": {"rate": 2000}}`)
	slow := redis.NewClient(&redis.Options{Addr: proxy.addr, ReadTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { _ = slow.Close() })

	handled := faultkit.NewSeen()
	var firstAttempts atomic.Int64
	c := newTestConsumer(t, slow, "g", redstream.WithConsumerName("w1"), redstream.WithMaxDeliveries(5))
	require.NoError(t, redstream.Handle(c, stream, func(_ context.Context, m *redstream.Message[Order]) error {
		if m.Deliveries == 1 {
			firstAttempts.Add(1)
		}
		handled.Add(m.ID)
		return nil
	}))
	faultkit.StartReady(t, c)
	faultkit.HoldFault(ctx, t, 3*time.Second) // slow long enough for many timed-out reads
	proxy.removeToxic("slow")
	faultkit.Eventually(t, 30*time.Second, func() bool { return handled.Len() == n }, "every entry handled")
	faultkit.Eventually(t, 10*time.Second, func() bool { return faultkit.PendingCount(t, rdb, stream, "g") == 0 })
	letters, err := rdb.XLen(ctx, redstream.DeadLetterKey(stream)).Result()
	require.NoError(t, err)
	assert.Zero(t, letters, "entries no handler saw were dead-lettered")
	assert.Equal(t, int64(n), firstAttempts.Load())
}

// TestPublishResetAfterTheCommandRan cuts every connection of a default
// go-redis client (MaxRetries 3) right after Redis ran a command: the
// limit_data toxic closes a connection once Redis's first reply byte comes
// back, so each XADD reaches Redis and its reply is lost. The client would
// send each XADD again on a new connection, appending duplicates nobody
// was told about; redstream sends it once and reports ErrUncertain. It
// counts the entries each publish left: at most one.
func TestPublishResetAfterTheCommandRan(t *testing.T) {
	t.Parallel()
	ctx, stream := faultkit.Ctx(t), faultkit.UniqueStream(t)
	fp := newFaultProxy(t, redistest.Addr(t))
	direct := redistest.Client(t)
	// A default client, but for the connection handshake: with RESP2 and
	// no CLIENT SETINFO, the first reply on a connection is the XADD's.
	viaProxy := redis.NewClient(&redis.Options{Addr: fp.addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = viaProxy.Close() })
	p, err := redstream.NewProducer[Order](viaProxy, stream)
	require.NoError(t, err)
	_, err = p.Publish(ctx, Order{ID: "warm"})
	require.NoError(t, err)

	// cut runs fn with the toxic in place: the first reply on a connection
	// kills it. A connection opened while the toxic is in place forwards
	// nothing, so the toxic is put in place for one round trip at a time,
	// on a connection opened before (the ping's, which the pool reuses).
	cut := func(fn func()) {
		require.NoError(t, viaProxy.Ping(ctx).Err())
		fp.addToxic(`{"name":"cut","type":"limit_data","stream":"downstream","attributes":{"bytes":1}}`)
		fn()
		fp.removeToxic("cut")
	}
	const n = 10
	outcomes := map[string]error{}
	for i := range n {
		id := "sync-" + strconv.Itoa(i)
		cut(func() { _, outcomes[id] = p.Publish(ctx, Order{ID: id}) })
	}
	cut(func() {
		ids, batchErr := p.PublishBatch(ctx, []Order{{ID: "batch-0"}, {ID: "batch-1"}, {ID: "batch-2"}})
		var be *redstream.BatchError
		require.ErrorAs(t, batchErr, &be)
		for i := range ids {
			outcomes["batch-"+strconv.Itoa(i)] = be.Errs[i]
		}
	})
	futures := map[string]*redstream.PublishFuture{}
	cut(func() {
		for i := range n {
			id := "async-" + strconv.Itoa(i)
			f, err := p.PublishAsync(ctx, Order{ID: id})
			require.NoError(t, err)
			futures[id] = f
		}
		require.NoError(t, p.Flush(ctx))
	})
	for id, f := range futures {
		_, outcomes[id] = f.Result()
	}

	entries, err := direct.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	perPublish := map[string]int{}
	for _, e := range entries {
		var o Order
		require.NoError(t, json.Unmarshal([]byte(e.Values[redstream.DefaultPayloadField].(string)), &o))
		perPublish[o.ID]++
	}
	duplicates, uncertain, written, ok := 0, 0, 0, 0
	for id, err := range outcomes {
		if err == nil {
			// An asynchronous publish in a later round trip than the cut.
			ok++
			assert.Equal(t, 1, perPublish[id], "%s reported written", id)
		} else {
			require.ErrorIs(t, err, redstream.ErrUncertain, "%s: its reply was lost", id)
			uncertain++
			written += min(perPublish[id], 1)
		}
		duplicates += max(perPublish[id]-1, 0)
	}
	t.Logf("%d publishes: %d reported written, %d whose reply was lost (%d of them written once), %d duplicate entries",
		len(outcomes), ok, uncertain, written, duplicates)
	assert.Zero(t, duplicates, "an XADD sent twice behind the caller's back")
	assert.Positive(t, written, "the XADDs reached Redis before their connections were cut")
}
