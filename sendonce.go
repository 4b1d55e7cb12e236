package redstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// A go-redis client sends a command again when its connection fails before
// the reply arrives (MaxRetries, 3 by default), even when Redis ran it: the
// reply, not the command, may be what was lost. For a command that does the
// same thing twice (a read, an XACK, a lease renewal) that is harmless; for
// one that does not (an XADD with an auto ID appends a second entry) it is a
// silent duplicate (a read of new entries, XREADGROUP >, leaves a first
// delivery unseen: see onceXStreamSliceCmd). This file holds the two ways
// redstream keeps such writes from running twice behind the caller's back:
//
//   - On the publish path, where a write per message must stay cheap, the
//     XADDs are sent once (sendOnce): a failure that may have come after
//     Redis ran them is reported as [ErrUncertain], for the caller to decide.
//   - The scripts that move or count entries (dead-letter move, replay,
//     trim, schedule, long retry) take a marker key (onceKey): the first run stores its reply
//     there, and a resend of the same call returns that reply instead of
//     running again, so the client may resend and the caller gets what
//     Redis did.

// onceStringCmd is a go-redis command that the client must not send again
// once it may have been written to a connection (go-redis's NoRetry).
type onceStringCmd struct{ *redis.StringCmd }

// NoRetry tells go-redis not to resend the command after a failure that may
// have come after it was written.
func (onceStringCmd) NoRetry() bool { return true }

// onceIntCmd is onceStringCmd for commands that reply with an integer.
type onceIntCmd struct{ *redis.IntCmd }

// NoRetry: see onceStringCmd.
func (onceIntCmd) NoRetry() bool { return true }

// onceXStreamSliceCmd is onceStringCmd for XREADGROUP. A read of new
// entries (">") is a write too: it delivers them, and when its reply is
// lost they are pending for the consumer, unseen. Resent, the read returns
// what came after them, and they wait for a reaper after MinIdle, one
// delivery more. Sent once, the failure reaches the reader, which reads its
// own pending entries again at once.
type onceXStreamSliceCmd struct{ *redis.XStreamSliceCmd }

// NoRetry: see onceStringCmd.
func (onceXStreamSliceCmd) NoRetry() bool { return true }

// xreadGroupCmd builds a's XREADGROUP as a command that is sent once, for
// rdb.Process or a pipeline's Process. go-redis's own XReadGroup builds it,
// queued on a pipeline that never runs: that keeps what it sets up
// unexported, the read timeout stretched by BLOCK.
func xreadGroupCmd(ctx context.Context, rdb redis.UniversalClient, a *redis.XReadGroupArgs) onceXStreamSliceCmd {
	return onceXStreamSliceCmd{rdb.Pipeline().XReadGroup(ctx, a)}
}

// xreadGroup runs a's XREADGROUP, sent once (xreadGroupCmd).
func xreadGroup(ctx context.Context, rdb redis.UniversalClient, a *redis.XReadGroupArgs) ([]redis.XStream, error) {
	cmd := xreadGroupCmd(ctx, rdb, a)
	_ = rdb.Process(ctx, cmd)
	return cmd.Result()
}

// onceCmd is onceStringCmd for commands with any reply (scripts).
type onceCmd struct{ *redis.Cmd }

// NoRetry: see onceStringCmd.
func (onceCmd) NoRetry() bool { return true }

// evalOnce runs the script src (whose SHA1 is sha) as go-redis's Script.Run
// does, EVALSHA and then EVAL when the server has not cached it, each sent
// once.
func evalOnce(ctx context.Context, rdb redis.UniversalClient, sha, src string, keys []string, args ...any) *redis.Cmd {
	run := func(name, script string) *redis.Cmd {
		cmdArgs := make([]any, 0, 3+len(keys)+len(args))
		cmdArgs = append(cmdArgs, name, script, len(keys))
		for _, k := range keys {
			cmdArgs = append(cmdArgs, k)
		}
		cmdArgs = append(cmdArgs, args...)
		cmd := redis.NewCmd(ctx, cmdArgs...) // go-redis finds EVAL's keys itself
		_ = rdb.Process(ctx, onceCmd{cmd})
		return cmd
	}
	cmd := run("evalsha", sha)
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		return run("eval", src)
	}
	return cmd
}

// xaddCmd builds a's XADD as a command that is sent once. It writes the same
// arguments as go-redis's XAdd for the fields redstream uses.
func xaddCmd(ctx context.Context, a *redis.XAddArgs) onceStringCmd {
	return xaddCmdTo(ctx, a, a.Stream)
}

// xaddCmdTo is xaddCmd with a.Stream given in an interface already: a
// caller that sends many XADDs to one stream puts it there once (each
// conversion of a string to an interface is an allocation).
func xaddCmdTo(ctx context.Context, a *redis.XAddArgs, stream any) onceStringCmd {
	args := make([]any, 0, 8+len(a.Values.([]any)))
	args = append(args, "xadd", stream)
	if a.NoMkStream {
		args = append(args, "nomkstream")
	}
	approx := "="
	if a.Approx {
		approx = "~"
	}
	switch {
	case a.MaxLen > 0:
		args = append(args, "maxlen", approx, a.MaxLen)
	case a.MinID != "":
		args = append(args, "minid", approx, a.MinID)
	}
	if a.Limit > 0 {
		args = append(args, "limit", a.Limit)
	}
	if a.ID != "" {
		args = append(args, a.ID)
	} else {
		args = append(args, "*")
	}
	args = append(args, a.Values.([]any)...)
	return onceStringCmd{redis.NewStringCmd(ctx, args...)}
}

// mayHaveRun reports whether a failed command may nevertheless have run on
// the server: the failure is not Redis's reply (which says it did not run,
// or ran and failed) and not one that stopped it before it was written (no
// connection could be had or dialled).
func mayHaveRun(err error) bool {
	if err == nil {
		return false
	}
	var redisErr redis.Error
	if errors.As(err, &redisErr) {
		return false
	}
	if errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) {
		return false
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return false
	}
	return true
}

// uncertain wraps err with [ErrUncertain] when the write it failed may have
// run anyway.
func uncertain(err error) error {
	if errors.Is(err, ErrUncertain) {
		return err
	}
	if mayHaveRun(err) {
		return &uncertainError{err: err}
	}
	return err
}

// uncertainError is a failure after which a write may or may not have run.
type uncertainError struct{ err error }

func (e *uncertainError) Error() string {
	return "outcome unknown (" + e.err.Error() + ")"
}

func (e *uncertainError) Unwrap() []error { return []error{ErrUncertain, e.err} }

// onceKey returns a new marker key for one call of a once-wrapped script on
// stream: in the stream's hash slot, unique to the call, so that go-redis's
// resend of the same command finds the first run's reply.
func onceKey(stream string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	var sb strings.Builder
	sb.WriteString(slotted(stream))
	sb.WriteString(":redstream-once:")
	sb.WriteString(hex.EncodeToString(b[:]))
	return sb.String()
}

// awaitCtx runs fn, and reports whether it returned before ctx ended. A ctx
// that can end gets fn run on another goroutine, so that the caller can
// leave at ctx's end while fn goes on: fn must then touch nothing the
// caller reads after a false return.
func awaitCtx(ctx context.Context, fn func()) bool {
	if ctx.Done() == nil {
		fn()
		return true
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
