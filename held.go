package redstream

import (
	"context"
	"sync"
	"sync/atomic"
)

// The state the consumer's components share: the messages it holds and the
// room for more. Everything else each component keeps to itself. Run
// creates one heldSet; the reader, the reaper and partition ownership put
// messages in (hold), the workers, the acknowledger and the retry
// scheduler take them out (forget), and the lease keeper marks what Redis
// says about them. It starts no goroutine. All its methods are safe for
// concurrent use.

// entry is a message the consumer holds, from its read until it is
// acknowledged, dead-lettered or given up.
type entry struct {
	route  *route
	id     string
	values map[string]any // nil: deleted from the stream while pending
	// deliveries is the number of this handler attempt, the one the
	// handler sees: failed attempts + 1.
	deliveries int64
	// attempts counts the handler's failures on this entry, recorded in
	// Redis (attempts.go) so that they survive this consumer.
	attempts int64
	// recorded is set once this consumer knows a failed attempt of the
	// entry is recorded in Redis (read with it, or written): if the entry
	// then turns up pending for no one with no record, another consumer
	// finished it (claimown.lua).
	recorded atomic.Bool
	// redisDeliveries is Redis's delivery counter as last read: it also
	// counts deliveries no handler saw, and serves as the crash-loop guard.
	redisDeliveries int64
	// settled is set once the entry's acknowledgement is queued: it may
	// stop being pending before the acknowledger forgets it.
	settled atomic.Bool
	// retry marks a message waiting for its next delivery, which must first
	// be reclaimed by this consumer.
	retry bool
	// deadLetterLater is set while a failed dead-letter move waits to be
	// tried again, instead of a handler call.
	deadLetterLater *deadLetterLater
	// stackLogged is set once a panic's stack was logged for this entry:
	// its later panics are logged without it.
	stackLogged bool
	// batch, set only on a unit of work of a batch route (batch.go), holds
	// the batch's entries; such a unit is never held itself.
	batch []*entry
	// leasedAt is when (monoNow) the entry's lease was last known fresh:
	// when it was read or claimed (a read of the consumer's own pending
	// entries: less its idle time), reclaimed for a retry, or renewed by
	// the lease keeper (when the renewal was sent): every read and claim
	// stamps it (stampLeases) before dispatch. The acknowledger tells from
	// it whether the lease may have lapsed.
	leasedAt atomic.Int64
	// ackLapsed is set, before the entry is queued for acknowledgement,
	// when its handler finished after its lease was found lost: another
	// consumer holds it, which must learn that it was finished.
	ackLapsed bool
	// spare is the *Message[T] allocated with the entry
	// (allocWithMessage), for its first decode; nil once taken.
	spare any

	// The fields below are the heldSet's, guarded by its mutex: read and
	// set them only through its methods.
	//
	// lost is set when another consumer has taken the message; trimmed
	// when it was deleted from the stream while held; vanished when it is
	// pending for no one any more (stream, group or consumer deleted).
	// After trimmed or vanished, only this consumer's memory has it.
	lost, trimmed, vanished bool
	// cancel cancels the handler's context while it runs, with
	// ErrLeaseLost as its cause.
	cancel context.CancelFunc
	// keyed is set while the entry holds its key's turn on an ordered
	// route; key is then its key.
	keyed bool
	key   string
	// uncounted is set when the entry stopped counting against its
	// route's share (uncount) before it was forgotten.
	uncounted bool
}

// heldKey names a held message: its route and entry ID.
type heldKey struct {
	route *route
	id    string
}

func (e *entry) heldKey() heldKey { return heldKey{e.route, e.id} }

