package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// statName says which statistic over rounds the throughput and latency
// figures are.
const statName = "median"

// result is one workload's figures: one JSON line, or one table row.
type result struct {
	Workload      string  `json:"workload"`
	N             int     `json:"n"`
	Rounds        int     `json:"rounds"`
	Stat          string  `json:"stat"`
	RedstreamRate float64 `json:"redstream_msgs_per_s"`
	RawRate       float64 `json:"raw_msgs_per_s"`
	Ratio         float64 `json:"ratio"`
	// Shape is the ceiling the workload compares with, if any.
	Shape string `json:"shape,omitempty"`
	// Client CPU (user+system of this process) per message, in µs.
	RawCPU       float64 `json:"raw_cpu_us_per_msg"`
	RedstreamCPU float64 `json:"redstream_cpu_us_per_msg"`
	// Ceiling: in the ceiling workload, every figure measured; in the
	// others, the best of their shape, and OfCeiling is redstream's
	// throughput over it.
	Ceiling   []ceilingFigure `json:"ceiling,omitempty"`
	OfCeiling *float64        `json:"of_ceiling,omitempty"`
	// Note says what the columns mean when not raw go-redis and redstream.
	Note string `json:"note,omitempty"`
	// Peers are other libraries doing the same work, fewer messages a round.
	Peers []peerResult `json:"peers,omitempty"`
	// The many-streams workload's figures.
	Many     []manyFigure `json:"many_streams,omitempty"`
	Fairness []fairFigure `json:"fairness,omitempty"`
	// Latency workload: milliseconds from publish to handler.
	P50    *float64 `json:"p50_ms,omitempty"`
	P99    *float64 `json:"p99_ms,omitempty"`
	RawP50 *float64 `json:"raw_p50_ms,omitempty"`
	RawP99 *float64 `json:"raw_p99_ms,omitempty"`
	// drain-heap: the largest peak HeapInuse over rounds, the heap before
	// the drain started, and redis-server's memory holding the stream.
	PeakHeapMiB    *float64 `json:"peak_heap_mib,omitempty"`
	RawPeakHeapMiB *float64 `json:"raw_peak_heap_mib,omitempty"`
	BaseHeapMiB    *float64 `json:"base_heap_mib,omitempty"`
	RedisMemMiB    *float64 `json:"redis_used_memory_mib,omitempty"`
	// Every round's throughput, in the order run.
	RedstreamRounds []float64 `json:"redstream_rounds_msgs_per_s"`
	RawRounds       []float64 `json:"raw_rounds_msgs_per_s"`
	meta
}

// peerResult is a peer library's figures in one workload.
type peerResult struct {
	Name   string    `json:"name"`
	N      int       `json:"n"`
	Rate   float64   `json:"msgs_per_s"`
	CPU    float64   `json:"cpu_us_per_msg"`
	Rounds []float64 `json:"rounds_msgs_per_s"`
	// RedstreamOver is redstream's throughput over the peer's.
	RedstreamOver float64 `json:"redstream_over_peer"`
}

// printer writes results as JSON lines or as a table, one workload at a
// time as each finishes. It keeps the first write error.
type printer struct {
	w    io.Writer
	json bool
	err  error
	// headed is set once the table's column names are printed.
	headed bool
}

func newPrinter(w io.Writer, jsonLines bool) *printer { return &printer{w: w, json: jsonLines} }

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

const tableRow = "%-13s %9s %6s %10s %10s %6s %10s %6s %10s %7s %7s %7s %6s %7s  %s\n"

func (p *printer) header(m meta, rounds int) {
	if p.json {
		return
	}
	p.printf("redstream vs raw go-redis loop, the ceiling and peers: redis %s, %s, %d CPUs\n", m.RedisVersion, m.GoVersion, m.CPUs)
	plural := "s"
	if rounds == 1 {
		plural = ""
	}
	p.printf("%d round%s per side, sides alternating, each on a fresh stream; %s of rounds; payload %d B of JSON\n", rounds, plural, statName, payloadSize)
	p.printf("ratio = redstream / raw throughput (>1: redstream faster); ceil = best deep-pipeline raw figure of the workload's shape;\n")
	p.printf("of ceil = redstream / ceil; wm = watermill-redisstream (fewer messages a round, -peer-n), x wm = redstream / wm;\n")
	p.printf("CPU = this process's user+system CPU time per message, µs\n")
}

// tableHeader prints the column names before the first table row.
func (p *printer) tableHeader() {
	if p.headed {
		return
	}
	p.headed = true
	p.printf("\n"+tableRow, "workload", "n", "rounds", "raw msg/s", "rs msg/s", "ratio", "ceil msg/s", "of ceil",
		"wm msg/s", "x wm", "CPU raw", "CPU rs", "rs/raw", "CPU wm", "notes")
}

