package dashboard_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/dashboard"
	"github.com/redstream/redstream/redstreamtest"
)

func TestMain(m *testing.M) {
	// A go-redis pool that failed to dial retries in a goroutine that
	// sleeps up to a second, even after Close.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// mount is where the tests mount the dashboard, as a service would.
const mount = "/ops/redstream/"

// site is a dashboard mounted under mount in a test server, with a client
// that keeps cookies and does not follow redirects.
type site struct {
	t      *testing.T
	d      *dashboard.Dashboard
	srv    *httptest.Server
	client *http.Client
}

func newSite(t *testing.T, rdb redis.UniversalClient, opts ...dashboard.Option) *site {
	t.Helper()
	d, err := dashboard.New(rdb, opts...)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle(mount, http.StripPrefix(strings.TrimSuffix(mount, "/"), d))
	srv := httptest.NewServer(mux)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := &http.Client{
		Transport:     &http.Transport{},
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(func() {
		// The client's connections end before goleak looks.
		client.CloseIdleConnections()
		srv.Close()
		require.NoError(t, d.Close())
	})
	return &site{t: t, d: d, srv: srv, client: client}
}

// get fetches path (relative to the mount) and returns the status and body.
func (s *site) get(path string) (int, string) {
	s.t.Helper()
	resp, err := s.client.Get(s.srv.URL + mount + path)
	require.NoError(s.t, err)
	return status(s.t, resp)
}

// live fetches path as a page updating itself does (app.js).
func (s *site) live(path string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.srv.URL+mount+path, nil)
	require.NoError(s.t, err)
	req.Header.Set("X-Redstream-Live", "1")
	resp, err := s.client.Do(req)
	require.NoError(s.t, err)
	return status(s.t, resp)
}

// post posts form to path (relative to the mount).
// It returns the status, the body and the headers.
func (s *site) post(path string, form url.Values) (int, string, http.Header) {
	s.t.Helper()
	resp, err := s.client.PostForm(s.srv.URL+mount+path, form)
	require.NoError(s.t, err)
	code, body := status(s.t, resp)
	return code, body, resp.Header
}

func status(t *testing.T, resp *http.Response) (int, string) {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// token returns the CSRF token a page carries (it also sets the cookie).
func (s *site) token(path string) string {
	s.t.Helper()
	code, body := s.get(path)
	require.Equal(s.t, http.StatusOK, code, body)
	m := csrfField.FindStringSubmatch(body)
	require.NotNil(s.t, m, "no CSRF field on %s", path)
	return m[1]
}

// cell returns the text of the cell data-col=col in the row of the
// overview for stream.
func cell(t *testing.T, body, stream, col string) string {
	t.Helper()
	row := regexp.MustCompile(`(?s)<tr data-stream="` + regexp.QuoteMeta(stream) + `"[^>]*>(.*?)</tr>`).FindStringSubmatch(body)
	require.NotNil(t, row, "no row for %s", stream)
	c := regexp.MustCompile(`(?s)data-col="` + col + `">(.*?)</td>`).FindStringSubmatch(row[1])
	require.NotNil(t, c, "no %s cell for %s", col, stream)
	return strings.TrimSpace(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(c[1], ""))
}

// lagging builds stream with group "billing" lagging: n entries, two read
// by consumer c1, one of them acknowledged; so lag n-2, one pending.
func lagging(t *testing.T, rdb redis.UniversalClient, stream string, n int) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	for i := range ids {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{"payload": `{"n":` + string(rune('0'+i%10)) + `}`}}).Result()
		require.NoError(t, err)
		ids[i] = id
	}
	require.NoError(t, redstream.CreateGroup(ctx, rdb, stream, "billing", "0"))
	_, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "c1", Streams: []string{stream, ">"}, Count: 2}).Result()
	require.NoError(t, err)
	_, err = redstream.AckPending(ctx, rdb, stream, "billing", ids[0])
	require.NoError(t, err)
	return ids
}

// deadLettered builds a lagging stream (see lagging) in r whose second
// entry was dead-lettered, and returns the stream and its one dead letter.
func deadLettered(t *testing.T, r *redstreamtest.Redis) (string, redstream.DeadLetter) {
	t.Helper()
	rdb := r.Client()
	stream := r.Stream(t, "orders")
	ids := lagging(t, rdb, stream, 3)
	_, err := redstream.DeadLetterPending(context.Background(), rdb, stream, "billing", ids[1])
	require.NoError(t, err)
	dl := redstreamtest.DeadLetters(t, rdb, stream)
	require.Len(t, dl, 1)
	return stream, dl[0]
}

var rowID = regexp.MustCompile(`<tr data-id="`)

// countRows counts the entry rows of a page.
func countRows(body string) int { return len(rowID.FindAllString(body, -1)) }

var nextLink = regexp.MustCompile(`id="next" href="[^"]*after=([0-9]+-[0-9]+)"`)

// nextCursor returns the cursor of the page's "Next page" link.
func nextCursor(t *testing.T, body string) string {
	t.Helper()
	m := nextLink.FindStringSubmatch(body)
	require.NotNil(t, m, "no next page link")
	return m[1]
}
