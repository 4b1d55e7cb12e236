package redstream

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
)

// The chaos test runs worker processes that it SIGKILLs at random while a
// producer publishes, and then checks the promise: every message handled at
// least once or dead-lettered exactly once, nothing left pending.
const (
	// Environment of a worker process (TestChaosWorker).
	chaosEnvAddr     = "REDSTREAM_CHAOS_ADDR"
	chaosEnvStream   = "REDSTREAM_CHAOS_STREAM"
	chaosEnvConsumer = "REDSTREAM_CHAOS_CONSUMER"

	// chaosEnvSoak makes the run longer than chaosDefaultRun: a Go
	// duration, such as 10m (give go test a -timeout to match).
	chaosEnvSoak = "REDSTREAM_SOAK"
	// chaosEnvSummary names a file to write the summary line to.
	chaosEnvSummary = "REDSTREAM_CHAOS_SUMMARY"
	// chaosEnvInFlight passes the variant's MaxInFlight to the workers.
	chaosEnvInFlight = "REDSTREAM_CHAOS_IN_FLIGHT"
	// chaosEnvLogs names a directory that keeps the workers' logs; by
	// default they go to a temporary directory removed after the test.
	chaosEnvLogs = "REDSTREAM_CHAOS_LOGS"

	chaosGroup         = "chaos"
	chaosWorkers       = 3
	chaosRate          = 200 // messages published per second
	chaosPoisonEvery   = 97  // every 97th message always fails
	chaosMaxDeliveries = 3
	chaosMinIdle       = 500 * time.Millisecond
	chaosDefaultRun    = 60 * time.Second
	// chaosDrainReserve is the part of the run left for the workers to
	// finish after the chaos stops.
	chaosDrainReserve = 10 * time.Second
	// chaosDrainDeadline bounds the drain: far more than it needs.
	chaosDrainDeadline = 2 * time.Minute
	// chaosStopTimeout bounds the graceful stop of the last workers.
	chaosStopTimeout = 30 * time.Second
)

// chaosVariant is one way of running the chaos test.
type chaosVariant struct {
	name string
	// killEvery: a worker is killed every killEvery to 2*killEvery.
	killEvery time.Duration
	// maxInFlight is each worker's MaxInFlight: how many messages a kill
	// may strand, buffered and never started.
	maxInFlight int
}

var chaosVariants = []chaosVariant{
	{name: "default", killEvery: 500 * time.Millisecond, maxInFlight: 4},
	// Kills three times as often, each stranding up to 256 buffered
	// messages: a healthy message buffered by several consumers killed in
	// a row must still not be dead-lettered, since only handler attempts
	// count towards MaxDeliveries.
	{name: "fast-kills-deep-buffers", killEvery: 500 * time.Millisecond / 3, maxInFlight: 256},
}

// chaosMsg is the payload the chaos test publishes. Key is unique per
// message; it is published as the message's key (KeyField), so a dead
// letter's fields name it without decoding.
type chaosMsg struct {
	Key string `json:"key"`
}

// chaosKey returns the key of the i-th message; poison keys say so.
func chaosKey(i int) string {
	if i%chaosPoisonEvery == chaosPoisonEvery-1 {
		return fmt.Sprintf("k-%07d-poison", i)
	}
	return fmt.Sprintf("k-%07d", i)
}

func chaosPoison(key string) bool { return strings.HasSuffix(key, "-poison") }

// chaosHandledKey is the hash counting each key's successful handlings.
func chaosHandledKey(stream string) string { return "handled:" + stream }

// chaosDeliveriesKey is the hash counting successful handlings by the
// message's delivery count: how close crashes brought messages to being
// dead-lettered.
func chaosDeliveriesKey(stream string) string { return "deliveries:" + stream }

