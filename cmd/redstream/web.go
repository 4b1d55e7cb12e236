package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/dashboard"
)

// webPasswordEnv holds the basic-auth password of 'redstream web': an
// environment variable, never a flag, so it shows in no process list.
const webPasswordEnv = "REDSTREAM_WEB_PASSWORD"

var webCommand = &command{
	name:     "web",
	synopsis: "[-addr HOST:PORT] [-allow-actions] [-user NAME] [-stream NAME ...] [-no-scan]",
	summary:  "serve the web dashboard: streams, lag charts, pending entries, dead letters",
	about: `Serves the web dashboard (the Go package github.com/redstream/redstream/dashboard,
which services can mount themselves) on -addr until interrupted: every
stream found by SCAN with its length, groups, lag, pending entries, oldest
pending age, dead letters, scheduled messages and paused groups, worst lag
first; a page per stream with its groups, consumers and charts of lag,
pending and throughput sampled every -sample; pending entries; dead letters
with filters; the newest entries. Pages update themselves. -stream names
streams to show whatever SCAN finds (a Redis user without SCAN permission
sees only these); -no-scan shows only them.

-addr here is where the dashboard listens; the Redis server is named by the
global flags before 'web' (redstream -addr redis:6379 web -addr :8080).

The dashboard is read-only unless -allow-actions: then it can acknowledge,
dead-letter and claim pending entries, replay and delete dead letters, and
pause and resume groups (destructive ones ask first; every action carries a
CSRF token). With -user NAME it asks for HTTP basic authentication, with
the password in $` + webPasswordEnv + ` (never a flag: flags show in the
process list; the password is never printed). -allow-actions on an address
other than loopback needs -user. Without -user on a loopback address, it
answers only requests for localhost or a loopback address, so that a web
page the browser shows cannot reach it by DNS rebinding (a name of its
own that resolves to 127.0.0.1).`,
	examples: `redstream web
redstream -url redis://redis.internal:6379 web -addr 127.0.0.1:9000
REDSTREAM_WEB_PASSWORD=... redstream web -addr :8080 -user ops -allow-actions`,
	setup: func(fs *flag.FlagSet) runFunc {
		addr := fs.String("addr", "127.0.0.1:8080", "listen on `host:port`")
		actions := fs.Bool("allow-actions", false, "allow actions (ack, dead-letter, claim, replay, delete, pause)")
		user := fs.String("user", "", "ask for HTTP basic authentication as `name`, with the password in $"+webPasswordEnv)
		var sample time.Duration
		durationFlag(fs, &sample, "sample", dashboard.DefaultSampleInterval, "sample every stream's figures for the charts every `duration`")
		var streams streamList
		fs.Var(&streams, "stream", "show the stream `NAME` too, whatever SCAN finds (repeatable)")
		noScan := fs.Bool("no-scan", false, "do not SCAN for streams: show only the -stream ones")
		return func(ctx context.Context, a *app, _ []string) error {
			return a.web(ctx, webConfig{addr: *addr, actions: *actions, user: *user, sample: sample, streams: streams, noScan: *noScan})
		}
	},
}

type webConfig struct {
	addr    string
	actions bool
	user    string
	sample  time.Duration
	streams []string
	noScan  bool
}

// streamList is a repeatable -stream flag.
type streamList []string

func (l *streamList) String() string { return strings.Join(*l, ",") }

func (l *streamList) Set(name string) error {
	if err := redstream.ValidateStream(name); err != nil {
		return err
	}
	*l = append(*l, name)
	return nil
}

func (a *app) web(ctx context.Context, c webConfig) error {
	if c.sample <= 0 {
		return usagef("-sample must be positive, got %v", c.sample)
	}
	if c.noScan && len(c.streams) == 0 {
		return usagef("-no-scan needs the streams to show, given with -stream")
	}
	opts := []dashboard.Option{dashboard.WithSampleInterval(c.sample), dashboard.WithStreams(c.streams...)}
	if c.noScan {
		opts = append(opts, dashboard.WithoutScan())
	}
	if c.user != "" {
		password := a.getenv(webPasswordEnv)
		if password == "" {
			return usagef("-user needs the password in $%s", webPasswordEnv)
		}
		a.secrets = append(a.secrets, password)
		opts = append(opts, dashboard.WithMiddleware(basicAuth(c.user, password)))
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.addr, err)
	}
	defer ln.Close()
	if c.actions {
		if host := ln.Addr().(*net.TCPAddr).IP; c.user == "" && !host.IsLoopback() {
			return usagef("-allow-actions on %s, not a loopback address, needs -user", c.addr)
		}
		opts = append(opts, dashboard.WithActions())
	}
	rdb, err := a.client(ctx)
	if err != nil {
		return err
	}
	d, err := dashboard.New(rdb, opts...)
	if err != nil {
		return err
	}
	defer d.Close()
	var handler http.Handler = d
	if c.user == "" && ln.Addr().(*net.TCPAddr).IP.IsLoopback() {
		handler = loopbackHostOnly(handler)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	mode := "read-only (-allow-actions to act)"
	if c.actions {
		mode = "actions allowed"
	}
	auth := "no authentication"
	if c.user != "" {
		auth = "basic authentication as " + c.user
	}
	fmt.Fprintf(a.stdout, "serving the dashboard of %s on http://%s/ (%s, %s); interrupt to stop\n", a.target.display, ln.Addr(), mode, auth)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutCtx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// loopbackHostOnly refuses a request whose Host is not localhost or a
// loopback address. A dashboard listening on loopback without a password
// is reached by any page the browser shows whose own name an attacker
// makes resolve to 127.0.0.1 (DNS rebinding): for the browser that page
// and the dashboard are then one origin, the page can read the dashboard
// and post its actions. Such a request still says the attacker's name in
// Host.
func loopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
		ip := net.ParseIP(host)
		if host != "localhost" && !strings.HasSuffix(host, ".localhost") && (ip == nil || !ip.IsLoopback()) {
			http.Error(w, "redstream web answers only to localhost and loopback addresses", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// basicAuth asks for user and password, compared in constant time (as
// hashes, so their lengths do not show either).
func basicAuth(user, password string) func(http.Handler) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
			if !ok || subtle.ConstantTimeCompare(gotUser[:], wantUser[:])&subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="redstream", charset="UTF-8"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
