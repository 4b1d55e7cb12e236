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

// printer writes results as JSON lines or as a table, one workload at a
// time as each finishes. It keeps the first write error.
type printer struct {
	w    io.Writer
	json bool
	err  error
}

func newPrinter(w io.Writer, jsonLines bool) *printer { return &printer{w: w, json: jsonLines} }

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

const tableRow = "%-10s %9s %6s %12s %16s %7s  %s\n"

func (p *printer) header(m meta, rounds int) {
	if p.json {
		return
	}
	p.printf("redstream vs raw go-redis loop: redis %s, %s, %d CPUs\n", m.RedisVersion, m.GoVersion, m.CPUs)
	plural := "s"
	if rounds == 1 {
		plural = ""
	}
	p.printf("%d round%s per side, alternating raw/redstream, each on a fresh stream; %s of rounds; payload %d B of JSON\n", rounds, plural, statName, payloadSize)
	p.printf("ratio = redstream / raw throughput (>1: redstream faster)\n\n")
	p.printf(tableRow, "workload", "n", "rounds", "raw msg/s", "redstream msg/s", "ratio", "notes")
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
	p.printf(tableRow, r.Workload, thousands(float64(r.N)), fmt.Sprint(r.Rounds),
		thousands(r.RawRate), thousands(r.RedstreamRate), fmt.Sprintf("%.2f", r.Ratio), notes(r))
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
