package redstream

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// batcher coalesces concurrent XADDs of one producer into pipelines. The
// first caller to find no round trip in flight sends its XADD at once (no
// added latency when idle); callers arriving meanwhile queue, and when the
// round trip ends, the first of them leads the next one with all the queued
// XADDs. Each caller gets its own ID or error.
type batcher struct {
	rdb redis.UniversalClient

	mu       sync.Mutex
	queue    []*xaddReq
	spare    []*xaddReq // the previous queue's backing array, reused
	flushing bool       // a leader is sending; new callers queue
}

// xaddReq is one caller's XADD waiting in a batch.
type xaddReq struct {
	ctx  context.Context
	args *redis.XAddArgs
	id   string
	err  error
	// wake tells a queued caller either that its result is ready (false) or
	// that it leads the next round trip (true).
	wake chan bool
}

var xaddReqPool = sync.Pool{New: func() any { return &xaddReq{wake: make(chan bool, 1)} }}

// add sends one XADD, coalesced with those of concurrent callers, and
// returns its ID.
func (b *batcher) add(ctx context.Context, args *redis.XAddArgs) (string, error) {
	req := xaddReqPool.Get().(*xaddReq)
	req.ctx, req.args = ctx, args
	b.mu.Lock()
	b.queue = append(b.queue, req)
	lead := !b.flushing
	b.flushing = true
	b.mu.Unlock()
	if !lead {
		lead = <-req.wake
	}
	if lead {
		b.lead()
	}
	id, err := req.id, req.err
	*req = xaddReq{wake: req.wake}
	xaddReqPool.Put(req)
	return id, err
}

// lead sends everything queued in one round trip, then hands the lead to
// the first caller that queued meanwhile, or ends the flushing.
func (b *batcher) lead() {
	b.mu.Lock()
	batch := b.queue
	b.queue = b.spare[:0]
	b.mu.Unlock()

	b.send(batch)
	// batch[0] is this leader: it reads its own result on return.
	for _, r := range batch[1:] {
		r.wake <- false
	}
	clear(batch)

	b.mu.Lock()
	b.spare = batch
	var next *xaddReq
	if len(b.queue) > 0 {
		next = b.queue[0]
	} else {
		b.flushing = false
	}
	b.mu.Unlock()
	if next != nil {
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
	case live == 1:
		for _, r := range batch {
			if r.err == nil {
				r.id, r.err = b.rdb.XAdd(context.WithoutCancel(r.ctx), r.args).Result()
			}
		}
		return
	}
	ctx := context.WithoutCancel(batch[0].ctx)
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(batch))
	for i, r := range batch {
		if r.err == nil {
			cmds[i] = pipe.XAdd(ctx, r.args)
		}
	}
	_, _ = pipe.Exec(ctx)
	for i, r := range batch {
		if cmds[i] != nil {
			r.id, r.err = cmds[i].Result()
		}
	}
}
