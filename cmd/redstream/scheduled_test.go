package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/redistest"
)

func TestScheduled(t *testing.T) {
	rdb := redistest.Client(t)
	ctx := context.Background()
	s := "cli:scheduled:" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	p, err := redstream.NewProducer[map[string]string](rdb, s)
	require.NoError(t, err)
	first, err := p.Publish(ctx, map[string]string{"n": "1"}, redstream.WithDelay(time.Hour))
	require.NoError(t, err)
	second, err := p.Publish(ctx, map[string]string{"n": "2"}, redstream.WithDelay(2*time.Hour))
	require.NoError(t, err)

	out := cliOK(t, "scheduled", "list", s)
	assert.Contains(t, out, first)
	assert.Less(t, strings.Index(out, first), strings.Index(out, second), "first due first")
	assert.Contains(t, out, "2 of 2 scheduled messages")

	var list []scheduledJSON
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "scheduled", "list", s, "-json", "-n", "1")), &list))
	require.Len(t, list, 1)
	assert.Equal(t, first, list[0].ID)
	assert.Equal(t, `{"n":"1"}`, list[0].Fields["payload"])

	assert.Contains(t, cliOK(t, "info", s), "scheduled", "info of a stream with only scheduled messages")
	var info streamJSON
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "info", s, "-json")), &info))
	assert.Equal(t, int64(2), info.Scheduled)
	assert.NotEmpty(t, info.NextDue)

	assert.Contains(t, cliOK(t, "scheduled", "cancel", s, first), "cancelled "+first)
	r := cli(t, "-addr", redistest.Addr(t), "scheduled", "cancel", s, first)
	requireOneErrorLine(t, r)
	assert.Contains(t, r.stderr, "not waiting")
	assert.Contains(t, cliOK(t, "scheduled", "list", s), "1 of 1 scheduled message of")

	assert.Contains(t, cliOK(t, "help", "scheduled"), "scheduled cancel")
}
