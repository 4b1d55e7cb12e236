package dashboard

import (
	"strconv"
	"strings"
	"time"
)

// Charts are SVG drawn on the server, not a vendored JavaScript library:
// a polyline per series needs no script (it shows with scripts off and
// under the strict Content-Security-Policy), costs no asset bytes, and the
// page's live update swaps it like any other markup. The drawn values are
// also written in the SVG's data-values, for tests and tools.

// chart is one series ready for the template.
type chart struct {
	Name   string // "lag", "pending", "throughput"
	Title  string
	Unit   string
	Points string // the polyline's "x,y x,y ..."
	Values string // the values drawn, oldest first, space-separated
	Last   string
	Max    string
	From   time.Time
	To     time.Time
	Empty  bool
}

// Chart area, in SVG user units (the viewBox).
const (
	chartW = 600
	chartH = 120
	sparkW = 120
	sparkH = 24
)

// draw scales values (one per sample time) into a polyline of w by h.
func draw(name, title, unit string, at []time.Time, values []float64, w, h float64) chart {
	c := chart{Name: name, Title: title, Unit: unit, Empty: len(values) == 0}
	if c.Empty {
		return c
	}
	hi := 0.0
	for _, v := range values {
		hi = max(hi, v)
	}
	c.From, c.To = at[0], at[len(at)-1]
	span := c.To.Sub(c.From).Seconds()
	var pts, vals strings.Builder
	for i, v := range values {
		x := w
		if span > 0 {
			x = at[i].Sub(c.From).Seconds() / span * w
		}
		y := h - 2
		if hi > 0 {
			y = h - 2 - v/hi*(h-4)
		}
		if i > 0 {
			pts.WriteByte(' ')
			vals.WriteByte(' ')
		}
		pts.WriteString(strconv.FormatFloat(x, 'f', 1, 64) + "," + strconv.FormatFloat(y, 'f', 1, 64))
		vals.WriteString(fmtValue(v))
	}
	c.Points, c.Values = pts.String(), vals.String()
	c.Last, c.Max = fmtValue(values[len(values)-1]), fmtValue(hi)
	return c
}

func fmtValue(v float64) string {
	if v == float64(int64(v)) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// charts draws a stream's lag, pending and throughput from its samples.
func charts(series []sample) []chart {
	at := make([]time.Time, len(series))
	lag := make([]float64, len(series))
	pending := make([]float64, len(series))
	for i, s := range series {
		at[i], lag[i], pending[i] = s.At, float64(s.Lag), float64(s.Pending)
	}
	// Throughput is the entries added between two samples, per second: one
	// point fewer than samples.
	var tAt []time.Time
	var rate []float64
	for i := 1; i < len(series); i++ {
		dt := series[i].At.Sub(series[i-1].At).Seconds()
		if dt <= 0 {
			continue
		}
		tAt = append(tAt, series[i].At)
		rate = append(rate, max(0, float64(series[i].Added-series[i-1].Added)/dt))
	}
	return []chart{
		draw("lag", "Lag", "entries not yet delivered, all groups", at, lag, chartW, chartH),
		draw("pending", "Pending", "delivered, not acknowledged, all groups", at, pending, chartW, chartH),
		draw("throughput", "Throughput", "entries added a second", tAt, rate, chartW, chartH),
	}
}

// sparkline draws one series small, for the overview.
func sparkline(series []sample, value func(sample) float64) chart {
	at := make([]time.Time, len(series))
	vals := make([]float64, len(series))
	for i, s := range series {
		at[i], vals[i] = s.At, value(s)
	}
	return draw("lag", "Lag", "", at, vals, sparkW, sparkH)
}