// heldSet is every message a consumer holds, the key turns of its ordered
// routes, and its room tokens.
type heldSet struct {
	// room holds one token per message the consumer holds, up to its
	// capacity: a message puts its token in at its read and takes it out
	// when it is acknowledged, dead-lettered or given up, retries
	// included. Tokens taken in, not tokens free, so that a room of any
	// size costs nothing to set up.
	room chan struct{}

	mu      sync.Mutex
	entries map[heldKey]*entry
	// keys has an element for each key of an ordered route that has an
	// entry in the workers' hands (retries included): the entries of that
	// key read since, waiting their turn in stream order.
	keys map[heldKey][]*entry
	// draining is set when the work channel closes: an entry whose turn
	// comes after that stays held, pending, for a later run.
	draining bool
	// left holds the entries let go during the shutdown unfinished, for
	// the hand-off.
	left []*entry
	// A read of pending entries (the own-pending drain, a reaper's claim)
	// may return an entry the consumer finished while the read was on the
	// wire: it was pending when Redis answered. forget records what it
	// drops in finished, numbered by finishGen, while such reads are in
	// flight (pendingReads counts them), and hold refuses an entry finished
	// after the read began.
	finishGen    uint64
	finished     map[heldKey]uint64
	pendingReads int
	// With counting (a group reader runs, multireader.go), perRoute
	// counts the entries held of each route, less those whose
	// acknowledgement is queued (uncount), and freed gets a value when one
	// stops counting, for a group reader waiting for a stream to hold
	// fewer. Without, a consumer of one stream pays nothing for them.
	counting atomic.Bool // set once, before anything is held
	perRoute map[*route]int
	freed    chan struct{}
}

// countPerRoute starts the counts of heldOf and the freed signal; call it
// before anything is held.
func (h *heldSet) countPerRoute() {
	h.counting.Store(true)
}

// newHeldSet returns an empty set with room for capacity messages.
func newHeldSet(capacity int) *heldSet {
	h := &heldSet{
		room:     make(chan struct{}, capacity),
		entries:  make(map[heldKey]*entry),
		keys:     make(map[heldKey][]*entry),
		finished: make(map[heldKey]uint64),
		perRoute: make(map[*route]int),
		freed:    make(chan struct{}, 1),
	}
	return h
}

// takeRoom waits for room for at least one message and takes up to want.
// It returns 0 when ctx ends first.
func (h *heldSet) takeRoom(ctx context.Context, want int) int {
	// A select with both cases ready picks at random: check ctx first, so a
	// shutdown never starts another blocking read.
	if ctx.Err() != nil {
		return 0
	}
	select {
	case h.room <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	return 1 + h.takeRoomNow(want-1)
}

// takeRoomNow takes up to want tokens without waiting.
func (h *heldSet) takeRoomNow(want int) int {
	n := 0
	for n < want {
		select {
		case h.room <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

// giveRoom gives back n tokens. It never blocks: only tokens taken are
// given back.
func (h *heldSet) giveRoom(n int) {
	for range n {
		<-h.room
	}
}

// beginPendingRead notes a read of pending entries about to start and
// returns the generation of finished entries it must not take back; pass
// it to hold, and call endPendingRead once the read's entries are held.
func (h *heldSet) beginPendingRead() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pendingReads++
	return h.finishGen
}

// endPendingRead notes a read of pending entries done; with none left in
// flight, nothing finished needs remembering.
func (h *heldSet) endPendingRead() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pendingReads--
	if h.pendingReads == 0 {
		clear(h.finished)
	}
}

// hold adds e and reports true, or reports false when an entry with its ID
// is held already, or (since not nil, for a read of pending entries) was
// finished after generation since.
func (h *heldSet) hold(e *entry, since *uint64) bool {
	k := e.heldKey()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, held := h.entries[k]; held {
		return false
	}
	if gen, ok := h.finished[k]; since != nil && ok && gen > *since {
		return false
	}
	h.entries[k] = e
	if h.counting.Load() {
		h.perRoute[e.route]++
	}
	return true
}

// heldOf returns how many entries of rt are held.
func (h *heldSet) heldOf(rt *route) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.perRoute[rt]
}

// holds reports whether k is held.
func (h *heldSet) holds(k heldKey) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.entries[k]
	return ok
}

// holdsRoute reports whether any message of rt is held.
func (h *heldSet) holdsRoute(rt *route) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range h.entries {
		if k.route == rt {
			return true
		}
	}
	return false
}

