package redstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
	"github.com/redstream/redstream/internal/streamid"
)

// Reasons recorded in dead-letter entries ([DeadLetter.Reason]).
const (
	// ReasonMaxDeliveries: its handler ran and failed MaxDeliveries times
	// ([WithMaxDeliveries]).
	ReasonMaxDeliveries = "max-deliveries"
	// ReasonCrashLoop: Redis delivered the message more than MaxDeliveries +
	// [CrashLoopDeliveries] times without that many handler failures being
	// recorded: consumers died holding it, again and again (a message that
	// kills its process, say).
	ReasonCrashLoop = "crash-loop"
	// ReasonVanished: the message was no longer pending in Redis while a
	// consumer held it (its stream or group was deleted, flushed or evicted,
	// or an operator deleted its consumer), and its handler then failed: the
	// consumer wrote it from memory, its only copy, rather than drop it.
	ReasonVanished = "vanished"
	// ReasonHandler: the handler returned [ErrDeadLetter].
	ReasonHandler = "handler"
	// ReasonDecode: the entry could not be decoded ([DecodeError]).
	ReasonDecode = "decode"
	// ReasonOperator: an operator dead-lettered the pending entry
	// ([DeadLetterPending], the CLI's "pending dead-letter").
	ReasonOperator = "operator"
	// ReasonTrimmed: the entry was trimmed from the stream while a consumer
	// held it and its handler failed; the consumer wrote it from memory
	// rather than retry a message that no longer exists in Redis.
	ReasonTrimmed = "trimmed"
)

// Field names of the metadata in a dead-letter entry. The entry's own fields
// follow them unchanged, except that a field whose name starts with
// "dead-letter:" is stored as "dead-letter:field:" + name, so nothing is lost
// or mistaken for metadata.
const (
	deadLetterMetaPrefix  = "dead-letter:"
	deadLetterFieldPrefix = "dead-letter:field:"
	metaStream            = "dead-letter:stream"
	metaID                = "dead-letter:id"
	metaGroup             = "dead-letter:group"
	metaConsumer          = "dead-letter:consumer"
	metaDeliveries        = "dead-letter:deliveries"
	metaReason            = "dead-letter:reason"
	metaError             = "dead-letter:error"
	metaTime              = "dead-letter:time"
	metaFieldsOmitted     = "dead-letter:fields-omitted"
)

// DeadLetter is one entry of a dead-letter stream, with its metadata parsed.
type DeadLetter struct {
	// ID is the entry's ID in the dead-letter stream.
	ID string
	// Stream and OriginID are where the message came from.
	Stream   string
	OriginID string
	// Group and Consumer held the message when it was dead-lettered.
	Group    string
	Consumer string
	// Deliveries is how many times it had been delivered: Redis's
	// delivery count, or the handler attempts when higher.
	Deliveries int64
	// Reason is one of the Reason constants ([ReasonMaxDeliveries], ...).
	Reason string
	// Error is the text of the last error, if any.
	Error string
	// Time is when it was dead-lettered.
	Time time.Time
	// Fields are the message's own fields, as they were in the stream.
	Fields map[string]string
	// FieldsOmitted is the number of fields of an entry too large for the
	// dead-letter script to copy (thousands of fields); Fields is then
	// empty and the entry is still in the stream under OriginID, until
	// trimmed. Such an entry cannot be replayed.
	FieldsOmitted int64
}

// parseDeadLetter splits a dead-letter entry into metadata and the
// message's own fields. Malformed metadata is kept as zero values rather
// than failing: the message's fields matter more.
func parseDeadLetter(id string, values map[string]any) DeadLetter {
	d := DeadLetter{ID: id, Fields: make(map[string]string, len(values))}
	for k, v := range values {
		s, _ := v.(string)
		switch {
		case strings.HasPrefix(k, deadLetterFieldPrefix):
			d.Fields[k[len(deadLetterFieldPrefix):]] = s
		case k == metaStream:
			d.Stream = s
		case k == metaID:
			d.OriginID = s
		case k == metaGroup:
			d.Group = s
		case k == metaConsumer:
			d.Consumer = s
		case k == metaDeliveries:
			d.Deliveries, _ = strconv.ParseInt(s, 10, 64)
		case k == metaReason:
			d.Reason = s
		case k == metaError:
			d.Error = s
		case k == metaTime:
			if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
				d.Time = time.UnixMilli(ms)
			}
		case k == metaFieldsOmitted:
			d.FieldsOmitted, _ = strconv.ParseInt(s, 10, 64)
		case strings.HasPrefix(k, deadLetterMetaPrefix):
			// Metadata of a later version: not a field of the message.
		default:
			d.Fields[k] = s
		}
	}
	return d
}

