// Command dashboard is a service that mounts the redstream web dashboard
// under /redstream/ of its own HTTP server, next to its own routes, while
// it publishes orders and handles them (a few fail and go to the dead
// letters, to have something to look at).
//
//	go run ./examples/dashboard            # then open http://127.0.0.1:8080/redstream/
//	go run ./examples/dashboard -addr 127.0.0.1:9000
//
// It runs against an embedded, in-memory Redis (miniredis) unless REDIS_ADDR
// names a real server. It serves until interrupted. miniredis reports no
// first and last entry of a stream: for every figure, run a redis-server
// and set REDIS_ADDR.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/dashboard"
)

// Order is the payload of the example's stream.
type Order struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"` // in cents; negative ones are refused
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen on `host:port`")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *addr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string) error {
	rdb, cleanup, err := connect(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	stream, err := redstream.StreamName("shop", "order", "created")
	if err != nil {
		return err
	}
	handler, closeService, err := newService(rdb)
	if err != nil {
		return err
	}
	defer closeService()
	trafficDone := make(chan error, 1)
	go func() { trafficDone <- traffic(ctx, rdb, stream) }()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("dashboard on http://%s/redstream/ (interrupt to stop)\n", ln.Addr())
	go func() {
		<-ctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return <-trafficDone
}

// newService returns the service's routes with the dashboard mounted under
// /redstream/, and a func that stops the dashboard's sampler.
func newService(rdb redis.UniversalClient) (http.Handler, func(), error) {
	d, err := dashboard.New(rdb,
		dashboard.WithActions(),                     // replay, delete, ack... (read-only without it)
		dashboard.WithMiddleware(loopbackOnly),      // the service's own authentication goes here
		dashboard.WithSampleInterval(2*time.Second), // the charts' resolution
	)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintln(w, `<p>The shop service. Operators: <a href="/redstream/">the redstream dashboard</a>.</p>`)
	})
	mux.Handle("/redstream/", http.StripPrefix("/redstream", d))
	return mux, func() { _ = d.Close() }, nil
}

// loopbackOnly stands in for a real authentication middleware: it lets in
// requests from this machine only.
func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "operators only", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// traffic publishes an order every 100ms, and handles them in group
// "billing" a little slower than they come, refusing negative amounts
// (every tenth order): the dashboard shows a lag growing and dead letters.
// It returns when ctx ends.
func traffic(ctx context.Context, rdb redis.UniversalClient, stream string) error {
	p, err := redstream.NewProducer[Order](rdb, stream)
	if err != nil {
		return err
	}
	c, err := redstream.NewConsumer(rdb, "billing", redstream.WithConcurrency(1), redstream.WithMaxInFlight(1))
	if err != nil {
		return err
	}
	err = redstream.Handle(c, stream, func(ctx context.Context, m *redstream.Message[Order]) error {
		if m.Payload.Amount < 0 {
			return fmt.Errorf("negative amount %d: %w", m.Payload.Amount, redstream.ErrDeadLetter)
		}
		select { // the work takes a while
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(120 * time.Millisecond):
			return nil
		}
	})
	if err != nil {
		return err
	}
	consumed := make(chan error, 1)
	go func() { consumed <- c.Run(ctx) }()
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return <-consumed
		case <-ticker.C:
		}
		amount := int64(100 * n)
		if n%10 == 0 {
			amount = -amount
		}
		if _, err := p.Publish(ctx, Order{ID: fmt.Sprintf("o-%d", n), Amount: amount}); err != nil && ctx.Err() == nil {
			return err
		}
	}
}

// connect returns a client for REDIS_ADDR, or for an embedded miniredis
// when it is unset, and a func that cleans up.
func connect(ctx context.Context) (*redis.Client, func(), error) {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return nil, nil, fmt.Errorf("start miniredis: %w", err)
		}
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		fmt.Println("using an embedded miniredis, which reports no first and last entry (set REDIS_ADDR to use a real server)")
		return rdb, func() { _ = rdb.Close(); mr.Close() }, nil
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, nil, fmt.Errorf("redis at REDIS_ADDR=%s: %w", addr, err)
	}
	fmt.Printf("using redis at %s\n", addr)
	return rdb, func() { _ = rdb.Close() }, nil
}
