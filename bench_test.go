package redstream

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/redistest"
)

// benchPayload encodes to about 256 bytes of JSON.
type benchPayload struct {
	ID   string `json:"id"`
	Body string `json:"body"`
}

func newBenchPayload(i int) benchPayload {
	return benchPayload{ID: strconv.Itoa(i), Body: strings.Repeat("x", 230)}
}

// BenchmarkPublish measures Publish from parallel goroutines (pipelined by
// the producer) against a real redis-server.
func BenchmarkPublish(b *testing.B) {
	rdb := redistest.Client(b)
	stream := uniqueStream(b)
	p, err := NewProducer[benchPayload](rdb, stream)
	if err != nil {
		b.Fatal(err)
	}
	v := newBenchPayload(1)
	b.SetParallelism(4) // 4 x GOMAXPROCS publishing goroutines
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := p.Publish(ctx, v); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	rdb.Del(context.Background(), stream)
}

// BenchmarkConsume measures draining b.N prefilled entries with a no-op
// typed handler and default options, acknowledgements included; allocs/op
// is allocations per message.
func BenchmarkConsume(b *testing.B) {
	rdb := redistest.Client(b)
	ctx := context.Background()
	stream := uniqueStream(b)
	prefill(b, rdb, stream, b.N)

	c, err := NewConsumer(rdb, "bench", WithGroupStart("0"), WithBlock(50*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	var handled atomic.Int64
	done := make(chan struct{})
	if err := Handle(c, stream, func(_ context.Context, _ *Message[benchPayload]) error {
		if handled.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() { ran <- c.Run(runCtx) }()
	<-done
	stop()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if n := pendingCount(b, rdb, stream, "bench"); n != 0 {
		b.Fatalf("%d entries left pending", n)
	}
	rdb.Del(ctx, stream)
}

func prefill(b *testing.B, rdb redis.UniversalClient, stream string, n int) {
	b.Helper()
	p, err := NewProducer[benchPayload](rdb, stream)
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]benchPayload, 0, 1000)
	for i := range n {
		batch = append(batch, newBenchPayload(i))
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := p.PublishBatch(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// BenchmarkPublishRaw is the hand-rolled baseline of BenchmarkPublish: one
// XADD round trip per call.
func BenchmarkPublishRaw(b *testing.B) {
	rdb := redistest.Client(b)
	stream := uniqueStream(b)
	data, err := JSON.Marshal(newBenchPayload(1))
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", data}}).Err(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	rdb.Del(context.Background(), stream)
}
