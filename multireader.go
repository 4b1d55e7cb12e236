package redstream

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/slot"
)

// The group reader: one goroutine per group of streams that one command
// may name (every plain stream of the consumer on a single node; the
// streams of one hash slot on a cluster), started by runner.run when a
// group has two streams or more (a group of one keeps reader.go's direct
// blocking XREADGROUP) and stopped by Run's context. It owns, for each of
// its streams, the cursor into the consumer's own pending entries, the
// last-delivered ID it waits from and whether the stream may have more
// entries; and the group's read size. Like the reader, it takes room and
// holds what it reads through the heldSet, and hands it to dispatch.
//
// One blocked connection waits for all its streams. While there is free
// room for at least one entry of each, it is one XREADGROUP > BLOCK over
// all of them (COUNT applies to each stream, so each gets the same share;
// one round trip from a new entry to its handler). With less room, an
// XREAD BLOCK from each stream's last-delivered ID, with COUNT 1, which
// delivers nothing to the consumer group and takes no room, says which
// streams have new entries. Streams known to have entries (woken, or
// whose last read filled its share) are read in one pipeline of
// non-blocking XREADGROUP >, with COUNTs that share out the room taken,
// the first share going round the streams, so that a stream with a
// backlog reads no more than any other ready stream per round. While a
// stream stays ready round after round, each round also asks (XREAD
// without BLOCK) whether the others have anything, so a quiet stream
// waits at most one round behind a busy one.
//
// The last-delivered ID is what the group's own reads left: when other
// consumers of the group read too it falls behind, XREAD wakes for
// entries those consumers took, XREADGROUP finds none, and the stream's
// ID is looked up with XINFO GROUPS (as for every stream every
// refreshEvery block times: that also corrects a group rewound by an
// operator and notices a stream or group deleted while nothing is
// written to it; a read of a stream deleted under it says NOGROUP or
// UNBLOCKED, and the group is created again as the per-stream reader
// does).

// readerGroups splits the plain (not exclusive) routes into groups one
// command can read: all of them on a single node, one group per hash
// slot on a cluster, and one per route on clients that spread keys over
// shards by other rules (a Ring).
func readerGroups(rdb redis.UniversalClient, routes []*route) [][]*route {
	var groups [][]*route
	bySlot := map[int]int{}
	for _, rt := range routes {
		if rt.exclusive {
			continue
		}
		key := -1
		switch rdb.(type) {
		case *redis.Client:
			key = 0
		case *redis.ClusterClient:
			key = slot.Of(rt.stream)
		}
		if i, ok := bySlot[key]; ok && key >= 0 {
			groups[i] = append(groups[i], rt)
			continue
		}
		bySlot[key] = len(groups)
		groups = append(groups, []*route{rt})
	}
	var split [][]*route
	for _, g := range groups {
		parts := (len(g) + groupReaderStreams - 1) / groupReaderStreams
		for i := range parts {
			split = append(split, g[i*len(g)/parts:(i+1)*len(g)/parts])
		}
	}
	return split
}

// groupReaderStreams is the most streams one group reader waits on.
// Redis's work for a read blocked on k keys grows with k (about 0.7 µs a
// key on this project's machine, each time the read is answered and sent
// again), so a group reader of many streams answered for every entry
// spends Redis's time on the others: past this many streams, another
// reader (and connection) costs less than the wait.
const groupReaderStreams = 500

// member is one stream of a group reader.
type member struct {
	rt *route
	// cursor: after this ID come own pending entries ("0": all); "" once
	// drained.
	cursor string
	// last is the group's last-delivered ID as last known: XREAD waits for
	// entries after it.
	last string
	// ready: the stream may have entries for XREADGROUP > (an XREAD saw
	// one, or the last read filled its share); woken: an XREAD saw one.
	ready, woken bool
	// stale: XREAD saw entries after last that XREADGROUP > did not
	// deliver (another consumer read them): last is behind.
	stale  bool
	paused bool
	// failures counts failed reads in a row; the stream is left alone
	// until notBefore.
	failures  int
	notBefore time.Time
}

// groupReader reads the streams of one group (see readerGroups).
type groupReader struct {
	r       *runner
	members []*member
	// perRead is the most entries read of one stream per round, as many
	// as a per-stream reader would read (its share of the room): a stream
	// with a backlog takes no more of the workers' queue a round than
	// that, whoever else waits behind it; limit the
	// most of all streams, halved after a read timed out; blockRoom the
	// most room held while blocked, this reader's share of it.
	perRead, limit, blockRoom int
	// streamCap is the most entries one stream may hold while others
	// wait to be read: the room less the others' shares.
	streamCap int
	// next is where the round's first share goes.
	next int
	// refreshed is when every stream's last-delivered ID was last looked up.
	refreshed time.Time
}

// refreshEvery bounds, in block times, how long a group reader goes
// without looking up every stream's last-delivered ID.
const refreshEvery = 10

// newGroupReader returns the reader of routes, one of readers readers.
// Call r.held.countPerRoute before anything is held.
func newGroupReader(r *runner, routes []*route, readers int) *groupReader {
	g := &groupReader{r: r, perRead: max(1, min(r.c.cfg.batchSize, r.c.cfg.maxInFlight/len(routes))), limit: r.c.cfg.maxInFlight,
		blockRoom: max(1, r.c.cfg.maxInFlight/readers)}
	g.streamCap = max(g.perRead, r.c.cfg.maxInFlight-g.perRead*(len(routes)-1))
	for _, rt := range routes {
		g.members = append(g.members, &member{rt: rt, cursor: "0", last: "0-0", ready: true})
	}
	return g
}

