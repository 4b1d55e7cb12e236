package dashboard_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/dashboard"
	"github.com/redstream/redstream/redstreamtest"
)

// cookie returns the value of the dashboard's CSRF cookie in s's jar.
func (s *site) cookie() string {
	s.t.Helper()
	u, err := url.Parse(s.srv.URL + mount)
	require.NoError(s.t, err)
	for _, c := range s.client.Jar.Cookies(u) {
		if c.Name == "redstream_csrf" {
			return c.Value
		}
	}
	s.t.Fatal("no CSRF cookie")
	return ""
}

// Anyone who can load a page, read-only or not, gets the CSRF token in its
// cookie; a flash signed with that token would let a visitor craft links
// that put words on an operator's page.
func TestFlashCannotBeSignedWithTheCSRFToken(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	s := newSite(t, r.Client())
	code, _ := s.get("")
	require.Equal(t, http.StatusOK, code)
	const text = "Session expired: sign in again at evil.example"
	m := hmac.New(sha256.New, []byte(s.cookie()))
	m.Write([]byte(text))
	_, body := s.get("?" + url.Values{"flash": {text}, "sig": {hex.EncodeToString(m.Sum(nil))}}.Encode())
	assert.NotContains(t, body, "evil.example")
	assert.NotContains(t, body, `id="flash"`)
}

// A form posted from another origin carries the token and the cookie only
// when the attacker has both (a sibling subdomain can set the cookie, a
// former viewer knows the token): the browser's own word on where the
// request comes from refuses it anyway.
func TestCrossOriginActionIsRefused(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	stream, letter := deadLettered(t, r)
	s := newSite(t, rdb, dashboard.WithActions())
	token := s.token("deadletters?s=" + url.QueryEscape(stream))
	form := url.Values{"csrf": {token}, "s": {stream}, "one": {letter.ID}}
	for name, hdr := range map[string][2]string{
		"cross-site fetch metadata": {"Sec-Fetch-Site", "cross-site"},
		"same-site fetch metadata":  {"Sec-Fetch-Site", "same-site"},
		"another origin":            {"Origin", "https://evil.example"},
	} {
		req, err := http.NewRequest(http.MethodPost, s.srv.URL+mount+"actions/replay", strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(hdr[0], hdr[1])
		resp, err := s.client.Do(req)
		require.NoError(t, err)
		code, body := status(t, resp)
		assert.Equal(t, http.StatusForbidden, code, "%s: %s", name, body)
	}
	assert.Len(t, redstreamtest.DeadLetters(t, rdb, stream), 1, "nothing replayed")

	req, err := http.NewRequest(http.MethodPost, s.srv.URL+mount+"actions/replay", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	code, _ := status(t, resp)
	assert.Equal(t, http.StatusSeeOther, code, "the dashboard's own form")
}

// Error pages and the overview's warnings say what failed, not where Redis
// is: the address (an internal host name, a port) is the service's.
func TestErrorsDoNotShowTheRedisAddress(t *testing.T) {
	t.Parallel()
	const addr = "127.0.0.1:1"
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	s := newSite(t, rdb, dashboard.WithActions())
	for _, path := range []string{"", "stream?s=a", "pending?s=a&g=b", "deadletters?s=a", "tail?s=a"} {
		code, body := s.get(path)
		assert.Equal(t, http.StatusBadGateway, code, "%s: %s", path, body)
		assert.Contains(t, body, "connection refused", path)
		assert.NotContains(t, body, addr, path)
	}
	unknown := redis.NewClient(&redis.Options{Addr: "redis.invalid:6379", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = unknown.Close() })
	s = newSite(t, unknown)
	_, body := s.get("stream?s=a")
	assert.NotContains(t, body, "redis.invalid")
}

// fieldsEntry adds an entry of n small fields and one of size bytes.
func fieldsEntry(t *testing.T, rdb redis.UniversalClient, stream string, n, size int) {
	t.Helper()
	values := make([]any, 0, 2*n+2)
	for i := range n {
		values = append(values, fmt.Sprintf("f%05d", i), "v")
	}
	values = append(values, "big", strings.Repeat("é", size/2))
	require.NoError(t, rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: values}).Err())
}

// An entry is attacker-sized: a megabyte value or ten thousand fields must
// not make a page (fetched again every few seconds) megabytes long.
func TestHugeEntriesMakeBoundedPages(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	stream := r.Stream(t, "orders")
	fieldsEntry(t, rdb, stream, 10_000, 1<<20)
	fieldsEntry(t, rdb, stream, 0, 1<<20)
	ctx := context.Background()
	require.NoError(t, redstream.CreateGroup(ctx, rdb, stream, "billing", "0"))
	msgs, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "c1", Streams: []string{stream, ">"}}).Result()
	require.NoError(t, err)
	require.Len(t, msgs[0].Messages, 2)
	_, err = redstream.DeadLetterPending(ctx, rdb, stream, "billing", msgs[0].Messages[1].ID)
	require.NoError(t, err)
	s := newSite(t, rdb)
	q := url.QueryEscape(stream)
	for _, path := range []string{"tail?s=" + q, "pending?s=" + q + "&g=billing", "deadletters?s=" + q} {
		code, body := s.get(path)
		require.Equal(t, http.StatusOK, code, path)
		assert.Less(t, len(body), 200_000, path)
		assert.True(t, strings.Contains(body, "more bytes"), "%s: no cut value", path)
	}
	_, body := s.get("tail?s=" + q)
	assert.True(t, strings.Contains(body, "<dt>f00000</dt>"), "the first fields are shown")
	assert.True(t, regexp.MustCompile(`[0-9]+ more fields`).MatchString(body), "says how many fields are not shown")
	assert.False(t, strings.Contains(body, "\ufffd"), "cut between runes, not inside one")
}

// A service that adds its logging after its authentication must not lose
// the authentication: middlewares compose, the first given outermost.
func TestMiddlewaresCompose(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	var (
		mu    sync.Mutex
		order []string
	)
	mw := func(name string, refuse bool) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				if refuse && r.Header.Get("Authorization") == "" {
					http.Error(w, "sign in", http.StatusUnauthorized)
					return
				}
				next.ServeHTTP(w, r)
			})
		}
	}
	s := newSite(t, r.Client(), dashboard.WithMiddleware(mw("auth", true)), dashboard.WithMiddleware(mw("log", false)))
	code, _ := s.get("")
	assert.Equal(t, http.StatusUnauthorized, code, "the first middleware still guards the dashboard")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"auth"}, order)
}
