package redstream

import (
	"context"
	"slices"
)

// What the heldSet knows of each held message's lease: whether its
// handler runs, and what the lease keeper (leases.go) learnt from Redis:
// lost to another consumer, trimmed, vanished, or renewed. These methods
// read and set the entry fields the heldSet's mutex guards (held.go).

// start records that e's handler runs with cancel, and reports whether e
// was lost to another consumer meanwhile (then the handler must not run).
func (h *heldSet) start(e *entry, cancel context.CancelFunc) (lost bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e.cancel = cancel
	return e.lost
}

// finish records that e's handler returned, and reports what Redis said of
// e meanwhile.
func (h *heldSet) finish(e *entry) (lost, vanished bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e.cancel = nil
	return e.lost, e.vanished
}

// markLost records that the held id of rt is pending for another consumer
// now, and cancels its handler if it runs. An ID not held (acknowledged
// since) is ignored.
func (h *heldSet) markLost(rt *route, id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.entries[heldKey{rt, id}]
	if !ok || e.lost {
		return
	}
	e.lost = true
	if e.cancel != nil {
		e.cancel()
	}
}

// markVanished records that the held id of rt is pending for no one, and
// reports whether that is news. An entry lost already, or whose
// acknowledgement is queued (it stopped being pending because it was
// handled), is not marked.
func (h *heldSet) markVanished(rt *route, id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.entries[heldKey{rt, id}]
	if !ok || e.vanished || e.lost || e.settled.Load() {
		return false
	}
	e.vanished = true
	return true
}

// renewed records that the renewal of the held ids of rt sent at sent
// (monoNow) renewed the leases of all but those res lists.
func (h *heldSet) renewed(rt *route, ids []string, res leaseResult, sent int64) {
	notRenewed := slices.Concat(res.lost, res.deleted, res.vanished, res.unrecorded)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		if e, ok := h.entries[heldKey{rt, id}]; ok && !slices.Contains(notRenewed, id) {
			e.leasedAt.Store(max(e.leasedAt.Load(), sent))
		}
	}
}

// markTrimmed records that the held id of rt was deleted from the stream,
// and reports whether that is news.
func (h *heldSet) markTrimmed(rt *route, id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.entries[heldKey{rt, id}]
	if !ok || e.trimmed {
		return false
	}
	e.trimmed = true
	return true
}

// markUnrecorded records what a lease renewal found of the held id of rt:
// pending for no one, with no failed attempt recorded. If a failed attempt
// of it was recorded, another consumer finished it (deleting the record),
// and it is marked lost; else it is marked vanished, and markUnrecorded
// reports whether that is news, as markVanished does.
func (h *heldSet) markUnrecorded(rt *route, id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.entries[heldKey{rt, id}]
	if !ok || e.vanished || e.lost || e.settled.Load() {
		return false
	}
	if e.recorded.Load() {
		e.lost = true
		if e.cancel != nil {
			e.cancel()
		}
		return false
	}
	e.vanished = true
	return true
}

// isTrimmed reports whether e was deleted from the stream while held.
func (h *heldSet) isTrimmed(e *entry) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return e.trimmed
}
