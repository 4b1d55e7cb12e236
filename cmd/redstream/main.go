// Command redstream inspects and repairs the Redis streams that redstream
// producers and consumers use: stream and consumer-group state, pending
// entries, dead letters, trimming, and a live view of new entries.
//
//	redstream [global flags] COMMAND [ARGS] [FLAGS]
//
// Run "redstream help" for the list of commands and "redstream COMMAND -h"
// for one command's arguments, flags and examples.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1 // Redis failed, or the stream is not what the command needs
	exitUsage   = 2 // bad command line
)

// defaultTimeout bounds each Redis command (-timeout).
const defaultTimeout = 5 * time.Second

// run is the whole program: it parses args (without the program name),
// runs the command against Redis and returns the exit code. Output goes to
// stdout; an error is one line on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return newApp(stdout, stderr, os.Getenv).main(ctx, args)
}

// app holds what one invocation needs: its output, the global flags and the
// Redis client, connected on first use.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	conn    connFlags
	target  *target
	rdb     redis.UniversalClient
	secrets []string // passwords seen on the command line or in the environment, scrubbed from errors
}

func newApp(stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{stdout: stdout, stderr: stderr, getenv: getenv}
}

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelp asks for a command's help text instead of running it.
var errHelp = errors.New("help requested")

func (a *app) main(ctx context.Context, args []string) int {
	silenceRedisLogger()
	defer a.close()

	global := flag.NewFlagSet("redstream", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.Usage = func() {}
	a.conn.register(global)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printTopHelp(a.stdout)
			return exitOK
		}
		return a.fail(usagef("%v; run 'redstream help' for usage", err))
	}
	rest := global.Args()
	if len(rest) == 0 {
		printTopHelp(a.stderr)
		return exitUsage
	}
	if rest[0] == "help" {
		return a.help(rest[1:])
	}
	if isGroupHelp(rest) {
		printGroupHelp(a.stdout, rest[0])
		return exitOK
	}
	cmd, cmdArgs, err := lookup(rest)
	if err != nil {
		return a.fail(err)
	}
	if err := a.runCommand(ctx, cmd, cmdArgs); err != nil {
		switch {
		case errors.Is(err, errHelp):
			printCommandHelp(a.stdout, cmd)
			return exitOK
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			return a.fail(errors.New("interrupted"))
		}
		return a.fail(err)
	}
	return exitOK
}

// help serves "redstream help [COMMAND]".
func (a *app) help(args []string) int {
	if len(args) == 0 {
		printTopHelp(a.stdout)
		return exitOK
	}
	if len(args) == 1 && groupNames[args[0]] && find(args[0]) == nil {
		printGroupHelp(a.stdout, args[0])
		return exitOK
	}
	cmd, rest, err := lookup(args)
	if err != nil {
		return a.fail(err)
	}
	if len(rest) > 0 {
		return a.fail(usagef("help takes one command, got %q", strings.Join(args, " ")))
	}
	printCommandHelp(a.stdout, cmd)
	return exitOK
}

// fail prints err as one line on stderr and returns its exit code.
func (a *app) fail(err error) int {
	code := exitRuntime
	var ue *usageError
	if errors.As(err, &ue) {
		code = exitUsage
	}
	fmt.Fprintln(a.stderr, "redstream: "+a.oneLine(err))
	return code
}

// oneLine renders err on a single line without the "redstream: " prefixes
// of wrapped library errors, and with any known password replaced.
func (a *app) oneLine(err error) string {
	msg := err.Error()
	for _, s := range a.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	// errors.Join separates errors with newlines.
	lines := strings.FieldsFunc(msg, func(r rune) bool { return r == '\n' || r == '\r' })
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	msg = strings.Join(lines, "; ")
	// Errors raised by redstream's scripts come back as "ERR redstream: ...".
	msg = strings.ReplaceAll(msg, "ERR redstream: ", "")
	msg = strings.ReplaceAll(msg, ": redstream: ", ": ")
	for strings.HasPrefix(msg, "redstream: ") {
		msg = strings.TrimPrefix(msg, "redstream: ")
	}
	return msg
}

