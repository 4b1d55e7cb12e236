package redstream

import (
	"context"
	"sync"
)

// flushTracker tells [Producer.Flush] when the asynchronous publishes
// queued before it have their results, without holding up the publishes
// queued after it. Publishes are counted in epochs: each Flush closes the
// current epoch and waits until it and every earlier one has no publish
// left, or until its context ends. Results may arrive out of call order
// (a [WithID] conflict takes another round trip), which epochs allow.
type flushTracker struct {
	mu      sync.Mutex
	current *flushEpoch
	// closed are the epochs closed by a Flush that still have publishes
	// waiting for their results, oldest first.
	closed []*flushEpoch
}

// flushEpoch counts the publishes queued between two Flush calls.
type flushEpoch struct {
	waiting int
	closed  bool
	done    chan struct{} // closed once the epoch is closed and waiting is 0
}

// queued counts one publish in the current epoch and returns the epoch,
// for answered.
func (f *flushTracker) queued() *flushEpoch {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.current == nil {
		f.current = &flushEpoch{done: make(chan struct{})}
	}
	f.current.waiting++
	return f.current
}

// answered counts a publish of e as having its result.
func (f *flushTracker) answered(e *flushEpoch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e.waiting--
	if e.waiting == 0 && e.closed {
		close(e.done)
	}
}

// wait closes the current epoch and waits until every publish queued
// before it has its result, or ctx ends.
func (f *flushTracker) wait(ctx context.Context) error {
	f.mu.Lock()
	if e := f.current; e != nil {
		f.current = nil
		e.closed = true
		if e.waiting == 0 {
			close(e.done)
		} else {
			f.closed = append(f.closed, e)
		}
	}
	// Drop the epochs that are done; wait for the others.
	open := f.closed[:0]
	for _, e := range f.closed {
		select {
		case <-e.done:
		default:
			open = append(open, e)
		}
	}
	clear(f.closed[len(open):])
	f.closed = open
	waitFor := append([]*flushEpoch(nil), open...)
	f.mu.Unlock()
	for _, e := range waitFor {
		select {
		case <-e.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
