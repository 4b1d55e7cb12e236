package dashboard

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// row is one stream of the overview, with what the page needs to be read
// at a glance: the worst lag first, colours for a growing lag and rising
// dead letters.
type row struct {
	figures
	MaxLag        int64 // the largest group lag
	LagUnknown    bool  // some group's lag is a lower bound
	Pending       int64
	OldestAge     time.Duration
	Paused        int // groups paused
	PausedUnknown bool
	LagGrowing    bool // the lag is higher than a minute ago (or the oldest sample)
	DeadRising    bool // dead letters were added in the last minute
	Spark         chart
}

type overviewData struct {
	Rows      []row
	ScanError string // the scan failed: only named streams are shown
	SampleErr string
	Took      time.Duration
	At        time.Time // when the figures were read
	Shared    bool      // the figures are the sampler's, not read for this request
}

// trendWindow is how far back the overview looks for a growing lag or
// new dead letters.
const trendWindow = time.Minute

// survey is every stream's figures at one time: what the sampler records
// for the charts and what the overview shows.
type survey struct {
	at      time.Time
	rows    []figures
	scanErr error  // the scan was refused: rows has the named streams only
	gen     uint64 // the actions taken before it began (see forget)
}

// survey discovers every stream and gathers its figures: one SCAN and two
// pipelined round trips (plus one InspectPartitions a partitioned stream).
// A refused SCAN falls back to the streams named with WithStreams.
func (d *Dashboard) survey(ctx context.Context) (*survey, error) {
	d.sampleMu.Lock()
	gen := d.gen
	d.sampleMu.Unlock()
	set, err := d.discover(ctx)
	var scanErr error
	if err != nil {
		if !scanRefused(err) {
			return nil, err
		}
		scanErr = err
		set, _ = d.discoverScan(ctx, false) // cannot fail without the scan
	}
	rows, err := d.gather(ctx, set)
	if err != nil {
		return nil, err
	}
	return &survey{at: time.Now(), rows: rows, scanErr: scanErr, gen: gen}, nil
}

// liveHeader marks the requests of a page updating itself (app.js).
const liveHeader = "X-Redstream-Live"

// overview surveys Redis for a page loaded by the operator. A page
// updating itself gets the latest survey instead when it is younger than
// the refresh and no action was taken since: such a page shows figures
// that old anyway, and then many open tabs cost Redis nothing more than
// the sampler does. Otherwise (the sampler failing or slower than the
// refresh, just after an action) it surveys too; every survey is shared
// with the next updates.
func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	began := time.Now()
	var data overviewData
	var sv *survey
	if r.Header.Get(liveHeader) != "" {
		sv = d.latest(d.cfg.refresh)
	}
	data.Shared = sv != nil
	if sv == nil {
		var err error
		if sv, err = d.survey(r.Context()); err != nil {
			d.failErr(w, r, err)
			return
		}
		d.share(sv)
	}
	if sv.scanErr != nil {
		// No SCAN (a Redis user without the permission, a proxy): say why
		// only the named streams are shown.
		data.ScanError = shown(sv.scanErr)
	}
	for _, f := range sv.rows {
		data.Rows = append(data.Rows, d.overviewRow(f))
	}
	slices.SortStableFunc(data.Rows, func(a, b row) int {
		if c := cmp.Compare(b.MaxLag, a.MaxLag); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Pending, a.Pending); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	d.sampleMu.Lock()
	if d.sampleErr != nil {
		data.SampleErr = shown(d.sampleErr)
	}
	d.sampleMu.Unlock()
	data.At, data.Took = sv.at, time.Since(began)
	d.render(w, r, http.StatusOK, "overview", "Streams", true, data)
}

func (d *Dashboard) overviewRow(f figures) row {
	rw := row{figures: f}
	if f.Info == nil {
		return rw
	}
	for _, g := range f.Info.Groups {
		rw.MaxLag = max(rw.MaxLag, g.Lag)
		rw.LagUnknown = rw.LagUnknown || !g.LagKnown
		rw.Pending += g.Pending
		rw.OldestAge = max(rw.OldestAge, g.OldestPendingAge)
		if g.Paused {
			rw.Paused++
		}
		rw.PausedUnknown = rw.PausedUnknown || !g.PausedKnown
	}
	series := d.hist.series(f.Name)
	if len(series) > 0 {
		then := series[0]
		for _, s := range series {
			if time.Since(s.At) <= trendWindow {
				break
			}
			then = s
		}
		var lag int64
		for _, g := range f.Info.Groups {
			lag += g.Lag
		}
		rw.LagGrowing = lag > then.Lag
		rw.DeadRising = f.Info.DeadLetterLength > then.DeadLetters
		rw.Spark = sparkline(series, func(s sample) float64 { return float64(s.Lag) })
	}
	return rw
}

// scanRefused tells a Redis that will not run this SCAN (a user without
// the permission, a proxy without the command, a server without TYPE)
// from one that fails every command (down, a wrong password): only the
// former is worth showing the named streams for.
func scanRefused(err error) bool {
	return redis.HasErrorPrefix(err, "NOPERM") || redis.HasErrorPrefix(err, "unknown command") ||
		redis.HasErrorPrefix(err, "syntax error")
}
