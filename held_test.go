package redstream

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The heldSet needs no Redis: these tests drive it directly.

func heldEntries(rt *route, ids ...string) []*entry {
	out := make([]*entry, len(ids))
	for i, id := range ids {
		out[i] = &entry{route: rt, id: id}
	}
	return out
}

func TestHeldSetHoldsAnEntryOnce(t *testing.T) {
	rt := &route{stream: "s"}
	h := newHeldSet(4)
	e := heldEntries(rt, "1-0")[0]
	require.True(t, h.hold(e, nil))
	assert.False(t, h.hold(&entry{route: rt, id: "1-0"}, nil), "a second copy of a held entry")
	assert.True(t, h.hold(&entry{route: &route{stream: "other"}, id: "1-0"}, nil), "same ID, another route")
	assert.True(t, h.holds(e.heldKey()))
	assert.True(t, h.holdsRoute(rt))
	h.forget(e)
	assert.False(t, h.holdsRoute(rt))
	assert.True(t, h.hold(e, nil), "forgotten, it may be held again")
}

func TestHeldSetRefusesWhatAPendingReadSawBeforeItWasFinished(t *testing.T) {
	rt := &route{stream: "s"}
	h := newHeldSet(4)
	es := heldEntries(rt, "1-0", "2-0")
	require.True(t, h.hold(es[0], nil))
	require.True(t, h.hold(es[1], nil))

	gen := h.beginPendingRead() // the read is on the wire...
	h.forget(es[0])             // ...when the acknowledger finishes 1-0
	assert.False(t, h.hold(&entry{route: rt, id: "1-0"}, &gen), "finished after the read began")
	later := h.beginPendingRead()
	assert.True(t, h.hold(&entry{route: rt, id: "1-0"}, &later), "a read begun after it was finished")
	h.forget(es[1])
	assert.True(t, h.hold(&entry{route: rt, id: "2-0"}, nil), "a read of new entries is not checked")
	h.endPendingRead()
	h.endPendingRead()
	assert.Empty(t, h.finished, "nothing remembered with no pending read in flight")

	h.forget(es[0])
	assert.Empty(t, h.finished, "nothing recorded with no pending read in flight")
}

func TestHeldSetKeyTurnsKeepOrder(t *testing.T) {
	rt := &route{stream: "s", ordered: true}
	h := newHeldSet(8)
	es := heldEntries(rt, "1-0", "2-0", "3-0")
	for _, e := range es {
		require.True(t, h.hold(e, nil))
	}
	var sent []string
	send := func(e *entry) { sent = append(sent, e.id) }

	assert.True(t, h.takeTurn(es[0], "k"))
	assert.False(t, h.takeTurn(es[1], "k"))
	assert.False(t, h.takeTurn(es[2], "k"))
	other := heldEntries(rt, "4-0")[0]
	assert.True(t, h.takeTurn(other, "other-key"), "keys do not wait for one another")
	assert.True(t, h.isKeyed(es[0]))
	assert.False(t, h.isKeyed(es[1]))

	assert.Zero(t, h.passTurn(es[0], false, send))
	assert.Equal(t, []string{"2-0"}, sent)
	assert.False(t, h.isKeyed(es[0]))
	assert.True(t, h.isKeyed(es[1]))
	assert.Zero(t, h.passTurn(es[0], false, send), "a turn passes once")
	assert.Zero(t, h.passTurn(es[1], false, send))
	assert.Zero(t, h.passTurn(es[2], false, send))
	assert.Equal(t, []string{"2-0", "3-0"}, sent)
	assert.True(t, h.takeTurn(heldEntries(rt, "5-0")[0], "k"), "the key is free again")
}

func TestHeldSetKeyTurnsOnDrainAndOnARouteGivenUp(t *testing.T) {
	rt := &route{stream: "s", ordered: true}
	var sent []string
	send := func(e *entry) { sent = append(sent, e.id) }

	t.Run("draining", func(t *testing.T) {
		h := newHeldSet(4)
		es := heldEntries(rt, "1-0", "2-0")
		for _, e := range es {
			require.True(t, h.hold(e, nil))
		}
		h.takeTurn(es[0], "k")
		h.takeTurn(es[1], "k")
		closed := false
		h.drain(func() { closed = true })
		assert.True(t, closed)
		h.forget(es[0]) // done with it, as release does
		assert.Zero(t, h.passTurn(es[0], false, send))
		assert.Empty(t, sent, "nothing goes to closed workers")
		assert.True(t, h.holds(es[1].heldKey()), "it stays held, pending, for the hand-off")
		assert.Equal(t, map[*route][]string{rt: {"2-0"}}, h.unfinished())
	})
	t.Run("given up", func(t *testing.T) {
		h := newHeldSet(4)
		es := heldEntries(rt, "1-0", "2-0", "3-0")
		for _, e := range es {
			require.True(t, h.hold(e, nil))
			h.takeTurn(e, "k")
		}
		assert.Equal(t, 2, h.passTurn(es[0], true, send), "the waiting ones are let go")
		assert.Empty(t, sent)
		assert.False(t, h.holds(es[1].heldKey()))
		assert.False(t, h.holds(es[2].heldKey()))
	})
}

