package redstream

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher coalesces concurrent XADDs of one producer into pipelines. A
// caller that finds fewer than maxLeaders round trips in flight sends at
// once, with whatever has queued (no added latency when idle); callers
// arriving while the round trips are busy queue, and when one ends, the
// first of them leads the next round trip with all those queued. Each
// caller gets its own ID or error.
type batcher struct {
	rdb    redis.UniversalClient
	stream string
	// maxLeaders bounds the round trips in flight. Several use several
	// connections, which keeps Redis busy while the callers of one round
	// trip are woken and encode their next entries; one keeps the order of
	// the calls (asynchronous publishes).
	maxLeaders int
	// minReplicas above 0 sends a WAIT after the XADDs ([WithMinReplicas]).
	minReplicas    int
	replicaTimeout time.Duration

	// sendq hands a round trip to an idle sender goroutine (leadFor).
	sendq chan *xaddReq

	mu      sync.Mutex
	queue   []*xaddReq
	leaders int // round trips in flight, or handed to a queued caller
	// lastBatch is the size of the last round trip: above 1, callers are
	// publishing concurrently, and a new leader first lets them queue.
	lastBatch int
}

// syncLeaders is the maxLeaders of the batcher of synchronous publishes:
// measured on two cores with 8 publishing goroutines, 1 reached 0.6 of a
// plain XADD per call loop (one connection idles Redis between round
// trips), 4 reached 1.0, and 8 no more.
const syncLeaders = 4

// xaddReq is one caller's XADD waiting in a batch.
type xaddReq struct {
	ctx  context.Context
	args *redis.XAddArgs
	id   string
	err  error
	// wake tells a queued caller either that its result is ready (false) or
	// that it leads the next round trip (true).
	wake chan bool
	// done, set for an asynchronous publish, takes the result instead: no
	// caller waits on wake, and a goroutine is started to lead for it.
	done func(id string, err error)
}

// maxBatch caps the XADDs of one round trip, so that a long queue of
// asynchronous publishes goes out in several pipelines, each answered
// sooner.
const maxBatch = 512

var xaddReqPool = sync.Pool{New: func() any { return &xaddReq{wake: make(chan bool, 1)} }}

// add sends one XADD, coalesced with those of concurrent callers, and
// returns its ID.
func (b *batcher) add(ctx context.Context, args *redis.XAddArgs) (string, error) {
	req := xaddReqPool.Get().(*xaddReq)
	req.ctx, req.args = ctx, args
	lead, concurrent := b.enqueue(req)
	if lead && concurrent {
		// The callers of the last round trip were just woken and are about
		// to publish again: let them queue, so this round trip takes them
		// too instead of going out alone.
		runtime.Gosched()
	}
	if !lead {
		select {
		case lead = <-req.wake:
		case <-ctx.Done():
			if b.unqueue(req) {
				*req = xaddReq{wake: req.wake}
				xaddReqPool.Put(req)
				return "", ctx.Err()
			}
			// Already in a round trip, or handed the lead: it goes on
			// without this caller, whose XADD may or may not be written.
			go b.abandon(req)
			return "", &uncertainError{err: ctx.Err()}
		}
	}
	if lead && !b.leadFor(ctx, req) {
		return "", &uncertainError{err: ctx.Err()}
	}
	id, err := req.id, req.err
	*req = xaddReq{wake: req.wake}
	xaddReqPool.Put(req)
	return id, err
}

// leadFor leads req's round trip for a caller that waits with ctx, and
// reports whether it ended before ctx did. A ctx that can end gets the
// round trip run by a sender goroutine, so that the caller can leave when
// ctx ends (abandon then sees the round trip through).
func (b *batcher) leadFor(ctx context.Context, req *xaddReq) bool {
	if ctx.Done() == nil {
		b.lead(req)
		return true
	}
	select {
	case b.sendq <- req: // an idle sender takes it
	default:
		go b.sender(req)
	}
	select {
	case <-req.wake:
		return true
	case <-ctx.Done():
		go b.abandon(req)
		return false
	}
}

// senderIdle is how long a sender goroutine waits for another round trip
// before it ends. Senders are reused rather than started per round trip:
// a new goroutine grows its stack again through go-redis's calls, which
// cost a quarter of the publish path when measured.
const senderIdle = 100 * time.Millisecond

