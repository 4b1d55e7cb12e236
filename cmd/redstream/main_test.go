package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// result is what one in-process run of the CLI printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the command line args in-process.
func cli(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// cliOK runs args against the test server and requires success.
func cliOK(t *testing.T, args ...string) string {
	t.Helper()
	r := cli(t, append([]string{"-addr", redistest.Addr(t)}, args...)...)
	require.Equal(t, 0, r.code, "redstream %s: stderr %q", strings.Join(args, " "), r.stderr)
	require.Empty(t, r.stderr)
	return r.stdout
}

// requireOneErrorLine checks the shape of every error: one line on stderr,
// starting with "redstream: ".
func requireOneErrorLine(t *testing.T, r result) {
	t.Helper()
	require.NotEqual(t, 0, r.code)
	require.True(t, strings.HasPrefix(r.stderr, "redstream: "), "stderr %q", r.stderr)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "stderr %q", r.stderr)
	require.True(t, strings.HasSuffix(r.stderr, "\n"), "stderr %q", r.stderr)
}

var streamSeq atomic.Int64

// uniqueStream names a stream no other test (or earlier run) uses.
func uniqueStream(t *testing.T) string {
	name := strings.NewReplacer("/", ":", " ", "_").Replace(t.Name())
	return fmt.Sprintf("cli:%s:%d-%d", name, time.Now().UnixNano(), streamSeq.Add(1))
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// addEntries appends n entries {"n": i} and returns their IDs.
func addEntries(t *testing.T, rdb redis.UniversalClient, stream string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		id, err := rdb.XAdd(testCtx(t), &redis.XAddArgs{Stream: stream, Values: []string{"n", fmt.Sprint(i), "note", "entry " + fmt.Sprint(i)}}).Result()
		require.NoError(t, err)
		ids[i] = id
	}
	return ids
}

// deliver reads count new entries for consumer in group, as XREADGROUP does
// for a consumer, and returns their IDs.
func deliver(t *testing.T, rdb redis.UniversalClient, stream, group, consumer string, count int64) []string {
	t.Helper()
	res, err := rdb.XReadGroup(testCtx(t), &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{stream, ">"}, Count: count, Block: -1}).Result()
	require.NoError(t, err)
	var ids []string
	for _, m := range res[0].Messages {
		ids = append(ids, m.ID)
	}
	require.Len(t, ids, int(count))
	return ids
}

// scenario is a stream of 5 entries whose group "billing" (created at 0)
// was delivered 3 to consumer "c1", who acknowledged the first; group
// "audit" starts at the end. One dead letter is added directly.
type scenario struct {
	stream string
	ids    []string
}

func newScenario(t *testing.T) scenario {
	t.Helper()
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	s := scenario{stream: uniqueStream(t)}
	s.ids = addEntries(t, rdb, s.stream, 5)
	require.NoError(t, rdb.XGroupCreate(ctx, s.stream, "billing", "0").Err())
	require.NoError(t, rdb.XGroupCreate(ctx, s.stream, "audit", "$").Err())
	held := deliver(t, rdb, s.stream, "billing", "c1", 3)
	require.NoError(t, rdb.XAck(ctx, s.stream, "billing", held[0]).Err())
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: redstream.DeadLetterKey(s.stream), Values: []string{
		"dead-letter:stream", s.stream, "dead-letter:id", s.ids[0], "dead-letter:group", "billing",
		"dead-letter:consumer", "c1", "dead-letter:deliveries", "5", "dead-letter:reason", redstream.ReasonMaxDeliveries,
		"dead-letter:error", "boom", "dead-letter:time", fmt.Sprint(time.Now().UnixMilli()), "n", "0",
	}}).Err())
	return s
}

// rowOf returns the fields of the first output line whose first field is key.
func rowOf(out, key string) []string {
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == key {
			return f
		}
	}
	return nil
}