func TestHeldSetMarks(t *testing.T) {
	rt := &route{stream: "s"}
	h := newHeldSet(4)
	es := heldEntries(rt, "1-0", "2-0", "3-0")
	for _, e := range es {
		require.True(t, h.hold(e, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	assert.False(t, h.start(es[0], cancel))
	h.markLost(rt, "1-0")
	assert.Error(t, ctx.Err(), "losing a running message cancels its handler")
	lost, vanished := h.finish(es[0])
	assert.True(t, lost)
	assert.False(t, vanished)
	assert.True(t, h.start(es[0], func() {}), "a lost message does not start again")

	assert.True(t, h.markVanished(rt, "2-0"))
	assert.False(t, h.markVanished(rt, "2-0"), "news once")
	assert.False(t, h.markVanished(rt, "1-0"), "lost is not vanished")
	es[2].settled.Store(true)
	assert.False(t, h.markVanished(rt, "3-0"), "an acknowledged message left the pending list because it was handled")
	assert.False(t, h.markVanished(rt, "9-0"), "not held")

	assert.True(t, h.markTrimmed(rt, "3-0"))
	assert.False(t, h.markTrimmed(rt, "3-0"))
	assert.True(t, h.isTrimmed(es[2]))
	assert.False(t, h.isTrimmed(es[1]))
}

func TestHeldSetUnfinished(t *testing.T) {
	rt := &route{stream: "s"}
	h := newHeldSet(4)
	es := heldEntries(rt, "1-0", "2-0", "3-0")
	for _, e := range es {
		require.True(t, h.hold(e, nil))
	}
	es[0].settled.Store(true) // its acknowledgement is queued
	h.leave(es[1])
	h.forget(es[1])
	assert.ElementsMatch(t, []string{"2-0", "3-0"}, h.unfinished()[rt])
	assert.Equal(t, []string{"3-0"}, h.unfinished()[rt], "what was left is handed over once")
	assert.ElementsMatch(t, []string{"1-0", "3-0"}, h.ids()[rt])
}

func TestHeldSetRoom(t *testing.T) {
	h := newHeldSet(3)
	assert.Equal(t, 2, h.takeRoomNow(2))
	assert.Equal(t, 1, h.takeRoom(context.Background(), 5), "takes what there is")
	assert.Zero(t, h.takeRoomNow(1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.giveRoom(1)
	assert.Zero(t, h.takeRoom(ctx, 1), "an ended context takes nothing, even with room free")
	h.giveRoom(2)
	assert.Equal(t, 3, h.takeRoomNow(3))
}

func TestHeldSetKeyTurnOfALostEntryLetsTheKeyGo(t *testing.T) {
	rt := &route{stream: "s", ordered: true}
	h := newHeldSet(4)
	es := heldEntries(rt, "1-0", "2-0")
	for _, e := range es {
		require.True(t, h.hold(e, nil))
		h.takeTurn(e, "k")
	}
	h.markLost(rt, "1-0") // another consumer runs 1-0 now
	h.forget(es[0])
	var sent []string
	assert.Equal(t, 1, h.passTurn(es[0], false, func(e *entry) { sent = append(sent, e.id) }))
	assert.Empty(t, sent, "2-0 must not overtake 1-0 here")
	assert.False(t, h.holds(es[1].heldKey()))
}

// A read that was on the wire when its partition was given up returns
// entries the consumer must not start: they would overtake the messages it
// let go, pending, for the next owner.
func TestDispatchLetsGoWhatIsReadAfterAPartitionWasGivenUp(t *testing.T) {
	_, rdb := newMiniredis(t)
	c, err := NewConsumer(rdb, "g")
	require.NoError(t, err)
	rt := &route{stream: "s", ordered: true, exclusive: true} // not owned: given up
	r := newRunner(c, []*route{rt})
	taken := r.held.takeRoomNow(1)
	require.Equal(t, 1, taken)
	e := &entry{route: rt, id: "1-0", values: map[string]any{KeyField: "k", "payload": "{}"}, redisDeliveries: 1}
	r.dispatch(context.Background(), []*entry{e}, nil)
	assert.Empty(t, r.work, "not started")
	assert.False(t, r.held.holds(e.heldKey()), "let go")
	assert.Equal(t, c.cfg.maxInFlight, r.held.takeRoomNow(c.cfg.maxInFlight), "its room is back")

	rt.owned.Store(true) // owned again, but its lease may have expired
	r.dispatch(context.Background(), []*entry{e}, nil)
	assert.Empty(t, r.work, "not started past the lease's deadline")
	assert.False(t, r.held.holds(e.heldKey()), "let go")

	setLeaseUntil(rt, time.Now(), time.Hour) // and renewed: read entries run
	r.dispatch(context.Background(), []*entry{e}, nil)
	assert.Len(t, r.work, 1)
}
