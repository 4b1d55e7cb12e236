package redstreamotel

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/faultkit"
	"github.com/redstream/redstream/internal/redistest"
)

func TestMain(m *testing.M) {
	code := redistest.Main(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			_, _ = os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// order is the payload the tests publish.
type order struct {
	ID string `json:"id"`
}

// uniqueStream returns a stream key no other test uses.
func uniqueStream(t testing.TB) string { return faultkit.UniqueStream(t) }

func testCtx(t testing.TB) context.Context { return faultkit.Ctx(t) }

// newConsumer is redstream.NewConsumer with a short block, so that the
// consumer stops quickly, and a group that starts at the stream's beginning.
func newConsumer(t testing.TB, group string, opts ...redstream.ConsumerOption) *redstream.Consumer {
	base := []redstream.ConsumerOption{redstream.WithBlock(50 * time.Millisecond), redstream.WithGroupStart("0")}
	c, err := redstream.NewConsumer(redistest.Client(t), group, append(base, opts...)...)
	require.NoError(t, err)
	return c
}

// run runs c until the end of the test, then checks that Run returned nil.
func run(t testing.TB, c *redstream.Consumer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "Run")
		case <-time.After(30 * time.Second):
			t.Error("Run did not return 30s after its context ended")
		}
	})
}

// newMeterProvider returns a meter provider that reports to a manual reader.
func newMeterProvider(t testing.TB) (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return mp, reader
}

// collected is one collection of a manual reader.
type collected struct{ rm metricdata.ResourceMetrics }

func collect(t testing.TB, r *sdkmetric.ManualReader) collected {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	return collected{rm: rm}
}

// metric returns the metric name, or the zero Metrics when it is absent.
func (c collected) metric(name string) metricdata.Metrics {
	for _, sm := range c.rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m
			}
		}
	}
	return metricdata.Metrics{}
}

// int64 returns the value of name's data point with exactly attrs, from a
// sum or a gauge; ok is false when there is none.
func (c collected) int64(name string, attrs ...attribute.KeyValue) (v int64, ok bool) {
	want := attribute.NewSet(attrs...)
	var points []metricdata.DataPoint[int64]
	switch data := c.metric(name).Data.(type) {
	case metricdata.Sum[int64]:
		points = data.DataPoints
	case metricdata.Gauge[int64]:
		points = data.DataPoints
	}
	for _, p := range points {
		if p.Attributes.Equals(&want) {
			return p.Value, true
		}
	}
	return 0, false
}

// count is int64 with 0 for a missing data point.
func (c collected) count(name string, attrs ...attribute.KeyValue) int64 {
	v, _ := c.int64(name, attrs...)
	return v
}

// float64 returns the value of a float gauge's data point with exactly attrs.
func (c collected) float64(name string, attrs ...attribute.KeyValue) (v float64, ok bool) {
	want := attribute.NewSet(attrs...)
	data, _ := c.metric(name).Data.(metricdata.Gauge[float64])
	for _, p := range data.DataPoints {
		if p.Attributes.Equals(&want) {
			return p.Value, true
		}
	}
	return 0, false
}

// histogram returns name's histogram data point with exactly attrs.
func (c collected) histogram(name string, attrs ...attribute.KeyValue) (metricdata.HistogramDataPoint[float64], bool) {
	want := attribute.NewSet(attrs...)
	data, _ := c.metric(name).Data.(metricdata.Histogram[float64])
	for _, p := range data.DataPoints {
		if p.Attributes.Equals(&want) {
			return p, true
		}
	}
	return metricdata.HistogramDataPoint[float64]{}, false
}

// points returns how many data points name has, whatever their attributes.
func (c collected) points(name string) int {
	switch data := c.metric(name).Data.(type) {
	case metricdata.Sum[int64]:
		return len(data.DataPoints)
	case metricdata.Gauge[int64]:
		return len(data.DataPoints)
	case metricdata.Gauge[float64]:
		return len(data.DataPoints)
	case metricdata.Histogram[float64]:
		return len(data.DataPoints)
	}
	return 0
}