// DeadLetters manages the dead-letter stream of one stream: list, replay
// and delete its entries. Create it with [NewDeadLetters]. It is safe for
// concurrent use.
type DeadLetters struct {
	rdb    redis.UniversalClient
	stream string
	key    string
}

// NewDeadLetters returns the dead-letter manager of stream. The error wraps
// [ErrInvalidOption] or [ErrInvalidStreamName].
func NewDeadLetters(rdb redis.UniversalClient, stream string) (*DeadLetters, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalidOption)
	}
	if err := ValidateStream(stream); err != nil {
		return nil, err
	}
	return &DeadLetters{rdb: rdb, stream: stream, key: DeadLetterKey(stream)}, nil
}

// Key returns the dead-letter stream's key ([DeadLetterKey]).
func (d *DeadLetters) Key() string { return d.key }

// Len returns how many entries the dead-letter stream holds.
func (d *DeadLetters) Len(ctx context.Context) (int64, error) {
	n, err := d.rdb.XLen(ctx, d.key).Result()
	if err != nil {
		return 0, fmt.Errorf("redstream: dead-letter length of %s: %w", d.stream, err)
	}
	return n, nil
}

// ListOptions pages through a dead-letter stream with [DeadLetters.List].
type ListOptions struct {
	// Count is the page size. Zero means 100; negative is an error.
	Count int
	// After continues a listing: pass the previous page's next cursor. ""
	// starts at the oldest entry (or the newest, with NewestFirst).
	After string
	// NewestFirst lists the most recent dead letters first.
	NewestFirst bool
}

