package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/dashboard"
	"github.com/redstream/redstream/redstreamtest"
)

func TestPendingActions(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	ctx := context.Background()
	stream := r.Stream(t, "orders")
	ids := lagging(t, rdb, stream, 6)
	// Three more pending: ids[1] to ids[4].
	_, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "c1", Streams: []string{stream, ">"}, Count: 3}).Result()
	require.NoError(t, err)
	s := newSite(t, rdb, dashboard.WithActions())
	q := url.QueryEscape(stream)
	code, body := s.get("pending?s=" + q + "&g=billing")
	require.Equal(t, http.StatusOK, code, body)
	for _, id := range ids[1:5] {
		assert.Contains(t, body, `data-id="`+id+`"`)
	}
	token := s.token("pending?s=" + q + "&g=billing")
	form := func(id ...string) url.Values {
		return url.Values{"csrf": {token}, "s": {stream}, "g": {"billing"}, "id": id}
	}

	// Acknowledging asks first, and does nothing until confirmed.
	code, body, _ = s.post("actions/ack", form(ids[1]))
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `id="question"`)
	assert.Contains(t, body, `name="confirm" value="yes"`)
	assert.Contains(t, body, `name="id" value="`+ids[1]+`"`)
	pending := func() int64 {
		p, err := rdb.XPending(ctx, stream, "billing").Result()
		require.NoError(t, err)
		return p.Count
	}
	require.EqualValues(t, 4, pending())
	f := form(ids[1])
	f.Set("confirm", "yes")
	code, _, hdr := s.post("actions/ack", f)
	require.Equal(t, http.StatusSeeOther, code)
	assert.Contains(t, hdr.Get("Location"), mount+"pending?")
	assert.EqualValues(t, 3, pending())

	f = form(ids[2])
	f.Set("confirm", "yes")
	code, _, _ = s.post("actions/deadletter", f)
	require.Equal(t, http.StatusSeeOther, code)
	assert.EqualValues(t, 2, pending())
	dl := redstreamtest.DeadLetters(t, rdb, stream)
	require.Len(t, dl, 1)
	assert.Equal(t, ids[2], dl[0].OriginID)

	// From the page filtered by consumer, back to it (it went back to
	// the whole group), and a claim of an entry not pending says why.
	f = form(ids[3], ids[0])
	f.Set("consumer", "c2")
	f.Set("held-by", "c1")
	code, _, hdr = s.post("actions/claim", f)
	require.Equal(t, http.StatusSeeOther, code)
	owned, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "billing", Start: ids[3], End: ids[3], Count: 1}).Result()
	require.NoError(t, err)
	require.Len(t, owned, 1)
	assert.Equal(t, "c2", owned[0].Consumer)
	back, err := url.Parse(hdr.Get("Location"))
	require.NoError(t, err)
	assert.Equal(t, "c1", back.Query().Get("consumer"), "back to the filtered page")
	code, body = s.get("pending?" + back.RawQuery)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "claimed 1 of 2 for c2")
	assert.Contains(t, body, "not pending", "says why one was not claimed")
	assert.Contains(t, body, "held by c1")
	assert.Contains(t, body, `name="held-by" value="c1"`, "the next action returns here too")

	// Pause and resume.
	code, _, _ = s.post("actions/pause", url.Values{"csrf": {token}, "s": {stream}, "g": {"billing"}, "op": {"pause"}})
	require.Equal(t, http.StatusSeeOther, code)
	paused, _, err := redstream.PausedSince(ctx, rdb, stream, "billing")
	require.NoError(t, err)
	assert.True(t, paused)
	code, body = s.get("")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "1 paused", cell(t, body, stream, "paused"))
	code, _, _ = s.post("actions/pause", url.Values{"csrf": {token}, "s": {stream}, "g": {"billing"}, "op": {"resume"}})
	require.Equal(t, http.StatusSeeOther, code)
	paused, _, err = redstream.PausedSince(ctx, rdb, stream, "billing")
	require.NoError(t, err)
	assert.False(t, paused)
}

