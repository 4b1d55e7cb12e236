package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func testConfig(t *testing.T, mode string) config {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	cfg, err := parseFlags([]string{"-mode", mode, "-addr", redistest.Addr(t), "-metrics-addr", ""})
	require.NoError(t, err)
	cfg.stream = "test:orders:" + hex.EncodeToString(b)
	return cfg
}

var traceLine = regexp.MustCompile(`trace ([0-9a-f]{32})\n`)

// TestLeaveBehind: with -leave-behind the producer adds an order the
// consumer dead-letters, and the consumer, stopped by -for, leaves one order
// pending: what the README's admin CLI tour shows.
func TestLeaveBehind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	prod := testConfig(t, "producer")
	prod.n, prod.leaveBehind = 150, true
	var out bytes.Buffer
	prod.out = &out
	require.NoError(t, run(ctx, prod))
	// Two batches (100 + 50), each line with the trace its orders share,
	// and the order to dead-letter with its own.
	traces := traceLine.FindAllStringSubmatch(out.String(), -1)
	require.Len(t, traces, 3, out.String())
	assert.NotEqual(t, traces[0][1], traces[1][1], "each batch has a trace of its own")
	assert.Contains(t, out.String(), "0 cents: the consumer dead-letters it")

	cons := prod
	cons.mode, cons.n, cons.name = "consumer", 0, "billing-1"
	cons.group, cons.concurrency = "billing", redstream.DefaultConcurrency
	cons.runFor, cons.failOneIn = 3*time.Second, 0
	out.Reset()
	cons.out = &out
	require.NoError(t, run(ctx, cons), "-leave-behind: the order given up on is no error")
	assert.Contains(t, out.String(), "charged 149 orders", out.String())

	rdb := redistest.Client(t)
	pending, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: cons.stream, Group: "billing", Start: "-", End: "+", Count: 10}).Result()
	require.NoError(t, err)
	require.Len(t, pending, 1, "one order left pending")
	assert.Equal(t, "billing-1", pending[0].Consumer)

	dlq, err := redstream.NewDeadLetters(rdb, cons.stream)
	require.NoError(t, err)
	letters, _, err := dlq.List(ctx, redstream.ListOptions{})
	require.NoError(t, err)
	require.Len(t, letters, 1, "one dead letter")
	assert.Equal(t, redstream.ReasonHandler, letters[0].Reason)
	assert.Equal(t, "0", letters[0].Fields["amount"])
}

// TestMetricsAddress: the metrics listen on loopback; a second consumer
// whose default port is taken serves them on a free one, while an address
// asked for with -metrics-addr is not replaced.
func TestMetricsAddress(t *testing.T) {
	t.Parallel()
	host, _, err := net.SplitHostPort(defaultMetricsAddr)
	require.NoError(t, err)
	assert.Equal(t, "localhost", host, "metrics are not served on every interface")

	cfg, err := parseFlags([]string{"-mode", "consumer"})
	require.NoError(t, err)
	assert.True(t, cfg.metricsFallback, "the default address may fall back")
	cfg, err = parseFlags([]string{"-mode", "consumer", "-metrics-addr", "localhost:9999"})
	require.NoError(t, err)
	assert.False(t, cfg.metricsFallback, "an address asked for is not replaced")

	taken, err := net.Listen("tcp", "localhost:0") // the first consumer's port
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	second := config{mode: "consumer", metricsAddr: taken.Addr().String(), metricsFallback: true}
	tel, err := startTelemetry(second, log)
	require.NoError(t, err, "a second consumer starts")
	t.Cleanup(func() { _ = tel.shutdown(context.Background()) })
	assert.NotEqual(t, taken.Addr().String(), tel.addr.String())
	assert.True(t, tel.addr.(*net.TCPAddr).IP.IsLoopback(), "fallback on loopback: %s", tel.addr)
	assert.True(t, strings.HasPrefix(tel.metricsURL(), "http://127.0.0.1:"), tel.metricsURL())

	second.metricsFallback = false
	_, err = startTelemetry(second, log)
	assert.Error(t, err, "an address asked for and taken is an error")
}
