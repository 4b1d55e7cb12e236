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

// batcher coalesces concurrent XADDs of one producer into pipelines. Its
// sender goroutines (up to maxSenders) take everything queued, up to
// maxBatch, into one round trip; callers arriving while every sender is
// in a round trip queue, and the first sender back takes them all into
// the next. A lone caller is sent at once (no added latency when idle).
// Each caller gets its own ID or error.
//
// The senders live on while there is work, and end after senderIdle
// without any: a caller only queues and waits for its result, so one
// round trip costs no goroutine start and no hand-over of the lead, and
// a caller whose context ends can leave at once.
type batcher struct {
	rdb    redis.UniversalClient
	stream string
	// streamArg is stream in an interface, for the XADDs' arguments.
	streamArg any
	// maxSenders bounds the round trips in flight. Two keep Redis busy
	// while the callers of one round trip are woken and encode their next
	// entries; more split the same callers over more, smaller round trips.
	// One keeps the order of the calls (asynchronous publishes).
	maxSenders int
	// minReplicas above 0 sends a WAIT after the XADDs ([WithMinReplicas]).
	minReplicas    int
	replicaTimeout time.Duration

	// kick tells a sender waiting for work that the queue has some. It
	// holds at most one signal; a stale one costs a sender a look at the
	// queue.
	kick chan struct{}

	mu      sync.Mutex
	queue   []*xaddReq
	senders int // sender goroutines running
	idle    int // senders waiting for work
}

// syncSenders is the maxSenders of the batcher of synchronous publishes.
// Measured on two cores with 8 publishing goroutines (one session, load
// about 4): 1 sender carried 7.3 XADDs per round trip, 2 carried 3.9, 3
// carried 2.6 and 4 carried 1.8, at 8.2, 7.0, 9.0 and 12.5 to 16 µs of
// client CPU per message; 1 and 2 published about as fast, 2 with Redis
// busy while the callers of the other round trip are woken, which
// serves a slower or busier Redis better.
const syncSenders = 2

// xaddReq is one caller's XADD waiting in a batch.
type xaddReq struct {
	ctx  context.Context
	args *redis.XAddArgs
	id   string
	err  error
	// wake, buffered, gets a value once the result is in. A caller that
	// left (its context ended) leaves the request to the garbage
	// collector, so the sender never blocks on it and never writes into
	// a request reused by another call.
	wake chan struct{}
	// done, set for an asynchronous publish, takes the result instead: no
	// caller waits on wake.
	done func(id string, err error)
}

// maxBatch caps the XADDs of one round trip, so that a long queue of
// asynchronous publishes goes out in several pipelines, each answered
// sooner.
const maxBatch = 512

var xaddReqPool = sync.Pool{New: func() any { return &xaddReq{wake: make(chan struct{}, 1)} }}

// newBatcher returns a batcher of XADDs to stream with up to maxSenders
// round trips in flight.
func newBatcher(rdb redis.UniversalClient, stream string, maxSenders int, cfg producerConfig) *batcher {
	return &batcher{rdb: rdb, stream: stream, streamArg: stream, maxSenders: maxSenders, minReplicas: cfg.minReplicas, replicaTimeout: cfg.replicaTimeout, kick: make(chan struct{}, 1)}
}

// recycle puts a request back into the pool, once no sender will touch it.
func recycle(req *xaddReq) {
	*req = xaddReq{wake: req.wake}
	xaddReqPool.Put(req)
}

// add sends one XADD, coalesced with those of concurrent callers, and
// returns its ID. A caller whose ctx ends while it queues is not sent;
// one whose round trip is in flight leaves it with an error wrapping
// ErrUncertain.
func (b *batcher) add(ctx context.Context, args *redis.XAddArgs) (string, error) {
	req := xaddReqPool.Get().(*xaddReq)
	req.ctx, req.args = ctx, args
	b.enqueue(req)
	select {
	case <-req.wake:
	case <-ctx.Done():
		if b.unqueue(req) {
			recycle(req)
			return "", ctx.Err()
		}
		// Already in a round trip: it goes on without this caller, whose
		// XADD may or may not be written.
		return "", &uncertainError{err: ctx.Err()}
	}
	id, err := req.id, req.err
	recycle(req)
	return id, err
}

// addAsync queues one XADD and returns; done gets its ID or error once its
// round trip is over, on the sender goroutine. [Producer.Flush] waits for
// the results.
func (b *batcher) addAsync(ctx context.Context, args *redis.XAddArgs, done func(id string, err error)) {
	req := xaddReqPool.Get().(*xaddReq)
	req.ctx, req.args, req.done = ctx, args, done
	b.enqueue(req)
}

// enqueue queues req and makes sure a sender will take it: one waiting
// for work is kicked, else one is started if fewer than maxSenders run;
// else every sender is in a round trip and the first back takes it.
func (b *batcher) enqueue(req *xaddReq) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queue = append(b.queue, req)
	switch {
	case b.idle > 0:
		select {
		case b.kick <- struct{}{}:
		default: // a signal is there already, and a waiting sender will see it
		}
	case b.senders < b.maxSenders:
		b.senders++
		go b.sender()
	}
}

// unqueue takes req out of the queue if no sender has taken it yet.
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

// senderIdle is how long a sender goroutine waits for work before it
// ends. Senders are kept rather than started per round trip: a new
// goroutine grows its stack again through go-redis's calls, which cost a
// quarter of the publish path when measured.
const senderIdle = 100 * time.Millisecond

// sender sends what is queued, one round trip at a time, and hands each
// request its result, until no work comes for senderIdle.
func (b *batcher) sender() {
	idle := time.NewTimer(senderIdle)
	defer idle.Stop()
	var batch []*xaddReq
	for {
		batch = b.take(batch[:0], idle)
		if len(batch) == 0 {
			return
		}
		b.send(batch)
		for i, r := range batch {
			if r.done != nil {
				done, id, err := r.done, r.id, r.err
				recycle(r)
				done(id, err)
			} else {
				r.wake <- struct{}{}
			}
			batch[i] = nil
		}
		if len(batch) > 1 {
			// The callers just woken publish concurrently and are about to
			// queue again: let them, so that the next round trip takes
			// them together rather than one or two at a time.
			runtime.Gosched()
		}
	}
}

// take moves up to maxBatch queued requests into batch, in call order,
// waiting up to senderIdle for some to come; it returns batch empty when
// none came, having ended the sender's count.
func (b *batcher) take(batch []*xaddReq, idle *time.Timer) []*xaddReq {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.queue) == 0 {
		b.idle++
		b.mu.Unlock()
		idle.Reset(senderIdle)
		timedOut := false
		select {
		case <-b.kick:
			idle.Stop()
		case <-idle.C:
			timedOut = true
		}
		b.mu.Lock()
		b.idle--
		if timedOut && len(b.queue) == 0 {
			b.senders--
			return batch
		}
	}
	n := min(len(b.queue), maxBatch)
	batch = append(batch, b.queue[:n]...)
	b.queue = slices.Delete(b.queue, 0, n)
	return batch
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
				cmd := xaddCmdTo(ctx, r.args, b.streamArg)
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
			cmd := xaddCmdTo(ctx, r.args, b.streamArg)
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
			cmd := xaddCmdTo(ctx, a, b.streamArg)
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
