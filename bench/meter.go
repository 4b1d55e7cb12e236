package main

import "time"

// meter times the measured part of a round: wall time and the CPU time
// the whole process spent meanwhile. Only one side runs at a time, so the
// process's CPU is that side's (plus the Go runtime's work for it); the
// redis-server's CPU is not in it.
type meter struct {
	wall time.Time
	cpu  time.Duration
}

func startMeter() meter { return meter{wall: time.Now(), cpu: processCPU()} }

// sample returns a sample of n messages measured from the start to now.
func (m meter) sample(n int) sample {
	return sample{n: n, elapsed: time.Since(m.wall), cpu: processCPU() - m.cpu}
}

// since is the wall time from the start to now.
func (m meter) since() time.Duration { return time.Since(m.wall) }
