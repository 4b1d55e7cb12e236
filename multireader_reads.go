package redstream

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// The group reader's reads (multireader.go): the wait for new entries of
// any of its streams, the reads of those that have some, and the look-up
// of the group's last-delivered IDs.

// wait blocks for up to the block time for new entries of the streams
// waiting for some: with room for a share of each, reading them at once
// (readAll); else in one XREAD that marks those that have some ready.
func (g *groupReader) wait(ctx, redisCtx context.Context) error {
	now := time.Now()
	block := g.r.c.cfg.block
	var waiting []*member
	for _, m := range g.members {
		switch {
		case m.paused:
		case !m.active(now):
			block = min(block, m.notBefore.Sub(now))
		case m.cursor != "":
		default:
			waiting = append(waiting, m)
		}
	}
	if len(waiting) == 0 {
		// All paused, or backing off: look again soon.
		if !sleepCtx(ctx, min(block, pauseCheck)) {
			return context.Canceled
		}
		return nil
	}
	block = max(block, time.Millisecond)
	n := g.r.held.takeRoomNow(min(g.limit, g.blockRoom, g.perRead*len(waiting)))
	if n >= len(waiting) {
		return g.readAll(redisCtx, ctx, waiting, n, block)
	}
	g.r.held.giveRoom(n)
	err := g.probe(redisCtx, waiting, block)
	if err != nil {
		g.r.report(&OpError{Op: "read", Stream: waiting[0].rt.stream, Group: g.r.c.group, Err: err})
		var rerr redis.Error
		if errors.As(err, &rerr) {
			// A refusal naming one stream (a key of another type) must
			// not stop the others: look each one up.
			g.refresh(redisCtx, waiting)
		}
		return err
	}
	g.refreshNow(redisCtx)
	return nil
}

// refreshNow looks up every stream's last-delivered ID if the last look
// is refreshEvery block times old.
func (g *groupReader) refreshNow(ctx context.Context) {
	if time.Since(g.refreshed) > refreshEvery*g.r.c.cfg.block {
		g.refresh(ctx, g.members)
		g.refreshed = time.Now()
	}
}

// readAll reads the streams of ms in one XREADGROUP > blocking up to
// block, with room n for at least one entry of each: the COUNT applies to
// each stream, so each gets an equal share. It is the shortest way from a
// new entry to its handler, one round trip, taken whenever the room
// allows it.
func (g *groupReader) readAll(redisCtx, ctx context.Context, ms []*member, n int, block time.Duration) error {
	count := n / len(ms)
	g.r.held.giveRoom(n - count*len(ms))
	n = count * len(ms)
	keys := make([]string, 0, 2*len(ms))
	for _, m := range ms {
		keys = append(keys, m.rt.stream)
	}
	for range ms {
		keys = append(keys, ">")
	}
	sent := monoNow()
	got, err := xreadGroup(redisCtx, g.r.c.rdb, &redis.XReadGroupArgs{
		Group: g.r.c.group, Consumer: g.r.c.cfg.name, Streams: keys, Count: int64(count), Block: block,
	})
	if errors.Is(err, redis.Nil) {
		g.r.held.giveRoom(n)
		g.refreshNow(redisCtx)
		return nil
	}
	if err != nil {
		g.r.held.giveRoom(n)
		if redis.HasErrorPrefix(err, "NOGROUP") || redis.HasErrorPrefix(err, "UNBLOCKED") {
			// One of the streams or its group is gone: find which.
			g.refresh(redisCtx, ms)
			return nil
		}
		g.r.report(&OpError{Op: "read", Stream: ms[0].rt.stream, Group: g.r.c.group, Err: err})
		// The reply may have been lost with entries in it.
		for _, m := range ms {
			m.cursor = "0"
		}
		if isTimeout(err) {
			g.limit = max(1, g.limit/2)
		}
		var rerr redis.Error
		if errors.As(err, &rerr) {
			g.refresh(redisCtx, ms)
		}
		return err
	}
	g.limit = min(g.r.c.cfg.maxInFlight, g.limit*2)
	var entries []*entry
	for _, s := range got {
		for _, m := range ms {
			if m.rt.stream != s.Stream {
				continue
			}
			for _, msg := range s.Messages {
				entries = append(entries, m.rt.newEntry(msg.ID, msg.Values, 1))
				m.last = msg.ID
			}
			m.failures = 0
			m.ready = len(s.Messages) == count
		}
	}
	g.r.held.giveRoom(n - len(entries))
	stampLeases(entries, sent)
	g.r.dispatch(ctx, entries, nil)
	return nil
}

