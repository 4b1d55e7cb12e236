package redstream

import (
	"sync"
	"time"
)

// The gatherer of a batch route (HandleBatch): it owns the batch being
// gathered and its maxWait timer (a time.AfterFunc, its only goroutine),
// and hands full or due batches to the work channel as one unit of work.
// Dispatch adds to it through runner.enqueue; heldSet.drain closes it
// through runner.closeBatches.

// gatherer gathers a batch route's messages into batches. Its methods are
// safe for concurrent use.
type gatherer struct {
	route   *route
	maxSize int
	maxWait time.Duration
	run     batchRun

	mu  sync.Mutex
	buf []*entry
	// gen numbers the batch being gathered, so that the timer of a batch
	// handed over already does nothing.
	gen    uint64
	timer  *time.Timer
	out    chan<- *entry
	closed bool
}

// add buffers e, handing the batch to out when it is full. After close, e
// is not buffered: it stays held, unfinished, for the hand-off. out never
// blocks: it has room for every message the consumer may hold.
func (b *gatherer) add(e *entry, out chan<- *entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.out = out
	b.buf = append(b.buf, e)
	if len(b.buf) >= b.maxSize {
		b.sendLocked()
		return
	}
	if len(b.buf) == 1 {
		gen := b.gen
		b.timer = time.AfterFunc(b.maxWait, func() { b.due(gen) })
	}
}

// due hands batch gen over, maxWait after its first message, unless it was
// handed over already.
func (b *gatherer) due(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed && gen == b.gen && len(b.buf) > 0 {
		b.sendLocked()
	}
}

func (b *gatherer) sendLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.gen++
	b.out <- &entry{route: b.route, batch: b.buf}
	b.buf = nil
}

// close hands the batch being gathered over at once and buffers nothing
// more: the work channel closes next.
func (b *gatherer) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) > 0 {
		b.sendLocked()
	}
	b.closed = true
}

// enqueue hands e to the workers: through its route's gatherer on a batch
// route, directly otherwise.
func (r *runner) enqueue(e *entry) {
	if b := e.route.batch; b != nil {
		b.add(e, r.work)
		return
	}
	r.work <- e
}

// closeBatches hands every partial batch to the workers; called as the
// work channel closes, under the heldSet's lock (heldSet.drain), so no key
// turn passes a message to a gatherer after it.
func (r *runner) closeBatches() {
	for _, rt := range r.routes {
		if rt.batch != nil {
			rt.batch.close()
		}
	}
}
