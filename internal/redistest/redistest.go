// Package redistest runs tests against a real redis-server.
//
// A test package that uses the shared server must route its TestMain through
// [Main] so the server is stopped when the tests finish:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
//
// Tests then call [Addr] or [Client] to reach the shared server, or [Start] to
// get a dedicated server they may kill, restart or configure specially.
// [StartCluster] starts a Redis Cluster of three masters and three replicas
// (it needs redis-cli too) that a test may fail over, or uses the cluster
// named by REDIS_CLUSTER_ADDRS.
//
// If no redis-server binary is on PATH (and, for the shared server, REDIS_ADDR
// is unset), tests are skipped with a loud message, or failed when the
// environment variable REDSTREAM_REQUIRE_REDIS is set to a true value (as CI
// does).
//
// The shared server is used by every test in the package, possibly in
// parallel: tests must use their own keys and must not FLUSHALL it.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// EnvAddr names the environment variable holding the address of an
	// externally managed Redis used by [Addr] instead of starting one.
	EnvAddr = "REDIS_ADDR"

	// EnvRequire names the environment variable that, when set to a true
	// value ("1", "true"), turns a missing redis-server into a test failure
	// instead of a skip.
	EnvRequire = "REDSTREAM_REQUIRE_REDIS"

	serverBinary = "redis-server"

	// readyTimeout bounds how long a started server may take to answer PING.
	readyTimeout = 10 * time.Second
	// stopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 5 * time.Second
	// startAttempts is how many free ports are tried when binding fails.
	startAttempts = 5
	// logTailBytes is how much of the server log is quoted on failure.
	logTailBytes = 4096
)

var (
	// mainActive is set while Main is running the tests.
	mainMu     sync.Mutex
	mainActive bool

	sharedOnce   sync.Once
	sharedServer *Server
	sharedErr    error

	skipNoticeOnce sync.Once
)

// Main runs the tests of m and then stops the shared server if one was
// started, returning the exit code for os.Exit. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
func Main(m *testing.M) int {
	mainMu.Lock()
	mainActive = true
	mainMu.Unlock()

	defer stopShared()
	return m.Run()
}

// stopShared stops the shared server (if any) and removes its directory.
func stopShared() {
	mainMu.Lock()
	mainActive = false
	mainMu.Unlock()

	// Make sure no later Addr call can start a server nobody would stop.
	sharedOnce.Do(func() { sharedErr = errors.New("redistest: shared server requested after Main returned") })
	if sharedServer != nil {
		sharedServer.Stop()
		_ = os.RemoveAll(sharedServer.dir)
	}
}

// Addr returns the address ("host:port") of the Redis server shared by all
// tests of the process. If REDIS_ADDR is set it is returned as is; otherwise
// a redis-server is started on a free loopback port the first time Addr is
// called and stopped by [Main] once the tests are done. Addr skips or fails
// the test when no redis-server is available (see the package doc), and fails
// it if the shared server could not be started.
func Addr(tb testing.TB) string {
	tb.Helper()
	if addr := os.Getenv(EnvAddr); addr != "" {
		return addr
	}

	mainMu.Lock()
	active := mainActive
	mainMu.Unlock()
	if !active {
		tb.Fatalf("redistest: Addr needs the package's TestMain to call redistest.Main, "+
			"so that the shared redis-server is stopped: "+
			"func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) } (or set %s)", EnvAddr)
	}

	bin := lookServer(tb, true)
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "redistest-shared-")
		if err != nil {
			sharedErr = fmt.Errorf("redistest: creating directory for shared redis-server: %w", err)
			return
		}
		s := &Server{bin: bin, dir: dir}
		if err := s.startFreePort(); err != nil {
			_ = os.RemoveAll(dir)
			sharedErr = fmt.Errorf("redistest: starting shared redis-server: %w", err)
			return
		}
		sharedServer = s
	})
	if sharedErr != nil {
		tb.Fatal(sharedErr)
	}
	return sharedServer.Addr()
}

