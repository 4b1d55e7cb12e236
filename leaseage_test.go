package redstream

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

// stallAfterRead holds the first XREADGROUP reply with entries (after
// Redis answered it) until release is closed: the process stalls between
// the read and dispatch (a GC pause, a descheduled process).
type stallAfterRead struct {
	stalled, release chan struct{}
	once             atomic.Bool
}

func (h *stallAfterRead) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *stallAfterRead) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() != "xreadgroup" {
			return err
		}
		if v, ok := cmd.(interface{ Val() []redis.XStream }); ok && len(v.Val()) > 0 && len(v.Val()[0].Messages) > 0 && h.once.CompareAndSwap(false, true) {
			close(h.stalled)
			<-h.release
		}
		return err
	}
}
func (h *stallAfterRead) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A consumer ("a") reads a new entry with XREADGROUP, then stalls longer
// than MinIdle before dispatching it. Another consumer's reaper ("b")
// claims it (idle past MinIdle) and records the claim. a resumes: dispatch
// stamped leasedAt with the time of dispatch, not of the read, so a's quick
// handler's acknowledgement is a bare XACK: b then finds the entry pending
// for no one, with its own takeover record and no failure recorded
// ("unrecorded"): vanished, and dead-letters a handled message if its run
// fails. The same held for the reaper's claims (leasedAt stamped after
// fillEntries and markClaimed) and the fenced read. The lease was fresh
// when the read was sent, not when its reply was dispatched: every read
// and claim now stamps its entries with its send time (stampLeases).
func TestStallBetweenReadAndDispatchIsNotAFreshLease(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	id := publishOrders(t, rdb, stream, 1)[0]

	stall := &stallAfterRead{stalled: make(chan struct{}), release: make(chan struct{})}
	rdb.AddHook(stall)
	t.Cleanup(func() {
		select {
		case <-stall.release:
		default:
			close(stall.release)
		}
	})
	c := newTestConsumer(t, rdb, "g", WithGroupStart("0"), WithConsumerName("a"), WithMinIdle(time.Second))
	require.NoError(t, Handle(c, stream, func(context.Context, *Message[Order]) error { return nil }))
	startReady(t, c)
	<-stall.stalled

	// b's reaper, once the entry is idle past MinIdle.
	other := redistest.Client(t)
	var claimed []string
	eventually(t, 10*time.Second, func() bool {
		var err error
		claimed, _, err = other.XAutoClaimJustID(ctx, &redis.XAutoClaimArgs{Stream: stream, Group: "g", Consumer: "b", MinIdle: time.Second, Start: "0-0", Count: 10}).Result()
		require.NoError(t, err)
		return len(claimed) == 1
	}, "b's reaper claims it")
	require.NoError(t, markClaimed(ctx, other, stream, "g", "b", claimed))

	close(stall.release) // a dispatches and handles it at once
	eventually(t, 10*time.Second, func() bool { return pendingCount(t, other, stream, "g") == 0 }, "a acknowledges it")
	assertBLetsGo(t, other, stream, id)
}

// An exclusive partition's owner sorts an acknowledgement as a bare XACK
// while its lease still has a moment to run; the XACK then takes longer to
// reach Redis than that moment (a stall, a slow network), the lease
// expires, and the next owner takes it and claims the message: the XACK
// arrives after the claim, unrecorded, and the next owner dead-letters a
// handled message as vanished. The partition's deadline was checked with
// no margin (now >= deadline); an acknowledgement sorted within a quarter
// of the lease's TTL of its deadline now goes by script (ackLapsed), the
// margin an entry's own lease has.
func TestAckNearThePartitionLeaseDeadlineGoesByScript(t *testing.T) {
	const ttl = time.Second
	c := &Consumer{}
	c.cfg.minIdle = ttl
	r := &runner{c: c}
	rt := &route{stream: "s", exclusive: true}
	shared := &route{stream: "t"}
	now := monoNow()
	for _, tc := range []struct {
		name     string
		rt       *route
		deadline time.Duration // from now
		lapsed   bool
	}{
		{"deadline passed", rt, -time.Millisecond, true},
		{"deadline a tenth of the TTL away", rt, ttl / 10, true},
		{"deadline just inside the margin", rt, ttl/4 - time.Millisecond, true},
		{"deadline two thirds of the TTL away (a healthy owner's least)", rt, ttl * 2 / 3, false},
		{"shared stream, whatever its deadline", shared, -time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.rt.leaseUntil.Store(now + int64(tc.deadline))
			e := &entry{id: "1-0", route: tc.rt}
			e.leasedAt.Store(now) // the entry's own lease is fresh
			round := &ackRound{plain: map[*route][]string{}, failed: map[*route][]string{}, lapsed: map[*route][]string{}, entries: []*entry{e}}
			round.sort(r)
			if tc.lapsed {
				require.Equal(t, []string{"1-0"}, round.lapsed[tc.rt], "sent by script")
				require.Empty(t, round.plain[tc.rt])
			} else {
				require.Equal(t, []string{"1-0"}, round.plain[tc.rt], "a bare XACK")
				require.Empty(t, round.lapsed[tc.rt])
			}
		})
	}
}
