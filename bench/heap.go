package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"
)

const (
	// heapInterval is how often the heap is sampled in drain-heap.
	heapInterval = 50 * time.Millisecond
	// heapRoundTimeout bounds one drain-heap round, prefill included.
	heapRoundTimeout = 15 * time.Minute
)

// heapSampler records the peak of runtime.MemStats.HeapInuse between start
// and stop. A nil *heapSampler samples nothing and reports 0.
type heapSampler struct {
	stopCh chan struct{}
	done   chan struct{}
	peak   uint64
}

// start collects garbage, so the baseline and peak do not include the
// prefill's, and samples until stop; it returns the baseline HeapInuse.
func (h *heapSampler) start() uint64 {
	if h == nil {
		return 0
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	h.peak = base
	h.stopCh, h.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.done)
		ticker := time.NewTicker(heapInterval)
		defer ticker.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-h.stopCh:
				return
			case <-ticker.C:
				runtime.ReadMemStats(&ms)
				h.peak = max(h.peak, ms.HeapInuse)
			}
		}
	}()
	return base
}

// stop ends the sampling and returns the peak HeapInuse.
func (h *heapSampler) stop() uint64 {
	if h == nil {
		return 0
	}
	close(h.stopCh)
	<-h.done
	return h.peak
}

// runDrainHeap drains n prefilled entries on each side while sampling the
// heap; the stream's memory is redis-server's, not ours.
func runDrainHeap(ctx context.Context, e *env, n int) (result, error) {
	h := &heapSampler{}
	rounds := e.roundsFor(true)
	ss, err := e.rounds(ctx, "drain-heap", rounds, heapRoundTimeout, side{sideRaw, e.rawDrain(n, h)}, side{sideRedstream, e.redstreamDrain(n, h)})
	if err != nil {
		return result{}, err
	}
	rawS, rsS := ss[sideRaw], ss[sideRedstream]
	res := throughput(n, ss)
	peak := func(samples []sample) (peak, base *float64) {
		var p, b uint64
		for _, s := range samples {
			p, b = max(p, s.heapPeak), max(b, s.heapBase)
		}
		pm, bm := round1(mib(p)), round1(mib(b))
		return &pm, &bm
	}
	res.PeakHeapMiB, res.BaseHeapMiB = peak(rsS)
	res.RawPeakHeapMiB, _ = peak(rawS)
	var mem uint64
	for _, s := range append(rawS, rsS...) {
		mem = max(mem, s.redisMem)
	}
	m := round1(mib(mem))
	res.RedisMemMiB = &m
	return res, nil
}

// usedMemory returns redis-server's used_memory, in bytes.
func usedMemory(ctx context.Context, e *env) (uint64, error) {
	info, err := e.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO memory: %w", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO memory: no used_memory")
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