// Client returns a go-redis client connected to [Addr]. The client is closed
// when the test and its subtests complete.
func Client(tb testing.TB) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: Addr(tb)})
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Version returns the major and minor version of the Redis server behind rdb,
// as reported by the redis_version field of INFO server. It fails the test if
// the version cannot be obtained.
func Version(tb testing.TB, rdb redis.UniversalClient) (major, minor int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		tb.Fatalf("redistest: INFO server: %v", err)
	}
	major, minor, err = parseVersion(info)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return major, minor
}

// parseVersion extracts major and minor from the redis_version line of an
// INFO reply.
func parseVersion(info string) (major, minor int, err error) {
	for _, line := range strings.Split(info, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		parts := strings.SplitN(v, ".", 3)
		if len(parts) < 2 {
			return 0, 0, fmt.Errorf("malformed redis_version %q", v)
		}
		if major, err = strconv.Atoi(parts[0]); err != nil {
			return 0, 0, fmt.Errorf("malformed redis_version %q: %w", v, err)
		}
		if minor, err = strconv.Atoi(parts[1]); err != nil {
			return 0, 0, fmt.Errorf("malformed redis_version %q: %w", v, err)
		}
		return major, minor, nil
	}
	return 0, 0, errors.New("no redis_version in INFO server reply")
}

// lookServer returns the path of the redis-server binary, or skips (or fails,
// when EnvRequire is true) the test if there is none.
func lookServer(tb testing.TB, mentionAddr bool) string {
	tb.Helper()
	bin, err := exec.LookPath(serverBinary)
	if err == nil {
		return bin
	}
	where := "redis-server not found on PATH"
	if mentionAddr {
		where += " and " + EnvAddr + " unset"
	}
	if requireRedis() {
		tb.Fatalf("redistest: real-Redis test FAILED: %s, but %s=%s requires it (%v)",
			where, EnvRequire, os.Getenv(EnvRequire), err)
	}
	msg := fmt.Sprintf("redistest: SKIPPING real-Redis test: %s (set %s=1 to fail instead)", where, EnvRequire)
	skipNoticeOnce.Do(func() { fmt.Fprintf(os.Stderr, "\n*** %s ***\n\n", msg) })
	tb.Skip(msg)
	return ""
}

// requireRedis reports whether EnvRequire is set to a true value.
func requireRedis() bool {
	v, err := strconv.ParseBool(strings.TrimSpace(os.Getenv(EnvRequire)))
	return err == nil && v
}

// Server is a redis-server process owned by the test. Create one with
// [Start]. Its methods are safe for concurrent use.
type Server struct {
	bin       string
	dir       string
	extraArgs []string

	mu     sync.Mutex
	port   int
	proc   *os.Process
	exited chan struct{} // closed when proc has been waited for
}

// Start starts a dedicated redis-server on a free loopback port, in a fresh
// temporary directory, and waits until it answers PING. extraArgs are appended
// to the command line (for example "--requirepass", "secret" or
// "--appendonly", "yes") and override the defaults, which are
// --bind 127.0.0.1 --save "" --appendonly no --daemonize no; they must not
// change --port, --bind or --dir. REDIS_ADDR is ignored. The server is
// stopped when the test completes. Start skips or fails the test when no
// redis-server is on PATH (see the package doc).
func Start(tb testing.TB, extraArgs ...string) *Server {
	tb.Helper()
	bin := lookServer(tb, false)
	s := &Server{
		bin:       bin,
		dir:       tb.TempDir(),
		extraArgs: append([]string(nil), extraArgs...),
	}
	if err := s.startFreePort(); err != nil {
		tb.Fatalf("redistest: starting redis-server: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Addr returns the server's address, "127.0.0.1:port". It stays the same
// across [Server.Restart].
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Kill sends SIGKILL to the server process and waits for it to exit. It does
// nothing if the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill()
	<-s.exited
	s.proc = nil
}

// Stop shuts the server down gracefully (SIGTERM, then SIGKILL if it has not
// exited within a few seconds) and waits for it to exit. It does nothing if
// the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.proc == nil {
		return
	}
	_ = s.proc.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.proc.Kill()
		<-s.exited
	}
	s.proc = nil
}

