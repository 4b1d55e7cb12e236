package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/dashboard"
	"github.com/redstream/redstream/redstreamtest"
)

var lagSeries = regexp.MustCompile(`data-series="lag" data-values="([0-9. ]*)"`)

// lagValues returns the lag values the page drew, oldest first.
func lagValues(t *testing.T, body string) []int64 {
	t.Helper()
	m := lagSeries.FindStringSubmatch(body)
	if m == nil {
		return nil
	}
	var out []int64
	for _, f := range strings.Fields(m[1]) {
		v, err := strconv.ParseInt(f, 10, 64)
		require.NoError(t, err)
		out = append(out, v)
	}
	return out
}

func TestChartsShowTheLagRising(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	stream := r.Stream(t, "orders")
	lagging(t, rdb, stream, 3)
	s := newSite(t, rdb, dashboard.WithSampleInterval(20*time.Millisecond), dashboard.WithRingSize(50))
	path := "stream?s=" + url.QueryEscape(stream)
	// Publish while nobody consumes, until the chart has drawn a lag that
	// rose over at least three samples.
	var drawn []int64
	require.Eventually(t, func() bool {
		require.NoError(t, rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: map[string]any{"a": "1"}}).Err())
		code, body := s.get(path)
		require.Equal(t, http.StatusOK, code, body)
		drawn = lagValues(t, body)
		return len(drawn) >= 3 && rises(drawn)
	}, 20*time.Second, 30*time.Millisecond, "lag drawn: %v", drawn)
	assert.Greater(t, drawn[len(drawn)-1], drawn[0])

	code, body := s.get("")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `class="lag-growing`, "a growing lag is coloured on the overview")
	assert.Contains(t, body, `<svg class="spark"`)
}

// rises reports whether values never fall and end higher than they start.
func rises(values []int64) bool {
	for i := 1; i < len(values); i++ {
		if values[i] < values[i-1] {
			return false
		}
	}
	return values[len(values)-1] > values[0]
}

func TestCloseIsIdempotent(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	d, err := dashboard.New(r.Client(), dashboard.WithSampleInterval(time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, d.Close())
	require.NoError(t, d.Close())
}

// Every open overview updates itself; with the figures read for each
// request, ten tabs cost Redis ten SCANs of the keyspace and ten sets of
// pipelines a refresh, on top of the sampler's. An update shows the
// latest survey while it is younger than the refresh, and reads again
// after an action; a page the operator loads always reads.
func TestOverviewsShareTheSamplersSurvey(t *testing.T) {
	t.Parallel()
	r := redstreamtest.New(t)
	rdb := r.Client()
	stream := r.Stream(t, "orders")
	lagging(t, rdb, stream, 3)
	counted := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
	t.Cleanup(func() { _ = counted.Close() })
	hook := &entryCounter{}
	counted.AddHook(hook)
	s := newSite(t, counted, dashboard.WithActions(), dashboard.WithSampleInterval(time.Hour), dashboard.WithRefresh(time.Hour))
	code, body := s.get("")
	require.Equal(t, http.StatusOK, code, body)
	for range 20 {
		code, body := s.live("")
		require.Equal(t, http.StatusOK, code, body)
		assert.Equal(t, "-", cell(t, body, stream, "paused"))
	}
	// One survey by the sampler, and one by the page loaded.
	assert.LessOrEqual(t, hook.scans.Load(), int64(2), "SCANs for a page and 20 updates")
	s.get("")
	assert.LessOrEqual(t, hook.scans.Load(), int64(3), "a page loaded surveys anew")

	token := s.token("stream?s=" + url.QueryEscape(stream))
	code, _, _ = s.post("actions/pause", url.Values{"csrf": {token}, "s": {stream}, "g": {"billing"}, "op": {"pause"}})
	require.Equal(t, http.StatusSeeOther, code)
	code, body = s.live("")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "1 paused", cell(t, body, stream, "paused"), "an action's outcome shows at once")
}
