package browsertests

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/dashboard"
	"github.com/redstream/redstream/internal/redistest"
)

// Environment variables of the browser tests.
const (
	// envChromium names the browser binary; by default "chromium" (Debian's
	// package, which .ci/run installs) or "chromium-browser" on PATH.
	envChromium = "REDSTREAM_CHROMIUM"
	// envScreenshots names a directory for the screenshots; by default
	// they go to out/ in this package's directory (ignored by git).
	envScreenshots = "REDSTREAM_SCREENSHOTS"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	browser.stop()
	os.Exit(code)
}

// sharedBrowser is one headless Chromium shared by the tests: each test
// opens tabs of its own.
type sharedBrowser struct {
	once   sync.Once
	ctx    context.Context
	cancel []context.CancelFunc
	err    error
}

var browser sharedBrowser

func (b *sharedBrowser) stop() {
	for i := len(b.cancel) - 1; i >= 0; i-- {
		b.cancel[i]()
	}
}

// chromiumPath finds the browser: skipped without one, failed instead
// under REDSTREAM_REQUIRE_REDIS=1 (CI), where .ci/run installs it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser"}
	if p := os.Getenv(envChromium); p != "" {
		names = []string{p}
	}
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no browser: " + strings.Join(names, " or ") + " not found (install Debian's package chromium, or set " + envChromium + "): the browser tests did not run"
	if redistest.Required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// tab opens a new tab of the shared browser, closed when the test ends.
func tab(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	browser.once.Do(func() {
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true),
			chromedp.WindowSize(1280, 900))
		actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
		browser.cancel = append(browser.cancel, cancel)
		bctx, cancel := chromedp.NewContext(actx)
		browser.cancel = append(browser.cancel, cancel)
		browser.ctx, browser.err = bctx, chromedp.Do(bctx) // starts the browser
	})
	require.NoError(t, browser.err, "start %s", path)
	ctx, cancel := context.WithTimeout(browser.ctx, 90*time.Second)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)))
	return ctx
}

// mount is where the tests mount the dashboard in their service.
const mount = "/redstream/"

// serve mounts a dashboard of rdb under mount in a test server and returns
// the dashboard's URL.
func serve(t *testing.T, rdb redis.UniversalClient, opts ...dashboard.Option) string {
	t.Helper()
	base := []dashboard.Option{dashboard.WithSampleInterval(100 * time.Millisecond), dashboard.WithRefresh(time.Second)}
	d, err := dashboard.New(rdb, append(base, opts...)...)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle(mount, http.StripPrefix(strings.TrimSuffix(mount, "/"), d))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		_ = d.Close()
	})
	return srv.URL + mount
}

var streamSeq atomic.Int64

// streamName names a stream no other test (or earlier run against the
// same server) uses: "shop:<what>:<time>-<n>".
func streamName(_ *testing.T, what string) string {
	return fmt.Sprintf("shop:%s:%s-%d", what, time.Now().Format("150405.000"), streamSeq.Add(1))
}

// screenshot saves a PNG of the whole page as name under
// REDSTREAM_SCREENSHOTS, or out/.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv(envScreenshots)
	if dir == "" {
		dir = "out"
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot %s (%d bytes)", path, len(png))
}

// text returns the text of the first element sel matches, once visible.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	require.NoError(t, err, "text of %s", sel)
	return strings.TrimSpace(s)
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "evaluate %s", js)
	return v
}

// cssString quotes s for a CSS attribute selector.
func cssString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
