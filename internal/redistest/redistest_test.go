package redistest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestAddrPing(t *testing.T) {
	t.Parallel()
	addr := Addr(t)
	if addr == "" {
		t.Fatal("empty address")
	}
	if again := Addr(t); again != addr {
		t.Fatalf("Addr changed between calls: %q then %q", addr, again)
	}
	rdb := Client(t)
	if got, err := rdb.Ping(ctx(t)).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v; want PONG", got, err)
	}
	major, minor := Version(t, rdb)
	if major < 2 || minor < 0 {
		t.Fatalf("implausible version %d.%d", major, minor)
	}
	t.Logf("shared server %s runs Redis %d.%d", addr, major, minor)
}

func TestStartKillRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	addr := s.Addr()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	c := ctx(t)

	if err := rdb.Ping(c).Err(); err != nil {
		t.Fatalf("PING before kill: %v", err)
	}
	s.Kill()
	probe := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = probe.Close() })
	if err := probe.Ping(c).Err(); err == nil {
		t.Fatal("PING succeeded after Kill")
	}
	s.Kill() // idempotent

	s.Restart(t)
	if got := s.Addr(); got != addr {
		t.Fatalf("address changed across restart: %q then %q", addr, got)
	}
	if err := rdb.Ping(c).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
}

func TestStartExtraArgsAndPersistence(t *testing.T) {
	t.Parallel()
	s := Start(t, "--requirepass", "s3cret", "--appendonly", "yes", "--appendfsync", "always")
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: "s3cret"})
	t.Cleanup(func() { _ = rdb.Close() })
	c := ctx(t)

	noAuth := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = noAuth.Close() })
	if err := noAuth.Ping(c).Err(); err == nil {
		t.Fatal("PING without password succeeded despite --requirepass")
	}

	if err := rdb.Set(c, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Kill()
	s.Restart(t)
	if got, err := rdb.Get(c, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET after restart with appendonly = %q, %v; want \"v\"", got, err)
	}
	s.Stop()
	s.Stop() // idempotent
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		info         string
		major, minor int
		ok           bool
	}{
		{"# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:0\r\n", 7, 0, true},
		{"redis_version:7.2.4\r\n", 7, 2, true},
		{"redis_version:255.255.255\n", 255, 255, true},
		{"# Server\r\nredis_mode:standalone\r\n", 0, 0, false},
		{"redis_version:garbage\r\n", 0, 0, false},
	} {
		major, minor, err := parseVersion(tc.info)
		if (err == nil) != tc.ok || major != tc.major || minor != tc.minor {
			t.Errorf("parseVersion(%q) = %d, %d, %v; want %d, %d, ok=%v", tc.info, major, minor, err, tc.major, tc.minor, tc.ok)
		}
	}
}

func TestRequireRedis(t *testing.T) {
	// " 1 " checks that surrounding spaces are ignored.
	for v, want := range map[string]bool{"": false, "0": false, "1": true, "true": true, "no": false, " 1 ": true} { //nolint:gocritic // the spaces are the point
		t.Setenv(EnvRequire, v)
		if got := requireRedis(); got != want {
			t.Errorf("requireRedis() with %s=%q = %v, want %v", EnvRequire, v, got, want)
		}
	}
}