func TestDeadLetterActions(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	ctx := context.Background()
	stream := r.Stream(t, "orders")
	ids := lagging(t, rdb, stream, 8)
	_, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "c1", Streams: []string{stream, ">"}, Count: 6}).Result()
	require.NoError(t, err)
	_, err = redstream.DeadLetterPending(ctx, rdb, stream, "billing", ids[1:]...)
	require.NoError(t, err)
	dl := redstreamtest.DeadLetters(t, rdb, stream)
	require.Len(t, dl, 7)
	s := newSite(t, rdb, dashboard.WithActions())
	token := s.token("deadletters?s=" + url.QueryEscape(stream))

	// Delete asks first.
	form := url.Values{"csrf": {token}, "s": {stream}, "id": {dl[0].ID}}
	code, body, _ := s.post("actions/delete", form)
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `id="question"`)
	require.Len(t, redstreamtest.DeadLetters(t, rdb, stream), 7)
	form.Set("confirm", "yes")
	code, _, _ = s.post("actions/delete", form)
	require.Equal(t, http.StatusSeeOther, code)
	require.Len(t, redstreamtest.DeadLetters(t, rdb, stream), 6)

	// Replaying selected ones does not ask.
	code, _, hdr := s.post("actions/replay", url.Values{"csrf": {token}, "s": {stream}, "id": {dl[1].ID, dl[2].ID}})
	require.Equal(t, http.StatusSeeOther, code)
	assert.Contains(t, hdr.Get("Location"), "replayed+2")
	require.Len(t, redstreamtest.DeadLetters(t, rdb, stream), 4)

	// A row's button replays its entry alone, whatever is selected.
	code, _, hdr = s.post("actions/replay", url.Values{"csrf": {token}, "s": {stream}, "id": {dl[4].ID, dl[5].ID}, "one": {dl[3].ID}})
	require.Equal(t, http.StatusSeeOther, code)
	assert.Contains(t, hdr.Get("Location"), "replayed+1")
	left := redstreamtest.DeadLetters(t, rdb, stream)
	require.Len(t, left, 3)
	assert.NotContains(t, []string{left[0].ID, left[1].ID, left[2].ID}, dl[3].ID)
	code, _, _ = s.post("actions/replay", url.Values{"csrf": {token}, "s": {stream}, "one": {"nope"}})
	assert.Equal(t, http.StatusBadRequest, code)

	// Replaying all asks, then replays at the rate given.
	all := url.Values{"csrf": {token}, "s": {stream}, "all": {"1"}, "rate": {"1000"}}
	code, body, _ = s.post("actions/replay", all)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "at 1000 a second")
	all.Set("confirm", "yes")
	code, _, hdr = s.post("actions/replay", all)
	require.Equal(t, http.StatusSeeOther, code)
	assert.Contains(t, hdr.Get("Location"), "replayed+3")
	assert.Empty(t, redstreamtest.DeadLetters(t, rdb, stream))
	n, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 8+6, n, "every replayed dead letter is back on the stream")
}

// entryCounter is a go-redis hook that counts the stream entries the
// client's XRANGE and XREVRANGE replies carry, its commands and its SCANs.
type entryCounter struct{ entries, commands, scans atomic.Int64 }

func (c *entryCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *entryCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		c.count(cmd)
		return err
	}
}

func (c *entryCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return err
	}
}

func (c *entryCounter) count(cmd redis.Cmder) {
	c.commands.Add(1)
	if cmd.Name() == "scan" {
		c.scans.Add(1)
	}
	if x, ok := cmd.(*redis.XMessageSliceCmd); ok {
		c.entries.Add(int64(len(x.Val())))
	}
}

func TestDeadLetterPageReadsABoundedNumberOfEntries(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	ctx := context.Background()
	stream := r.Stream(t, "orders")
	const total, page = 5000, 20
	// Dead letters written as the dead-letter script writes them, in one
	// pipeline: half by reason handler, one in a hundred with error
	// "needle".
	_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i := range total {
			reason, errText := redstream.ReasonHandler, "boom"
			if i%2 == 0 {
				reason = redstream.ReasonMaxDeliveries
			}
			if i%100 == 0 {
				errText = "a needle here"
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: redstream.DeadLetterKey(stream), Values: []any{
				"dead-letter:stream", stream, "dead-letter:id", strconv.Itoa(i+1) + "-0", "dead-letter:reason", reason,
				"dead-letter:error", errText, "payload", strconv.Itoa(i),
			}})
		}
		return nil
	})
	require.NoError(t, err)
	counted := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
	t.Cleanup(func() { _ = counted.Close() })
	hook := &entryCounter{}
	counted.AddHook(hook)
	s := newSite(t, counted, dashboard.WithPageSize(page), dashboard.WithoutScan())
	q := url.QueryEscape(stream)
	tests := []struct {
		name, query string
		rows        int
	}{
		{"first page", "", page},
		{"filtered by reason", "&reason=handler", page},
		{"filtered by error text", "&q=NEEDLE", 2}, // 2 in the 200 read at most
		{"matching nothing", "&q=nothing-matches", 0},
		{"a time range after every entry", "&from=2999-01-01T00:00", 0},
	}
	for _, tc := range tests {
		hook.entries.Store(0)
		code, body := s.get("deadletters?s=" + q + tc.query)
		require.Equal(t, http.StatusOK, code, body)
		assert.Equal(t, tc.rows, countRows(body), tc.name)
		read := hook.entries.Load()
		assert.LessOrEqual(t, read, int64(10*page+10), "%s: at most ten pages' worth is read, not all %d", tc.name, total)
		t.Logf("%s: %d dead letters read of %d", tc.name, read, total)
	}

	// Paging on from the cursor goes on where the page ended.
	code, body := s.get("deadletters?s=" + q)
	require.Equal(t, http.StatusOK, code)
	next := nextCursor(t, body)
	code, body2 := s.get("deadletters?s=" + q + "&after=" + next)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, page, countRows(body2))
	assert.NotContains(t, body2, `data-id="`+next+`"`)
}
