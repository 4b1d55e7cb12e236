package redstream

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/slot"
)

// KeyField is the entry field that holds a message's key, written when a
// publish has one ([WithKey], [WithKeyFunc]). The key chooses the partition
// of a partitioned stream and orders messages under [WithOrderedKeys];
// [Message.Key] returns it.
const KeyField = "key"

// MaxPartitions is the most partitions a logical stream may have.
const MaxPartitions = 1024

// Partitions returns the keys of the n partition streams of the logical
// stream base: base+":p0" to base+":p<n-1>". Without a hash tag each lands
// on its own Redis Cluster hash slot, spread over the nodes by the keys'
// CRC16, and each has its own dead-letter stream in its slot. base must be
// a valid stream name ([ValidateStream]) without a hash tag (a tag would put
// every partition on one slot), and n between 1 and [MaxPartitions]; the
// error wraps [ErrInvalidStreamName] or [ErrInvalidOption].
func Partitions(base string, n int) ([]string, error) {
	if err := ValidateStream(base); err != nil {
		return nil, err
	}
	if tag, ok := slot.Tag(base); ok {
		return nil, fmt.Errorf("%w: %q has the hash tag {%s}: its partitions would all share one cluster slot", ErrInvalidStreamName, base, tag)
	}
	if n < 1 || n > MaxPartitions {
		return nil, fmt.Errorf("%w: %d partitions: must be between 1 and %d", ErrInvalidOption, n, MaxPartitions)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = base + ":p" + strconv.Itoa(i)
	}
	return names, nil
}