// Restart starts the server again on the same port, with the same directory
// and arguments, and waits until it answers PING. A server that is still
// running is stopped first, as by [Server.Stop]. Restart fails the test if
// the server does not come back.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()

	// The port was just released; if something else grabbed it in between
	// there is nothing better to do than to retry briefly and then give up.
	deadline := time.Now().Add(readyTimeout)
	for {
		bindErr, err := s.startLocked()
		if err == nil {
			return
		}
		if !bindErr || time.Now().After(deadline) {
			tb.Fatalf("redistest: restarting redis-server on %s: %v", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startFreePort starts the server on a free port, trying other ports if the
// chosen one turns out to be taken.
func (s *Server) startFreePort() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range startAttempts {
		if s.port, err = freePort(); err != nil {
			return err
		}
		var bindErr bool
		if bindErr, err = s.startLocked(); err == nil || !bindErr {
			return err
		}
	}
	return fmt.Errorf("after %d attempts: %w", startAttempts, err)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	return port, nil
}

// logPath is the file collecting the server's stdout and stderr.
func (s *Server) logPath() string { return filepath.Join(s.dir, "redis-server.log") }

// startLocked starts the process on s.port and waits for PING. bindErr
// reports whether a failure was due to the port being in use. s.mu is held.
func (s *Server) startLocked() (bindErr bool, err error) {
	args := []string{
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.port),
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", s.dir,
	}
	args = append(args, s.extraArgs...)

	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return false, fmt.Errorf("opening server log: %w", err)
	}
	logStart, _ := logFile.Seek(0, io.SeekEnd)
	fmt.Fprintf(logFile, "### redistest: %s %s\n", s.bin, strings.Join(quoteArgs(args), " "))

	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()

	// The process is started and waited for on one goroutine locked to its
	// OS thread: with Pdeathsig (Linux) the child is killed when the thread
	// that started it exits, so that thread must live exactly as long as
	// the child. It also guarantees the child dies with the test binary.
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(exited)
		defer logFile.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
	}()
	if err := <-started; err != nil {
		return false, fmt.Errorf("starting %s: %w", s.bin, err)
	}
	s.proc = cmd.Process
	s.exited = exited

	if err := waitReady(s.port, exited); err != nil {
		_ = s.proc.Kill()
		<-exited
		s.proc = nil
		tail := s.logTail(logStart)
		bindErr = strings.Contains(tail, "Address already in use")
		return bindErr, fmt.Errorf("%w\n--- tail of %s ---\n%s", err, s.logPath(), tail)
	}
	return false, nil
}

// waitReady polls PING on port until it answers, the process exits or
// readyTimeout passes.
func waitReady(port int, exited <-chan struct{}) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	rdb := redis.NewClient(&redis.Options{
		Addr:            addr,
		DialTimeout:     250 * time.Millisecond,
		ReadTimeout:     time.Second,
		WriteTimeout:    time.Second,
		MaxRetries:      -1,
		DialerRetries:   1,
		PoolSize:        1,
		DisableIdentity: true,
		Protocol:        2,
	})
	defer rdb.Close()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	var lastErr error
	for {
		// Probe the port with a plain dial first: failed go-redis dials are
		// logged and throttle the pool's later dial attempts.
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = conn.Close()
			// A password-protected server answers NOAUTH: it is up all
			// the same. LOADING and the like mean "poll again".
			err = rdb.Ping(ctx).Err()
			if err == nil || strings.HasPrefix(err.Error(), "NOAUTH") {
				return nil
			}
		}
		lastErr = err
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited before answering PING (last error: %w)", lastErr)
		case <-ctx.Done():
			return fmt.Errorf("redis-server did not answer PING within %v (last error: %w)", readyTimeout, lastErr)
		case <-ticker.C:
		}
	}
}

// logTail returns the end of the server log written since offset from.
func (s *Server) logTail(from int64) string {
	data, err := os.ReadFile(s.logPath())
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	if from > 0 && from <= int64(len(data)) {
		data = data[from:]
	}
	if len(data) > logTailBytes {
		data = data[len(data)-logTailBytes:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return string(data)
}

// quoteArgs quotes empty arguments so logged command lines are unambiguous.
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return out
}
