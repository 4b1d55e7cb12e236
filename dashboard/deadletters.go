package dashboard

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redstream/redstream"
)

// Reasons lists the dead-letter reasons the filter offers.
var reasons = []string{
	redstream.ReasonMaxDeliveries, redstream.ReasonHandler, redstream.ReasonDecode,
	redstream.ReasonOperator, redstream.ReasonCrashLoop, redstream.ReasonVanished, redstream.ReasonTrimmed,
}

// dlFilter selects dead letters: by reason (exact), error text (a
// case-insensitive substring) and time (the dead-letter entry's ID, so a
// time range is an ID range and the page starts reading at its end).
type dlFilter struct {
	Reason, Error string
	From, To      time.Time
	FromArg       string // as typed, for the form
	ToArg         string
}

func (f dlFilter) Active() bool { return f.Reason != "" || f.Error != "" }

func (f dlFilter) match(l *redstream.DeadLetter) bool {
	return (f.Reason == "" || l.Reason == f.Reason) &&
		(f.Error == "" || strings.Contains(strings.ToLower(l.Error), strings.ToLower(f.Error)))
}

type deadLettersData struct {
	Stream  string
	Total   int64
	Letters []redstream.DeadLetter
	Next    string // the next page's cursor; "" on the last
	After   string
	Filter  dlFilter
	Reasons []string
	Scanned int // dead letters read for this page
	Cut     bool
	Rate    float64
}

// parseTime reads a time filter: RFC 3339, or the browser's
// datetime-local "2006-01-02T15:04" (UTC).
func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, badRequest("%s %q: want a time such as 2024-05-01T13:45 (UTC) or RFC 3339", name, v)
}

func deadLetterArgs(q url.Values) (deadLettersData, error) {
	s, _, err := streamArgs(q)
	if err != nil {
		return deadLettersData{}, err
	}
	after, err := cursorArg(q, "after")
	if err != nil {
		return deadLettersData{}, err
	}
	f := dlFilter{Reason: q.Get("reason"), Error: q.Get("q"), FromArg: q.Get("from"), ToArg: q.Get("to")}
	if f.From, err = parseTime("from", f.FromArg); err != nil {
		return deadLettersData{}, err
	}
	if f.To, err = parseTime("to", f.ToArg); err != nil {
		return deadLettersData{}, err
	}
	return deadLettersData{Stream: s, After: after, Filter: f, Reasons: reasons}, nil
}

func (d *Dashboard) deadLettersPage(w http.ResponseWriter, r *http.Request) {
	data, err := deadLetterArgs(r.URL.Query())
	if err == nil {
		err = d.readDeadLetters(r, &data)
	}
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	data.Rate = d.cfg.replayRate
	d.render(w, r, http.StatusOK, "deadletters", "Dead letters: "+data.Stream, false, data)
}

// scanPages bounds the dead letters one filtered page reads: at most this
// many pages' worth, then the page ends with a cursor to read on.
const scanPages = 10

// readDeadLetters reads one page of dead letters, newest first, after the
// cursor, with [redstream.DeadLetters.List]: never the whole stream. A
// filter reads on until the page is full, the time range or the stream
// ends, or scanPages pages were read.
func (d *Dashboard) readDeadLetters(r *http.Request, data *deadLettersData) error {
	ctx := r.Context()
	dl, err := redstream.NewDeadLetters(d.rdb, data.Stream)
	if err != nil {
		return err
	}
	// A stream's dead letters outlive it: a missing stream is no error
	// here, a key of another type is (its "dead letters" would be none).
	switch t, err := d.rdb.Type(ctx, data.Stream).Result(); {
	case err != nil:
		return err
	case t != "none" && t != "stream":
		return badRequest("%s is a %s, not a stream", data.Stream, t)
	}
	if data.Total, err = dl.Len(ctx); err != nil {
		return err
	}
	n, f := d.cfg.pageSize, data.Filter
	cursor := data.After
	if cursor == "" && f.ToArg != "" {
		if f.To.UnixMilli() < 0 {
			return nil // before 1970: older than any entry ID
		}
		// Below (to + 1ms)-0: every ID up to the end of that millisecond.
		cursor = strconv.FormatInt(f.To.UnixMilli()+1, 10) + "-0"
	}
	budget := scanPages * n
	for data.Scanned < budget {
		chunk := n - len(data.Letters)
		if f.Active() {
			chunk = min(n, budget-data.Scanned)
		}
		page, next, err := dl.List(ctx, redstream.ListOptions{Count: chunk, After: cursor, NewestFirst: true})
		if err != nil {
			return err
		}
		data.Scanned += len(page)
		for i := range page {
			l := &page[i]
			if t, ok := idTime(l.ID); ok && f.FromArg != "" && t.Before(f.From) {
				return nil // past the start of the time range: the last page
			}
			cursor = l.ID
			if !f.match(l) {
				continue
			}
			data.Letters = append(data.Letters, *l)
			if len(data.Letters) == n {
				if i < len(page)-1 || next != "" {
					data.Next = l.ID
				}
				return nil
			}
		}
		if next == "" {
			return nil
		}
	}
	data.Next, data.Cut = cursor, true
	return nil
}

