package redstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
)

// Publishing once by business key ([WithDedupeKey]), and the runner of the
// publishes that are scripts rather than plain XADDs: deduplicated ones
// (dedupe.lua) and scheduled ones (schedule.lua, see schedule.go).
//
// Both may be resent by go-redis after a lost reply, unlike plain XADDs
// (sendonce.go): the schedule script is wrapped by scripts.once, and the
// dedupe script's marker holds the nonce of the call that wrote it, so a
// resend of that call gets the first run's entry ID as its own result.
//
// Redis 8.6 deduplicates natively (XADD ... IDMP <producer> <id>). That
// is the seam: dedupeCall builds the one command a deduplicated publish
// sends, and could build an XADD IDMP there when the server has it; it is
// not done because this project's CI runs Redis 7, where it cannot be
// tested, and the script gives the same result on every version.

// WithDedupeKey publishes the message once per key within the producer's
// dedupe window ([WithDedupeWindow], default [DefaultDedupeWindow]): a
// later publish of the same key to the same stream (partition) within the
// window appends nothing and returns the first entry's ID with an error
// wrapping [ErrDuplicate]. The check, the marker write and the XADD are
// one script, so racing publishes of a key append one entry. The marker
// key is {stream}:redstream-dedupe:<key>, expiring with the window.
//
// Unlike a plain publish, a deduplicated one may be resent by the client
// after a lost reply: the resend returns the ID the first run appended
// (not ErrDuplicate). After an [ErrUncertain] error, publishing again with
// the same key is safe: it appends the entry or returns its ID with
// ErrDuplicate.
//
// On a partitioned producer the key also routes the message when no key
// is given ([WithKey], [WithKeyFunc]); with one, publishes of a dedupe key
// must carry the same routing key to be deduplicated. key must not be
// empty; WithDedupeKey cannot be combined with [WithID], [WithDelay],
// [WithDeliverAt], nor passed to [Producer.PublishBatch] (use
// [WithDedupeKeyFunc]): each is an error wrapping [ErrInvalidOption].
func WithDedupeKey(key string) PublishOption {
	return publishOption(func(c *publishConfig) error {
		if key == "" {
			return fmt.Errorf("%w: WithDedupeKey: empty key", ErrInvalidOption)
		}
		c.dedupeKey = key
		return nil
	})
}

// WithDedupeWindow sets how long a dedupe key ([WithDedupeKey],
// [WithDedupeKeyFunc]) keeps later publishes of the key out, counted from
// the first publish (Redis's PX, to the millisecond). The default is
// [DefaultDedupeWindow]; d must be at least 1ms (zero and negative are
// errors wrapping [ErrInvalidOption]).
func WithDedupeWindow(d time.Duration) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		if d < time.Millisecond {
			return fmt.Errorf("%w: WithDedupeWindow(%v): must be at least 1ms", ErrInvalidOption, d)
		}
		c.dedupeWindow = d
		return nil
	})
}

// WithDedupeKeyFunc derives every message's dedupe key ([WithDedupeKey])
// from its payload, for [Producer.Publish], [Producer.PublishAsync] and
// [Producer.PublishBatch]; a WithDedupeKey given to a call takes
// precedence. Scheduled publishes ([WithDelay]) are not deduplicated. fn
// must not be nil, must take the producer's payload type (else NewProducer
// returns an error wrapping [ErrInvalidOption]), and must return a
// non-empty key: a publish for which it returns "" fails with
// ErrInvalidOption.
func WithDedupeKeyFunc[T any](fn func(T) string) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		if fn == nil {
			return fmt.Errorf("%w: nil WithDedupeKeyFunc", ErrInvalidOption)
		}
		c.dedupeKeyFunc = fn
		return nil
	})
}

// dedupeFunc returns the producer's dedupe key func checked against T.
func dedupeFunc[T any](cfg *producerConfig) (func(T) string, error) {
	if cfg.dedupeKeyFunc == nil {
		return nil, nil
	}
	fn, ok := cfg.dedupeKeyFunc.(func(T) string)
	if !ok {
		var zero T
		return nil, fmt.Errorf("%w: WithDedupeKeyFunc takes %T, but the producer's payload type is %T", ErrInvalidOption, cfg.dedupeKeyFunc, zero)
	}
	return fn, nil
}

// dedupeMarkerKey is the marker of a dedupe key on stream.
func dedupeMarkerKey(stream, key string) string {
	return slotted(stream) + ":redstream-dedupe:" + key
}

