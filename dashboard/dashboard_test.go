package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/dashboard"
	"github.com/redstream/redstream/redstreamtest"
)

func TestOverviewShowsEachStreamsFigures(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	ctx := context.Background()
	orders := r.Stream(t, "orders")
	ids := lagging(t, rdb, orders, 10)
	// The pending entry (ids[1]) goes to the dead letters: pending 0.
	_, err := redstream.DeadLetterPending(ctx, rdb, orders, "billing", ids[1])
	require.NoError(t, err)
	quiet := r.Stream(t, "quiet")
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: quiet, Values: map[string]any{"a": "1"}}).Err())

	payments := r.Stream(t, "payments")
	parts, err := redstream.Partitions(payments, 3)
	require.NoError(t, err)
	for i, p := range parts {
		for range i + 1 {
			require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: p, Values: map[string]any{"a": "1"}}).Err())
		}
	}

	s := newSite(t, rdb)
	code, body := s.get("")
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "6", cell(t, body, payments, "length"), "partitions summed: 1+2+3")
	assert.NotContains(t, body, `data-stream="`+parts[0]+`"`, "partitions are shown with their base")
	require.NoError(t, redstream.CreateGroup(ctx, rdb, parts[1], "billing", "0"))
	// The lease of an exclusive partition, as a consumer holds it.
	require.NoError(t, rdb.Set(ctx, "{"+parts[1]+"}:redstream-lease:billing", "billing-7", 0).Err())
	code, page := s.get("stream?partitions=3&s=" + url.QueryEscape(payments))
	require.Equal(t, http.StatusOK, code, page)
	assert.Contains(t, page, parts[2])
	assert.Contains(t, page, "billing: 2 / 0, owned by billing-7")
	assert.Equal(t, "10", cell(t, body, orders, "length"))
	assert.Equal(t, "1", cell(t, body, orders, "groups"))
	assert.Equal(t, "8", cell(t, body, orders, "lag"))
	assert.Equal(t, "0", cell(t, body, orders, "pending"))
	assert.Equal(t, "1", cell(t, body, orders, "dead"))
	assert.Equal(t, "1", cell(t, body, quiet, "length"))
	assert.Equal(t, "0", cell(t, body, quiet, "groups"))
	assert.NotContains(t, body, `data-stream="dead-letter:`, "dead-letter streams are shown with their stream")
	assert.Less(t, strings.Index(body, `data-stream="`+orders), strings.Index(body, `data-stream="`+quiet), "worst lag first")
}

func TestMountedUnderASubPath(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	s := newSite(t, r.Client())
	code, body := s.get("")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `<base href="`+mount+`">`)
	assert.Contains(t, body, `href="static/app.css"`)
	code, css := s.get("static/app.css")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, css, "body")
	code, _ = s.get("static/app.js")
	assert.Equal(t, http.StatusOK, code)
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	s := newSite(t, r.Client())
	resp, err := s.client.Get(s.srv.URL + mount)
	require.NoError(t, err)
	code, _ := status(t, resp)
	require.Equal(t, http.StatusOK, code)
	csp := resp.Header.Get("Content-Security-Policy")
	assert.Contains(t, csp, "script-src 'self'")
	assert.NotContains(t, csp, "unsafe-inline")
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "redstream_csrf" {
			cookie = c
		}
	}
	require.NotNil(t, cookie)
	assert.True(t, cookie.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
	assert.Equal(t, mount, cookie.Path)
}

func TestEntryFieldsAreEscapedAndBinarySafe(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	stream := r.Stream(t, "xss")
	require.NoError(t, rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: map[string]any{
		"payload": "<script>alert(1)</script>", "bin": "\xff\x00ok", "<b>name</b>": "x",
	}}).Err())
	s := newSite(t, rdb)
	code, body := s.get("tail?s=" + url.QueryEscape(stream))
	require.Equal(t, http.StatusOK, code, body)
	assert.NotContains(t, body, "<script>alert(1)")
	assert.Contains(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;")
	assert.Contains(t, body, `&#34;\xff\x00ok&#34;`, "non-UTF-8 values are shown Go-quoted")
	assert.NotContains(t, body, "<b>name</b>")
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	for name, opt := range map[string]dashboard.Option{
		"interval":  dashboard.WithSampleInterval(0),
		"ring":      dashboard.WithRingSize(1),
		"page":      dashboard.WithPageSize(0),
		"rate":      dashboard.WithReplayRate(-1),
		"huge rate": dashboard.WithReplayRate(2e9),
		"refresh":   dashboard.WithRefresh(-1),
		"stream":    dashboard.WithStreams("a}b"),
		"mw":        dashboard.WithMiddleware(nil),
	} {
		_, err := dashboard.New(r.Client(), opt)
		assert.ErrorIs(t, err, dashboard.ErrInvalidOption, name)
	}
	_, err := dashboard.New(nil)
	assert.ErrorIs(t, err, dashboard.ErrInvalidOption)
}

