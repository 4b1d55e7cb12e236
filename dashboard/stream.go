package dashboard

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/opsview"
)

type streamData struct {
	Stream     string
	Partitions int // 0 for a plain stream
	Info       *redstream.StreamInfo
	Parts      []partRow
	Owners     map[string]string
	Charts     []chart
}

// partRow is one partition of a partitioned stream.
type partRow struct {
	Name   string
	Info   *redstream.StreamInfo // nil: does not exist yet
	Owners map[string]string     // by group: the partition lease's holder
}

// streamArgs reads the stream (s) and partition count (partitions) of a
// request.
func streamArgs(q url.Values) (string, int, error) {
	s := q.Get("s")
	if err := redstream.ValidateStream(s); err != nil {
		return "", 0, badRequest("stream %q: %v", s, err)
	}
	n := 0
	if v := q.Get("partitions"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 100_000 {
			return "", 0, badRequest("partitions %q: want a count from 1 to 100000", v)
		}
	}
	return s, n, nil
}

func (d *Dashboard) streamPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s, n, err := streamArgs(r.URL.Query())
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	data := streamData{Stream: s, Partitions: n, Charts: charts(d.hist.series(s))}
	if n > 0 {
		p, err := redstream.InspectPartitions(ctx, d.rdb, s, n)
		if err != nil {
			d.failErr(w, r, err)
			return
		}
		data.Info = &p.Total
		owners, err := opsview.ReadLeaseOwners(ctx, d.rdb, p.Partitions...)
		if err != nil {
			d.failErr(w, r, err)
			return
		}
		names, _ := redstream.Partitions(s, n)
		for i, name := range names {
			data.Parts = append(data.Parts, partRow{Name: name, Info: p.Partitions[i], Owners: owners[name]})
		}
	} else {
		info, err := redstream.Inspect(ctx, d.rdb, s)
		if err != nil {
			d.failErr(w, r, err)
			return
		}
		data.Info = info
		owners, err := opsview.ReadLeaseOwners(ctx, d.rdb, info)
		if err != nil {
			d.failErr(w, r, err)
			return
		}
		data.Owners = owners[s]
	}
	d.render(w, r, http.StatusOK, "stream", s, true, data)
}

// notStream turns a WRONGTYPE reply (the key is not a stream) into a bad
// request, for every page and action (failErr).
func notStream(err error) error {
	if redis.HasErrorPrefix(err, "WRONGTYPE") {
		return badRequest("the key is not a stream")
	}
	return err
}