// sender leads round trips handed to it by leadFor, waking each caller
// when its round trip is over, until none comes for senderIdle. There are
// no more senders than round trips in flight at once (maxLeaders), plus
// those about to end.
func (b *batcher) sender(req *xaddReq) {
	idle := time.NewTimer(senderIdle)
	defer idle.Stop()
	for {
		b.lead(req)
		req.wake <- false
		idle.Reset(senderIdle)
		select {
		case req = <-b.sendq:
		case <-idle.C:
			return
		}
	}
}

// abandon sees through the round trip of a caller that stopped waiting:
// it leads if handed the lead (send skips the caller's XADD, its context
// having ended), then recycles req.
func (b *batcher) abandon(req *xaddReq) {
	if <-req.wake {
		b.lead(req)
	}
	*req = xaddReq{wake: req.wake}
	xaddReqPool.Put(req)
}

// addAsync queues one XADD and returns; done gets its ID or error once its
// round trip is over, on the goroutine that led that round trip. A leader
// goroutine ends once the queue is empty; [Producer.Flush] waits for the
// results.
func (b *batcher) addAsync(ctx context.Context, args *redis.XAddArgs, done func(id string, err error)) {
	req := xaddReqPool.Get().(*xaddReq)
	req.ctx, req.args, req.done = ctx, args, done
	if lead, _ := b.enqueue(req); lead {
		go b.lead(req)
	}
}

// enqueue makes req lead a round trip if fewer than maxLeaders are in
// flight, else queues it; concurrent tells whether the last round trip
// carried more than one entry.
func (b *batcher) enqueue(req *xaddReq) (lead, concurrent bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lead = b.leaders < b.maxLeaders
	if lead {
		b.leaders++
	} else {
		b.queue = append(b.queue, req)
	}
	return lead, b.lastBatch > 1
}

// unqueue takes req out of the queue if no leader has taken it yet.
func (b *batcher) unqueue(req *xaddReq) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.Index(b.queue, req)
	if i < 0 {
		return false
	}
	b.queue = slices.Delete(b.queue, i, i+1)
	return true
}

// lead sends self's XADD with what is queued (up to maxBatch) in one round
// trip, then hands the lead to the first request that queued meanwhile, if
// any: a waiting caller leads itself, an asynchronous publish gets a
// goroutine to lead for it.
func (b *batcher) lead(self *xaddReq) {
	b.mu.Lock()
	n := min(len(b.queue), maxBatch-1)
	// self queued (or arrived) before those behind it: keep call order.
	batch := make([]*xaddReq, 0, n+1)
	batch = append(batch, self)
	batch = append(batch, b.queue[:n]...)
	b.queue = slices.Delete(b.queue, 0, n)
	b.lastBatch = n + 1
	b.mu.Unlock()

	b.send(batch)
	for _, r := range batch {
		switch {
		case r.done != nil:
			done, id, err := r.done, r.id, r.err
			*r = xaddReq{wake: r.wake}
			xaddReqPool.Put(r)
			done(id, err)
		case r != self:
			r.wake <- false
		}
	}

	b.mu.Lock()
	var next *xaddReq
	if len(b.queue) > 0 {
		// Taken out of the queue, so that no other leader picks it too.
		next = b.queue[0]
		b.queue = b.queue[1:]
	} else {
		b.leaders--
	}
	b.mu.Unlock()
	switch {
	case next == nil:
	case next.done != nil:
		go b.lead(next)
	default:
		next.wake <- true
	}
}

// send runs the batch's XADDs, skipping callers whose context has ended
// while they queued. The round trip itself is not cut short by one
// caller's context: the others are waiting on it.
func (b *batcher) send(batch []*xaddReq) {
	live := 0
	for _, r := range batch {
		if r.err = r.ctx.Err(); r.err == nil {
			live++
		}
	}
	switch {
	case live == 0:
		return
	case live == 1 && b.minReplicas == 0:
		for _, r := range batch {
			if r.err == nil {
				ctx := context.WithoutCancel(r.ctx)
				cmd := xaddCmd(ctx, r.args)
				_ = b.rdb.Process(ctx, cmd)
				r.id, r.err = cmd.Result()
			}
		}
		return
	}
	ctx := context.WithoutCancel(batch[0].ctx)
	if b.minReplicas > 0 {
		args := make([]*redis.XAddArgs, 0, live)
		for _, r := range batch {
			if r.err == nil {
				args = append(args, r.args)
			}
		}
		ids, errs := make([]string, len(args)), make([]error, len(args))
		b.exec(ctx, args, ids, errs)
		j := 0
		for _, r := range batch {
			if r.err == nil {
				r.id, r.err = ids[j], errs[j]
				j++
			}
		}
		return
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(batch))
	for i, r := range batch {
		if r.err == nil {
			cmd := xaddCmd(ctx, r.args)
			_ = pipe.Process(ctx, cmd)
			cmds[i] = cmd.StringCmd
		}
	}
	_, _ = pipe.Exec(ctx)
	for i, r := range batch {
		if cmds[i] != nil {
			r.id, r.err = cmds[i].Result()
		}
	}
}