// checkSpecial refuses the option combinations the scripted publishes
// cannot carry; batch tells a PublishBatch.
func checkSpecial(pc *publishConfig, batch bool) error {
	if err := checkScheduled(pc); err != nil {
		return err
	}
	if pc.dedupeKey == "" {
		return nil
	}
	if batch {
		return fmt.Errorf("%w: WithDedupeKey is not allowed with PublishBatch (every entry would have the key): use WithDedupeKeyFunc", ErrInvalidOption)
	}
	if pc.id != "" {
		return fmt.Errorf("%w: WithDedupeKey cannot be combined with WithID", ErrInvalidOption)
	}
	return nil
}

// routeOf sets pc's dedupe key from the producer's dedupe key func (not
// for a scheduled publish) and returns the partition of the message: by
// its key, else by its dedupe key, else in turn.
func (p *Producer[T]) routeOf(v T, pc *publishConfig) (int, error) {
	if pc.dedupeKey == "" && pc.schedule == nil && p.dedupeKeyFunc != nil {
		if pc.dedupeKey = p.dedupeKeyFunc(v); pc.dedupeKey == "" {
			return 0, fmt.Errorf("%w: WithDedupeKeyFunc returned an empty key", ErrInvalidOption)
		}
	}
	if !pc.hasKey && pc.dedupeKey != "" {
		return p.route(pc.dedupeKey, true), nil
	}
	return p.route(pc.key, pc.hasKey), nil
}

// scriptCallFor returns the script call of a scheduled or deduplicated
// publish, nil for a plain one.
func (p *Producer[T]) scriptCallFor(part int, a *redis.XAddArgs, pc *publishConfig) *scriptCall {
	switch {
	case pc.schedule != nil:
		return scheduleCall(part, a, pc.schedule, newScheduleID(part, len(p.streams) > 1))
	case pc.dedupeKey != "":
		return p.dedupeCall(part, a, pc.dedupeKey)
	}
	return nil
}

// dedupeCall is the dedupe script's call for one publish.
func (p *Producer[T]) dedupeCall(part int, a *redis.XAddArgs, key string) *scriptCall {
	xadd := xaddCmd(context.Background(), a).Args()[2:] // after "xadd" and the key
	var b [8]byte
	_, _ = rand.Read(b[:])
	argv := make([]any, 0, 2+len(xadd))
	argv = append(argv, p.cfg.dedupeWindow.Milliseconds(), hex.EncodeToString(b[:]))
	argv = append(argv, xadd...)
	return &scriptCall{
		part:   part,
		stream: a.Stream,
		script: scripts.Dedupe,
		keys:   []string{a.Stream, dedupeMarkerKey(a.Stream, key)},
		argv:   argv,
		dedupe: true,
		reply: func(reply any) (string, error) {
			r, _ := reply.([]any)
			if len(r) != 2 {
				return "", fmt.Errorf("redstream: publish to %s: unexpected reply %v", a.Stream, reply)
			}
			id, _ := r[1].(string)
			if first, _ := r[0].(int64); first == 0 {
				return id, fmt.Errorf("%w: dedupe key %q was published as %s", ErrDuplicate, key, id)
			}
			return id, nil
		},
	}
}

// scriptCall is one publish sent as a script.
type scriptCall struct {
	part   int
	stream string
	script *redis.Script
	keys   []string
	argv   []any
	dedupe bool // a deduplicated publish, whose ID is an entry's
	// reply turns the script's reply into the publish's ID and error.
	reply func(reply any) (string, error)
	// knownID is the ID the publish returns even when its outcome is
	// unknown (a schedule ID), "" if none.
	knownID string

	cmd *redis.Cmd
}