// chaosWorkerInFlight is the MaxInFlight TestChaos asked the worker for.
func chaosWorkerInFlight(t *testing.T) int {
	n, err := strconv.Atoi(os.Getenv(chaosEnvInFlight))
	require.NoError(t, err, chaosEnvInFlight)
	return n
}

// TestChaosWorker is not a test: TestChaos runs the test binary with it as
// one worker process, which it SIGKILLs or stops with SIGTERM.
func TestChaosWorker(t *testing.T) {
	addr := os.Getenv(chaosEnvAddr)
	if addr == "" {
		t.Skip("worker process of TestChaos only")
	}
	stream, name := os.Getenv(chaosEnvStream), os.Getenv(chaosEnvConsumer)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	// A worker whose test process died (no SIGTERM will come) stops too.
	var orphanWatch sync.WaitGroup
	defer orphanWatch.Wait()
	defer cancel()
	orphanWatch.Go(func() {
		parent := os.Getppid()
		ticker := time.NewTicker(200 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				if os.Getppid() != parent {
					cancel()
					return
				}
			}
		}
	})

	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := NewConsumer(rdb, chaosGroup,
		WithConsumerName(name),
		WithGroupStart("0"),
		WithMinIdle(chaosMinIdle),
		WithReapInterval(100*time.Millisecond),
		WithRetryBackoff(10*time.Millisecond, 100*time.Millisecond),
		WithMaxDeliveries(chaosMaxDeliveries),
		WithIdleConsumerTTL(2*time.Second),
		WithBlock(100*time.Millisecond),
		// One handler at a time, with more messages in hand: a kill often
		// strands some, buffered and never started. MaxInFlight not above
		// the batch size (the default variant's 4) is what once starved
		// the reaper (TestReaperClaimsWhileReaderHoldsAllRoom).
		WithConcurrency(1),
		WithMaxInFlight(chaosWorkerInFlight(t)),
		WithErrorBackoff(10*time.Millisecond, 200*time.Millisecond),
		WithLogger(logger),
	)
	require.NoError(t, err)
	handled, deliveries := chaosHandledKey(stream), chaosDeliveriesKey(stream)
	require.NoError(t, Handle(c, stream, func(ctx context.Context, m *Message[chaosMsg]) error {
		if !sleepCtx(ctx, rand.N(6*time.Millisecond)) {
			return ctx.Err()
		}
		if chaosPoison(m.Payload.Key) {
			return fmt.Errorf("poison message %s", m.Payload.Key)
		}
		_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.HIncrBy(ctx, handled, m.Payload.Key, 1)
			pipe.HIncrBy(ctx, deliveries, strconv.FormatInt(m.Deliveries, 10), 1)
			return nil
		})
		return err
	}))
	err = c.Run(ctx)
	if errors.Is(err, ErrNotReady) && ctx.Err() != nil {
		// Stopped while waiting for the name's lease of the killed worker
		// whose name it took to expire.
		err = nil
	}
	require.NoError(t, err)
}

// chaosProc is one worker process.
type chaosProc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{} // closed once cmd.Wait returned
}

// chaosRun is the state of one TestChaos run.
type chaosRun struct {
	t       *testing.T
	rdb     *redis.Client
	addr    string
	stream  string
	logDir  string
	timeout time.Duration // of each worker's test binary
	variant chaosVariant

	mu      sync.Mutex
	procs   []*chaosProc // one per worker slot
	started int          // processes started, for log names
	fresh   int          // consumer names used
	// killsHolding counts the kills of a worker that held messages, and
	// leftPending the messages they held.
	killsHolding, leftPending int
	workerCPU                 time.Duration // of the exited workers
}

