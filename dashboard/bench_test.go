package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/dashboard"
	"github.com/redstream/redstream/redstreamtest"
)

// BenchmarkOverview renders the overview of 1,000 streams (ten entries
// and a lagging group with a pending entry each) holding 100,000 dead
// letters between them, the size the dashboard is built for: the goal is
// under a second an overview. It updates the overview as an open tab
// does, and updates share the sampler's survey while it is younger than
// the refresh: redis-commands/op counts what each one costs Redis, the
// sampler's commands included. Run it with
//
//	go test -run '^$' -bench Overview -benchtime 10x ./dashboard/
func BenchmarkOverview(b *testing.B) {
	const streams, deadLetters = 1000, 100_000
	r := redstreamtest.New(b, redstreamtest.RealRedis())
	rdb := r.Client()
	ctx := context.Background()
	base := r.Stream(b, "bench")
	names := make([]string, streams)
	_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i := range names {
			names[i] = base + ":" + strconv.Itoa(i)
			for range 10 {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: names[i], Values: []any{"payload", "{}"}})
			}
			pipe.XGroupCreate(ctx, names[i], "billing", "0")
			pipe.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "c1", Streams: []string{names[i], ">"}, Count: 1})
		}
		return nil
	})
	require.NoError(b, err)
	addDeadLetters(b, rdb, names, deadLetters)
	counted := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
	b.Cleanup(func() { _ = counted.Close() })
	hook := &entryCounter{}
	counted.AddHook(hook)
	d, err := dashboard.New(counted)
	require.NoError(b, err)
	b.Cleanup(func() { _ = d.Close() })
	hook.commands.Store(0)
	for b.Loop() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("X-Redstream-Live", "1") // as an open tab updating itself
		d.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("overview: %d %s", rec.Code, rec.Body.String())
		}
		if n := strings.Count(rec.Body.String(), "<tr data-stream="); n < streams {
			b.Fatalf("overview: %d streams, want %d", n, streams)
		}
	}
	// Redis commands, the sampler's included: what many open tabs cost.
	b.ReportMetric(float64(hook.commands.Load())/float64(b.N), "redis-commands/op")
}

// addDeadLetters writes n dead letters spread over streams, as the
// dead-letter script writes them, in pipelines of 10,000; one in a
// thousand has the error "rare".
func addDeadLetters(b *testing.B, rdb redis.UniversalClient, streams []string, n int) {
	ctx := context.Background()
	for start := 0; start < n; start += 10_000 {
		_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i := start; i < min(n, start+10_000); i++ {
				s, errText := streams[i%len(streams)], "boom"
				if i%1000 == 0 {
					errText = "rare"
				}
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: redstream.DeadLetterKey(s), Values: []any{
					"dead-letter:stream", s, "dead-letter:reason", redstream.ReasonHandler, "dead-letter:error", errText, "payload", "{}",
				}})
			}
			return nil
		})
		require.NoError(b, err)
	}
}

// BenchmarkDeadLetterPage pages through 100,000 dead letters of one
// stream: the first page, a page filtered by an error one in a thousand
// has, and ten pages on by cursor. It reports the dead letters each
// request read (a go-redis hook counts them), bounded by the page size.
func BenchmarkDeadLetterPage(b *testing.B) {
	r := redstreamtest.New(b, redstreamtest.RealRedis())
	stream := r.Stream(b, "bench")
	addDeadLetters(b, r.Client(), []string{stream}, 100_000)
	counted := redis.NewClient(&redis.Options{Addr: r.Client().Options().Addr})
	b.Cleanup(func() { _ = counted.Close() })
	hook := &entryCounter{}
	counted.AddHook(hook)
	d, err := dashboard.New(counted, dashboard.WithoutScan())
	require.NoError(b, err)
	b.Cleanup(func() { _ = d.Close() })
	get := func(query string) string {
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/deadletters?s="+url.QueryEscape(stream)+query, nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("dead letters: %d %s", rec.Code, rec.Body.String())
		}
		return rec.Body.String()
	}
	for _, bc := range []struct{ name, query string }{{"first", ""}, {"filtered", "&q=rare"}} {
		b.Run(bc.name, func(b *testing.B) {
			hook.entries.Store(0)
			for b.Loop() {
				get(bc.query)
			}
			b.ReportMetric(float64(hook.entries.Load())/float64(b.N), "entries-read/op")
		})
	}
	b.Run("ten-pages-on", func(b *testing.B) {
		hook.entries.Store(0)
		for b.Loop() {
			body, after := get(""), ""
			for range 10 {
				m := nextLink.FindStringSubmatch(body)
				if m == nil {
					b.Fatal("no next page")
				}
				after = m[1]
				body = get("&after=" + after)
			}
		}
		b.ReportMetric(float64(hook.entries.Load())/float64(b.N), "entries-read/op")
	})
}