// runScripts sends calls (one round trip; with WithMinReplicas, one per
// partition, each with its WAIT) and returns each one's ID and error. As
// for plain publishes, a caller whose ctx ends leaves the round trip,
// with errors wrapping [ErrUncertain].
func (p *Producer[T]) runScripts(ctx context.Context, calls []*scriptCall) ([]string, []error) {
	sentIDs, sentErrs := make([]string, len(calls)), make([]error, len(calls))
	send := func() {
		rctx := context.WithoutCancel(ctx)
		waits := make([]*redis.IntCmd, len(calls))
		switch {
		case p.cfg.minReplicas > 0:
			p.sendWithWait(rctx, calls, waits)
		case len(calls) == 1:
			calls[0].cmd = calls[0].script.Run(rctx, p.rdb, calls[0].keys, calls[0].argv...)
		default:
			// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT.
			_, _ = p.rdb.Pipelined(rctx, func(pipe redis.Pipeliner) error {
				for _, c := range calls {
					c.cmd = c.script.Eval(rctx, pipe, c.keys, c.argv...)
				}
				return nil
			})
		}
		for i, c := range calls {
			sentIDs[i], sentErrs[i] = p.scriptResult(c, waits[i])
		}
	}
	if awaitCtx(ctx, send) {
		return sentIDs, sentErrs
	}
	ids, errs := make([]string, len(calls)), make([]error, len(calls))
	for i, c := range calls {
		ids[i] = c.knownID
		errs[i] = fmt.Errorf("redstream: publish to %s: %w", c.stream, &uncertainError{err: ctx.Err()})
	}
	return ids, errs
}

// sendWithWait sends the calls of each partition in a pipeline of their
// own to its primary, with a WAIT, the partitions in parallel.
func (p *Producer[T]) sendWithWait(ctx context.Context, calls []*scriptCall, waits []*redis.IntCmd) {
	byPart := make(map[int][]int)
	for i, c := range calls {
		byPart[c.part] = append(byPart[c.part], i)
	}
	var wg sync.WaitGroup
	for _, idx := range byPart {
		wg.Go(func() {
			stream := calls[idx[0]].stream
			node, err := nodeFor(ctx, p.rdb, stream)
			if err != nil {
				for _, i := range idx {
					calls[i].cmd = redis.NewCmd(ctx)
					calls[i].cmd.SetErr(err)
				}
				return
			}
			pipe := node.Pipeline()
			for _, i := range idx {
				calls[i].cmd = calls[i].script.Eval(ctx, pipe, calls[i].keys, calls[i].argv...)
			}
			wait := redis.NewIntCmd(ctx, "wait", p.cfg.minReplicas, p.cfg.replicaTimeout.Milliseconds())
			_ = pipe.Process(ctx, wait)
			_, _ = pipe.Exec(ctx)
			for _, i := range idx {
				waits[i] = wait
			}
		})
	}
	wg.Wait()
}

// scriptResult turns one call's outcome into the publish's ID and error.
func (p *Producer[T]) scriptResult(c *scriptCall, wait *redis.IntCmd) (string, error) {
	reply, err := c.cmd.Result()
	if err != nil {
		refreshTopology(p.rdb, err)
		if obs := p.cfg.observer; obs != nil && c.dedupe {
			obs.Published(c.stream, 1, err)
		}
		return c.knownID, fmt.Errorf("redstream: publish to %s: %w", c.stream, uncertain(err))
	}
	id, err := c.reply(reply)
	if err != nil {
		return id, err // a duplicate: nothing was written
	}
	if c.dedupe {
		p.learnClock(c.part, "", id)
	}
	if wait != nil {
		if replicas, waitErr := wait.Result(); waitErr != nil || replicas < int64(p.cfg.minReplicas) {
			err = &ReplicationError{Stream: c.stream, ID: id, Want: p.cfg.minReplicas, Replicas: int(replicas), Err: waitErr}
		}
	}
	if obs := p.cfg.observer; obs != nil && c.dedupe {
		obs.Published(c.stream, 1, err)
	}
	return id, err
}

// isDuplicate reports whether a scripted publish's error is a dedupe hit.
func isDuplicate(err error) bool { return errors.Is(err, ErrDuplicate) }

// publishBatchScripted is PublishBatch for scheduled or deduplicated
// entries: a duplicate has the first entry's ID and an error wrapping
// ErrDuplicate in the [*BatchError].
func (p *Producer[T]) publishBatchScripted(ctx context.Context, calls []*scriptCall) ([]string, error) {
	ids, errs := p.runScripts(ctx, calls)
	var batchErr *BatchError
	for i, err := range errs {
		if err == nil {
			continue
		}
		if batchErr == nil {
			batchErr = &BatchError{Errs: make([]error, len(calls))}
		}
		batchErr.Errs[i] = err
		var replErr *ReplicationError
		if !isDuplicate(err) && !errors.As(err, &replErr) && calls[i].knownID == "" {
			ids[i] = ""
		}
	}
	if batchErr != nil {
		return ids, batchErr
	}
	return ids, nil
}