// PartitionOf returns the partition, in [0, n), that messages with key go
// to: the 32-bit FNV-1a hash of key modulo n. Producers use it; it is
// exported so that other writers (in other languages, say) can route the
// same way. n must be positive.
func PartitionOf(key string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// PartitionOption is [WithPartitions]: it configures both a [Producer] and
// a [Handle] registration.
type PartitionOption interface {
	ProducerOption
	HandleOption
}

type partitionsOption int

func (n partitionsOption) check() error {
	if n < 1 || n > MaxPartitions {
		return fmt.Errorf("%w: WithPartitions(%d): must be between 1 and %d", ErrInvalidOption, int(n), MaxPartitions)
	}
	return nil
}

func (n partitionsOption) applyProducer(c *producerConfig) error {
	c.partitions = int(n)
	return n.check()
}

func (n partitionsOption) applyHandle(c *handleConfig) error {
	c.partitions = int(n)
	return n.check()
}

// WithPartitions spreads the logical stream over n partition streams
// ([Partitions]). Given to [NewProducer], the producer routes each message
// by its key ([WithKey], [WithKeyFunc]) with [PartitionOf], so one key's
// messages stay in one partition, in order; messages without a key go to
// the partitions in turn. Given to [Handle], the consumer reads every
// partition, each with its own reader, and reclaims, dead-letters and trims
// per partition. Producers and consumers of a stream must agree on n:
// changing it moves keys to other partitions, and messages still in the old
// ones are read only by a consumer that handles them.
func WithPartitions(n int) PartitionOption { return partitionsOption(n) }

// WithKey sets the message's key: it is written in the entry's [KeyField],
// chooses the partition of a partitioned producer, and orders the message
// after earlier ones of the same key for consumers that use
// [WithOrderedKeys]. It overrides the producer's [WithKeyFunc];
// WithKey("") publishes without a key.
func WithKey(key string) PublishOption {
	return publishOption(func(c *publishConfig) error {
		c.key, c.hasKey = key, true
		return nil
	})
}

// WithKeyFunc sets how a [Producer] of T finds each message's key, such as
// the ID of the entity the event is about. It is called on every publish
// without [WithKey]; an empty key counts as none. [NewProducer] returns an
// error wrapping [ErrInvalidOption] if T is not the producer's payload type.
func WithKeyFunc[T any](fn func(T) string) ProducerOption {
	return producerOption(func(c *producerConfig) error {
		if fn == nil {
			return fmt.Errorf("%w: nil WithKeyFunc", ErrInvalidOption)
		}
		c.keyFunc = fn
		return nil
	})
}

// HandleOption configures one [Handle] registration.
type HandleOption interface {
	applyHandle(*handleConfig) error
}

// handleConfig is one Handle registration's configuration.
type handleConfig struct {
	partitions int // 0: not partitioned
	ordered    bool
	exclusive  bool
	// handlerTimeout, when hasHandlerTimeout, overrides the consumer's
	// WithHandlerTimeout.
	handlerTimeout    time.Duration
	hasHandlerTimeout bool
	limit             *rateLimit   // WithRateLimit; nil: none
	batch             batchOptions // HandleBatch's (batch.go)
}

type handleOption func(*handleConfig) error

func (o handleOption) applyHandle(c *handleConfig) error { return o(c) }

// WithOrderedKeys handles messages with the same key ([Message.Key]) one
// at a time, in stream order, while messages of different keys (and those
// without a key) run concurrently. A message whose handler fails holds back
// the later messages of its key until it succeeds or is dead-lettered (a
// failed dead-letter move is tried again, keeping the key's turn). The
// messages held back wait in the consumer and take in-flight room
// ([WithMaxInFlight]): one poison message delays its key by up to
// MaxDeliveries retry backoffs, and if its key's later messages fill the
// room, the consumer stops reading and every key waits with it.
//
// The order holds within one Consumer. Several consumers of a group share a
// stream's entries, so two messages of one key may go to two consumers and
// run at once; where order across a whole group matters, add
// [WithExclusivePartitions], so that each partition is read by one consumer
// at a time.
// Messages held back at shutdown stay pending, and a consumer restarted
// under the same name ([WithConsumerName]; the default name changes with
// the process ID) handles them first, in order; a message another
// consumer's reaper takes over from a crashed or renamed consumer runs after
// the later messages of its key that were already handled.
func WithOrderedKeys() HandleOption {
	return handleOption(func(c *handleConfig) error {
		c.ordered = true
		return nil
	})
}

// PartitionedInfo is a snapshot of a partitioned stream, as
// [InspectPartitions] returns it.
type PartitionedInfo struct {
	// Total sums the partitions: lengths, dead-letter lengths, and per group
	// (matched by name) lag, pending count and per-consumer pending count;
	// the oldest pending age and idle time are the largest. Stream is the
	// base name; the ID fields are empty.
	Total StreamInfo
	// Partitions holds each partition's snapshot, in partition order; nil
	// for a partition stream that does not exist.
	Partitions []*StreamInfo
}

// InspectPartitions returns a snapshot of the n partitions of base,
// [Inspect] for each and their sum. Partition streams that do not exist yet
// count as empty; if none exists, the error wraps [ErrNoStream].
func InspectPartitions(ctx context.Context, rdb redis.UniversalClient, base string, n int) (*PartitionedInfo, error) {
	names, err := Partitions(base, n)
	if err != nil {
		return nil, err
	}
	out := &PartitionedInfo{Total: StreamInfo{Stream: base}, Partitions: make([]*StreamInfo, n)}
	found := false
	for i, name := range names {
		info, err := Inspect(ctx, rdb, name)
		if errors.Is(err, ErrNoStream) {
			continue
		}
		if err != nil {
			return nil, err
		}
		found = true
		out.Partitions[i] = info
		addInfo(&out.Total, info)
	}
	if !found {
		return nil, fmt.Errorf("%w: no partition of %s exists", ErrNoStream, base)
	}
	return out, nil
}

// addInfo adds one partition's snapshot to total.
func addInfo(total, p *StreamInfo) {
	total.Length += p.Length
	total.DeadLetterLength += p.DeadLetterLength
	switch {
	case p.Scheduled < 0:
		total.Scheduled = -1 // unknown
	case total.Scheduled >= 0:
		total.Scheduled += p.Scheduled
	}
	if !p.NextDue.IsZero() && (total.NextDue.IsZero() || p.NextDue.Before(total.NextDue)) {
		total.NextDue = p.NextDue
	}
	for _, g := range p.Groups {
		i := 0
		for i < len(total.Groups) && total.Groups[i].Name != g.Name {
			i++
		}
		if i == len(total.Groups) {
			total.Groups = append(total.Groups, GroupInfo{Name: g.Name, LagKnown: true, PausedKnown: true})
		}
		tg := &total.Groups[i]
		tg.Lag += g.Lag
		tg.LagKnown = tg.LagKnown && g.LagKnown
		tg.Pending += g.Pending
		tg.OldestPendingAge = max(tg.OldestPendingAge, g.OldestPendingAge)
		tg.OldestPendingIdle = max(tg.OldestPendingIdle, g.OldestPendingIdle)
		tg.PausedKnown = tg.PausedKnown && g.PausedKnown
		if g.Paused {
			// Paused when any partition is; since the earliest pause.
			if !tg.Paused || g.PausedSince.Before(tg.PausedSince) {
				tg.PausedSince = g.PausedSince
			}
			tg.Paused = true
		}
		for _, c := range g.Consumers {
			j := 0
			for j < len(tg.Consumers) && tg.Consumers[j].Name != c.Name {
				j++
			}
			if j == len(tg.Consumers) {
				tg.Consumers = append(tg.Consumers, ConsumerInfo{Name: c.Name, Idle: c.Idle, Inactive: c.Inactive})
			}
			tc := &tg.Consumers[j]
			tc.Pending += c.Pending
			tc.Idle = min(tc.Idle, c.Idle)
			tc.Inactive = min(tc.Inactive, c.Inactive)
		}
	}
}

// TrimPartitions runs [Trim] with policy on each of the n partitions of
// base and returns the summed result (MinID is empty). It stops at the
// first error, returning what was trimmed so far.
func TrimPartitions(ctx context.Context, rdb redis.UniversalClient, base string, n int, policy TrimPolicy) (TrimResult, error) {
	names, err := Partitions(base, n)
	if err != nil {
		return TrimResult{}, err
	}
	var total TrimResult
	for _, name := range names {
		res, err := Trim(ctx, rdb, name, policy)
		total.Removed += res.Removed
		total.Dropped += res.Dropped
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// nodeFor returns the client of the primary serving stream: for a cluster
// client, that node's own client, so that a WAIT on one of its connections
// covers the writes before it. NewProducer accepts WithMinReplicas only for
// the two client types handled here.
func nodeFor(ctx context.Context, rdb redis.UniversalClient, stream string) (*redis.Client, error) {
	switch c := rdb.(type) {
	case *redis.Client:
		return c, nil
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, stream)
	default:
		return nil, fmt.Errorf("%w: WithMinReplicas needs a *redis.Client or *redis.ClusterClient, not %T", ErrInvalidOption, rdb)
	}
}

// refreshTopology asks a cluster client to reload its map of slots to nodes
// after err, when err suggests that the map is stale: a node that cannot be
// reached (its primary failed over), a redirect, or a cluster that is down.
// go-redis reloads the map by itself only on MOVED replies and once per
// ClusterStateReloadInterval (a minute by default), so without this a
// consumer would keep calling a dead primary long after its replica took
// over. The reload runs in the background, at most one at a time.
func refreshTopology(rdb redis.UniversalClient, err error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok || err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !isRedirect(err) && !redis.HasErrorPrefix(err, "READONLY") && !redis.HasErrorPrefix(err, "MASTERDOWN") {
		return // a refusal of the command itself
	}
	cc.ReloadState(context.Background())
}
