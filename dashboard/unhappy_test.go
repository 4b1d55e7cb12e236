package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/dashboard"
	"github.com/redstream/redstream/redstreamtest"
)

func TestUnhappyPaths(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	stream := r.Stream(t, "orders")
	lagging(t, rdb, stream, 3)
	plain, nope := r.Stream(t, "plain"), r.Stream(t, "nope")
	require.NoError(t, rdb.Set(context.Background(), plain, "x", 0).Err())
	// A dead letter that says it came from another stream: not replayable
	// onto this one (a conflict, not Redis failing: it was 502).
	forged, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: redstream.DeadLetterKey(stream), Values: []string{"dead-letter:stream", "victim", "k", "v"}}).Result()
	require.NoError(t, err)
	s := newSite(t, rdb, dashboard.WithActions())
	q := url.QueryEscape(stream)
	gets := []struct {
		name, path string
		code       int
	}{
		{"unknown stream", "stream?s=" + url.QueryEscape(nope), http.StatusNotFound},
		{"no stream named", "stream", http.StatusBadRequest},
		{"bad stream name", "stream?s=a%7Db", http.StatusBadRequest},
		{"not a stream", "stream?s=" + url.QueryEscape(plain), http.StatusBadRequest},
		{"bad partitions", "stream?s=" + q + "&partitions=0", http.StatusBadRequest},
		{"unknown partitioned stream", "stream?s=" + url.QueryEscape(nope) + "&partitions=4", http.StatusNotFound},
		{"pending: no group", "pending?s=" + q, http.StatusBadRequest},
		{"pending: unknown group", "pending?s=" + q + "&g=nope", http.StatusNotFound},
		{"pending: unknown stream", "pending?s=" + url.QueryEscape(nope) + "&g=billing", http.StatusNotFound},
		{"pending: bad cursor", "pending?s=" + q + "&g=billing&after=yesterday", http.StatusBadRequest},
		// "(" + the greatest ID was a Redis error: 502.
		{"pending: after the greatest ID", "pending?s=" + q + "&g=billing&after=18446744073709551615-18446744073709551615", http.StatusOK},
		{"dead letters: bad cursor", "deadletters?s=" + q + "&after=1-x", http.StatusBadRequest},
		{"dead letters: bad time", "deadletters?s=" + q + "&from=monday", http.StatusBadRequest},
		// Was 200 with "0 in all"; a missing stream is no error there (its
		// dead letters outlive it).
		{"dead letters: not a stream", "deadletters?s=" + url.QueryEscape(plain), http.StatusBadRequest},
		{"dead letters: no such stream", "deadletters?s=" + url.QueryEscape(nope), http.StatusOK},
		{"tail: unknown stream", "tail?s=" + url.QueryEscape(nope), http.StatusNotFound},
		{"tail: not a stream", "tail?s=" + url.QueryEscape(plain), http.StatusBadRequest},
		{"unknown page", "nope", http.StatusNotFound},
		{"action by GET", "actions/ack", http.StatusMethodNotAllowed},
	}
	for _, tc := range gets {
		code, body := s.get(tc.path)
		assert.Equal(t, tc.code, code, "%s: %s", tc.name, body)
	}

	token := s.token("stream?s=" + q)
	posts := []struct {
		name, path string
		form       url.Values
		code       int
	}{
		{"ack: bad ID", "actions/ack", url.Values{"s": {stream}, "g": {"billing"}, "id": {"nope"}, "confirm": {"yes"}}, http.StatusBadRequest},
		{"ack: no ID", "actions/ack", url.Values{"s": {stream}, "g": {"billing"}, "confirm": {"yes"}}, http.StatusBadRequest},
		{"ack: unknown group", "actions/ack", url.Values{"s": {stream}, "g": {"nope"}, "id": {"1-0"}, "confirm": {"yes"}}, http.StatusNotFound},
		{"ack: unknown stream", "actions/ack", url.Values{"s": {nope}, "g": {"billing"}, "id": {"1-0"}, "confirm": {"yes"}}, http.StatusNotFound},
		{"claim: no consumer", "actions/claim", url.Values{"s": {stream}, "g": {"billing"}, "id": {"1-0"}}, http.StatusBadRequest},
		{"replay: bad ID", "actions/replay", url.Values{"s": {stream}, "id": {"1-0", "x"}}, http.StatusBadRequest},
		{"replay: nothing selected", "actions/replay", url.Values{"s": {stream}}, http.StatusBadRequest},
		{"replay all: bad rate", "actions/replay", url.Values{"s": {stream}, "all": {"1"}, "rate": {"-3"}}, http.StatusBadRequest},
		// Rates whose pacing interval is 0 or overflows panicked in
		// time.NewTicker: the connection was dropped.
		{"replay all: rate too high", "actions/replay", url.Values{"s": {stream}, "all": {"1"}, "rate": {"2e9"}, "confirm": {"yes"}}, http.StatusBadRequest},
		{"replay all: rate too low", "actions/replay", url.Values{"s": {stream}, "all": {"1"}, "rate": {"1e-300"}, "confirm": {"yes"}}, http.StatusBadRequest},
		{"replay all: infinite rate", "actions/replay", url.Values{"s": {stream}, "all": {"1"}, "rate": {"Inf"}, "confirm": {"yes"}}, http.StatusBadRequest},
		{"replay all: rate not a number", "actions/replay", url.Values{"s": {stream}, "all": {"1"}, "rate": {"NaN"}, "confirm": {"yes"}}, http.StatusBadRequest},
		{"replay: from another stream", "actions/replay", url.Values{"s": {stream}, "one": {forged}}, http.StatusConflict},
		{"ack: not a stream", "actions/ack", url.Values{"s": {plain}, "g": {"billing"}, "id": {"1-0"}, "confirm": {"yes"}}, http.StatusBadRequest},
		{"delete: bad ID", "actions/delete", url.Values{"s": {stream}, "id": {"x"}, "confirm": {"yes"}}, http.StatusBadRequest},
		{"pause: bad op", "actions/pause", url.Values{"s": {stream}, "g": {"billing"}, "op": {"stop"}}, http.StatusBadRequest},
		{"pause: unknown group", "actions/pause", url.Values{"s": {stream}, "g": {"nope"}, "op": {"pause"}}, http.StatusNotFound},
	}
	for _, tc := range posts {
		tc.form.Set("csrf", token)
		code, body, _ := s.post(tc.path, tc.form)
		assert.Equal(t, tc.code, code, "%s: %s", tc.name, body)
	}
	resp, err := s.client.Get(s.srv.URL + mount + "actions/replay")
	require.NoError(t, err)
	code, _ := status(t, resp)
	assert.Equal(t, http.StatusMethodNotAllowed, code)
	assert.Contains(t, resp.Header.Get("Allow"), "POST")
	code, _, _ = s.post("", url.Values{"csrf": {token}})
	assert.Equal(t, http.StatusMethodNotAllowed, code, "pages are GET only")
}

