package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rdb := redistest.Client(t)
	ctx := testCtx(t)

	out := cliOK(t, "pause", s.stream, "-group", "billing")
	assert.Contains(t, out, "paused group billing of "+s.stream)
	billing := rowOf(cliOK(t, "info", s.stream), "billing")
	require.Len(t, billing, 10)
	assert.True(t, strings.HasPrefix(billing[9], "since-"), "info shows the pause: %q", billing[9])
	assert.Equal(t, "no", rowOf(cliOK(t, "info", s.stream), "audit")[9], "other groups are not paused")
	n, err := rdb.Exists(ctx, "{"+s.stream+"}:redstream-paused:billing").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)

	out = cliOK(t, "resume", s.stream, "-group", "billing")
	assert.Contains(t, out, "resumed group billing of "+s.stream)
	assert.Equal(t, "no", rowOf(cliOK(t, "info", s.stream), "billing")[9])
	cliOK(t, "resume", s.stream, "-group", "billing") // not paused: no error
}

func TestPauseErrors(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	cliFails(t, 1, "does not exist", "pause", s.stream, "-group", "nobody")
	cliFails(t, 1, "does not exist", "pause", s.stream+":missing", "-group", "billing")
	cliFails(t, 2, "-group", "pause", s.stream)
}