// List returns a page of dead letters and the cursor of the next page
// (ListOptions.After), which is "" after the last page.
func (d *DeadLetters) List(ctx context.Context, opts ListOptions) ([]DeadLetter, string, error) {
	count := opts.Count
	if count < 0 {
		return nil, "", fmt.Errorf("%w: ListOptions.Count %d is negative", ErrInvalidOption, count)
	}
	if count == 0 {
		count = 100
	}
	if opts.After != "" {
		if _, err := streamid.Parse(opts.After); err != nil {
			return nil, "", fmt.Errorf("%w: ListOptions.After %q: %w", ErrInvalidID, opts.After, err)
		}
	}
	var (
		msgs []redis.XMessage
		err  error
	)
	switch {
	case opts.NewestFirst:
		end, ok := "+", true
		if opts.After != "" {
			end, ok = endBefore(opts.After)
		}
		if ok {
			msgs, err = d.rdb.XRevRangeN(ctx, d.key, end, "-", pageAndOne(count)).Result()
		}
	default:
		start, ok := "-", true
		if opts.After != "" {
			start, ok = startAfter(opts.After)
		}
		if ok {
			msgs, err = d.rdb.XRangeN(ctx, d.key, start, "+", pageAndOne(count)).Result()
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("redstream: list dead letters of %s: %w", d.stream, err)
	}
	// One more than a page was asked for, to tell whether a next page exists.
	next := ""
	if len(msgs) > count {
		msgs = msgs[:count]
		next = msgs[count-1].ID
	}
	letters := make([]DeadLetter, len(msgs))
	for i, m := range msgs {
		letters[i] = parseDeadLetter(m.ID, m.Values)
	}
	return letters, next, nil
}

// pageAndOne is the COUNT that reads a page of count and one more, to
// tell whether a next page exists: count+1, which overflowed into a
// negative COUNT (a nil reply) at math.MaxInt.
func pageAndOne(count int) int64 {
	return int64(min(count, math.MaxInt-1)) + 1
}

// ReplayOption selects what [DeadLetters.Replay] replays and how fast.
type ReplayOption interface {
	applyReplay(*replayConfig) error
}

type replayConfig struct {
	all   bool
	ids   []string
	rate  float64
	batch int
}

type replayOption func(*replayConfig) error

func (o replayOption) applyReplay(c *replayConfig) error { return o(c) }

// ReplayAll replays every entry the dead-letter stream holds when the
// replay starts, oldest first. Entries dead-lettered while it runs (such as
// replayed messages that fail again) wait for the next replay.
func ReplayAll() ReplayOption {
	return replayOption(func(c *replayConfig) error {
		c.all = true
		return nil
	})
}

// ReplayIDs replays the dead-letter entries with these IDs (as listed by
// [DeadLetters.List]); IDs that no longer exist are skipped.
func ReplayIDs(ids ...string) ReplayOption {
	return replayOption(func(c *replayConfig) error {
		for _, id := range ids {
			if _, err := streamid.Parse(id); err != nil {
				return fmt.Errorf("%w: ReplayIDs(%q): %w", ErrInvalidID, id, err)
			}
		}
		c.ids = append(c.ids, ids...)
		return nil
	})
}

// The bounds of [ReplayRate], in entries a second: one an hour, and a
// million a second (far more than one replay, a round trip an entry,
// reaches).
const (
	MinReplayRate = 1.0 / 3600
	MaxReplayRate = 1e6
)

// ReplayRate limits a replay to about perSecond entries a second, so that
// a large replay does not flood the consumers. The default is unlimited.
// perSecond must lie between [MinReplayRate] and [MaxReplayRate]: zero, a
// negative rate, NaN, an infinity or a rate out of those bounds makes
// Replay return an error wrapping [ErrInvalidOption] (use no ReplayRate
// for no limit).
func ReplayRate(perSecond float64) ReplayOption {
	return replayOption(func(c *replayConfig) error {
		if err := CheckReplayRate(perSecond); err != nil {
			return fmt.Errorf("%w: ReplayRate(%v): %w", ErrInvalidOption, perSecond, err)
		}
		c.rate = perSecond
		return nil
	})
}

// CheckReplayRate reports whether perSecond is a rate [ReplayRate] takes:
// nil, or an error saying why not. Tools that take a rate from their users
// (the CLI, the dashboard) check it before they ask for a confirmation.
func CheckReplayRate(perSecond float64) error {
	if !(perSecond >= MinReplayRate && perSecond <= MaxReplayRate) { // NaN fails both
		return fmt.Errorf("a replay rate must be between %g (one an hour) and %g entries a second", MinReplayRate, MaxReplayRate)
	}
	return nil
}

// Replay puts dead letters back on their stream, where the group's consumers
// handle them again as new entries (with new IDs and a fresh delivery count).
// Each entry is appended to the stream and removed from the dead-letter
// stream in one atomic step, so replaying the same entries twice appends
// them once. Pass [ReplayAll] or [ReplayIDs] (one is required), and
// optionally [ReplayRate]. It returns how many entries were replayed. An
// entry that cannot be replayed (see [DeadLetter.FieldsOmitted]) is left in
// place and reported in an error wrapping [ErrNotReplayable] while the
// others are replayed; a rate out of bounds is an [ErrInvalidOption]; a
// stream that does not exist (deleted since) is an [ErrNoStream], and
// nothing is replayed to it (appended, the entries would make a stream
// with no group, which a consumer starting at "$" would never read: start
// a consumer of the stream first, which creates both); a Redis failure or the end of ctx
// stops the replay, and what was replayed before stays replayed. A message
// dead-lettered after long retries ([WithLongRetryAfter]) is replayed
// without their count of failed attempts, and still only for the group it
// failed in.
func (d *DeadLetters) Replay(ctx context.Context, opts ...ReplayOption) (int, error) {
	cfg := replayConfig{batch: 100}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyReplay(&cfg); err != nil {
			return 0, err
		}
	}
	if cfg.all == (len(cfg.ids) > 0) {
		return 0, fmt.Errorf("%w: Replay needs exactly one of ReplayAll and ReplayIDs", ErrInvalidOption)
	}
	pace := newPacer(cfg.rate)
	defer pace.stop()
	replayed := 0
	var refused []error
	replayOne := func(id string) error {
		if err := pace.wait(ctx); err != nil {
			return err
		}
		err := scripts.Replay.Run(ctx, d.rdb, []string{d.key, d.stream, onceKey(d.stream)}, id).Err()
		switch {
		case err == nil:
			replayed++
		case errors.Is(err, redis.Nil):
			// Replayed or deleted already.
		case redis.HasErrorPrefix(err, "NOSTREAM"):
			return fmt.Errorf("%w: replay to %s: the stream does not exist; start a consumer of it first (it creates the stream and its group), then replay", ErrNoStream, d.stream)
		case redis.HasErrorPrefix(err, "redstream:"):
			refused = append(refused, err)
		default:
			return fmt.Errorf("redstream: replay %s of %s: %w", id, d.key, err)
		}
		return nil
	}
	if cfg.all {
		if err := d.eachUpToNewest(ctx, cfg.batch, replayOne); err != nil {
			return replayed, err
		}
	} else {
		for _, id := range cfg.ids {
			if err := replayOne(id); err != nil {
				return replayed, err
			}
		}
	}
	if len(refused) > 0 {
		return replayed, fmt.Errorf("%w: %d left in place: %w", ErrNotReplayable, len(refused), errors.Join(refused...))
	}
	return replayed, nil
}