// redirectRetries bounds how often exec retries writes that a cluster node
// refused because its slot moved (after a failover, before the client's
// view of the cluster caught up).
const redirectRetries = 5

// exec sends args (all to b.stream) and a WAIT for b.minReplicas in one
// pipeline, on one connection to the stream's primary, and fills ids and
// errs. A write that the replicas did not confirm in time gets its ID and a
// *ReplicationError. go-redis reads the pipeline with the client's read
// timeout, and a read that times out leaves the writes' outcome unknown
// (they are sent once): NewProducer keeps the WAIT's timeout under half of
// it (checkReplicaTimeout).
func (b *batcher) exec(ctx context.Context, args []*redis.XAddArgs, ids []string, errs []error) {
	for attempt := 0; ; attempt++ {
		node, err := nodeFor(ctx, b.rdb, b.stream)
		if err != nil {
			for i := range errs {
				errs[i] = err
			}
			return
		}
		pipe := node.Pipeline()
		cmds := make([]*redis.StringCmd, len(args))
		for i, a := range args {
			cmd := xaddCmd(ctx, a)
			_ = pipe.Process(ctx, cmd)
			cmds[i] = cmd.StringCmd
		}
		wait := redis.NewIntCmd(ctx, "wait", b.minReplicas, b.replicaTimeout.Milliseconds())
		_ = pipe.Process(ctx, wait)
		_, _ = pipe.Exec(ctx)
		// All the writes go to one slot: when the node refused them all
		// with a redirect, nothing was written and sending again is safe.
		if attempt < redirectRetries && allRedirected(cmds) {
			if cc, ok := b.rdb.(*redis.ClusterClient); ok {
				cc.ReloadState(ctx)
			}
			if !sleepCtx(ctx, time.Duration(20<<attempt)*time.Millisecond) {
				return
			}
			continue
		}
		replicas, waitErr := wait.Result()
		for i, cmd := range cmds {
			ids[i], errs[i] = cmd.Result()
			if errs[i] == nil && (waitErr != nil || replicas < int64(b.minReplicas)) {
				errs[i] = &ReplicationError{Stream: b.stream, ID: ids[i], Want: b.minReplicas, Replicas: int(replicas), Err: waitErr}
			}
		}
		return
	}
}

// checkReplicaTimeout refuses a WAIT timeout that could outlast the read
// timeout the client reads the pipeline with: the read would fail and leave
// the XADDs' outcome unknown.
func checkReplicaTimeout(rdb redis.UniversalClient, timeout time.Duration) error {
	var readTimeout time.Duration
	switch c := rdb.(type) {
	case *redis.Client:
		readTimeout = c.Options().ReadTimeout
	case *redis.ClusterClient:
		readTimeout = c.Options().ReadTimeout
	default:
		// A pipeline of a ring or an auto-pipeliner may send the WAIT to
		// another node than the writes.
		return fmt.Errorf("%w: WithMinReplicas needs a *redis.Client or *redis.ClusterClient, not %T", ErrInvalidOption, rdb)
	}
	if readTimeout > 0 && timeout > readTimeout/2 {
		return fmt.Errorf("%w: WithMinReplicas timeout %v is more than half the client's ReadTimeout %v, which the WAIT is read with", ErrInvalidOption, timeout, readTimeout)
	}
	return nil
}

func allRedirected(cmds []*redis.StringCmd) bool {
	for _, cmd := range cmds {
		if !isRedirect(cmd.Err()) {
			return false
		}
	}
	return len(cmds) > 0
}

// isRedirect reports whether err is a cluster node's refusal to serve a
// slot it does not own (now or yet), which leaves the command unexecuted.
func isRedirect(err error) bool {
	for _, prefix := range []string{"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}
