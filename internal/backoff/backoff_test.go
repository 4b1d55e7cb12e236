package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestCeiling(t *testing.T) {
	p := Policy{Base: 10 * time.Millisecond, Max: time.Second}
	tests := []struct {
		n    int
		want time.Duration
	}{
		{-3, 10 * time.Millisecond},
		{0, 10 * time.Millisecond},
		{1, 10 * time.Millisecond},
		{2, 20 * time.Millisecond},
		{3, 40 * time.Millisecond},
		{7, 640 * time.Millisecond},
		{8, time.Second},
		{1000, time.Second},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, p.Ceiling(tt.n), "n=%d", tt.n)
	}
}

func TestCeilingDefaults(t *testing.T) {
	assert.Equal(t, time.Millisecond, Policy{}.Ceiling(5), "zero policy is a flat 1ms")
	assert.Equal(t, 50*time.Millisecond, Policy{Base: 50 * time.Millisecond, Max: time.Millisecond}.Ceiling(4), "Max below Base means Base")
}

func TestDelayWithinJitterBounds(t *testing.T) {
	p := Policy{Base: 8 * time.Millisecond, Max: 200 * time.Millisecond}
	for n := 1; n <= 10; n++ {
		ceil := p.Ceiling(n)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(n)
			assert.GreaterOrEqual(t, d, ceil/2)
			assert.LessOrEqual(t, d, ceil)
			seen[d] = true
		}
		assert.Greater(t, len(seen), 1, "jitter must vary the delay (n=%d)", n)
	}
}
