package redstreamtest_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/redstreamtest"
)

// Invoice is what the service under test handles.
type Invoice struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"` // in cents
}

// Biller is the code under test: it charges invoices, and refuses negative
// amounts, which go to the dead-letter stream.
type Biller struct {
	mu      sync.Mutex
	charged []string
}

// Handle is Biller's redstream handler.
func (b *Biller) Handle(_ context.Context, m *redstream.Message[Invoice]) error {
	if m.Payload.Amount < 0 {
		return fmt.Errorf("negative amount: %w", redstream.ErrDeadLetter)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.charged = append(b.charged, m.Payload.ID)
	return nil
}

// Charged returns the IDs of the invoices charged, sorted.
func (b *Biller) Charged() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Sorted(slices.Values(b.charged))
}

// testBiller is a test of Biller. In a _test.go file it is
// func TestBiller(t *testing.T).
func testBiller(t testing.TB) {
	// Miniredis, because the test moves the server's clock; without the
	// option, New uses a real redis-server when one is installed.
	r := redstreamtest.New(t, redstreamtest.Miniredis())
	rdb, stream := r.Client(), r.Stream(t, "billing:invoice:issued")
	ctx := context.Background()

	// A consumer of the group died holding an invoice.
	if err := rdb.XGroupCreateMkStream(ctx, stream, "billing", "$").Err(); err != nil {
		t.Fatalf("creating the group: %v", err)
	}
	orphan := redstreamtest.Publish(t, rdb, stream, Invoice{ID: "i-4", Amount: 700})
	err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "crashed", Streams: []string{stream, ">"}}).Err()
	if err != nil {
		t.Fatalf("reading as the crashed consumer: %v", err)
	}

	b := &Biller{}
	c, err := redstream.NewConsumer(rdb, "billing",
		redstream.WithMinIdle(time.Minute), redstream.WithReapInterval(10*time.Millisecond),
		redstream.WithBlock(50*time.Millisecond)) // a quick stop at the end
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	if err := redstream.Handle(c, stream, b.Handle); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	redstreamtest.Start(t, c) // runs until the test ends

	redstreamtest.PublishAndWait(t, rdb, stream, "billing",
		Invoice{ID: "i-1", Amount: 1250}, Invoice{ID: "i-2", Amount: -300}, Invoice{ID: "i-3", Amount: 990})
	fmt.Println("charged:", b.Charged())
	for _, d := range redstreamtest.DeadLetters(t, rdb, stream) {
		fmt.Println("dead letter:", d.Fields["payload"], d.Reason)
	}

	// Once the orphan has been idle for MinIdle, the reaper of the live
	// consumer takes it over.
	r.Advance(t, 2*time.Minute)
	redstreamtest.WaitHandled(t, rdb, stream, "billing", orphan...)
	fmt.Println("charged:", b.Charged())
	redstreamtest.WaitNoPending(t, rdb, stream, "billing")
}

func Example() {
	t := &exampleT{}
	defer t.done()
	testBiller(t)
	// Output:
	// charged: [i-1 i-3]
	// dead letter: {"id":"i-2","amount":-300} handler
	// charged: [i-1 i-3 i-4]
}

// exampleT stands in for the *testing.T an Example does not get: it runs
// the cleanups when done, and panics on a failure. A real test needs none
// of it.
type exampleT struct {
	testing.TB // for the interface's unexported method; never called
	cleanups   []func()
}

func (*exampleT) Helper()                           {}
func (*exampleT) Name() string                      { return "ExampleBiller" }
func (*exampleT) Logf(string, ...any)               {}
func (*exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (*exampleT) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (t *exampleT) Cleanup(f func())                { t.cleanups = append(t.cleanups, f) }

func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