// client connects to Redis on first use and checks the connection with
// PING, so that an unreachable server is reported once, up front.
func (a *app) client(ctx context.Context) (redis.UniversalClient, error) {
	if a.rdb != nil {
		return a.rdb, nil
	}
	t, err := a.resolveTarget()
	if err != nil {
		return nil, err
	}
	rdb := t.newClient()
	pingCtx, cancel := context.WithTimeout(ctx, a.conn.timeout)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		_ = rdb.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot connect to %s: %w", t.display, err)
	}
	a.target, a.rdb = t, rdb
	return rdb, nil
}

func (a *app) close() {
	if a.rdb != nil {
		_ = a.rdb.Close()
	}
}

// resolveTarget turns the global flags and the environment into client
// options, remembering every password so errors never show it.
func (a *app) resolveTarget() (*target, error) {
	if a.conn.timeout <= 0 {
		return nil, usagef("-timeout must be positive, got %v", a.conn.timeout)
	}
	for _, raw := range []string{a.conn.addr, a.conn.url, a.conn.cluster, a.getenv("REDIS_URL"), a.getenv("REDIS_ADDR")} {
		a.secrets = append(a.secrets, urlSecrets(raw)...)
	}
	a.secrets = append(a.secrets, a.conn.password, a.getenv("REDIS_PASSWORD"))
	t, err := resolveTarget(a.conn, a.getenv)
	if err != nil {
		return nil, err
	}
	a.secrets = append(a.secrets, t.passwords()...)
	return t, nil
}

// stream validates a STREAM argument.
func stream(name string) (string, error) {
	if err := redstream.ValidateStream(name); err != nil {
		return "", &usageError{msg: err.Error()}
	}
	return name, nil
}

// streamMustExist checks that key is a stream, so that commands on a
// mistyped name fail instead of showing nothing.
func streamMustExist(ctx context.Context, rdb redis.UniversalClient, key string) error {
	typ, err := keyType(ctx, rdb, key)
	if err != nil {
		return err
	}
	return mustBeStream(key, typ)
}

func keyType(ctx context.Context, rdb redis.UniversalClient, key string) (string, error) {
	typ, err := rdb.Type(ctx, key).Result()
	if err != nil {
		return "", fmt.Errorf("type of %s: %w", key, err)
	}
	return typ, nil
}

// mustBeStream turns the TYPE of key into an error unless it is "stream".
func mustBeStream(key, typ string) error {
	switch typ {
	case "stream":
		return nil
	case "none":
		return noStream(key)
	default:
		return fmt.Errorf("%s is a %s, not a stream", key, typ)
	}
}

func noStream(key string) error {
	return &missingStreamError{msg: fmt.Sprintf("stream %s does not exist", key)}
}

// missingStreamError says a stream the command names does not exist. It
// matches redstream.ErrNoStream, so that commands that remove things
// (trim, dlq purge) can treat "nothing there" as nothing to do.
type missingStreamError struct{ msg string }

func (e *missingStreamError) Error() string { return e.msg }

func (e *missingStreamError) Unwrap() error { return redstream.ErrNoStream }

// isNoSuchKey reports the error Redis gives XINFO STREAM for a missing key.
// (HasErrorPrefix drops the "ERR " itself.)
func isNoSuchKey(err error) bool { return redis.HasErrorPrefix(err, "no such key") }

var silenceOnce sync.Once

// silenceRedisLogger stops go-redis from logging to stderr (connection
// retries, handshake fallbacks): the CLI reports errors itself, on one line.
func silenceRedisLogger() {
	silenceOnce.Do(func() { redis.SetLogger(discardLogger{}) })
}

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

// sortedKeys returns m's keys in order, for stable output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
