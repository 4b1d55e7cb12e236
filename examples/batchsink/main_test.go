package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/redstreamtest"
)

// Both runs write every order, and batches are faster: by far more than
// the 2x asserted here, which leaves room for a loaded machine (the
// program prints the figure; 5x and more is usual).
func TestBatchesWriteEveryOrderFaster(t *testing.T) {
	r := redstreamtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stream := r.Stream(t, "sink:order:created")
	const n = 1000
	require.NoError(t, publish(ctx, r.Client(), stream, n))
	one, err := consume(ctx, r.Client(), stream, "one-by-one", n, 2, false)
	require.NoError(t, err)
	batched, err := consume(ctx, r.Client(), stream, "batched", n, 2, true)
	require.NoError(t, err)
	t.Logf("one message per call %.0f msg/s, batches %.0f msg/s: %.1fx", one, batched, batched/one)
	assert.Greater(t, batched, 2*one)
}