// eachUpToNewest calls fn with the ID of every dead letter, oldest first,
// up to the newest one when it starts, paging by batch.
func (d *DeadLetters) eachUpToNewest(ctx context.Context, batch int, fn func(id string) error) error {
	last, err := d.rdb.XRevRangeN(ctx, d.key, "+", "-", 1).Result()
	if err != nil {
		return fmt.Errorf("redstream: replay %s: %w", d.key, err)
	}
	if len(last) == 0 {
		return nil
	}
	start := "-"
	for {
		msgs, err := d.rdb.XRangeN(ctx, d.key, start, last[0].ID, int64(batch)).Result()
		if err != nil {
			return fmt.Errorf("redstream: replay %s: %w", d.key, err)
		}
		for _, m := range msgs {
			if err := fn(m.ID); err != nil {
				return err
			}
		}
		if len(msgs) < batch {
			return nil
		}
		var more bool
		if start, more = startAfter(msgs[len(msgs)-1].ID); !more {
			return nil
		}
	}
}

// Delete removes the dead-letter entries with these IDs, for messages that
// should never be replayed, and returns how many existed. When the
// connection fails after the command may have run, it returns 0 and an
// error wrapping [ErrUncertain]: deleting again is safe (it counts what is
// still there).
func (d *DeadLetters) Delete(ctx context.Context, ids ...string) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	for _, id := range ids {
		if _, err := streamid.Parse(id); err != nil {
			return 0, fmt.Errorf("%w: Delete(%q): %w", ErrInvalidID, id, err)
		}
	}
	args := make([]any, 0, 2+len(ids))
	args = append(args, "xdel", d.key)
	for _, id := range ids {
		args = append(args, id)
	}
	// Sent once: a resend after a lost reply would count 0.
	cmd := onceIntCmd{redis.NewIntCmd(ctx, args...)}
	_ = d.rdb.Process(ctx, cmd)
	n, err := cmd.Result()
	if err != nil {
		return 0, fmt.Errorf("redstream: delete dead letters of %s: %w", d.stream, uncertain(err))
	}
	return n, nil
}

// Purge deletes the whole dead-letter stream and returns how many entries it
// held. When the connection fails after the command may have run, it
// returns 0 and an error wrapping [ErrUncertain].
func (d *DeadLetters) Purge(ctx context.Context) (int64, error) {
	var n *redis.IntCmd
	_, err := d.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		n = pipe.XLen(ctx, d.key)
		// Sent once: a resend after a lost reply would count 0.
		_ = pipe.Process(ctx, onceIntCmd{redis.NewIntCmd(ctx, "del", d.key)})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("redstream: purge dead letters of %s: %w", d.stream, uncertain(err))
	}
	return n.Val(), nil
}

// pacer spaces calls at a fixed rate; a zero rate never waits.
type pacer struct {
	ticker *time.Ticker
}

// newPacer paces at perSecond, which ReplayRate checked; 0 is no limit.
func newPacer(perSecond float64) *pacer {
	interval := time.Duration(float64(time.Second) / perSecond)
	if perSecond <= 0 || interval <= 0 {
		return &pacer{}
	}
	return &pacer{ticker: time.NewTicker(interval)}
}

func (p *pacer) wait(ctx context.Context) error {
	if p.ticker == nil {
		return ctx.Err()
	}
	select {
	case <-p.ticker.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pacer) stop() {
	if p.ticker != nil {
		p.ticker.Stop()
	}
}
