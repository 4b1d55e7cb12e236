package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

var servingURL = regexp.MustCompile(`on (http://[^ ]+/) `)

// startWeb runs 'redstream web' with args on a free port and returns its
// URL, its output, and a func that stops it and returns its exit code.
func startWeb(t *testing.T, env map[string]string, args ...string) (string, *syncBuffer, *syncBuffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	getenv := func(k string) string { return env[k] }
	done := make(chan int, 1)
	full := append([]string{"-addr", redistest.Addr(t), "web", "-addr", "127.0.0.1:0"}, args...)
	go func() { done <- newApp(&stdout, &stderr, getenv).main(ctx, full) }()
	var base string
	require.Eventually(t, func() bool {
		m := servingURL.FindStringSubmatch(stdout.String())
		if m != nil {
			base = m[1]
		}
		return m != nil || stderr.String() != ""
	}, 10*time.Second, 10*time.Millisecond)
	require.NotEmpty(t, base, "stderr: %s", stderr.String())
	stop := sync.OnceValue(func() int {
		cancel()
		return <-done
	})
	t.Cleanup(func() { stop() })
	return base, &stdout, &stderr, stop
}

func fetch(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestWebServesTheDashboardReadOnly(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	base, stdout, _, stop := startWeb(t, nil)
	assert.Contains(t, stdout.String(), "read-only")

	req, _ := http.NewRequest(http.MethodGet, base, nil)
	code, body := fetch(t, req)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `data-stream="`+s.stream+`"`)

	req, _ = http.NewRequest(http.MethodPost, base+"actions/replay", strings.NewReader(url.Values{"s": {s.stream}, "all": {"1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	code, _ = fetch(t, req)
	assert.Equal(t, http.StatusForbidden, code, "read-only unless -allow-actions")
	assert.Equal(t, 0, stop(), "an interrupt is a normal end")
}

func TestWebBasicAuth(t *testing.T) {
	t.Parallel()
	newScenario(t)
	const password = "s3cret-pa55"
	base, stdout, stderr, stop := startWeb(t, map[string]string{webPasswordEnv: password}, "-user", "ops", "-allow-actions")
	req, _ := http.NewRequest(http.MethodGet, base, nil)
	code, _ := fetch(t, req)
	assert.Equal(t, http.StatusUnauthorized, code)
	req.SetBasicAuth("ops", "wrong")
	code, _ = fetch(t, req)
	assert.Equal(t, http.StatusUnauthorized, code)
	req.SetBasicAuth("ops", password)
	code, body := fetch(t, req)
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "actions on")
	assert.Equal(t, 0, stop())
	assert.Contains(t, stdout.String(), "basic authentication as ops")
	assert.NotContains(t, stdout.String()+stderr.String()+body, password, "the password is never shown")
}

// A page the browser shows can make its own name resolve to 127.0.0.1
// (DNS rebinding) and so read and act on a loopback dashboard without a
// password, as one origin; its requests still name it in Host.
func TestWebAnswersOnlyToLocalNames(t *testing.T) {
	t.Parallel()
	newScenario(t)
	base, _, _, stop := startWeb(t, nil, "-allow-actions")
	u, err := url.Parse(base)
	require.NoError(t, err)
	for host, want := range map[string]int{
		"rebind.evil.example:" + u.Port(): http.StatusMisdirectedRequest,
		"evil.example":                    http.StatusMisdirectedRequest,
		"127.0.0.1.evil.example":          http.StatusMisdirectedRequest,
		"localhost:" + u.Port():           http.StatusOK,
		"LOCALHOST.":                      http.StatusOK,
		"app.localhost:" + u.Port():       http.StatusOK,
		u.Host:                            http.StatusOK,
		"[::1]:" + u.Port():               http.StatusOK,
	} {
		req, _ := http.NewRequest(http.MethodGet, base, nil)
		req.Host = host
		code, body := fetch(t, req)
		assert.Equal(t, want, code, "Host %s: %s", host, body)
	}
	assert.Equal(t, 0, stop())
}

func TestWebRefusals(t *testing.T) {
	t.Parallel()
	r := cli(t, "-addr", redistest.Addr(t), "web", "-user", "ops")
	requireOneErrorLine(t, r)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, webPasswordEnv)

	r = cli(t, "-addr", redistest.Addr(t), "web", "-addr", "0.0.0.0:0", "-allow-actions")
	requireOneErrorLine(t, r)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "needs -user")

	r = cli(t, "-addr", redistest.Addr(t), "web", "-addr", "nope")
	requireOneErrorLine(t, r)
	assert.Equal(t, exitRuntime, r.code)

	r = cli(t, "-addr", redistest.Addr(t), "web", "-no-scan")
	requireOneErrorLine(t, r)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "-no-scan needs the streams to show")

	r = cli(t, "-addr", redistest.Addr(t), "web", "-stream", "a}b")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "invalid stream name")
}

// -stream and -no-scan: the dashboard shows the named streams only.
func TestWebNamedStreamsWithoutScan(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	other := newScenario(t)
	base, _, _, stop := startWeb(t, nil, "-stream", s.stream, "-no-scan")
	req, _ := http.NewRequest(http.MethodGet, base, nil)
	code, body := fetch(t, req)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `data-stream="`+s.stream+`"`)
	assert.NotContains(t, body, `data-stream="`+other.stream+`"`, "not named, not scanned")
	assert.Equal(t, 0, stop())
}
