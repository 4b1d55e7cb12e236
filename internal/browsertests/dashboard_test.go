package browsertests

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/dashboard"
	"github.com/redstream/redstream/internal/redistest"
	"github.com/redstream/redstream/redstreamtest"
)

// lagging makes stream with n entries and group "billing" that read two
// of them (consumer c1) and acknowledged one: lag n-2, one pending.
func lagging(t *testing.T, rdb redis.UniversalClient, stream string, n int) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	for i := range ids {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", `{"n":` + strconv.Itoa(i) + `}`}}).Result()
		require.NoError(t, err)
		ids[i] = id
	}
	require.NoError(t, redstream.CreateGroup(ctx, rdb, stream, "billing", "0"))
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "c1", Streams: []string{stream, ">"}, Count: 2}).Err())
	_, err := redstream.AckPending(ctx, rdb, stream, "billing", ids[0])
	require.NoError(t, err)
	return ids
}

func TestOverviewListsStreamsWithTheirFigures(t *testing.T) {
	rdb := redistest.Client(t)
	ctx := context.Background()
	orders := streamName(t, "orders")
	ids := lagging(t, rdb, orders, 12) // lag 10, pending 1
	// Two more read and dead-lettered: pending stays 1, two dead letters.
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "c1", Streams: []string{orders, ">"}, Count: 2}).Err())
	_, err := redstream.DeadLetterPending(ctx, rdb, orders, "billing", ids[2], ids[3])
	require.NoError(t, err)
	audit := streamName(t, "audit")
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: audit, Values: []any{"a", "1"}}).Err())

	require.NoError(t, redstream.Pause(ctx, rdb, orders, "billing"))
	// A partitioned stream: its partitions are summed under its base name.
	payments := streamName(t, "payments")
	parts, err := redstream.Partitions(payments, 4)
	require.NoError(t, err)
	for i, p := range parts {
		for range i + 1 {
			require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: p, Values: []any{"payload", "{}"}}).Err())
		}
	}

	url := serve(t, rdb)
	tb := tab(t)
	require.NoError(t, chromedp.Do(tb, chromedp.Navigate(url)))
	row := `tr[data-stream=` + cssString(orders) + `] `
	assert.Equal(t, "12", text(t, tb, row+`td[data-col="length"]`))
	assert.Equal(t, "1", text(t, tb, row+`td[data-col="groups"]`))
	assert.Equal(t, "8", strings.TrimSuffix(text(t, tb, row+`td[data-col="lag"]`), " ▲"))
	assert.Equal(t, "1", text(t, tb, row+`td[data-col="pending"]`))
	assert.Equal(t, "2", strings.TrimSuffix(text(t, tb, row+`td[data-col="dead"]`), " ▲"))
	assert.Equal(t, "1", text(t, tb, `tr[data-stream=`+cssString(audit)+`] td[data-col="length"]`))
	assert.Equal(t, "0", text(t, tb, `tr[data-stream=`+cssString(audit)+`] td[data-col="groups"]`))
	assert.Equal(t, "1 paused", text(t, tb, row+`td[data-col="paused"]`))
	assert.Equal(t, "10", text(t, tb, `tr[data-stream=`+cssString(payments)+`] td[data-col="length"]`), "1+2+3+4 entries in the partitions")
	assert.Contains(t, text(t, tb, `tr[data-stream=`+cssString(payments)+`] td`), "4 partitions")
	screenshot(t, tb, "overview.png")
}

// slowConsumer handles stream's messages in group "billing", one at a
// time, each taking per; it stops when the test ends.
func slowConsumer(t *testing.T, rdb redis.UniversalClient, stream string, per time.Duration) {
	t.Helper()
	c, err := redstream.NewConsumer(rdb, "billing", redstream.WithConcurrency(1), redstream.WithMaxInFlight(2), redstream.WithBlock(50*time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, redstream.Handle(c, stream, func(ctx context.Context, _ *redstream.Message[redstream.Fields]) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(per):
			return nil
		}
	}))
	stop := redstreamtest.Start(t, c)
	t.Cleanup(func() { _ = stop() })
}