// deadLetterForm reads the stream and the selected IDs of a dead-letter
// action, and returns the stream's dead letters.
func (d *Dashboard) deadLetterForm(form url.Values) (*redstream.DeadLetters, string, []string, error) {
	s, _, err := streamArgs(form)
	if err != nil {
		return nil, "", nil, err
	}
	ids := form["id"]
	for _, id := range ids {
		if _, err := cursorArg(url.Values{"id": {id}}, "id"); err != nil {
			return nil, "", nil, err
		}
	}
	dl, err := redstream.NewDeadLetters(d.rdb, s)
	return dl, s, ids, err
}

func (d *Dashboard) replayAction(w http.ResponseWriter, r *http.Request) {
	dl, s, ids, err := d.deadLetterForm(r.PostForm)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	var opts []redstream.ReplayOption
	switch all := r.PostForm.Get("all") == "1"; {
	case all:
		rate := d.cfg.replayRate
		if v := r.PostForm.Get("rate"); v != "" {
			if rate, err = strconv.ParseFloat(v, 64); err != nil {
				d.failErr(w, r, badRequest("rate %q: want a number of entries a second", v))
				return
			}
			if err := redstream.CheckReplayRate(rate); err != nil {
				d.failErr(w, r, badRequest("rate %q: %v", v, err))
				return
			}
		}
		if !d.confirmed(w, r, fmt.Sprintf("Replay every dead letter of %s, at %s a second?", s, strconv.FormatFloat(rate, 'g', 4, 64))) {
			return
		}
		opts = append(opts, redstream.ReplayAll(), redstream.ReplayRate(rate))
	case r.PostForm.Has("one"):
		// A row's own button: that entry alone, whatever is selected.
		one := r.PostForm.Get("one")
		if _, err := cursorArg(url.Values{"id": {one}}, "id"); err != nil {
			d.failErr(w, r, err)
			return
		}
		opts = append(opts, redstream.ReplayIDs(one))
	case len(ids) == 0:
		d.failErr(w, r, badRequest("no dead letter selected"))
		return
	default:
		opts = append(opts, redstream.ReplayIDs(ids...))
	}
	// The replay runs while the request lasts: a browser that gives up
	// stops it, and what was replayed stays replayed.
	n, err := dl.Replay(r.Context(), opts...)
	if err != nil && n == 0 {
		d.failErr(w, r, err)
		return
	}
	flash := fmt.Sprintf("replayed %d", n)
	if err != nil {
		flash += " (" + shown(err) + ")"
	}
	d.redirect(w, r, "deadletters", url.Values{"s": {s}}, flash)
}

func (d *Dashboard) deleteAction(w http.ResponseWriter, r *http.Request) {
	dl, s, ids, err := d.deadLetterForm(r.PostForm)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	if len(ids) == 0 {
		d.failErr(w, r, badRequest("no dead letter selected"))
		return
	}
	if !d.confirmed(w, r, fmt.Sprintf("Delete %d dead %s of %s for good?", len(ids), plural(len(ids), "letter", "letters"), s)) {
		return
	}
	n, err := dl.Delete(r.Context(), ids...)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	d.redirect(w, r, "deadletters", url.Values{"s": {s}}, fmt.Sprintf("deleted %d", n))
}