func (p *printer) result(r result) {
	r.Stat = statName
	if p.json {
		data, err := json.Marshal(r)
		if err != nil {
			p.err = err
			return
		}
		p.printf("%s\n", data)
		return
	}
	switch {
	case r.Workload == "ceiling":
		p.ceiling(r)
		return
	case len(r.Many) > 0 || len(r.Fairness) > 0:
		p.many(r)
		return
	}
	p.tableHeader()
	ceil, ofCeil := "", ""
	if r.OfCeiling != nil {
		ceil = thousands(r.Ceiling[0].Rate)
		ofCeil = fmt.Sprintf("%.2f", *r.OfCeiling)
	}
	wm, xwm, cpuWM := "", "", ""
	for _, peer := range r.Peers {
		if peer.Name == sideWatermill {
			wm, xwm, cpuWM = thousands(peer.Rate), fmt.Sprintf("%.1f", peer.RedstreamOver), fmt.Sprintf("%.2f", peer.CPU)
		}
	}
	cpuRatio := ""
	if r.RawCPU > 0 {
		cpuRatio = fmt.Sprintf("%.2f", r.RedstreamCPU/r.RawCPU)
	}
	p.printf(tableRow, r.Workload, thousands(float64(r.N)), fmt.Sprint(r.Rounds),
		thousands(r.RawRate), thousands(r.RedstreamRate), fmt.Sprintf("%.2f", r.Ratio), ceil, ofCeil,
		wm, xwm, fmt.Sprintf("%.2f", r.RawCPU), fmt.Sprintf("%.2f", r.RedstreamCPU), cpuRatio, cpuWM, notes(r))
}

// ceiling prints the ceiling's figures, one line per shape.
func (p *printer) ceiling(r result) {
	p.printf("\nceiling: raw go-redis, XADD pipelines of %d, XREADGROUP COUNT %d, one XACK per batch, 1-n connections per direction:\n", ceilingPipeline, ceilingCount)
	byShape := map[string][]string{}
	var shapes []string
	for _, f := range r.Ceiling {
		if _, ok := byShape[f.Shape]; !ok {
			shapes = append(shapes, f.Shape)
		}
		byShape[f.Shape] = append(byShape[f.Shape], fmt.Sprintf("%d conn %s msg/s %.2f µs CPU", f.Conns, thousands(f.Rate), f.CPU))
	}
	for _, shape := range shapes {
		p.printf("%-15s %9s %6d  %s\n", "ceiling "+shape, thousands(float64(r.N)), r.Rounds, strings.Join(byShape[shape], "; "))
	}
}

func (p *printer) footer(elapsed time.Duration) {
	if !p.json {
		p.printf("\ntotal wall time %v\n", elapsed.Round(100*time.Millisecond))
	}
}

// noisy is the spread between a side's fastest and slowest round above
// which the table says so.
const noisy = 1.3

// notes gives the latency and heap figures of a table row, and the range
// of rounds whose spread makes the median shaky.
func notes(r result) string {
	var parts []string
	if r.Note != "" {
		parts = append(parts, r.Note)
	}
	for _, side := range []struct {
		name   string
		rounds []float64
	}{{"raw", r.RawRounds}, {"redstream", r.RedstreamRounds}} {
		if len(side.rounds) == 0 {
			continue
		}
		lo, hi := slices.Min(side.rounds), slices.Max(side.rounds)
		if lo > 0 && hi/lo > noisy {
			parts = append(parts, fmt.Sprintf("%s rounds vary %s-%s msg/s", side.name, thousands(lo), thousands(hi)))
		}
	}
	if r.P50 != nil && r.RawP50 != nil {
		parts = append(parts, fmt.Sprintf("p50 %.2f ms, p99 %.2f ms (raw p50 %.2f ms, p99 %.2f ms)", *r.P50, *r.P99, *r.RawP50, *r.RawP99))
	}
	if r.PeakHeapMiB != nil {
		parts = append(parts, fmt.Sprintf("peak heap %.1f MiB (raw %.1f MiB, before drain %.1f MiB); redis-server holds %.0f MiB",
			*r.PeakHeapMiB, *r.RawPeakHeapMiB, *r.BaseHeapMiB, *r.RedisMemMiB))
	}
	return strings.Join(parts, "; ")
}

// thousands formats v rounded to an integer with comma separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// many prints the many-streams workload's figures.
func (p *printer) many(r result) {
	p.printf("\nmany streams, one Consumer (pool = streams + 16, max in flight = max(256, 2 x streams)):\n")
	p.printf("%8s %7s %8s %6s %6s %10s %9s %8s %8s %8s\n", "streams", "msg/s", "n", "conns", "pool", "goroutines", "heap MiB", "p50 ms", "p99 ms", "CPU µs")
	note := ""
	for _, f := range r.Many {
		streams := fmt.Sprint(f.Streams)
		if f.Defaults {
			streams += "*"
			note = fmt.Sprintf("* with go-redis's default pool (%d) and the default max in flight (%d)\n", f.PoolSize, f.MaxInFlight)
		}
		p.printf("%8s %7d %8d %6d %6d %10d %9.1f %8.2f %8.2f %8.2f\n", streams, f.Rate, f.N, f.Conns, f.PoolConns, f.Goroutines, f.HeapMiB, f.P50, f.P99, f.CPU)
	}
	p.printf("%s", note)
	if len(r.Fairness) == 0 {
		return
	}
	p.printf("\nfairness, %d streams: one hot, the rest quiet sharing %d%% of the traffic:\n", r.Fairness[0].Streams, 100/quietShare)
	p.printf("%-12s %8s %12s %12s %14s %12s\n", "phase", "quiet n", "quiet p50", "quiet p99", "p99 over idle", "hot msg/s")
	for _, f := range r.Fairness {
		hot := ""
		if f.HotRate > 0 {
			hot = thousands(f.HotRate)
		}
		p.printf("%-12s %8d %9.2f ms %9.2f ms %14.2f %12s\n", f.Phase, f.QuietN, f.QuietP50, f.QuietP99, f.OverIdle, hot)
	}
}