// uncount stops counting e against its route's share (with counting
// only): its acknowledgement is queued, and the consumer does no more work
// on it, though it stays held until Redis has the XACK. Without this, a
// stream at its share would wait for the acknowledger's round trips (and
// its linger) before reading more.
func (h *heldSet) uncount(e *entry) {
	if !h.counting.Load() {
		return // a consumer without a group reader takes no lock per message
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.uncounted {
		return
	}
	if held, ok := h.entries[e.heldKey()]; !ok || held != e {
		return // already forgotten
	}
	e.uncounted = true
	h.dropCountLocked(e.route)
}

// dropCountLocked counts one entry of rt less and signals freed.
func (h *heldSet) dropCountLocked(rt *route) {
	if h.perRoute[rt]--; h.perRoute[rt] == 0 {
		delete(h.perRoute, rt)
	}
	select {
	case h.freed <- struct{}{}:
	default:
	}
}

// forget drops entries: the consumer is done with them.
func (h *heldSet) forget(entries ...*entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range entries {
		h.forgetLocked(e.heldKey())
	}
}

func (h *heldSet) forgetLocked(k heldKey) {
	if e, ok := h.entries[k]; ok && h.counting.Load() && !e.uncounted {
		h.dropCountLocked(k.route)
	}
	delete(h.entries, k)
	if h.pendingReads > 0 {
		h.finishGen++
		h.finished[k] = h.finishGen
	}
}

// leave records e as let go unfinished during the shutdown, for
// unfinished; the caller forgets it.
func (h *heldSet) leave(e *entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.left = append(h.left, e)
}

// ids returns the IDs held, by route.
func (h *heldSet) ids() map[*route][]string {
	byRoute := make(map[*route][]string)
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range h.entries {
		byRoute[k.route] = append(byRoute[k.route], k.id)
	}
	return byRoute
}

// unfinished returns, by route, the IDs of the entries held but not
// settled and of those let go unfinished (leave), and empties the latter.
// IDs may repeat.
func (h *heldSet) unfinished() map[*route][]string {
	byRoute := make(map[*route][]string)
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, e := range h.entries {
		if !e.settled.Load() {
			byRoute[k.route] = append(byRoute[k.route], k.id)
		}
	}
	for _, e := range h.left {
		byRoute[e.route] = append(byRoute[e.route], e.id)
	}
	h.left = nil
	return byRoute
}

// isKeyed reports whether e holds its key's turn.
func (h *heldSet) isKeyed(e *entry) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return e.keyed
}

// takeTurn gives e its key's turn and reports true, or queues e behind the
// entry of key that has it and reports false.
func (h *heldSet) takeTurn(e *entry, key string) bool {
	k := heldKey{e.route, key}
	h.mu.Lock()
	defer h.mu.Unlock()
	if waiting, busy := h.keys[k]; busy {
		h.keys[k] = append(waiting, e)
		return false
	}
	h.keys[k] = nil
	e.keyed, e.key = true, key
	return true
}

// passTurn is called when the consumer is done with e. If e held its key's
// turn, the next entry of the key waiting gets it and is passed to send,
// under the set's lock so that it cannot race drain. While draining, the
// next entry stays held instead, pending, for a later run. With letGo (the
// route was given up), or when e was lost to another consumer (which runs
// it now, so the key's later entries must not overtake it here), the key's
// waiting entries are forgotten instead, pending: passTurn returns how
// many, whose room the caller gives back.
func (h *heldSet) passTurn(e *entry, letGo bool, send func(*entry)) (forgotten int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !e.keyed {
		return 0
	}
	e.keyed = false
	k := heldKey{e.route, e.key}
	waiting := h.keys[k]
	if len(waiting) == 0 || letGo || e.lost {
		delete(h.keys, k)
		for _, w := range waiting {
			h.forgetLocked(w.heldKey())
		}
		return len(waiting)
	}
	next := waiting[0]
	h.keys[k] = waiting[1:]
	next.keyed, next.key = true, e.key
	if !h.draining {
		send(next)
	}
	return 0
}

// drain marks the set draining and calls closeWork under its lock: no
// key's turn is passed on to the workers after that.
func (h *heldSet) drain(closeWork func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.draining = true
	closeWork()
}
