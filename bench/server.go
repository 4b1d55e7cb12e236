package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// serverReadyTimeout bounds how long a started server may take to
	// answer PING.
	serverReadyTimeout = 10 * time.Second
	// serverStopTimeout is how long stop waits after SIGTERM before SIGKILL.
	serverStopTimeout = 5 * time.Second
	// serverStartAttempts is how many free ports are tried: another process
	// may take the port between our probe and the server's bind.
	serverStartAttempts = 3
	// logTailBytes is how much of the server log an error quotes.
	logTailBytes = 2048
)

// server is a redis-server this program started and must stop.
type server struct {
	addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
}

// startServer starts a redis-server without persistence on a free loopback
// port and waits until it answers PING.
func startServer(ctx context.Context) (*server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH (install it or set REDIS_ADDR): %w", err)
	}
	var lastErr error
	for range serverStartAttempts {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := launch(ctx, bin, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

func launch(ctx context.Context, bin string, port int) (*server, error) {
	dir, err := os.MkdirTemp("", "redstream-bench-")
	if err != nil {
		return nil, fmt.Errorf("create a directory for redis-server: %w", err)
	}
	s := &server{
		addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:    dir,
		exited: make(chan struct{}),
	}
	s.cmd = exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"),
	)
	s.cmd.SysProcAttr = sysProcAttr()
	if err := s.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		tail := s.logTail()
		s.stop()
		return nil, fmt.Errorf("redis-server on port %d: %w\n%s", port, err, tail)
	}
	return s, nil
}

// waitReady polls PING until the server answers, exits, or the timeout or
// ctx ends.
func (s *server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, serverReadyTimeout)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, DisableIdentity: true})
	defer func() { _ = rdb.Close() }()
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	for {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return errors.New("exited before answering PING")
		case <-ctx.Done():
			return fmt.Errorf("no answer to PING: %w", err)
		case <-ticker.C:
		}
	}
}

// stop terminates the server (SIGTERM, then SIGKILL after a grace period)
// and removes its directory. It is safe to call more than once.
func (s *server) stop() {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(serverStopTimeout)
		select {
		case <-s.exited:
		case <-timer.C:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		timer.Stop()
	}
	_ = os.RemoveAll(s.dir)
}

// logTail returns the end of the server's log, for error messages.
func (s *server) logTail() string {
	data, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return ""
	}
	if len(data) > logTailBytes {
		data = data[len(data)-logTailBytes:]
	}
	return "redis-server log:\n" + string(data)
}