func TestNamedStreamsWithoutScan(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	named, other, missing := r.Stream(t, "named"), r.Stream(t, "other"), r.Stream(t, "missing")
	for _, s := range []string{named, other} {
		require.NoError(t, rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: s, Values: map[string]any{"a": "1"}}).Err())
	}
	s := newSite(t, rdb, dashboard.WithStreams(named, missing), dashboard.WithoutScan())
	code, body := s.get("")
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "1", cell(t, body, named, "length"))
	assert.Contains(t, body, `data-stream="`+missing+`"`)
	assert.Contains(t, body, "missing: no such stream yet")
	assert.NotContains(t, body, `data-stream="`+other+`"`, "not named, not scanned")
}

// The overview sums partitions under their base only when they start at p0
// and the base is no stream itself; it shows a user's stream whose name
// starts like a dead-letter key's but is none, and leaves out keys
// redstream cannot use as streams (their pages refuse them).
func TestOverviewTellsStreamsFromPartitionsAndDeadLetters(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	shop, x, part := r.Stream(t, "shop"), r.Stream(t, "x"), r.Stream(t, "part")
	mine := redstream.DeadLetterPrefix + r.Stream(t, "mine")
	unusable := r.Stream(t, "a") + "}b"
	for _, s := range []string{shop + ":p3", x, x + ":p0", part + ":p0", part + ":p1", mine, unusable} {
		require.NoError(t, rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: s, Values: map[string]any{"a": "1"}}).Err())
	}
	s := newSite(t, rdb)
	code, body := s.get("")
	require.Equal(t, http.StatusOK, code, body)
	for _, row := range []string{shop + ":p3", x, x + ":p0", part, mine} {
		assert.Contains(t, body, `data-stream="`+row+`"`, "a row of its own")
	}
	for _, row := range []string{shop, part + ":p0", unusable} {
		assert.NotContains(t, body, `data-stream="`+row+`"`, "no row")
	}
	assert.Contains(t, body, "2 partitions")
	assert.NotContains(t, body, "4 partitions", "shop:p3 alone is no partition set")
}

// miniredis, like Redis 6.2, sends no lag of its own that can be trusted
// (it sends the stream's length): the overview counts it.
func TestOverviewCountsTheLagOnAServerThatSendsNone(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	rdb := r.Client()
	orders := r.Stream(t, "orders")
	lagging(t, rdb, orders, 10)
	s := newSite(t, rdb)
	code, body := s.get("")
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "8", cell(t, body, orders, "lag"), "miniredis says 10")
}

// A stream named with thousands of bytes filled the overview's row and
// every page's heading; it is shown cut, with an ellipsis, and the whole
// name stays in the links (and, on the overview, its title attribute).
func TestALongStreamNameIsShownShortened(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	long := r.Stream(t, strings.Repeat("n", 5000))
	lagging(t, rdb, long, 2)
	s := newSite(t, rdb)
	q := url.QueryEscape(long)
	for _, page := range []string{"", "stream?s=" + q, "pending?s=" + q + "&g=billing", "deadletters?s=" + q, "tail?s=" + q} {
		name, _, _ := strings.Cut(page, "?")
		code, body := s.get(page)
		require.Equal(t, http.StatusOK, code, "page %q", name)
		assert.True(t, strings.Contains(body, "nnnnn…"), "page %q: shortened", name)
		text := regexp.MustCompile(`(?s)<[^>]*>`).ReplaceAllString(body, "")
		assert.False(t, strings.Contains(text, strings.Repeat("n", 200)), "page %q: the whole name in the page's text", name)
	}
	_, body := s.get("")
	assert.True(t, strings.Contains(body, `title="`+long+`"`), "the whole name in the title attribute")
}
