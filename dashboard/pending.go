package dashboard

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/streamid"
)

type pendingData struct {
	Stream, Group, Consumer string
	Entries                 []pendingRow
	Next                    string // cursor of the next page; "" on the last
	After                   string
}

// pendingRow is one pending entry with its fields.
type pendingRow struct {
	redis.XPendingExt
	Fields  fieldList
	Deleted bool // the entry is pending but gone from the stream
}

// cursorArg reads an ID cursor parameter ("" when absent).
func cursorArg(q url.Values, name string) (string, error) {
	v := q.Get(name)
	if v == "" {
		return "", nil
	}
	if _, err := streamid.Parse(v); err != nil {
		return "", badRequest("%s %q is not a stream entry ID (<milliseconds>-<sequence>)", name, v)
	}
	return v, nil
}

func groupArg(q url.Values) (string, error) {
	g := q.Get("g")
	if g == "" {
		return "", badRequest("no group (g)")
	}
	return g, nil
}

func (d *Dashboard) pendingPage(w http.ResponseWriter, r *http.Request) {
	data, err := pendingArgs(r.URL.Query())
	if err == nil {
		err = d.readPending(r, &data)
	}
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	d.render(w, r, http.StatusOK, "pending", "Pending: "+data.Stream+" "+data.Group, false, data)
}

// pendingArgs reads the stream (s), group (g), consumer and cursor (after)
// of a pending page.
func pendingArgs(q url.Values) (pendingData, error) {
	s, _, err := streamArgs(q)
	if err != nil {
		return pendingData{}, err
	}
	g, err := groupArg(q)
	if err != nil {
		return pendingData{}, err
	}
	after, err := cursorArg(q, "after")
	if err != nil {
		return pendingData{}, err
	}
	return pendingData{Stream: s, Group: g, Consumer: q.Get("consumer"), After: after}, nil
}

// readPending reads one page of the group's pending entries after
// data.After, and the entries' fields, in two round trips.
func (d *Dashboard) readPending(r *http.Request, data *pendingData) error {
	ctx := r.Context()
	start := "-"
	if data.After != "" {
		after, _ := streamid.Parse(data.After) // checked by cursorArg
		next, ok := after.Next()
		if !ok {
			return nil // nothing comes after the greatest ID
		}
		start = next.String()
	}
	n := d.cfg.pageSize
	pend, err := d.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: data.Stream, Group: data.Group, Start: start, End: "+", Count: int64(n) + 1, Consumer: data.Consumer,
	}).Result()
	switch {
	case redis.HasErrorPrefix(err, "NOGROUP"):
		return fmt.Errorf("%w: no group %s on stream %s", redstream.ErrNoGroup, data.Group, data.Stream)
	case err != nil:
		return err
	}
	if len(pend) > n {
		pend = pend[:n]
		data.Next = pend[n-1].ID
	}
	cmds := make([]*redis.XMessageSliceCmd, len(pend))
	if _, err := d.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range pend {
			cmds[i] = pipe.XRange(ctx, data.Stream, p.ID, p.ID)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	for i, p := range pend {
		row := pendingRow{XPendingExt: p}
		if msgs, err := cmds[i].Result(); err == nil && len(msgs) == 1 {
			row.Fields = fieldsOf(msgs[0].Values)
		} else {
			row.Deleted = true
		}
		data.Entries = append(data.Entries, row)
	}
	return nil
}

// pendingForm reads the stream, group and IDs of a pending action.
func pendingForm(form url.Values) (string, string, []string, error) {
	s, _, err := streamArgs(form)
	if err != nil {
		return "", "", nil, err
	}
	g, err := groupArg(form)
	if err != nil {
		return "", "", nil, err
	}
	ids := form["id"]
	if len(ids) == 0 {
		return "", "", nil, badRequest("no entry selected")
	}
	for _, id := range ids {
		if _, err := streamid.Parse(id); err != nil {
			return "", "", nil, badRequest("%q is not a stream entry ID", id)
		}
	}
	return s, g, ids, nil
}

