package redstream

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heavyModules are module path prefixes that must never reach the module
// graph of a service that imports only the core package: they belong to
// redstreamotel, examples/orders, the toxiproxy tests and the browser
// tests (chromedp), which are modules of their own. Minimal version
// selection would otherwise raise any of them the service already uses.
var heavyModules = []string{
	"go.opentelemetry.io/",
	"github.com/prometheus/",
	"github.com/rs/zerolog",
	"github.com/Shopify/toxiproxy",
	"github.com/gorilla/mux",
	"github.com/chromedp/",
}

// TestCoreModuleGraphIsLean builds a throwaway module that imports only
// github.com/redstream/redstream (replaced by this repository) and checks
// that `go list -m all` names none of heavyModules. It skips only when the
// go command cannot fetch the core's requirements: neither the module cache
// nor the module proxy has them.
func TestCoreModuleGraphIsLean(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH: %v", err)
	}
	repo, err := os.Getwd()
	require.NoError(t, err)

	dir := t.TempDir()
	write := func(name, text string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	write("go.mod", "module example.com/service\n\ngo 1.26.0\n\n"+
		"require github.com/redstream/redstream v0.0.0-00010101000000-000000000000\n\n"+
		"replace github.com/redstream/redstream => "+repo+"\n")
	write("main.go", `package main

import "github.com/redstream/redstream"

func main() { _ = redstream.DefaultMaxDeliveries }
`)

	// The repository's go.work must not apply: a service has none.
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	run := func(extraEnv []string, args ...string) (string, error) {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(append([]string(nil), env...), extraEnv...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	// The module cache first, so the test needs no network when the
	// repository's own build has filled it; then the configured proxy.
	if _, err := run([]string{"GOPROXY=off"}, "mod", "tidy"); err != nil {
		if out, err := run(nil, "mod", "tidy"); err != nil {
			t.Skipf("the go command cannot fetch the core's requirements (no module cache, no proxy): %v\n%s", err, out)
		}
	}
	// go list -m all reads the go.mod of every module in the graph, test
	// dependencies of dependencies included, which the build may not have
	// fetched: the proxy again when the cache lacks one.
	out, err := run([]string{"GOPROXY=off"}, "list", "-m", "all")
	if err != nil {
		out, err = run(nil, "list", "-m", "all")
	}
	require.NoError(t, err, out)

	mods := strings.Fields(out)
	require.Contains(t, mods, "github.com/redis/go-redis/v9", "the graph lists the core's own requirement")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		for _, heavy := range heavyModules {
			assert.False(t, strings.HasPrefix(line, heavy),
				"a module importing only the core has %s in its graph (go list -m all): %s", heavy, line)
		}
	}
}
