package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/redistest"
)

// On a cluster the scan runs on every master, and the pipelines span
// slots: every stream is found, wherever its slot is.
func TestOverviewOnACluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	rdb := cl.Client(t)
	ctx := context.Background()
	base := "dash:" + strconv.FormatInt(int64(len(t.Name())), 10) + ":" + t.Name()
	var streams []string
	for i := range 6 {
		s := base + ":s" + strconv.Itoa(i)
		streams = append(streams, s)
		if i == 0 {
			continue // the lagging one, below
		}
		for range i + 1 {
			require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []any{"a", "1"}}).Err())
		}
	}
	ids := lagging(t, rdb, streams[0], 5)
	_, err := redstream.DeadLetterPending(ctx, rdb, streams[0], "billing", ids[1])
	require.NoError(t, err)
	parts, err := redstream.Partitions(base+":parts", 4)
	require.NoError(t, err)
	for _, p := range parts {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: p, Values: []any{"a", "1"}}).Err())
	}

	s := newSite(t, rdb)
	code, body := s.get("")
	require.Equal(t, http.StatusOK, code, body)
	for i, st := range streams[1:] {
		assert.Equal(t, strconv.Itoa(i+2), cell(t, body, st, "length"), st)
	}
	assert.Equal(t, "5", cell(t, body, streams[0], "length"))
	assert.Equal(t, "3", cell(t, body, streams[0], "lag"))
	assert.Equal(t, "1", cell(t, body, streams[0], "dead"))
	assert.Equal(t, "4", cell(t, body, base+":parts", "length"))
	code, body = s.get("deadletters?s=" + url.QueryEscape(streams[0]))
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, 1, countRows(body))
}