func TestInfoText(t *testing.T) {
	t.Parallel()
	s := newScenario(t)

	// The flag after the stream is accepted too.
	out := cliOK(t, "info", s.stream)

	assert.Equal(t, []string{"stream", s.stream}, rowOf(out, "stream"))
	assert.Equal(t, []string{"length", "5"}, rowOf(out, "length"))
	assert.Contains(t, out, "first entry   "+s.ids[0]+" (")
	assert.Contains(t, out, "last entry    "+s.ids[4]+" (")
	assert.Regexp(t, regexp.MustCompile(`first entry +\S+ \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC, \S+ ago\)`), out)
	assert.Contains(t, out, "dead letters  1 ("+redstream.DeadLetterKey(s.stream)+")")

	billing := rowOf(out, "billing") // the groups table comes before the consumers table
	require.Len(t, billing, 10, "row %q", billing)
	assert.Equal(t, "no", billing[9], "not paused")
	assert.Equal(t, "2", billing[1], "lag")
	assert.Equal(t, "2", billing[2], "pending")
	assert.Equal(t, s.ids[1], billing[3], "oldest pending")
	assert.Equal(t, s.ids[2], billing[6], "last delivered")
	assert.Equal(t, "1", billing[7], "consumers")
	assert.Equal(t, "-", billing[8], "owner: no lease")
	audit := rowOf(out, "audit")
	require.Len(t, audit, 10, "row %q", audit)
	assert.Equal(t, []string{"audit", "0", "0", "-", "-", "-", s.ids[4], "0", "-", "no"}, audit)
	assert.Regexp(t, regexp.MustCompile(`(?m)^GROUP +LAG +PENDING +OLDEST PENDING +AGE +IDLE +LAST DELIVERED +CONSUMERS +OWNER +PAUSED$`), out)

	assert.Regexp(t, regexp.MustCompile(`(?m)^GROUP +CONSUMER +PENDING +IDLE +INACTIVE$`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^billing +c1 +2 +\S+ +\S+$`), out)
}

func TestInfoJSON(t *testing.T) {
	t.Parallel()
	s := newScenario(t)

	out := cliOK(t, "info", "-json", s.stream)

	var info streamJSON
	require.NoError(t, json.Unmarshal([]byte(out), &info), out)
	assert.Equal(t, s.stream, info.Stream)
	assert.Equal(t, int64(5), info.Length)
	assert.Equal(t, s.ids[0], info.FirstID)
	assert.Equal(t, s.ids[4], info.LastID)
	firstTime, err := time.Parse(time.RFC3339, info.FirstTime)
	require.NoError(t, err)
	idTime, _ := idTime(s.ids[0])
	assert.True(t, firstTime.Equal(idTime), "%v != %v", firstTime, idTime)
	assert.Equal(t, redstream.DeadLetterKey(s.stream), info.DeadLetterKey)
	assert.Equal(t, int64(1), info.DeadLetterLength)
	require.Len(t, info.Groups, 2)
	groups := map[string]groupJSON{}
	for _, g := range info.Groups {
		groups[g.Name] = g
	}
	billing := groups["billing"]
	assert.Equal(t, int64(2), billing.Lag)
	assert.True(t, billing.LagKnown)
	assert.Equal(t, int64(2), billing.Pending)
	assert.Equal(t, s.ids[1], billing.OldestPendingID)
	assert.GreaterOrEqual(t, billing.OldestPendingAgeMs, int64(0))
	assert.Less(t, billing.OldestPendingAgeMs, int64(time.Minute/time.Millisecond))
	require.Len(t, billing.Consumers, 1)
	assert.Equal(t, "c1", billing.Consumers[0].Name)
	assert.Equal(t, int64(2), billing.Consumers[0].Pending)
	assert.GreaterOrEqual(t, billing.Consumers[0].InactiveMs, int64(-1))
	assert.NotNil(t, groups["audit"].Consumers, "lists are [] rather than null")
	assert.Empty(t, billing.Owner, "no lease")

	// The keys are the documented, stable ones.
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &raw))
	assert.ElementsMatch(t, []string{"stream", "length", "first_id", "first_time", "last_id", "last_time",
		"last_generated_id", "dead_letter_key", "dead_letter_length", "groups", "scheduled", "next_due"}, keysOf(raw))
	group := raw["groups"].([]any)[0].(map[string]any)
	assert.ElementsMatch(t, []string{"name", "last_delivered_id", "lag", "lag_known", "pending", "oldest_pending_id",
		"oldest_pending_age_ms", "oldest_pending_idle_ms", "owner", "paused", "consumers"}, keysOf(group))
}

func keysOf(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func TestGroups(t *testing.T) {
	t.Parallel()
	s := newScenario(t)

	out := cliOK(t, "groups", s.stream)
	assert.NotContains(t, out, "length")
	assert.Equal(t, "2", rowOf(out, "billing")[1])

	var groups []groupJSON
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "groups", s.stream, "-json")), &groups))
	require.Len(t, groups, 2)

	// A stream without groups says so.
	rdb := redistest.Client(t)
	empty := uniqueStream(t)
	addEntries(t, rdb, empty, 1)
	assert.Equal(t, "no consumer groups\n", cliOK(t, "groups", empty))
}

func TestPending(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rdb := redistest.Client(t)
	deliver(t, rdb, s.stream, "billing", "c2", 1) // ids[3]

	out := cliOK(t, "pending", s.stream, "billing", "-n", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	assert.Regexp(t, `^ID +TIME +AGE +CONSUMER +IDLE +DELIVERIES$`, lines[0])
	assert.Regexp(t, `^`+s.ids[1]+` +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC +\S+ +c1 +\S+ +1$`, lines[1])
	assert.Regexp(t, `^`+s.ids[2]+` .* c1 +\S+ +1$`, lines[2])
	assert.Equal(t, "2 of 3 pending entries of group billing, oldest first", lines[3])

	var entries []pendingJSON
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "pending", s.stream, "billing", "-consumer", "c2", "-json")), &entries))
	require.Len(t, entries, 1)
	assert.Equal(t, s.ids[3], entries[0].ID)
	assert.Equal(t, "c2", entries[0].Consumer)
	assert.Equal(t, int64(1), entries[0].Deliveries)

	assert.Equal(t, "nothing pending for group audit\n", cliOK(t, "pending", s.stream, "audit"))

	r := cli(t, "-addr", redistest.Addr(t), "pending", s.stream, "nogroup")
	requireOneErrorLine(t, r)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "group nogroup of stream "+s.stream+" does not exist")
}

// deadLetterVia runs a real consumer whose handler dead-letters every
// entry until want dead letters exist in the dead-letter streams keys
// (those of stream's partitions when opts has WithPartitions).
func deadLetterVia(t *testing.T, rdb redis.UniversalClient, stream string, keys []string, want int64, opts ...redstream.HandleOption) {
	t.Helper()
	c, err := redstream.NewConsumer(rdb, "billing", redstream.WithGroupStart("0"), redstream.WithBlock(20*time.Millisecond),
		redstream.WithConsumerName("worker-1"))
	require.NoError(t, err)
	require.NoError(t, redstream.Handle(c, stream, func(_ context.Context, m *redstream.Message[redstream.Fields]) error {
		return fmt.Errorf("entry %s is poison: %w", m.Payload["n"], redstream.ErrDeadLetter)
	}, opts...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	require.Eventually(t, func() bool {
		var total int64
		for _, key := range keys {
			n, err := rdb.XLen(context.Background(), key).Result()
			if err != nil {
				return false
			}
			total += n
		}
		return total == want
	}, 10*time.Second, 10*time.Millisecond)
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	stream := uniqueStream(t)
	ids := addEntries(t, rdb, stream, 4)
	deadLetterVia(t, rdb, stream, []string{redstream.DeadLetterKey(stream)}, 4)

	// The consumer handles entries concurrently: dead letters are not in
	// the order of their origin IDs.
	index := map[string]string{} // origin ID -> its "n" field
	for i, id := range ids {
		index[id] = fmt.Sprint(i)
	}

	// list, as a table
	out := cliOK(t, "dlq", "list", stream)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 6, out)
	assert.Regexp(t, `^ID +DEAD-LETTERED +ORIGIN ID +GROUP +CONSUMER +DELIVERIES +REASON +ERROR +FIELDS$`, lines[0])
	row := regexp.MustCompile(`^\d+-\d+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC +(\d+-\d+) +billing +worker-1 +1 +handler +entry (\d) is poison: .* n=(\d) note="entry (\d)"$`)
	seen := map[string]bool{}
	for _, line := range lines[1:5] {
		m := row.FindStringSubmatch(line)
		require.NotNil(t, m, "line %q", line)
		n, ok := index[m[1]]
		require.True(t, ok, "origin %s", m[1])
		assert.Equal(t, []string{n, n, n}, m[2:], "line %q", line)
		seen[m[1]] = true
	}
	assert.Len(t, seen, 4)
	assert.Equal(t, "4 of 4 dead letters of "+stream+" ("+redstream.DeadLetterKey(stream)+"), oldest first", lines[5])

	// list, as JSON, newest first, one page at a time
	var page deadLettersJSON
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "dlq", "list", stream, "-json", "-newest", "-n", "3")), &page))
	require.Len(t, page.DeadLetters, 3)
	for _, d := range page.DeadLetters {
		n := index[d.OriginID]
		assert.Equal(t, stream, d.Stream)
		assert.Equal(t, redstream.ReasonHandler, d.Reason)
		assert.Equal(t, "billing", d.Group)
		assert.Equal(t, "worker-1", d.Consumer)
		assert.Equal(t, int64(1), d.Deliveries)
		assert.Equal(t, map[string]string{"n": n, "note": "entry " + n}, d.Fields)
		assert.Contains(t, d.Error, "entry "+n+" is poison")
		_, err := time.Parse(time.RFC3339, d.Time)
		require.NoError(t, err)
	}
	assert.Greater(t, page.DeadLetters[0].ID, page.DeadLetters[1].ID, "newest first")
	require.Equal(t, page.DeadLetters[2].ID, page.Next)
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "dlq", "list", stream, "-json", "-newest", "-n", "3", "-after", page.Next)), &page))
	require.Len(t, page.DeadLetters, 1)
	assert.Empty(t, page.Next)
	oldest := page.DeadLetters[0]

	// replay one by ID, twice: the second time it is gone
	assert.Equal(t, "replayed 1 dead letter to "+stream+"\n", cliOK(t, "dlq", "replay", stream, "--id", oldest.ID))
	assert.Equal(t, "replayed 0 dead letters to "+stream+"\n", cliOK(t, "dlq", "replay", stream, "--id", oldest.ID))
	last, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	require.NoError(t, err)
	assert.Equal(t, stringFields(last[0].Values), oldest.Fields)
	assert.Equal(t, int64(3), rdb.XLen(ctx, redstream.DeadLetterKey(stream)).Val())

	// delete one
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "dlq", "list", stream, "-json", "-n", "1")), &page))
	assert.Equal(t, "deleted 1 of 2 dead letters of "+stream+"\n", cliOK(t, "dlq", "delete", stream, "--id", page.DeadLetters[0].ID, "--id", "1-1"))
	assert.Equal(t, int64(2), rdb.XLen(ctx, redstream.DeadLetterKey(stream)).Val())

	// replay all, rate-limited
	assert.Equal(t, "replayed 2 dead letters to "+stream+"\n", cliOK(t, "dlq", "replay", stream, "--all", "--rate", "1000"))
	assert.Equal(t, int64(0), rdb.XLen(ctx, redstream.DeadLetterKey(stream)).Val())
	assert.Equal(t, int64(7), rdb.XLen(ctx, stream).Val())
	assert.Equal(t, "no dead letters for "+stream+" ("+redstream.DeadLetterKey(stream)+")\n", cliOK(t, "dlq", "list", stream))
}

func TestDeadLettersPurge(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: redstream.DeadLetterKey(s.stream), Values: []string{"n", "1"}}).Err())

	r := cli(t, "-addr", redistest.Addr(t), "dlq", "purge", s.stream)
	requireOneErrorLine(t, r)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "would delete 2 dead letters of "+s.stream)
	assert.Contains(t, r.stderr, "-yes")
	assert.Empty(t, r.stdout)
	assert.Equal(t, int64(2), rdb.XLen(ctx, redstream.DeadLetterKey(s.stream)).Val(), "nothing deleted without -yes")

	assert.Equal(t, "purged 2 dead letters of "+s.stream+" ("+redstream.DeadLetterKey(s.stream)+")\n", cliOK(t, "dlq", "purge", s.stream, "--yes"))
	assert.Equal(t, int64(0), rdb.Exists(ctx, redstream.DeadLetterKey(s.stream)).Val())
	assert.Equal(t, int64(5), rdb.XLen(ctx, s.stream).Val(), "the stream itself is untouched")
}

func TestTrim(t *testing.T) {
	t.Parallel()
	s := newScenario(t) // billing: ids[0] acknowledged, ids[1..2] pending; audit at the end
	rdb := redistest.Client(t)
	ctx := testCtx(t)

	assert.Equal(t, "removed 1 entry\n", cliOK(t, "trim", s.stream, "--safe"))
	assert.Equal(t, s.ids[1], rdb.XRangeN(ctx, s.stream, "-", "+", 1).Val()[0].ID)
	assert.Equal(t, "removed 0 entries\n", cliOK(t, "trim", s.stream, "--safe"))

	// -maxlen stops at what billing still needs, unless told otherwise.
	assert.Equal(t, "removed 0 entries\n", cliOK(t, "trim", s.stream, "--maxlen", "2"))
	assert.Equal(t, "removed 2 entries\ndropped 2 unconsumed entries\n", cliOK(t, "trim", s.stream, "--maxlen", "2", "--allow-unconsumed"))
	assert.Equal(t, int64(2), rdb.XLen(ctx, s.stream).Val())
}

func TestTail(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	stream := uniqueStream(t)
	ids := addEntries(t, rdb, stream, 3)
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "billing", "0").Err())
	groupsBefore := rdb.XInfoGroups(ctx, stream).Val()

	out := cliOK(t, "tail", stream, "-n", "2", "-from", "0")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 2, out)
	assert.Regexp(t, `^`+ids[0]+`  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC  n=0 note="entry 0"$`, lines[0])
	assert.Regexp(t, `^`+ids[1]+`  .*  n=1 note="entry 1"$`, lines[1])

	out = cliOK(t, "tail", stream, "-from", ids[1], "-n", "1", "-json")
	var e entryJSON
	require.NoError(t, json.Unmarshal([]byte(out), &e))
	assert.Equal(t, entryJSON{ID: ids[2], Time: jsonIDTime(ids[2]), Fields: map[string]string{"n": "2", "note": "entry 2"}}, e)

	assert.Equal(t, groupsBefore, rdb.XInfoGroups(ctx, stream).Val(), "tail must not touch consumer groups")
}

func TestTailFollowsNewEntries(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	addEntries(t, rdb, stream, 2)

	done := make(chan result, 1)
	go func() { done <- cli(t, "-addr", redistest.Addr(t), "tail", stream, "-n", "1") }()
	// tail starts after the entries present when it starts, which the test
	// cannot observe: keep adding until it has printed one.
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	var added []string
	for {
		select {
		case r := <-done:
			require.Equal(t, 0, r.code, r.stderr)
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			require.Len(t, lines, 1)
			id := strings.Fields(lines[0])[0]
			assert.Contains(t, added, id, "only entries added after the start")
			return
		case <-ticker.C:
			id, err := rdb.XAdd(testCtx(t), &redis.XAddArgs{Stream: stream, Values: []string{"k", "v"}}).Result()
			require.NoError(t, err)
			added = append(added, id)
		}
	}
}

func TestTailEndsOnCancel(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	ids := addEntries(t, rdb, stream, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var stdout, stderr syncBuffer
	go func() {
		done <- run(ctx, []string{"-addr", redistest.Addr(t), "tail", stream, "-from", "0"}, &stdout, &stderr)
	}()
	// Once the entry is printed, tail is waiting for more.
	require.Eventually(t, func() bool { return strings.Contains(stdout.String(), ids[0]) }, 10*time.Second, 5*time.Millisecond)
	cancel() // as Ctrl-C does, through signal.NotifyContext
	select {
	case code := <-done:
		assert.Equal(t, 0, code, stderr.String())
		assert.Empty(t, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("tail did not end after its context was cancelled")
	}
}

// syncBuffer is a bytes.Buffer safe to read while run writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestErrors(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	s := newScenario(t)
	rdb := redistest.Client(t)
	notStream := uniqueStream(t)
	require.NoError(t, rdb.Set(testCtx(t), notStream, "x", time.Minute).Err())

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown dlq command", []string{"dlq", "frobnicate", s.stream}, 2, `unknown command "dlq frobnicate"`},
		{"dlq alone", []string{"dlq"}, 2, "dlq needs a subcommand: list, replay, delete, purge"},
		{"missing stream", []string{"info"}, 2, "info: missing STREAM; usage: redstream info STREAM"},
		{"missing group", []string{"pending", s.stream}, 2, "pending: missing GROUP"},
		{"extra argument", []string{"groups", s.stream, "more"}, 2, `unexpected argument "more"`},
		{"unknown flag", []string{"info", s.stream, "-verbose"}, 2, "flag provided but not defined: -verbose"},
		{"bad stream name", []string{"info", "a}b"}, 2, "invalid stream name"},
		{"bad ID to replay", []string{"dlq", "replay", s.stream, "--id", "12x"}, 2, `invalid value "12x" for flag -id`},
		{"bad ID to delete", []string{"dlq", "delete", s.stream, "--id", "1-0,2"}, 2, `invalid value "1-0,2" for flag -id`},
		{"bad -after", []string{"dlq", "list", s.stream, "-after", "1700000000000"}, 2, `-after "1700000000000" is not a stream entry ID`},
		{"bad -from", []string{"tail", s.stream, "-from", "now"}, 2, `-from "now" is not a stream entry ID`},
		{"replay needs a choice", []string{"dlq", "replay", s.stream}, 2, "give either -id ID (one or more) or -all"},
		{"replay -id and -all", []string{"dlq", "replay", s.stream, "-all", "-id", "1-0"}, 2, "give either"},
		// Rates whose pacing interval overflowed panicked in time.NewTicker.
		{"replay rate too high", []string{"dlq", "replay", s.stream, "-all", "-rate", "2e9"}, 2, "a replay rate must be between"},
		{"replay rate too low", []string{"dlq", "replay", s.stream, "-all", "-rate", "1e-300"}, 2, "a replay rate must be between"},
		{"replay rate negative", []string{"dlq", "replay", s.stream, "-all", "-rate", "-1"}, 2, "a replay rate must be between"},
		{"delete needs -id", []string{"dlq", "delete", s.stream}, 2, "give the dead letters to delete with -id"},
		{"bad duration", []string{"trim", s.stream, "-max-age", "3days"}, 2, `invalid value "3days" for flag -max-age: want a duration`},
		{"bad count", []string{"pending", s.stream, "billing", "-n", "0"}, 2, "-n must be positive"},
		{"negative -maxlen", []string{"trim", s.stream, "-maxlen", "-5"}, 2, "redstream: trim: -maxlen must be positive, got -5"},
		{"negative -max-age", []string{"trim", s.stream, "-max-age", "-1h"}, 2, "redstream: trim: -max-age must be positive"},
		{"trim needs a policy", []string{"trim", s.stream}, 2, "give -safe, -maxlen N or -max-age D"},
		{"trim -safe with -allow-unconsumed", []string{"trim", s.stream, "-safe", "-allow-unconsumed"}, 2, "-allow-unconsumed contradicts -safe"},
		{"unknown stream: info", []string{"info", "no:such:stream"}, 1, "stream no:such:stream does not exist"},
		{"unknown stream: groups", []string{"groups", "no:such:stream"}, 1, "stream no:such:stream does not exist"},
		{"unknown stream: pending", []string{"pending", "no:such:stream", "g"}, 1, "stream no:such:stream does not exist"},
		{"unknown stream: dlq list", []string{"dlq", "list", "no:such:stream"}, 1, "stream no:such:stream does not exist"},
		{"unknown stream: tail", []string{"tail", "no:such:stream"}, 1, "stream no:such:stream does not exist"},
		{"not a stream", []string{"info", notStream}, 1, notStream + " is a string, not a stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := cli(t, append([]string{"-addr", addr}, tc.args...)...)
			requireOneErrorLine(t, r)
			assert.Equal(t, tc.code, r.code)
			assert.Contains(t, r.stderr, tc.want)
			assert.Empty(t, r.stdout)
		})
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)

	for _, args := range [][]string{
		{"-addr", addr, "-timeout", "2s", "info", "s"},
		{"-addr", addr, "dlq", "list", "s"},
		{"-url", "redis://admin:hunter2-secret@" + addr + "/0", "groups", "s"},
	} {
		r := cli(t, args...)
		requireOneErrorLine(t, r)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "redstream: cannot connect to "+addr+": ")
		assert.NotContains(t, r.stderr, "hunter2")
	}
}

func TestPasswordsNeverPrinted(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-s3cret"
	env := map[string]string{"REDIS_URL": "redis://admin:" + secret + "@" + closedAddr(t)}
	getenv := func(k string) string { return env[k] }
	for _, args := range [][]string{
		{"info", "s"}, // from REDIS_URL
		{"-h"},
		{"help"},
		{"-url", "redis://admin:" + secret + "%zz@localhost:1/0", "info", "s"}, // does not parse
		{"-url", "redis://admin:" + secret + "@localhost:1/notadb", "info", "s"},
		{"-url", "http://admin:" + secret + "@localhost:1", "info", "s"},
		{"-cluster", "redis://admin:" + secret + "@" + closedAddr(t), "info", "s"},
		{"-addr", "admin:" + secret + "@localhost:1", "info", "s"},
	} {
		var stdout, stderr bytes.Buffer
		code := newApp(&stdout, &stderr, getenv).main(testCtx(t), args)
		assert.NotContains(t, stdout.String()+stderr.String(), secret, "args %q", args)
		if args[0] != "-h" && args[0] != "help" {
			assert.NotEqual(t, 0, code, "args %q", args)
		}
	}
}

func TestResolveTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		flags    connFlags
		env      map[string]string
		addr     string
		password string
		db       int
		cluster  []string
		err      string
	}{
		{name: "default", addr: "localhost:6379"},
		{name: "REDIS_ADDR", env: map[string]string{"REDIS_ADDR": "h:1"}, addr: "h:1"},
		{name: "REDIS_URL wins over REDIS_ADDR", env: map[string]string{"REDIS_URL": "redis://:pw@u:2/3", "REDIS_ADDR": "h:1"}, addr: "u:2", password: "pw", db: 3},
		{name: "-addr wins over the environment", flags: connFlags{addr: "a:3"}, env: map[string]string{"REDIS_URL": "redis://u:2"}, addr: "a:3"},
		{name: "-addr takes a URL", flags: connFlags{addr: "redis://a:3/1"}, addr: "a:3", db: 1},
		{name: "-url", flags: connFlags{url: "rediss://user:pw@b:4"}, addr: "b:4", password: "pw"},
		{name: "-cluster", flags: connFlags{cluster: "c:1, redis://:pw@c:2"}, cluster: []string{"c:1", "c:2"}, password: "pw"},
		{name: "-password replaces the URL's and REDIS_PASSWORD", flags: connFlags{url: "redis://:pw@b:4", password: "flag"}, env: map[string]string{"REDIS_PASSWORD": "env"}, addr: "b:4", password: "flag"},
		{name: "REDIS_PASSWORD replaces the URL's", flags: connFlags{url: "redis://:pw@b:4"}, env: map[string]string{"REDIS_PASSWORD": "env"}, addr: "b:4", password: "env"},
		{name: "-password for a cluster", flags: connFlags{cluster: "c:1", password: "flag"}, cluster: []string{"c:1"}, password: "flag"},
		{name: "exclusive", flags: connFlags{addr: "a:1", url: "redis://b:2"}, err: "exclusive"},
		{name: "no port", flags: connFlags{addr: "host"}, err: `-addr "host": want host:port`},
		{name: "empty cluster", flags: connFlags{cluster: " , "}, err: "-cluster needs at least one host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.flags.timeout = 3 * time.Second
			target, err := resolveTarget(tc.flags, func(k string) string { return tc.env[k] })
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			if tc.cluster != nil {
				require.NotNil(t, target.cluster)
				assert.Equal(t, tc.cluster, target.cluster.Addrs)
				assert.Equal(t, tc.password, target.cluster.Password)
				assert.Equal(t, 3*time.Second, target.cluster.ReadTimeout)
				return
			}
			assert.Equal(t, tc.addr, target.single.Addr)
			assert.Equal(t, tc.addr, target.display)
			assert.Equal(t, tc.password, target.single.Password)
			assert.Equal(t, tc.db, target.single.DB)
			assert.Equal(t, 3*time.Second, target.single.ReadTimeout)
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()

	r := cli(t)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "Commands:")
	assert.Empty(t, r.stdout)

	for _, args := range [][]string{{"help"}, {"-h"}} {
		r := cli(t, args...)
		assert.Equal(t, 0, r.code)
		assert.Empty(t, r.stderr)
		for _, c := range commands {
			assert.Contains(t, r.stdout, "  "+c.name+" ")
		}
		assert.Contains(t, r.stdout, "-addr host:port")
	}

	for _, c := range commands {
		for _, args := range [][]string{
			append(strings.Fields(c.name), "-h"),
			append([]string{"help"}, strings.Fields(c.name)...),
		} {
			r := cli(t, args...)
			assert.Equal(t, 0, r.code, "%q", args)
			assert.Empty(t, r.stderr)
			assert.Contains(t, r.stdout, "Usage:\n  redstream [global flags] "+c.name+" "+c.synopsis+"\n")
			assert.Contains(t, r.stdout, "Examples:\n  redstream "+c.name)
		}
	}

	r = cli(t, "dlq", "-h")
	assert.Equal(t, 0, r.code)
	assert.Contains(t, r.stdout, "dlq replay STREAM")
}

func TestParseInterleaved(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args       []string
		positional []string
		json       bool
	}{
		{[]string{"s"}, []string{"s"}, false},
		{[]string{"-json", "s"}, []string{"s"}, true},
		{[]string{"s", "-json"}, []string{"s"}, true},
		{[]string{"s", "--json", "g"}, []string{"s", "g"}, true},
		{[]string{"--", "-json"}, []string{"-json"}, false},
		{[]string{"s", "--", "-json"}, []string{"s", "-json"}, false},
	} {
		fs := newFlagSet(infoCommand)
		asJSON := fs.Bool("json", false, "")
		positional, err := parseInterleaved(fs, tc.args)
		require.NoError(t, err)
		assert.Equal(t, tc.positional, positional, "%q", tc.args)
		assert.Equal(t, tc.json, *asJSON, "%q", tc.args)
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		-1:                                      "-",
		0:                                       "0ms",
		850 * time.Millisecond:                  "850ms",
		12340 * time.Millisecond:                "12.3s",
		4*time.Minute + 5*time.Second:           "4m5s",
		3*time.Hour + 2*time.Minute:             "3h2m",
		50*time.Hour + 20*time.Minute:           "2d2h",
		59*time.Minute + 59700*time.Millisecond: "1h0m",
	} {
		assert.Equal(t, want, fmtDuration(d), "%v", d)
	}
}

func TestOneLine(t *testing.T) {
	t.Parallel()
	a := newApp(nil, nil, nil)
	a.secrets = []string{"pw123"}
	err := fmt.Errorf("redstream: 2 dead letters not replayed: %w", fmt.Errorf("ERR redstream: first\nERR redstream: second pw123"))
	assert.Equal(t, "2 dead letters not replayed: first; second xxxxx", a.oneLine(err))
}
