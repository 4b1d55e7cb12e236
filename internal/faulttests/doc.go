// Package faulttests holds redstream's network-fault tests: an in-process
// toxiproxy between a consumer and a real Redis injects latency, dropped
// connections, a blackhole and a slow link.
//
// It is a module of its own so that toxiproxy and what it pulls in
// (zerolog, Prometheus, gorilla/mux) stay out of the core module's
// dependency graph. The tests use redstream's public API only, with the
// helpers they share with the core's fault tests in internal/faultkit.
// Run them from the repository root with the README's test command, or
// here with go test ./...
package faulttests
