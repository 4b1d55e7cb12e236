package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
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

// Redis going away and coming back: pages say so meanwhile, and the
// sampler takes samples again once it is back.
func TestTheSamplerRecoversWhenRedisComesBack(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	mr := r.MiniredisServer()
	stream := r.Stream(t, "orders")
	lagging(t, r.Client(), stream, 3)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	s := newSite(t, rdb, dashboard.WithSampleInterval(10*time.Millisecond), dashboard.WithRefresh(time.Millisecond))
	q := url.QueryEscape(stream)
	mr.Close()
	require.Eventually(t, func() bool {
		code, _ := s.get("")
		return code == http.StatusBadGateway
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, mr.Restart())
	require.Eventually(t, func() bool {
		code, body := s.get("")
		return code == http.StatusOK && strings.Contains(body, stream)
	}, 10*time.Second, 10*time.Millisecond, "pages read Redis again")
	// The overview reads Redis itself; its warning goes only once the
	// sampler took a sample after Redis came back. (A chart alone does not
	// show that: the sampler may have taken one sample before Redis went.)
	require.Eventually(t, func() bool {
		code, body := s.get("")
		return code == http.StatusOK && !strings.Contains(body, "last sample failed")
	}, 10*time.Second, 10*time.Millisecond, "the sampler took no sample after Redis came back")
	code, body := s.get("stream?s=" + q)
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `data-series="lag"`)
}

// Pages, actions and the sampler at once, under -race; the dashboard is
// closed while requests still come, and serves them after Close.
func TestConcurrentRequestsAndClose(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	stream, letter := deadLettered(t, r)
	other := r.Stream(t, "orders")
	lagging(t, rdb, other, 3)
	s := newSite(t, rdb, dashboard.WithActions(), dashboard.WithSampleInterval(time.Millisecond), dashboard.WithRefresh(time.Millisecond))
	q := url.QueryEscape(stream)
	token := s.token("deadletters?s=" + q)
	paths := []string{"", "stream?s=" + q, "pending?s=" + q + "&g=billing", "deadletters?s=" + q, "tail?s=" + q}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				if (i+j)%4 == 0 {
					code, _, _ := s.post("actions/pause", url.Values{"csrf": {token}, "s": {other}, "g": {"billing"}, "op": {[]string{"pause", "resume"}[j%2]}})
					assert.Equal(t, http.StatusSeeOther, code)
					continue
				}
				code, body := s.get(paths[(i+j)%len(paths)])
				assert.Equal(t, http.StatusOK, code, body)
			}
		})
		if i == 4 {
			require.NoError(t, s.d.Close())
		}
	}
	wg.Wait()
	code, _, _ := s.post("actions/replay", url.Values{"csrf": {token}, "s": {stream}, "one": {letter.ID}})
	assert.Equal(t, http.StatusSeeOther, code, "actions after Close")
	n, err := rdb.XLen(context.Background(), redstream.DeadLetterKey(stream)).Result()
	require.NoError(t, err)
	assert.Zero(t, n)
}

// A time range that ends before 1970 holds no dead letter: an empty page,
// not a bad cursor (a negative ID), nor every dead letter (the year 1
// taken for no time at all).
func TestDeadLettersUpToLongAgo(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	stream, _ := deadLettered(t, r)
	s := newSite(t, r.Client())
	q := url.QueryEscape(stream)
	for _, to := range []string{"1969-12-31T23:59", "0001-01-01T00:00"} {
		code, body := s.get("deadletters?s=" + q + "&to=" + to)
		assert.Equal(t, http.StatusOK, code, "to %s: %s", to, body)
		assert.Zero(t, countRows(body), "to %s", to)
	}
	code, body := s.get("deadletters?s=" + q + "&from=0001-01-01T00:00")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, 1, countRows(body), "from the year 1")
}
