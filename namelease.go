package redstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/scripts"
)

// nameLease keeps a consumer's name its own within its group on each of its
// streams, so that two live consumers never share one name (and with it one
// pending list, each running the other's messages). It owns one key per
// stream, a lease in the stream's hash slot holding a token unique to this
// Run, and the goroutine that renews them: Run acquires the leases before
// it creates its groups, starts the keeper, and releases them when it
// returns.
type nameLease struct {
	r     *runner
	token string
	keys  []string // one per route, by route index
	ttl   time.Duration

	stop chan struct{}
	done sync.WaitGroup
}

// maxNameLeaseTTL caps the name lease's time (MinIdle otherwise), which is
// how long a consumer restarted under the name of one that died waits.
const maxNameLeaseTTL = 10 * time.Second

func newNameLease(r *runner) *nameLease {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	n := &nameLease{r: r, token: r.c.cfg.name + "#" + hex.EncodeToString(b), ttl: min(r.c.cfg.minIdle, maxNameLeaseTTL), stop: make(chan struct{})}
	for _, rt := range r.routes {
		n.keys = append(n.keys, nameLeaseKey(rt.stream, r.c.group, r.c.cfg.name))
	}
	return n
}

// nameLeaseKey is the key of the lease on consumer's name in group on
// stream, in stream's hash slot. No two groups' consumers share one: a
// group named with a colon would ("a" with consumer "b:c", "a:b" with
// "c"), so its key names the group's length, under a name of its own.
func nameLeaseKey(stream, group, consumer string) string {
	if !strings.Contains(group, ":") {
		return slotted(stream) + ":redstream-consumer:" + group + ":" + consumer
	}
	return slotted(stream) + ":redstream-consumer-in:" + strconv.Itoa(len(group)) + ":" + group + ":" + consumer
}

// acquire takes the lease on every stream, then starts renewing them. A
// lease held by another Run is waited for up to one lease time, so that a
// consumer restarted under the name of one that died takes over once the
// dead one's lease expires; one still held after that belongs to a live
// consumer, and acquire returns an error wrapping ErrConsumerNameInUse.
// Redis failures are retried until ctx ends, when it returns an error
// wrapping ErrNotReady.
func (n *nameLease) acquire(ctx context.Context) error {
	for i, key := range n.keys {
		if err := n.acquireOne(ctx, n.r.routes[i].stream, key); err != nil {
			n.release()
			return err
		}
	}
	n.done.Go(n.keep)
	return nil
}

// acquireOne takes the lease at key, on stream, as acquire says.
func (n *nameLease) acquireOne(ctx context.Context, stream, key string) error {
	redisCtx := context.WithoutCancel(ctx)
	step := max(min(n.ttl/5, 100*time.Millisecond), 5*time.Millisecond)
	deadline := time.Now().Add(n.ttl + step)
	for failures := 0; ; {
		held, err := n.take(redisCtx, key)
		wait, why := step, error(nil)
		switch {
		case err == nil && held:
			return nil
		case err == nil && time.Now().After(deadline):
			return &OpError{Op: "name-lease", Stream: stream, Group: n.r.c.group,
				Err: fmt.Errorf("%w: consumer %q of group %q on %s", ErrConsumerNameInUse, n.r.c.cfg.name, n.r.c.group, stream)}
		case err == nil:
			why = fmt.Errorf("waiting for the lease on consumer name %q to expire", n.r.c.cfg.name)
		case redis.HasErrorPrefix(err, "OOM"):
			// A full Redis refuses the lease's SET, but a consumer must
			// start to drain it; the keeper takes the lease once memory is
			// freed.
			n.r.log.Warn("redstream: Redis is out of memory; starting without the consumer-name lease", slog.String("stream", stream))
			return nil
		case isPermanent(err): // a wrong password, a missing permission
			return &OpError{Op: "name-lease", Stream: stream, Group: n.r.c.group, Err: err}
		default:
			failures++
			opErr := &OpError{Op: "name-lease", Stream: stream, Group: n.r.c.group, Err: err}
			n.r.report(opErr)
			why, wait = opErr, n.r.backoff.Delay(failures)
			deadline = time.Now().Add(n.ttl + step) // only a live holder counts
		}
		if !sleepCtx(ctx, wait) {
			return fmt.Errorf("%w: %w", ErrNotReady, why)
		}
	}
}

// keep renews the leases every third of their time until release.
func (n *nameLease) keep() {
	ticker := time.NewTicker(max(n.ttl/3, 10*time.Millisecond))
	defer ticker.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-ticker.C:
		}
		for i, key := range n.keys {
			ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
			held, err := n.take(ctx, key)
			cancel()
			stream := n.r.routes[i].stream
			switch {
			case err != nil:
				n.r.report(&OpError{Op: "name-lease", Stream: stream, Group: n.r.c.group, Err: err})
			case !held:
				// Cut off from Redis longer than the lease, and another
				// consumer started under this name meanwhile.
				n.r.log.Error("redstream: another consumer took this consumer's name while its lease could not be renewed", slog.String("stream", stream))
				n.r.notify(&OpError{Op: "name-lease", Stream: stream, Group: n.r.c.group, Err: ErrConsumerNameInUse})
			}
		}
	}
}

// release stops the renewals and deletes the leases still this Run's.
func (n *nameLease) release() {
	select {
	case <-n.stop:
		return // released already
	default:
		close(n.stop)
	}
	n.done.Wait()
	for i, key := range n.keys {
		ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
		err := scripts.Lease.Run(ctx, n.r.c.rdb, []string{key}, n.token, "release", 1).Err()
		cancel()
		if err != nil {
			n.r.report(&OpError{Op: "name-lease", Stream: n.r.routes[i].stream, Group: n.r.c.group, Err: err})
		}
	}
}

func (n *nameLease) take(ctx context.Context, key string) (bool, error) {
	v, err := scripts.Lease.Run(ctx, n.r.c.rdb, []string{key}, n.token, "take", max(n.ttl.Milliseconds(), 1)).Int()
	return v == 1, err
}