// probe runs one XREAD COUNT 1 from the last-delivered IDs of ms,
// blocking up to block, and marks the streams that have entries ready.
func (g *groupReader) probe(ctx context.Context, ms []*member, block time.Duration) error {
	streams, err := g.r.c.rdb.XRead(ctx, probeArgs(ms, block)).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return err
	}
	g.markWoken(ms, streams)
	return nil
}

// probeArgs is an XREAD COUNT 1 from the last-delivered IDs of ms; a
// block of 0 or less does not block.
func probeArgs(ms []*member, block time.Duration) *redis.XReadArgs {
	keys := make([]string, 0, 2*len(ms))
	for _, m := range ms {
		keys = append(keys, m.rt.stream)
	}
	for _, m := range ms {
		keys = append(keys, m.last)
	}
	if block <= 0 {
		block = -1
	}
	return &redis.XReadArgs{Streams: keys, Count: 1, Block: block}
}

// markWoken marks the members of ms whose stream has entries in streams.
func (g *groupReader) markWoken(ms []*member, streams []redis.XStream) {
	for _, s := range streams {
		if len(s.Messages) == 0 {
			continue
		}
		for _, m := range ms {
			if m.rt.stream == s.Stream {
				m.ready, m.woken = true, true
			}
		}
	}
}

// refresh looks up the group's last-delivered ID of each of ms, in one
// pipeline of XINFO GROUPS; a stream found without the group (or gone)
// is handled as NOGROUP.
func (g *groupReader) refresh(ctx context.Context, ms []*member) {
	cmds := make([]*redis.XInfoGroupsCmd, len(ms))
	_, err := g.r.c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, m := range ms {
			cmds[i] = pipe.XInfoGroups(ctx, m.rt.stream)
		}
		return nil
	})
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		g.r.report(&OpError{Op: "read", Stream: ms[0].rt.stream, Group: g.r.c.group, Err: err})
		return // unknown: keep what is known
	}
	for i, m := range ms {
		groups, err := cmds[i].Result()
		if err != nil && !redis.HasErrorPrefix(err, "ERR no such key") {
			g.failed(ctx, m, err)
			continue
		}
		found := false
		for _, gr := range groups {
			if gr.Name == g.r.c.group {
				found = true
				m.last, m.stale = gr.LastDeliveredID, false
			}
		}
		if !found && !m.paused {
			g.vanished(ctx, m)
		}
	}
}