func TestChartShowsTheLagRisingWhilePublishingFasterThanConsuming(t *testing.T) {
	rdb := redistest.Client(t)
	stream := streamName(t, "rising")
	lagging(t, rdb, stream, 3)
	slowConsumer(t, rdb, stream, 100*time.Millisecond) // 10 a second at most
	// Publish about 100 a second until the test ends.
	pubCtx, stopPub := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		ticker := time.NewTicker(10 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-pubCtx.Done():
				return
			case <-ticker.C:
				_ = rdb.XAdd(pubCtx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", "{}"}}).Err()
			}
		}
	})
	t.Cleanup(func() {
		stopPub()
		wg.Wait()
	})

	url := serve(t, rdb)
	tb := tab(t)
	require.NoError(t, chromedp.Do(tb, chromedp.Navigate(url+"stream?s="+queryEscape(stream))))
	// The page updates itself (no reload here): read the lag the chart
	// drew until it holds five points that rise.
	var drawn []float64
	require.Eventually(t, func() bool {
		vals := eval[string](t, tb, `(document.querySelector('svg[data-series="lag"]') || {getAttribute: () => ""}).getAttribute("data-values") || ""`)
		drawn = parseFloats(t, vals)
		return len(drawn) >= 5 && drawn[len(drawn)-1] > drawn[0]
	}, 60*time.Second, 200*time.Millisecond, "lag drawn: %v", drawn)
	// The consumer's reads take a few entries at a time, so the lag may dip
	// between two samples; over the chart it rises.
	half := len(drawn) / 2
	assert.Greater(t, mean(drawn[half:]), mean(drawn[:half]), "the lag drawn rises: %v", drawn)
	t.Logf("lag drawn: %v", drawn)
	points := eval[string](t, tb, `document.querySelector('svg[data-series="lag"] polyline').getAttribute("points")`)
	assert.Len(t, strings.Fields(points), len(drawn), "one point drawn per value")
	screenshot(t, tb, "stream.png")
}

func parseFloats(t *testing.T, s string) []float64 {
	var out []float64
	for _, f := range strings.Fields(s) {
		v, err := strconv.ParseFloat(f, 64)
		require.NoError(t, err)
		out = append(out, v)
	}
	return out
}

func mean(vs []float64) float64 {
	sum := 0.0
	for _, v := range vs {
		sum += v
	}
	return sum / float64(len(vs))
}

func queryEscape(s string) string {
	return strings.NewReplacer("%", "%25", ":", "%3A", "&", "%26", "+", "%2B", " ", "%20", "#", "%23").Replace(s)
}

func TestReplayFromThePageGetsTheMessageHandled(t *testing.T) {
	rdb := redistest.Client(t)
	stream := streamName(t, "replay")
	var broken atomic.Bool
	broken.Store(true)
	handled := make(chan string, 10)
	c, err := redstream.NewConsumer(rdb, "billing", redstream.WithBlock(50*time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, redstream.Handle(c, stream, func(_ context.Context, m *redstream.Message[redstream.Fields]) error {
		if broken.Load() {
			return fmt.Errorf("broken for now: %w", redstream.ErrDeadLetter)
		}
		handled <- m.Payload["order"]
		return nil
	}))
	stop := redstreamtest.Start(t, c)
	t.Cleanup(func() { _ = stop() })
	p, err := redstream.NewProducer[redstream.Fields](rdb, stream)
	require.NoError(t, err)
	_, err = p.Publish(context.Background(), redstream.Fields{"order": "o-42"})
	require.NoError(t, err)
	dl := redstreamtest.WaitDeadLetters(t, rdb, stream, 1)
	broken.Store(false)

	url := serve(t, rdb, dashboard.WithActions())
	tb := tab(t)
	row := `tr[data-id="` + dl[0].ID + `"]`
	require.NoError(t, chromedp.Do(tb,
		chromedp.Navigate(url+"deadletters?s="+queryEscape(stream)),
		chromedp.WaitVisible(chromedp.CSS(row)),
	))
	assert.Contains(t, text(t, tb, row), "broken for now")
	_, err = chromedp.Run(tb, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Steps(
		chromedp.Click(chromedp.CSS(row+` input[type="checkbox"]`)),
		chromedp.Click(chromedp.ID("replay")),
	)))
	require.NoError(t, err)
	assert.Equal(t, "replayed 1", text(t, tb, "#flash"))
	require.NoError(t, chromedp.Do(tb, chromedp.WaitNotPresent(chromedp.CSS(row))))
	select {
	case order := <-handled:
		assert.Equal(t, "o-42", order)
	case <-time.After(30 * time.Second):
		t.Fatal("the replayed message was not handled")
	}
	assert.Empty(t, redstreamtest.DeadLetters(t, rdb, stream))
}