// run reads until ctx ends.
func (g *groupReader) run(ctx context.Context) {
	redisCtx := context.WithoutCancel(ctx)
	g.refresh(redisCtx, g.members)
	g.refreshed = time.Now()
	failures := 0 // rounds in a row that failed as a whole
	for ctx.Err() == nil {
		g.notePauses()
		if !g.readPending(ctx, redisCtx) {
			return
		}
		var err error
		switch ready, pending := g.look(); {
		case ready:
			err = g.readReady(ctx, redisCtx)
		case pending:
			continue // more own pending entries than room: read on
		default:
			err = g.wait(ctx, redisCtx)
		}
		if err == nil {
			failures = 0
			continue
		}
		if errors.Is(err, context.Canceled) {
			return
		}
		failures++
		if !sleepCtx(ctx, g.r.backoff.Delay(failures)) {
			return
		}
	}
}

// notePauses follows each stream's pause flag: a paused stream is neither
// read nor waited for; a resumed one first reads its own pending entries
// (what was let go while paused is pending for this consumer).
func (g *groupReader) notePauses() {
	for _, m := range g.members {
		p := paused(m.rt)
		switch {
		case p:
			m.paused, m.ready = true, false
		case m.paused:
			m.paused, m.cursor, m.ready = false, "0", true
		}
	}
}

// active reports whether m may be read now.
func (m *member) active(now time.Time) bool {
	return !m.paused && !now.Before(m.notBefore)
}

// look reports whether a stream may be read now with XREADGROUP >, and
// whether one is still going through its own pending entries.
func (g *groupReader) look() (ready, pending bool) {
	now := time.Now()
	for _, m := range g.members {
		if !m.active(now) {
			continue
		}
		ready = ready || m.ready && m.cursor == ""
		pending = pending || m.cursor != ""
	}
	return ready, pending
}

// readPending reads, for the streams still going through their own
// pending entries, a share each of them, as the per-stream reader does
// (reader.go readPending), with one pipeline of XPENDING for all. It
// returns false when ctx ended.
func (g *groupReader) readPending(ctx, redisCtx context.Context) bool {
	now := time.Now()
	var ms []*member
	for _, m := range g.members {
		if m.cursor != "" && m.active(now) {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return true
	}
	n := g.r.held.takeRoom(ctx, min(g.limit, g.perRead*len(ms)))
	if n == 0 {
		return false
	}
	shares := shareOut(n, len(ms))
	ms = ms[:len(shares)]
	gen := g.r.held.beginPendingRead()
	defer g.r.held.endPendingRead()
	cmds := make([]*redis.XPendingExtCmd, len(ms))
	sent := monoNow()
	_, err := g.r.c.rdb.Pipelined(redisCtx, func(pipe redis.Pipeliner) error {
		for i, m := range ms {
			if args, more := g.r.pendingArgs(m.rt, m.cursor, shares[i]); more {
				cmds[i] = pipe.XPendingExt(redisCtx, args)
			}
		}
		return nil
	})
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		g.r.held.giveRoom(n)
		g.r.report(&OpError{Op: "read", Stream: ms[0].rt.stream, Group: g.r.c.group, Err: err})
		for _, m := range ms {
			g.backOff(m)
		}
		return true
	}
	var entries []*entry
	for i, m := range ms {
		var (
			got  []*entry
			next string
			err  error
		)
		if cmds[i] != nil {
			var pending []redis.XPendingExt
			if pending, err = cmds[i].Result(); err == nil {
				got, next, err = g.r.pendingEntries(redisCtx, m.rt, pending, sent)
			}
		}
		if err != nil {
			g.failed(redisCtx, m, err)
			continue
		}
		m.failures = 0
		if next == "" {
			m.cursor, m.ready = "", true
			g.r.markDrained(m.rt)
		} else {
			m.cursor = next
		}
		entries = append(entries, got...)
	}
	g.r.held.giveRoom(n - len(entries))
	g.r.dispatch(ctx, entries, &gen)
	return true
}

// backOff leaves m alone for a backoff after a failure.
func (g *groupReader) backOff(m *member) {
	m.failures++
	m.notBefore = time.Now().Add(g.r.backoff.Delay(m.failures))
}

// failed handles a failed read of m's stream: a stream or group gone is
// created again, anything else is reported, and the stream is left alone
// for a backoff and then goes through its own pending entries again (the
// reply may have been lost with entries in it).
func (g *groupReader) failed(ctx context.Context, m *member, err error) {
	if redis.HasErrorPrefix(err, "NOGROUP") || redis.HasErrorPrefix(err, "UNBLOCKED") {
		g.vanished(ctx, m)
		return
	}
	g.r.report(&OpError{Op: "read", Stream: m.rt.stream, Group: g.r.c.group, Err: err})
	m.cursor = "0"
	g.backOff(m)
}

// vanished handles m's stream or group found gone: what is held of it is
// marked vanished, and the group is created again from the start.
func (g *groupReader) vanished(ctx context.Context, m *member) {
	g.r.markDrained(m.rt) // the group's pending list went with it
	m.cursor = ""
	g.r.markRouteVanished(m.rt)
	g.r.recreateGroup(ctx, m.rt.stream)
	m.last, m.ready, m.stale = "0-0", true, false
	g.backOff(m)
}