// startWorker starts a worker process named name in slot.
func (h *chaosRun) startWorker(slot int, name string) error {
	h.mu.Lock()
	h.started++
	seq := h.started
	h.mu.Unlock()
	logPath := filepath.Join(h.logDir, fmt.Sprintf("%04d-%s.log", seq, name))
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(os.Args[0], "-test.run=^TestChaosWorker$", "-test.count=1", "-test.timeout="+h.timeout.String())
	cmd.Env = append(os.Environ(),
		chaosEnvAddr+"="+h.addr, chaosEnvStream+"="+h.stream, chaosEnvConsumer+"="+name,
		chaosEnvInFlight+"="+strconv.Itoa(h.variant.maxInFlight))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &chaosProc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		_ = cmd.Wait()
		h.mu.Lock()
		h.workerCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		h.mu.Unlock()
	}()
	h.mu.Lock()
	h.procs[slot] = p
	h.mu.Unlock()
	return nil
}

// kill SIGKILLs the worker in slot and waits for it to be gone.
func (h *chaosRun) kill(slot int) (*chaosProc, error) {
	h.mu.Lock()
	p := h.procs[slot]
	h.mu.Unlock()
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return p, err
	}
	select {
	case <-p.exited:
		return p, nil
	case <-time.After(10 * time.Second):
		return p, fmt.Errorf("worker %s did not exit after SIGKILL", p.name)
	}
}

// freshName returns a consumer name never used in this run.
func (h *chaosRun) freshName() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fresh++
	return fmt.Sprintf("worker-%d", h.fresh)
}

// chaos kills a random worker every 0.5-1s and starts a replacement, with
// the dead worker's consumer name every other time (its own-pending drain
// finds what it held) and a new name otherwise (the reapers find it). It
// returns the kills and restarts under a reused name once ctx ends.
func (h *chaosRun) chaos(ctx context.Context) (kills, reused int, err error) {
	for {
		if !sleepCtx(ctx, h.variant.killEvery+rand.N(h.variant.killEvery)) {
			return kills, reused, nil
		}
		slot := rand.IntN(chaosWorkers)
		dead, err := h.kill(slot)
		if err != nil {
			return kills, reused, err
		}
		kills++
		if left, err := h.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: h.stream, Group: chaosGroup, Consumer: dead.name, Start: "-", End: "+", Count: 10000,
		}).Result(); err == nil && len(left) > 0 {
			h.mu.Lock()
			h.killsHolding++
			h.leftPending += len(left)
			h.mu.Unlock()
		}
		name := h.freshName()
		if kills%2 == 1 {
			name = dead.name
			reused++
		}
		if err := h.startWorker(slot, name); err != nil {
			return kills, reused, err
		}
	}
}

// publish publishes n messages spread over d, in bursts, and returns their
// IDs by key.
func (h *chaosRun) publish(ctx context.Context, n int, d time.Duration) (map[string]string, error) {
	p, err := NewProducer[chaosMsg](h.rdb, h.stream, WithKeyFunc(func(m chaosMsg) string { return m.Key }))
	if err != nil {
		return nil, err
	}
	ids := make(map[string]string, n)
	began := time.Now()
	for i := 0; i < n; {
		// Bursts at random intervals: kills often find workers with a
		// backlog in hand.
		if !sleepCtx(ctx, 100*time.Millisecond+rand.N(900*time.Millisecond)) {
			return ids, ctx.Err()
		}
		due := min(n, 1+int(float64(n)*float64(time.Since(began))/float64(d)))
		batch := make([]chaosMsg, 0, due-i)
		for ; i < due; i++ {
			batch = append(batch, chaosMsg{Key: chaosKey(i)})
		}
		got, err := p.PublishBatch(ctx, batch)
		if err != nil {
			return ids, err
		}
		for j, id := range got {
			ids[batch[j].Key] = id
		}
	}
	return ids, nil
}

// chaosProgress is what the group has done so far.
type chaosProgress struct {
	handled      int64 // distinct keys handled
	deadLettered int64
	pending      int64
	// settled: nothing is pending and every entry has been delivered, so
	// the group will do nothing more.
	settled bool
}