// readReady reads the ready streams in one pipeline of non-blocking
// XREADGROUP >, sharing the room it takes among them, with an XREAD
// asking whether the other streams have entries.
func (g *groupReader) readReady(ctx, redisCtx context.Context) error {
	now := time.Now()
	var ready, others []*member
	var allow []int // of each ready stream: the most it may read now
	// carried: a stream is ready from the last round, not woken; capped:
	// one holds all it may.
	carried, capped := false, false
	for i := range g.members {
		m := g.members[(g.next+i)%len(g.members)]
		switch {
		case m.cursor != "" || !m.active(now):
		case m.ready:
			a := min(g.perRead, g.streamCap-g.r.held.heldOf(m.rt))
			if a <= 0 {
				capped = true
				continue
			}
			ready = append(ready, m)
			allow = append(allow, a)
			carried = carried || !m.woken
		default:
			others = append(others, m)
		}
	}
	if len(ready) == 0 {
		return g.waitFreed(ctx, redisCtx, others)
	}
	if !carried && !capped {
		// Every ready stream was just woken by an XREAD over the others
		// too: asking again now would find what the next wait finds.
		others = nil
	}
	want := 0
	for _, a := range allow {
		want += a
	}
	n := g.r.held.takeRoom(ctx, min(g.limit, want))
	if n == 0 {
		return context.Canceled
	}
	shares := shareOut(n, len(ready))
	ready = ready[:len(shares)]
	for i := range shares {
		shares[i] = min(shares[i], allow[i]) // what is left is given back
	}
	// The stream after the last one served goes first next round: with
	// less room than ready streams, those left out now are served then.
	g.next = (g.indexOf(ready[len(ready)-1]) + 1) % len(g.members)
	reads := make([]*redis.XStreamSliceCmd, len(ready))
	var probe *redis.XStreamSliceCmd
	group, name := g.r.c.group, g.r.c.cfg.name
	sent := monoNow()
	_, err := g.r.c.rdb.Pipelined(redisCtx, func(pipe redis.Pipeliner) error {
		for i, m := range ready {
			read := xreadGroupCmd(redisCtx, g.r.c.rdb, &redis.XReadGroupArgs{
				Group: group, Consumer: name, Streams: []string{m.rt.stream, ">"}, Count: int64(shares[i]), Block: -1,
			})
			reads[i] = read.XStreamSliceCmd
			_ = pipe.Process(redisCtx, read)
		}
		if len(others) > 0 {
			probe = pipe.XRead(redisCtx, probeArgs(others, 0))
		}
		return nil
	})
	var rerr redis.Error
	if err != nil && !errors.Is(err, redis.Nil) && !errors.As(err, &rerr) {
		// The round failed as a whole (a timeout, a dropped connection):
		// Redis may have delivered entries whose reply was lost, so every
		// stream read goes through its own pending entries again.
		g.r.held.giveRoom(n)
		g.r.report(&OpError{Op: "read", Stream: ready[0].rt.stream, Group: group, Err: err})
		for _, m := range ready {
			m.cursor = "0"
		}
		if isTimeout(err) {
			g.limit = max(1, g.limit/2)
		}
		return err
	}
	g.limit = min(g.r.c.cfg.maxInFlight, g.limit*2)
	var entries []*entry
	for i, m := range ready {
		got, err := reads[i].Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			g.failed(redisCtx, m, err)
			continue
		}
		m.failures = 0
		read := 0
		for _, s := range got {
			for _, msg := range s.Messages {
				entries = append(entries, m.rt.newEntry(msg.ID, msg.Values, 1))
				m.last = msg.ID
				read++
			}
		}
		if read == 0 && m.woken {
			m.stale = true
		}
		m.ready, m.woken = read == shares[i], false
	}
	if probe != nil {
		if got, err := probe.Result(); err == nil {
			g.markWoken(others, got)
		}
	}
	g.r.held.giveRoom(n - len(entries))
	stampLeases(entries, sent)
	g.r.dispatch(ctx, entries, nil)
	g.refreshStale(redisCtx)
	return nil
}

// waitFreed waits, when every ready stream holds all it may (streamCap),
// for an entry to be finished, asking first whether the other streams
// have entries: a stream with a backlog leaves the rest of the room, and
// the workers' queue, to the others, as a per-stream reader's share of
// the room did.
func (g *groupReader) waitFreed(ctx, redisCtx context.Context, others []*member) error {
	if len(others) > 0 {
		if err := g.probe(redisCtx, others, 0); err != nil {
			return err
		}
		for _, m := range others {
			if m.ready {
				return nil
			}
		}
	}
	t := time.NewTimer(pauseCheck)
	defer t.Stop()
	select {
	case <-g.r.held.freed:
	case <-t.C:
	case <-ctx.Done():
		return context.Canceled
	}
	return nil
}

// refreshStale looks up the last-delivered IDs that fell behind.
func (g *groupReader) refreshStale(ctx context.Context) {
	var stale []*member
	for _, m := range g.members {
		if m.stale {
			stale = append(stale, m)
		}
	}
	if len(stale) > 0 {
		g.refresh(ctx, stale)
	}
}

func (g *groupReader) indexOf(m *member) int {
	for i, o := range g.members {
		if o == m {
			return i
		}
	}
	return 0
}

// shareOut splits n entries of room among k streams as evenly as it can,
// the larger shares first; with less room than streams, the first n get
// one each.
func shareOut(n, k int) []int {
	if n < k {
		k = n
	}
	shares := make([]int, k)
	for i := range shares {
		shares[i] = n / k
		if i < n%k {
			shares[i]++
		}
	}
	return shares
}