func TestReadOnlyHasNoButtonsAndTheEndpointsRefuse(t *testing.T) {
	rdb := redistest.Client(t)
	stream := streamName(t, "readonly")
	ids := lagging(t, rdb, stream, 4)
	_, err := redstream.DeadLetterPending(context.Background(), rdb, stream, "billing", ids[1])
	require.NoError(t, err)
	url := serve(t, rdb) // read-only: the default
	tb := tab(t)
	for _, path := range []string{"stream?s=", "pending?g=billing&s=", "deadletters?s="} {
		require.NoError(t, chromedp.Do(tb, chromedp.Navigate(url+path+queryEscape(stream)), chromedp.WaitVisible(chromedp.CSS("main"))))
		n := eval[int](t, tb, `document.querySelectorAll('form[method="post"], button[formaction], input[type="checkbox"], input[name="csrf"]').length`)
		assert.Zero(t, n, "%s: no action buttons", path)
		assert.Equal(t, "read-only", text(t, tb, "header .badge"))
	}
	for _, action := range []string{"replay", "delete", "ack", "deadletter", "claim", "pause"} {
		code := eval[int](t, tb, `fetch("actions/`+action+`", {method: "POST", body: new URLSearchParams({s: `+jsString(stream)+`, g: "billing", id: "`+ids[1]+`", confirm: "yes", consumer: "x", op: "pause", all: "1"})}).then(r => r.status)`)
		assert.Equal(t, 403, code, action)
	}
	assert.Len(t, redstreamtest.DeadLetters(t, rdb, stream), 1)
}

func jsString(s string) string { return strconv.Quote(s) }

func TestActionWithoutTheCSRFTokenIsRefused(t *testing.T) {
	rdb := redistest.Client(t)
	stream := streamName(t, "csrf")
	ids := lagging(t, rdb, stream, 4)
	_, err := redstream.DeadLetterPending(context.Background(), rdb, stream, "billing", ids[1])
	require.NoError(t, err)
	dl := redstreamtest.DeadLetters(t, rdb, stream)
	require.Len(t, dl, 1)
	url := serve(t, rdb, dashboard.WithActions())
	tb := tab(t)
	row := `tr[data-id="` + dl[0].ID + `"]`
	require.NoError(t, chromedp.Do(tb,
		chromedp.Navigate(url+"deadletters?s="+queryEscape(stream)),
		chromedp.WaitVisible(chromedp.CSS(row)),
	))
	// The form as a forged one would be: without the token.
	eval[bool](t, tb, `(() => { document.querySelectorAll('input[name="csrf"]').forEach(e => e.remove()); return true })()`)
	_, err = chromedp.Run(tb, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Steps(
		chromedp.Click(chromedp.CSS(row+` input[type="checkbox"]`)),
		chromedp.Click(chromedp.ID("replay")),
	)))
	require.NoError(t, err)
	assert.Contains(t, text(t, tb, "#error-message"), "CSRF")
	assert.Contains(t, text(t, tb, "h1"), "403")
	assert.Len(t, redstreamtest.DeadLetters(t, rdb, stream), 1, "nothing was replayed")
}

func TestScriptInAFieldIsShownAsTextAndOpensNoDialog(t *testing.T) {
	rdb := redistest.Client(t)
	ctx := context.Background()
	stream := streamName(t, "xss")
	const script = `<script>alert(1)</script>`
	ids := lagging(t, rdb, stream, 2)
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", script, `<img src=x onerror=alert(2)>`, script}}).Result()
	require.NoError(t, err)
	require.NoError(t, rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "c1", Streams: []string{stream, ">"}, Count: 1}).Err())
	_, err = redstream.DeadLetterPending(ctx, rdb, stream, "billing", ids[1])
	require.NoError(t, err)

	url := serve(t, rdb, dashboard.WithActions())
	tb := tab(t)
	var dialogs atomic.Int32
	require.NoError(t, chromedp.Listen(tb, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.Add(1)
			go func() {
				_, _ = chromedp.Call(tb, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}()
		}
	}))
	for _, path := range []string{"tail?s=", "pending?g=billing&s=", "stream?s="} {
		require.NoError(t, chromedp.Do(tb, chromedp.Navigate(url+path+queryEscape(stream)), chromedp.WaitVisible(chromedp.CSS("main"))))
		if path != "stream?s=" {
			assert.Contains(t, text(t, tb, `tr[data-id="`+id+`"]`), script, "%s: shown as text", path)
		}
		assert.Zero(t, eval[int](t, tb, `document.querySelectorAll("main script, main img").length`), path)
	}
	// Wait for a live update of the tail to have swapped the table in.
	require.NoError(t, chromedp.Do(tb, chromedp.Navigate(url+"tail?s="+queryEscape(stream))))
	require.Eventually(t, func() bool {
		return strings.HasPrefix(eval[string](t, tb, `document.getElementById("live-status").textContent`), "updated")
	}, 30*time.Second, 100*time.Millisecond)
	assert.Zero(t, dialogs.Load(), "no dialog opened")

	// The listener does see a dialog: one opened on purpose.
	_, err = chromedp.Run(tb, chromedp.Evaluate[any](`alert("on purpose")`))
	if err != nil && !errors.Is(err, context.Canceled) {
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return dialogs.Load() == 1 }, 10*time.Second, 10*time.Millisecond)
}
