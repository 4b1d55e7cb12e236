package dashboard

import (
	"cmp"
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

type tailData struct {
	Stream  string
	Entries []tailRow
}

type tailRow struct {
	ID     string
	Fields fieldList
}

// tailPage shows the newest entries of a stream, newest first; the page
// updates itself, so new entries appear at the top.
func (d *Dashboard) tailPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s, _, err := streamArgs(r.URL.Query())
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	var typ *redis.StatusCmd
	var msgs *redis.XMessageSliceCmd
	_, err = d.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		typ = pipe.Type(ctx, s)
		msgs = pipe.XRevRangeN(ctx, s, "+", "-", int64(d.cfg.pageSize))
		return nil
	})
	switch t := typ.Val(); {
	case typ.Err() != nil || (err != nil && t == ""):
		// Redis down, a wrong password: TYPE answered nothing (when no
		// connection was had, only the pipeline's error says why).
		d.failErr(w, r, cmp.Or(typ.Err(), err))
		return
	case t == "none":
		d.failErr(w, r, redstream.ErrNoStream)
		return
	case t != "stream":
		d.failErr(w, r, badRequest("%s is a %s, not a stream", s, t))
		return
	case err != nil:
		d.failErr(w, r, err)
		return
	}
	data := tailData{Stream: s}
	for _, m := range msgs.Val() {
		data.Entries = append(data.Entries, tailRow{ID: m.ID, Fields: fieldsOf(m.Values)})
	}
	d.render(w, r, http.StatusOK, "tail", "Tail: "+s, true, data)
}
