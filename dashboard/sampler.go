package dashboard

import (
	"context"
	"sync"
	"time"
)

// The sampler is the dashboard's one goroutine (started by [New], stopped
// by [Dashboard.Close]): every sample interval it discovers the streams,
// gathers their figures (the overview's two pipelined round trips) and
// appends one sample a stream to that stream's ring. The charts and the
// overview's trend colours read the rings; nothing else is kept, and no
// external time-series store is needed.

// sample is one stream's figures at one time.
type sample struct {
	At          time.Time
	Lag         int64 // summed over groups
	Pending     int64 // summed over groups
	DeadLetters int64
	Added       int64 // entries ever added, for throughput
}

// ring is a bounded series of samples, oldest first.
type ring struct {
	buf   []sample
	start int // index of the oldest
	n     int
}

func (r *ring) add(s sample) {
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = s
		r.n++
		return
	}
	r.buf[r.start] = s
	r.start = (r.start + 1) % len(r.buf)
}

// all returns the samples, oldest first, in a new slice.
func (r *ring) all() []sample {
	out := make([]sample, r.n)
	for i := range out {
		out[i] = r.buf[(r.start+i)%len(r.buf)]
	}
	return out
}

// history holds every stream's ring; safe for concurrent use.
type history struct {
	size int
	mu   sync.Mutex
	m    map[string]*ring
}

func newHistory(size int) *history { return &history{size: size, m: map[string]*ring{}} }

// record appends one sample per row taken at; streams no longer found lose
// their ring, so memory follows the streams that exist.
func (h *history) record(at time.Time, rows []figures) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := make(map[string]bool, len(rows))
	for _, f := range rows {
		if f.Info == nil {
			continue
		}
		seen[f.Name] = true
		r := h.m[f.Name]
		if r == nil {
			r = &ring{buf: make([]sample, h.size)}
			h.m[f.Name] = r
		}
		s := sample{At: at, DeadLetters: f.Info.DeadLetterLength, Added: f.Added}
		for _, g := range f.Info.Groups {
			s.Lag += g.Lag
			s.Pending += g.Pending
		}
		r.add(s)
	}
	for name := range h.m {
		if !seen[name] {
			delete(h.m, name)
		}
	}
}

// series returns the samples of stream, oldest first.
func (h *history) series(stream string) []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.m[stream]; r != nil {
		return r.all()
	}
	return nil
}

// run samples every interval until ctx ends; the first sample is taken at
// once, so charts have a point as soon as the dashboard is up.
func (d *Dashboard) run(ctx context.Context) {
	ticker := time.NewTicker(d.cfg.sampleInterval)
	defer ticker.Stop()
	for {
		d.sampleOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// sampleOnce takes one sample of every stream. A failure (Redis down)
// skips the sample: the charts show a gap in time, not a made-up value.
func (d *Dashboard) sampleOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(d.cfg.sampleInterval, time.Second))
	defer cancel()
	sv, err := d.survey(ctx)
	if err == nil {
		d.hist.record(sv.at, sv.rows)
		d.share(sv)
	}
	// Last: a page that no longer shows the failure shows the sample.
	d.noteSampleErr(err)
}

func (d *Dashboard) noteSampleErr(err error) {
	d.sampleMu.Lock()
	d.sampleErr = err
	d.sampleMu.Unlock()
}

// share makes sv the latest survey, unless a newer one is or an action
// was taken while it read (it may show what was there before).
func (d *Dashboard) share(sv *survey) {
	d.sampleMu.Lock()
	defer d.sampleMu.Unlock()
	if sv.gen == d.gen && (d.last == nil || sv.at.After(d.last.at)) {
		d.last = sv
	}
}

// latest returns the latest survey if it is younger than maxAge, else nil.
func (d *Dashboard) latest(maxAge time.Duration) *survey {
	d.sampleMu.Lock()
	defer d.sampleMu.Unlock()
	if d.last == nil || time.Since(d.last.at) >= maxAge {
		return nil
	}
	return d.last
}

// forget drops the latest survey: an action changed what it shows.
func (d *Dashboard) forget() {
	d.sampleMu.Lock()
	d.last = nil
	d.gen++
	d.sampleMu.Unlock()
}
