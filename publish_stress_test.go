// A stress test of the producer: synchronous and asynchronous publishes,
// cancellations, injected round-trip failures and WAIT, checking that every
// future completes, every pending token comes back, the batchers end idle,
// IDs match the stream and each publisher's entries keep their order.

package redstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// faultHook fails a fraction of XADD round trips without sending them, and
// delays some, the way go-redis reports a failed round trip (cmd errors set).
type faultHook struct {
	failPct int
	n       atomic.Int64
}

var errInjected = errors.New("injected")

func (h *faultHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "xadd" && h.failPct > 0 && rand.IntN(100) < h.failPct {
			cmd.SetErr(errInjected)
			return errInjected
		}
		if rand.IntN(20) == 0 {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		}
		return next(ctx, cmd)
	}
}
func (h *faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() == "xadd" {
			h.n.Add(1)
			if h.failPct > 0 && rand.IntN(100) < h.failPct {
				for _, c := range cmds {
					c.SetErr(errInjected)
				}
				return errInjected
			}
			if rand.IntN(20) == 0 {
				time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
			}
		}
		return next(ctx, cmds)
	}
}

type stressRec struct {
	pub, seq int
	async    bool
	f        *PublishFuture
	id       string
	err      error
}

func runStress(t *testing.T, failPct, partitions, maxPending, pubs, per int, withMinReplicas bool) {
	rdb := redis.NewClient(&redis.Options{Addr: mustRedis(t).Options().Addr, PoolSize: 8})
	t.Cleanup(func() { _ = rdb.Close() })
	hook := &faultHook{failPct: failPct}
	rdb.AddHook(hook)
	ctx, base := testCtx(t), uniqueStream(t)
	opts := []ProducerOption{WithMaxPending(maxPending), WithKeyFunc(func(o Order) string { return o.UserID })}
	if partitions > 1 {
		opts = append(opts, WithPartitions(partitions))
	}
	if withMinReplicas {
		opts = append(opts, WithMinReplicas(1, 5*time.Millisecond))
	}
	p, err := NewProducer[Order](rdb, base, opts...)
	require.NoError(t, err)

	var mu sync.Mutex
	var recs []*stressRec
	var wg sync.WaitGroup
	for w := range pubs {
		wg.Go(func() {
			for i := range per {
				o := Order{ID: fmt.Sprintf("%d/%d", w, i), UserID: "u" + strconv.Itoa(rand.IntN(8))}
				r := &stressRec{pub: w, seq: i}
				switch k := rand.IntN(10); {
				case k < 6: // async, plain ctx
					r.async = true
					r.f, r.err = p.PublishAsync(ctx, o)
				case k < 7: // async with a ctx that may end while waiting for room
					r.async = true
					c, cancel := context.WithTimeout(ctx, time.Duration(rand.IntN(200))*time.Microsecond)
					r.f, r.err = p.PublishAsync(c, o)
					cancel()
				case k < 9: // sync
					r.id, r.err = p.Publish(ctx, o)
				default: // sync that may give up
					c, cancel := context.WithTimeout(ctx, time.Duration(rand.IntN(300))*time.Microsecond)
					r.id, r.err = p.Publish(c, o)
					cancel()
				}
				mu.Lock()
				recs = append(recs, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	deadline := time.After(30 * time.Second)
	for _, r := range recs {
		if r.f == nil {
			continue
		}
		select {
		case <-r.f.Done():
			r.id, r.err = r.f.Result()
		case <-deadline:
			t.Fatalf("future of %d/%d never completed", r.pub, r.seq)
		}
	}
	// Every token back, every batcher idle.
	require.Eventually(t, func() bool { return len(p.pending) == 0 }, 5*time.Second, time.Millisecond, "pending tokens: %d", len(p.pending))
	for _, bs := range [][]*batcher{p.batches, p.asyncBatches} {
		for _, b := range bs {
			require.Eventually(t, func() bool {
				b.mu.Lock()
				defer b.mu.Unlock()
				return b.senders == b.idle && len(b.queue) == 0
			}, 5*time.Second, time.Millisecond)
		}
	}

	byPayload := map[string]*stressRec{}
	ok, unsure := 0, 0
	for _, r := range recs {
		byPayload[fmt.Sprintf("%d/%d", r.pub, r.seq)] = r
		switch {
		case r.err == nil:
			ok++
		case errors.Is(r.err, ErrUncertain):
			unsure++
		}
	}
	total := 0
	for _, part := range p.Partitions() {
		msgs, err := rdb.XRange(ctx, part, "-", "+").Result()
		require.NoError(t, err)
		total += len(msgs)
		lastAsync := map[int]int{}
		for _, m := range msgs {
			var o Order
			require.NoError(t, unmarshal(JSON, m.Values[DefaultPayloadField].(string), &o))
			r := byPayload[o.ID]
			require.NotNil(t, r)
			if errors.Is(r.err, ErrUncertain) {
				// A publish whose ctx ended during its round trip: it may
				// or may not be written, and it said so.
				continue
			}
			if r.err != nil && !withMinReplicas {
				t.Errorf("%s written as %s but its publish returned %v", o.ID, m.ID, r.err)
				continue
			}
			if r.id != m.ID {
				t.Errorf("%s: future/Publish said %q, stream has %q (err %v)", o.ID, r.id, m.ID, r.err)
			}
			if r.async {
				if prev, seen := lastAsync[r.pub]; seen && prev > r.seq {
					t.Errorf("partition %s: publisher %d's async %d after %d", part, r.pub, r.seq, prev)
				}
				lastAsync[r.pub] = r.seq
			}
		}
	}
	if !withMinReplicas {
		require.GreaterOrEqual(t, total, ok, "successful publishes vs entries")
		require.LessOrEqual(t, total, ok+unsure, "entries beyond the successful and uncertain publishes")
	}
	t.Logf("%d calls, %d ok, %d uncertain, %d entries, %d pipelines", len(recs), ok, unsure, total, hook.n.Load())
}

func TestStressPublishMix(t *testing.T) {
	for _, c := range []struct {
		name                               string
		fail, parts, maxPending, pubs, per int
		minRepl                            bool
	}{
		{"clean-1part", 0, 1, 16, 16, 1500, false},
		{"clean-4part", 0, 4, 4096, 16, 1500, false},
		{"faults-4part", 10, 4, 8, 16, 1500, false},
		{"faults-1part-pending1", 20, 1, 1, 8, 500, false},
		{"minreplicas", 0, 2, 64, 8, 120, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			runStress(t, c.fail, c.parts, c.maxPending, c.pubs, c.per, c.minRepl)
		})
	}
}

// Many explicit-ID duplicates at once: each spawns an XRANGE goroutine.
func TestStressAsyncDuplicates(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: mustRedis(t).Options().Addr, PoolSize: 4})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	const n = 4000
	var fs []*PublishFuture
	for i := range n {
		f, err := p.PublishAsync(ctx, Order{ID: strconv.Itoa(i)}, WithID(strconv.Itoa(i+1)+"-0"))
		require.NoError(t, err)
		fs = append(fs, f)
	}
	for _, f := range fs {
		_, err := f.Result()
		require.NoError(t, err)
	}
	// Publish them all again: every one is a duplicate.
	fs = fs[:0]
	for i := range n {
		f, err := p.PublishAsync(ctx, Order{ID: strconv.Itoa(i)}, WithID(strconv.Itoa(i+1)+"-0"))
		require.NoError(t, err)
		fs = append(fs, f)
	}
	bad := map[string]int{}
	for _, f := range fs {
		_, err := f.Result()
		if !errors.Is(err, ErrDuplicate) {
			msg := "nil"
			if err != nil {
				msg = err.Error()
				if i := strings.Index(msg, ": "); i > 0 && len(msg) > 120 {
					msg = msg[len(msg)-80:]
				}
			}
			bad[msg]++
		}
	}
	t.Logf("non-duplicate results: %v", bad)
}
