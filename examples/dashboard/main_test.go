package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/redstreamtest"
)

// The service with its traffic, on both backends: the dashboard mounted
// under /redstream/ shows the stream, its dead letters and its tail, also
// on miniredis.
func TestServiceMountsTheDashboard(t *testing.T) {
	redstreamtest.OnEachBackend(t, func(t *testing.T, r *redstreamtest.Redis) {
		rdb := r.Client()
		stream := r.Stream(t, "shop:order:created")
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { assert.NoError(t, traffic(ctx, rdb, stream)) })
		t.Cleanup(func() {
			cancel()
			wg.Wait()
		})
		handler, closeService, err := newService(rdb)
		require.NoError(t, err)
		srv := httptest.NewServer(handler)
		t.Cleanup(func() {
			srv.Close()
			closeService()
		})
		get := func(path string) (int, string) {
			resp, err := http.Get(srv.URL + path)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			return resp.StatusCode, string(b)
		}
		code, body := get("/")
		require.Equal(t, http.StatusOK, code)
		assert.Contains(t, body, `href="/redstream/"`)
		// The tenth order is dead-lettered after a second or so.
		redstreamtest.WaitDeadLetters(t, rdb, stream, 1)
		code, body = get("/redstream/")
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, `data-stream="`+stream+`"`)
		q := url.QueryEscape(stream)
		for _, path := range []string{"stream?s=" + q, "deadletters?s=" + q, "tail?s=" + q, "pending?g=billing&s=" + q} {
			code, body = get("/redstream/" + path)
			assert.Equal(t, http.StatusOK, code, "%s: %s", path, body)
		}
		_, body = get("/redstream/deadletters?s=" + q)
		assert.True(t, strings.Contains(body, "negative amount"), "the dead letter's error is shown")
	})
}