func (h *chaosRun) progress(ctx context.Context) (chaosProgress, error) {
	var (
		p       chaosProgress
		handled *redis.IntCmd
		dead    *redis.IntCmd
		pending *redis.XPendingCmd
		groups  *redis.XInfoGroupsCmd
		info    *redis.XInfoStreamCmd
	)
	// One transaction: a consistent view for settled.
	_, err := h.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		handled = pipe.HLen(ctx, chaosHandledKey(h.stream))
		dead = pipe.XLen(ctx, DeadLetterKey(h.stream))
		pending = pipe.XPending(ctx, h.stream, chaosGroup)
		groups = pipe.XInfoGroups(ctx, h.stream)
		info = pipe.XInfoStream(ctx, h.stream)
		return nil
	})
	if err != nil {
		return p, err
	}
	p.handled, p.deadLettered, p.pending = handled.Val(), dead.Val(), pending.Val().Count
	for _, g := range groups.Val() {
		if g.Name == chaosGroup {
			p.settled = p.pending == 0 && g.LastDeliveredID == info.Val().LastGeneratedID
		}
	}
	return p, nil
}

// explainStall logs what is still pending and who holds it, and makes the
// live workers holding entries dump their goroutines (SIGQUIT) into their
// logs.
func (h *chaosRun) explainStall(ctx context.Context) {
	pending, err := h.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: h.stream, Group: chaosGroup, Start: "-", End: "+", Count: 20}).Result()
	if err != nil {
		h.t.Logf("chaos: XPENDING: %v", err)
		return
	}
	owners := map[string]bool{}
	for _, p := range pending {
		owners[p.Consumer] = true
		h.t.Logf("chaos: still pending: %s owner %s idle %v deliveries %d", p.ID, p.Consumer, p.Idle, p.RetryCount)
	}
	consumers, _ := h.rdb.XInfoConsumers(ctx, h.stream, chaosGroup).Result()
	h.t.Logf("chaos: consumers: %+v", consumers)
	h.mu.Lock()
	procs := slices.Clone(h.procs)
	h.mu.Unlock()
	for _, p := range procs {
		if owners[p.name] {
			h.t.Logf("chaos: live worker %s holds pending entries; its goroutines go to %s", p.name, p.log)
			_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		}
	}
}

// stopAll stops every worker with SIGTERM and returns how each exited.
func (h *chaosRun) stopAll() []error {
	h.mu.Lock()
	procs := slices.Clone(h.procs)
	h.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), chaosStopTimeout)
	defer cancel()
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-ctx.Done():
		}
		select {
		case <-p.exited:
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				errs = append(errs, fmt.Errorf("worker %s exited with code %d after SIGTERM; log %s:\n%s", p.name, code, p.log, tail(p.log, 30)))
			}
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
			errs = append(errs, fmt.Errorf("worker %s did not stop within %v of SIGTERM; log %s:\n%s", p.name, chaosStopTimeout, p.log, tail(p.log, 30)))
		}
	}
	return errs
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func chaosRunLength(t *testing.T) time.Duration {
	v := os.Getenv(chaosEnvSoak)
	if v == "" {
		if testing.Short() {
			t.Skip("chaos test takes a minute; skipped with -short")
		}
		return chaosDefaultRun
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, "%s must be a Go duration such as 10m", chaosEnvSoak)
	require.Greater(t, d, chaosDrainReserve, "%s too short", chaosEnvSoak)
	return d
}

// TestChaos publishes messages while worker processes of one group are
// SIGKILLed and replaced at random, then checks that no message was lost,
// that every poison message was dead-lettered exactly once and that nothing
// is left pending. It runs about a minute; REDSTREAM_SOAK=10m runs longer.
func TestChaos(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGKILL and SIGTERM")
	}
	// One after the other: each loads the machine's two cores.
	for _, v := range chaosVariants {
		t.Run(v.name, func(t *testing.T) { testChaos(t, v) })
	}
}

