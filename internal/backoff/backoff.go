// Package backoff computes bounded exponential backoff delays with jitter.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy describes an exponential backoff: the delay before attempt n (counted
// from 1) is Base*2^(n-1), capped at Max, with jitter applied.
type Policy struct {
	// Base is the delay before the first retry. Zero or negative means 1ms.
	Base time.Duration
	// Max caps every delay. Zero or negative, or less than Base, means Base.
	Max time.Duration
}

// Delay returns the delay before attempt n (n < 1 counts as 1) using "equal
// jitter": half of the exponential delay is fixed and the other half is
// random, so delays keep growing with n while concurrent retriers spread out.
// The result lies in [d/2, d] where d = min(Base*2^(n-1), Max).
func (p Policy) Delay(n int) time.Duration {
	d := p.Ceiling(n)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(d-half+1)
}

// Ceiling returns the delay before attempt n without jitter:
// min(Base*2^(n-1), Max).
func (p Policy) Ceiling(n int) time.Duration {
	base := p.Base
	if base <= 0 {
		base = time.Millisecond
	}
	limit := p.Max
	if limit < base {
		limit = base
	}
	if n < 1 {
		n = 1
	}
	d := base
	for i := 1; i < n; i++ {
		if d >= limit/2 {
			return limit
		}
		d *= 2
	}
	return min(d, limit)
}
