// Package browsertests drives the dashboard in a headless Chromium with
// chromedp, against a real redis-server. It is a module of its own so
// that chromedp never enters the core module's graph.
package browsertests