func testChaos(t *testing.T, variant chaosVariant) {
	run := chaosRunLength(t)
	if variant.name != chaosVariants[0].name {
		run = min(run, chaosDefaultRun/2+chaosDrainReserve) // the variant needs less to show its point
	}
	chaosFor := run - chaosDrainReserve
	drainDeadline := chaosDrainDeadline
	if deadline, ok := t.Deadline(); ok {
		// Leave time to stop the workers and report, whatever happens.
		left := time.Until(deadline) - chaosFor - chaosStopTimeout - 15*time.Second
		if left < chaosDrainReserve {
			t.Fatalf("a %v chaos run needs %v more before the go test -timeout than is left", run, chaosDrainReserve-left)
		}
		drainDeadline = min(drainDeadline, left)
	}
	began := time.Now()

	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	stream := uniqueStream(t)
	require.NoError(t, createGroup(ctx, rdb, stream, chaosGroup, "0"))

	logDir := os.Getenv(chaosEnvLogs)
	if logDir == "" {
		logDir = t.TempDir()
	} else {
		require.NoError(t, os.MkdirAll(logDir, 0o755))
	}
	h := &chaosRun{
		t: t, rdb: rdb, addr: srv.Addr(), stream: stream, logDir: logDir,
		timeout: chaosFor + drainDeadline + 2*chaosStopTimeout,
		procs:   make([]*chaosProc, chaosWorkers),
		variant: variant,
	}
	t.Cleanup(func() {
		h.mu.Lock()
		procs := slices.Clone(h.procs)
		h.mu.Unlock()
		for _, p := range procs {
			if p != nil {
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
		}
	})
	for slot := range chaosWorkers {
		require.NoError(t, h.startWorker(slot, h.freshName()))
	}

	// Publishing and chaos run side by side for chaosFor.
	n := int(chaosFor.Seconds() * chaosRate)
	var (
		wg                 sync.WaitGroup
		ids                map[string]string
		pubErr             error
		kills, reused      int
		chaosErr           error
		chaosCtx, endChaos = context.WithCancel(ctx)
	)
	defer endChaos()
	wg.Go(func() { kills, reused, chaosErr = h.chaos(chaosCtx) })
	ids, pubErr = h.publish(ctx, n, chaosFor)
	endChaos()
	wg.Wait()
	require.NoError(t, pubErr, "publishing")
	require.NoError(t, chaosErr, "chaos")
	chaosEnded := time.Now()
	atEnd, err := h.progress(ctx)
	require.NoError(t, err)

	poison := 0
	for key := range ids {
		if chaosPoison(key) {
			poison++
		}
	}
	// Drain: every key handled or dead-lettered and nothing pending.
	var last chaosProgress
	drained := false
	for deadline := time.Now().Add(drainDeadline); time.Now().Before(deadline); {
		last, err = h.progress(ctx)
		require.NoError(t, err)
		if last.handled >= int64(n-poison) && last.deadLettered >= int64(poison) && last.pending == 0 {
			drained = true
			break
		}
		if last.settled {
			break // no need to wait: nothing will change
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	drainTime := time.Since(chaosEnded)
	if !drained {
		t.Errorf("not drained %v after the chaos: %+v, want handled %d, dead-lettered %d, pending 0", drainTime.Round(time.Millisecond), last, n-poison, poison)
		h.explainStall(ctx)
	}
	for _, err := range h.stopAll() {
		t.Error(err)
	}

	// Check. The dead letters first, to tell where lost keys went.
	dlq, err := NewDeadLetters(rdb, stream)
	require.NoError(t, err)
	letters := map[string]int{}
	var badLetters []string
	for after := ""; ; {
		page, next, err := dlq.List(ctx, ListOptions{Count: 500, After: after})
		require.NoError(t, err)
		for _, d := range page {
			key := d.Fields["key"]
			var payload chaosMsg
			if err := json.Unmarshal([]byte(d.Fields[DefaultPayloadField]), &payload); err != nil || payload.Key != key {
				badLetters = append(badLetters, fmt.Sprintf("%s: key header %q, payload %q (%v)", d.ID, key, d.Fields[DefaultPayloadField], err))
			}
			letters[key]++
			if !chaosPoison(key) || ids[key] != d.OriginID || d.Reason != ReasonMaxDeliveries ||
				d.Group != chaosGroup || d.Deliveries < chaosMaxDeliveries {
				badLetters = append(badLetters, fmt.Sprintf("%s: key %s (published as %s) origin %s reason %s group %s deliveries %d error %q",
					d.ID, key, ids[key], d.OriginID, d.Reason, d.Group, d.Deliveries, d.Error))
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	deadLettered := 0
	for key := range ids {
		if !chaosPoison(key) {
			continue
		}
		switch letters[key] {
		case 1:
			deadLettered++
		case 0:
			badLetters = append(badLetters, "poison "+key+" ("+ids[key]+") not dead-lettered")
		default:
			badLetters = append(badLetters, fmt.Sprintf("poison %s dead-lettered %d times", key, letters[key]))
		}
	}

	counts, err := rdb.HGetAll(ctx, chaosHandledKey(stream)).Result()
	require.NoError(t, err)
	var handled, lost, duplicates int
	var lostKeys []string
	for key := range ids {
		if chaosPoison(key) {
			continue
		}
		c, _ := strconv.Atoi(counts[key])
		if c == 0 {
			lost++
			where := "nowhere"
			if letters[key] > 0 {
				where = "in the dead-letter stream"
			}
			lostKeys = append(lostKeys, key+" ("+ids[key]+", "+where+")")
			continue
		}
		handled++
		duplicates += c - 1
	}
	for key := range counts {
		if _, published := ids[key]; !published || chaosPoison(key) {
			t.Errorf("key %s was handled, but it is poison or was never published", key)
		}
	}
	pending := pendingCount(t, rdb, stream, chaosGroup)

	summary := fmt.Sprintf("chaos (%s): published=%d handled=%d lost=%d duplicates=%d deadlettered=%d kills=%d",
		variant.name, len(ids), handled, lost, duplicates, deadLettered, kills)
	t.Log(summary)
	fmt.Println(summary)
	// go test shows a passing package's output only with -v: CI names a
	// file to keep the line and prints it after the suite.
	if os.Getenv(chaosEnvSummary) != "" {
		writeSummary(t, summary)
	}
	byDeliveries, err := rdb.HGetAll(ctx, chaosDeliveriesKey(stream)).Result()
	require.NoError(t, err)
	t.Logf("chaos: handlings by delivery count: %v", byDeliveries)
	h.mu.Lock()
	t.Logf("chaos: ran %v (chaos %v, drain %v); %d kills left %d messages pending; restarts under the dead worker's name %d, under a new name %d; at chaos end handled %d, dead-lettered %d, pending %d; workers used %v CPU; logs in %s",
		time.Since(began).Round(time.Millisecond), chaosFor, drainTime.Round(time.Millisecond), h.killsHolding, h.leftPending,
		reused, kills-reused, atEnd.handled, atEnd.deadLettered, atEnd.pending, h.workerCPU.Round(time.Millisecond), logDir)
	h.mu.Unlock()

	slices.Sort(lostKeys)
	slices.Sort(badLetters)
	assert.Zero(t, lost, "lost messages (first ones): %v", lostKeys[:min(len(lostKeys), 20)])
	assert.Positive(t, kills, "no worker was killed")
	assert.Empty(t, badLetters[:min(len(badLetters), 20)], "dead-letter stream (first problems of %d)", len(badLetters))
	assert.Equal(t, poison, len(letters), "distinct keys dead-lettered")
	assert.Zero(t, pending, "pending entries left in the group")
}