func (d *Dashboard) ackAction(w http.ResponseWriter, r *http.Request) {
	d.pendingAction(w, r, "acknowledge", func(s, g string, ids []string) (int, error) {
		return redstream.AckPending(r.Context(), d.rdb, s, g, ids...)
	})
}

func (d *Dashboard) deadLetterAction(w http.ResponseWriter, r *http.Request) {
	d.pendingAction(w, r, "dead-letter", func(s, g string, ids []string) (int, error) {
		return redstream.DeadLetterPending(r.Context(), d.rdb, s, g, ids...)
	})
}

// pendingAction runs a destructive action on pending entries once the
// operator confirmed it on the confirmation page.
func (d *Dashboard) pendingAction(w http.ResponseWriter, r *http.Request, verb string, do func(s, g string, ids []string) (int, error)) {
	s, g, ids, err := pendingForm(r.PostForm)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	if !d.confirmed(w, r, fmt.Sprintf("%s %d pending %s of group %s on %s?", verb, len(ids), plural(len(ids), "entry", "entries"), g, s)) {
		return
	}
	n, err := do(s, g, ids)
	var notPending *redstream.NotPendingError
	if err != nil && !errors.As(err, &notPending) {
		d.failErr(w, r, err)
		return
	}
	d.redirect(w, r, "pending", pendingPage(r.PostForm, s, g), withReason(fmt.Sprintf("%s: %d of %d done", verb, n, len(ids)), notPending))
}

// pendingPage is the query of the pending page an action on it returns to:
// its stream, group, and the consumer it was filtered by, if any.
func pendingPage(form url.Values, s, g string) url.Values {
	q := url.Values{"s": {s}, "g": {g}}
	if c := form.Get("held-by"); c != "" {
		q.Set("consumer", c)
	}
	return q
}

// withReason adds to flash why some of the entries were skipped.
func withReason(flash string, notPending *redstream.NotPendingError) string {
	if notPending != nil {
		flash += " (" + notPending.Error() + ")"
	}
	return flash
}

func (d *Dashboard) claimAction(w http.ResponseWriter, r *http.Request) {
	s, g, ids, err := pendingForm(r.PostForm)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	consumer := strings.TrimSpace(r.PostForm.Get("consumer"))
	if consumer == "" {
		d.failErr(w, r, badRequest("claim: no consumer named"))
		return
	}
	n, err := redstream.ClaimPending(r.Context(), d.rdb, s, g, consumer, ids...)
	var notPending *redstream.NotPendingError
	if err != nil && !errors.As(err, &notPending) {
		d.failErr(w, r, err)
		return
	}
	d.redirect(w, r, "pending", pendingPage(r.PostForm, s, g), withReason(fmt.Sprintf("claimed %d of %d for %s", n, len(ids), consumer), notPending))
}

func (d *Dashboard) pauseAction(w http.ResponseWriter, r *http.Request) {
	s, _, err := streamArgs(r.PostForm)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	g, err := groupArg(r.PostForm)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	op := r.PostForm.Get("op")
	switch op {
	case "pause":
		err = redstream.Pause(r.Context(), d.rdb, s, g)
	case "resume":
		err = redstream.Resume(r.Context(), d.rdb, s, g)
	default:
		err = badRequest("op %q: want pause or resume", op)
	}
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	d.redirect(w, r, "stream", url.Values{"s": {s}}, op+"d group "+g)
}

// confirmed reports whether the form carries the operator's confirmation;
// when not, it renders the confirmation page, which posts the same form
// again with confirm=yes.
func (d *Dashboard) confirmed(w http.ResponseWriter, r *http.Request, question string) bool {
	if r.PostForm.Get("confirm") == "yes" {
		return true
	}
	var fields []field
	for k, vs := range r.PostForm {
		if k == "csrf" || k == "confirm" {
			continue
		}
		for _, v := range vs {
			fields = append(fields, field{Name: k, Value: v})
		}
	}
	d.render(w, r, http.StatusOK, "confirm", "Confirm", false, confirmData{
		Question: question, Action: strings.TrimPrefix(r.URL.Path, "/"), Fields: fields,
	})
	return false
}

type confirmData struct {
	Question string
	Action   string
	Fields   []field
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