func TestRedisDown(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	s := newSite(t, rdb, dashboard.WithActions())
	for _, path := range []string{"", "stream?s=a", "pending?s=a&g=b", "deadletters?s=a", "tail?s=a"} {
		code, body := s.get(path)
		assert.Equal(t, http.StatusBadGateway, code, "%s: %s", path, body)
		assert.Contains(t, body, "connect", path)
	}
}

func TestReadOnlyShowsNoButtonsAndRefusesActions(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	stream, letter := deadLettered(t, r)
	s := newSite(t, rdb) // read-only by default
	q := url.QueryEscape(stream)
	for _, path := range []string{"stream?s=" + q, "pending?s=" + q + "&g=billing", "deadletters?s=" + q} {
		code, body := s.get(path)
		require.Equal(t, http.StatusOK, code, body)
		assert.NotContains(t, body, `name="csrf"`, path)
		assert.NotContains(t, body, `action="actions/`, path)
		assert.NotContains(t, body, "formaction", path)
		assert.NotContains(t, body, `type="checkbox"`, path)
		assert.Contains(t, body, "read-only", path)
	}
	for _, path := range []string{"actions/ack", "actions/deadletter", "actions/claim", "actions/replay", "actions/delete", "actions/pause"} {
		code, body, _ := s.post(path, url.Values{"s": {stream}, "g": {"billing"}, "id": {letter.ID}, "consumer": {"x"}, "op": {"pause"}, "confirm": {"yes"}})
		assert.Equal(t, http.StatusForbidden, code, "%s: %s", path, body)
	}
	assert.Len(t, redstreamtest.DeadLetters(t, rdb, stream), 1, "nothing was replayed or deleted")
}

func TestActionWithoutTheCSRFTokenIsRefused(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	stream, letter := deadLettered(t, r)
	s := newSite(t, rdb, dashboard.WithActions())
	form := url.Values{"s": {stream}, "id": {letter.ID}}
	code, _, _ := s.post("actions/replay", form)
	assert.Equal(t, http.StatusForbidden, code, "no token, no cookie")
	token := s.token("deadletters?s=" + url.QueryEscape(stream)) // sets the cookie
	wrong := "0" + token[1:]
	if wrong == token { // one token in 16 starts with 0
		wrong = "1" + token[1:]
	}
	form.Set("csrf", wrong)
	code, _, _ = s.post("actions/replay", form)
	assert.Equal(t, http.StatusForbidden, code, "a wrong token")
	// The right token without the cookie (another site's form cannot
	// send it, SameSite=Strict): refused too.
	bare := &http.Client{Transport: s.client.Transport, CheckRedirect: s.client.CheckRedirect}
	form.Set("csrf", token)
	resp, err := bare.PostForm(s.srv.URL+mount+"actions/replay", form)
	require.NoError(t, err)
	code, _ = status(t, resp)
	assert.Equal(t, http.StatusForbidden, code, "no cookie")
	assert.Len(t, redstreamtest.DeadLetters(t, rdb, stream), 1)

	code, _, hdr := s.post("actions/replay", form)
	assert.Equal(t, http.StatusSeeOther, code, "with the token and its cookie")
	assert.Contains(t, hdr.Get("Location"), mount+"deadletters?")
	assert.Empty(t, redstreamtest.DeadLetters(t, rdb, stream))
}

func TestFlashNeedsTheDashboardsSignature(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	s := newSite(t, r.Client())
	_, body := s.get("?flash=Session+expired%3A+sign+in+at+evil.example")
	assert.NotContains(t, body, "evil.example")
	assert.NotContains(t, body, `id="flash"`)
}
