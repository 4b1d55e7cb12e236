package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/redistest"
)

// partitionedScenario is a stream of 4 partitions written by a partitioned
// producer: p0 holds 3 entries, p1 1, p3 2, and p2 was never created. Group
// "billing" (created at 0 on p0, p1 and p3) was delivered 2 entries of p0
// and 2 of p3 to consumer "c1", who acknowledged the first of p0; group
// "audit" exists on p0 only, at its end. p1 and p3 each have a dead letter.
//
// Summed: length 6, 2 dead letters; billing lag 2 (p0 1, p1 1), pending 3
// (p0 1, p3 2), c1 holding 3; audit lag 0, pending 0.
type partitionedScenario struct {
	base  string
	parts []string
	ids   [][]string // per partition, the entry IDs
}

func newPartitionedScenario(t *testing.T) partitionedScenario {
	t.Helper()
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	s := partitionedScenario{base: uniqueStream(t), ids: make([][]string, 4)}
	var err error
	s.parts, err = redstream.Partitions(s.base, 4)
	require.NoError(t, err)

	p, err := redstream.NewProducer[redstream.Fields](rdb, s.base, redstream.WithPartitions(4))
	require.NoError(t, err)
	want := []int{3, 1, 0, 2}
	for i := 0; want[0]+want[1]+want[2]+want[3] > 0; i++ {
		key := "order-" + strconv.Itoa(i)
		part := redstream.PartitionOf(key, 4)
		if want[part] == 0 {
			continue
		}
		want[part]--
		id, err := p.Publish(ctx, redstream.Fields{"n": strconv.Itoa(i)}, redstream.WithKey(key))
		require.NoError(t, err)
		s.ids[part] = append(s.ids[part], id)
	}
	n, err := rdb.Exists(ctx, s.parts[2]).Result()
	require.NoError(t, err)
	require.Zero(t, n, "p2 must not exist")

	for _, i := range []int{0, 1, 3} {
		require.NoError(t, rdb.XGroupCreate(ctx, s.parts[i], "billing", "0").Err())
	}
	require.NoError(t, rdb.XGroupCreate(ctx, s.parts[0], "audit", "$").Err())
	held := deliver(t, rdb, s.parts[0], "billing", "c1", 2)
	require.NoError(t, rdb.XAck(ctx, s.parts[0], "billing", held[0]).Err())
	deliver(t, rdb, s.parts[3], "billing", "c1", 2)
	for _, i := range []int{1, 3} {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: redstream.DeadLetterKey(s.parts[i]), Values: []string{
			"dead-letter:stream", s.parts[i], "dead-letter:id", s.ids[i][0], "dead-letter:group", "billing",
			"dead-letter:reason", redstream.ReasonHandler, "dead-letter:error", "boom",
			"dead-letter:time", fmt.Sprint(time.Now().UnixMilli()), "n", "x",
		}}).Err())
	}
	return s
}

func TestPartitionedInfoText(t *testing.T) {
	t.Parallel()
	s := newPartitionedScenario(t)

	out := cliOK(t, "info", s.base, "-partitions", "4")

	assert.Equal(t, []string{"stream", s.base}, rowOf(out, "stream"))
	assert.Contains(t, out, "partitions    4 ("+s.parts[0]+" to "+s.parts[3]+"), 1 not created yet\n")
	assert.Equal(t, []string{"length", "6"}, rowOf(out, "length"))
	assert.Contains(t, out, "dead letters  2 ("+redstream.DeadLetterKey(s.parts[0])+" to "+redstream.DeadLetterKey(s.parts[3])+")\n")
	assert.NotContains(t, out, "first entry", "a sum has no first entry")

	// The summed groups: no IDs, but the oldest pending entry's age.
	billing := rowOf(out, "billing")
	require.Len(t, billing, 10, "row %q", billing)
	assert.Equal(t, []string{"billing", "2", "3", "-"}, billing[:4])
	assert.NotEqual(t, "-", billing[4], "age")
	assert.Equal(t, []string{"-", "1", "-", "no"}, billing[6:], "last delivered, consumers, owner, paused")
	assert.Equal(t, []string{"audit", "0", "0", "-", "-", "-", "-", "0", "-", "no"}, rowOf(out, "audit"))
	assert.Regexp(t, regexp.MustCompile(`(?m)^billing +c1 +3 +\S+ +\S+$`), out)

	// The partitions, with a lag, a pending and an owner column per group.
	assert.Regexp(t, regexp.MustCompile(`(?m)^PARTITION +LENGTH +DEAD LETTERS +audit LAG +audit PENDING +audit OWNER +billing LAG +billing PENDING +billing OWNER$`), out)
	assert.Equal(t, []string{s.parts[0], "3", "0", "0", "0", "-", "1", "1", "-"}, rowOf(out, s.parts[0]))
	assert.Equal(t, []string{s.parts[1], "1", "1", "-", "-", "-", "1", "0", "-"}, rowOf(out, s.parts[1]))
	assert.Equal(t, []string{s.parts[2], "-", "-", "-", "-", "-", "-", "-", "-"}, rowOf(out, s.parts[2]))
	assert.Equal(t, []string{s.parts[3], "2", "1", "-", "-", "-", "0", "2", "-"}, rowOf(out, s.parts[3]))
}

func TestPartitionedInfoJSON(t *testing.T) {
	t.Parallel()
	s := newPartitionedScenario(t)

	out := cliOK(t, "info", "-partitions", "4", "-json", s.base)

	var info partitionedJSON
	require.NoError(t, json.Unmarshal([]byte(out), &info), out)
	assert.Equal(t, s.base, info.Stream)
	assert.Equal(t, int64(6), info.Length)
	assert.Equal(t, int64(2), info.DeadLetterLength)
	assert.Empty(t, info.DeadLetterKey, "the base name has no dead-letter stream")
	assert.Empty(t, info.FirstID)
	groups := map[string]groupJSON{}
	for _, g := range info.Groups {
		groups[g.Name] = g
	}
	require.Len(t, groups, 2)
	assert.Equal(t, int64(2), groups["billing"].Lag)
	assert.Equal(t, int64(3), groups["billing"].Pending)
	assert.GreaterOrEqual(t, groups["billing"].OldestPendingAgeMs, int64(0))
	assert.Less(t, groups["billing"].OldestPendingAgeMs, int64(time.Minute/time.Millisecond))
	require.Len(t, groups["billing"].Consumers, 1)
	assert.Equal(t, int64(3), groups["billing"].Consumers[0].Pending)

	require.Len(t, info.Partitions, 4)
	assert.Nil(t, info.Partitions[2], "a partition not created yet is null")
	for _, i := range []int{0, 1, 3} {
		p := info.Partitions[i]
		require.NotNil(t, p, "partition %d", i)
		assert.Equal(t, s.parts[i], p.Stream)
		assert.Equal(t, int64(len(s.ids[i])), p.Length)
		assert.Equal(t, s.ids[i][0], p.FirstID)
		assert.Equal(t, redstream.DeadLetterKey(s.parts[i]), p.DeadLetterKey)
	}
	assert.Equal(t, int64(1), info.Partitions[3].DeadLetterLength)
	assert.Equal(t, s.ids[0][1], info.Partitions[0].Groups[1].OldestPendingID)

	// The keys: those of info -json, plus "partitions", whose elements
	// have the keys of info -json.
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &raw))
	streamKeys := []string{"stream", "length", "first_id", "first_time", "last_id", "last_time",
		"last_generated_id", "dead_letter_key", "dead_letter_length", "groups", "scheduled", "next_due"}
	assert.ElementsMatch(t, append(streamKeys, "partitions"), keysOf(raw))
	parts := raw["partitions"].([]any)
	assert.Nil(t, parts[2])
	assert.ElementsMatch(t, streamKeys, keysOf(parts[0].(map[string]any)))
}

func TestPartitionedGroups(t *testing.T) {
	t.Parallel()
	s := newPartitionedScenario(t)

	out := cliOK(t, "groups", s.base, "-partitions", "4")
	assert.NotContains(t, out, "length")
	assert.NotContains(t, out, "PARTITION")
	assert.Equal(t, []string{"billing", "2", "3"}, rowOf(out, "billing")[:3])

	var groups []groupJSON
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "groups", s.base, "-partitions", "4", "-json")), &groups))
	require.Len(t, groups, 2)
	assert.Equal(t, "billing", groups[1].Name)
	assert.Equal(t, int64(2), groups[1].Lag)
	assert.Equal(t, int64(3), groups[1].Pending)
}

func TestPartitionedTrim(t *testing.T) {
	t.Parallel()
	s := newPartitionedScenario(t)
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	lengths := func() []int64 {
		out := make([]int64, len(s.parts))
		for i, p := range s.parts {
			out[i] = rdb.XLen(ctx, p).Val()
		}
		return out
	}

	// Only p0's first entry is consumed by every group of its partition.
	assert.Equal(t, "removed 1 entry\n", cliOK(t, "trim", s.base, "-partitions", "4", "-safe"))
	assert.Equal(t, []int64{2, 1, 0, 2}, lengths())
	assert.Equal(t, s.ids[0][1], rdb.XRangeN(ctx, s.parts[0], "-", "+", 1).Val()[0].ID)

	// -maxlen applies to each partition, and stops at what billing needs.
	assert.Equal(t, "removed 0 entries\n", cliOK(t, "trim", s.base, "-partitions", "4", "-maxlen", "1"))
	assert.Equal(t, "removed 2 entries\ndropped 2 unconsumed entries\n",
		cliOK(t, "trim", s.base, "-partitions", "4", "-maxlen", "1", "-allow-unconsumed"))
	assert.Equal(t, []int64{1, 1, 0, 1}, lengths())
	assert.Zero(t, rdb.Exists(ctx, s.parts[2]).Val(), "trim creates no partition")
}

func TestPartitionedDeadLetters(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	base := uniqueStream(t)
	parts, err := redstream.Partitions(base, 4)
	require.NoError(t, err)
	deadKeys := make([]string, len(parts))
	for i, p := range parts {
		deadKeys[i] = redstream.DeadLetterKey(p)
	}
	p, err := redstream.NewProducer[redstream.Fields](rdb, base, redstream.WithPartitions(4))
	require.NoError(t, err)
	for i := range 8 {
		_, err := p.Publish(ctx, redstream.Fields{"n": strconv.Itoa(i)}) // without a key: the partitions in turn
		require.NoError(t, err)
	}
	for _, part := range parts {
		require.Equal(t, int64(2), rdb.XLen(ctx, part).Val())
	}
	deadLetterVia(t, rdb, base, deadKeys, 8, redstream.WithPartitions(4))

	// list, as a table: every partition's dead letters, in partition order,
	// each row naming its partition.
	out := cliOK(t, "dlq", "list", base, "-partitions", "4")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 10, out)
	assert.Regexp(t, `^STREAM +ID +DEAD-LETTERED +ORIGIN ID +GROUP +CONSUMER +DELIVERIES +REASON +ERROR +FIELDS$`, lines[0])
	row := regexp.MustCompile(`^(\S+) +\d+-\d+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC +(\d+-\d+) +billing +worker-1 +1 +handler +entry (\d) is poison: .* n=(\d)$`)
	for i, line := range lines[1:9] {
		m := row.FindStringSubmatch(line)
		require.NotNil(t, m, "line %q", line)
		assert.Equal(t, parts[i/2], m[1], "line %q", line)
		assert.Equal(t, m[3], m[4], "line %q", line)
		assert.Len(t, rdb.XRangeN(ctx, m[1], m[2], m[2], 1).Val(), 1, "the origin %s is in %s", m[2], m[1])
	}
	assert.Equal(t, "8 of 8 dead letters of the 4 partitions of "+base+" (at most 20 of each), oldest first", lines[9])

	// A page of each partition, and how to see the next one.
	out = cliOK(t, "dlq", "list", base, "-partitions", "4", "-n", "1", "-newest")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 10, out)
	assert.Equal(t, "4 of 8 dead letters of the 4 partitions of "+base+" (at most 1 of each), newest first", lines[5])
	for i, part := range parts {
		assert.Regexp(t, `^more: redstream dlq list `+regexp.QuoteMeta(part)+` -newest -n 1 -after \d+-\d+$`, lines[6+i])
	}

	// As JSON: each dead letter's stream is its partition.
	var page partitionDeadLettersJSON
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "dlq", "list", base, "-partitions", "4", "-n", "1", "-json")), &page))
	require.Len(t, page.DeadLetters, 4)
	require.Len(t, page.Partitions, 4)
	assert.Empty(t, page.Next)
	for i, part := range parts {
		assert.Equal(t, part, page.DeadLetters[i].Stream)
		assert.Equal(t, redstream.ReasonHandler, page.DeadLetters[i].Reason)
		assert.Equal(t, partitionPageJSON{Stream: part, DeadLetterKey: deadKeys[i], DeadLetterLength: 2, Next: page.DeadLetters[i].ID}, page.Partitions[i])
	}
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "dlq", "list", base, "-partitions", "4", "-json")), &raw))
	assert.ElementsMatch(t, []string{"dead_letters", "next", "partitions"}, keysOf(raw))
	assert.Len(t, raw["dead_letters"], 8)

	// The way out that delete's refusal points to: the partition stream.
	assert.Equal(t, "deleted 1 of 1 dead letter of "+parts[1]+"\n", cliOK(t, "dlq", "delete", parts[1], "-id", page.DeadLetters[1].ID))

	// purge asks first, with the summed count.
	r := cli(t, "-addr", redistest.Addr(t), "dlq", "purge", base, "-partitions", "4")
	requireOneErrorLine(t, r)
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "would delete 7 dead letters of the 4 partitions of "+base+" ("+deadKeys[0]+" to "+deadKeys[3]+")")

	// replay puts each dead letter back on its own partition.
	assert.Equal(t, "replayed 7 dead letters to the 4 partitions of "+base+"\n", cliOK(t, "dlq", "replay", base, "-partitions", "4", "-all", "-rate", "1000"))
	for i, part := range parts {
		want := int64(4)
		if i == 1 {
			want = 3 // its deleted dead letter is gone
		}
		assert.Equal(t, want, rdb.XLen(ctx, part).Val(), part)
		assert.Zero(t, rdb.XLen(ctx, deadKeys[i]).Val(), deadKeys[i])
	}
	assert.Equal(t, "no dead letters for the 4 partitions of "+base+" ("+deadKeys[0]+" to "+deadKeys[3]+")\n",
		cliOK(t, "dlq", "list", base, "-partitions", "4"))

	// purge -yes empties every partition's dead-letter stream.
	for _, i := range []int{0, 2, 2} {
		require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: deadKeys[i], Values: []string{"n", "1"}}).Err())
	}
	assert.Equal(t, "purged 3 dead letters of the 4 partitions of "+base+" ("+deadKeys[0]+" to "+deadKeys[3]+")\n",
		cliOK(t, "dlq", "purge", base, "-partitions", "4", "-yes"))
	for _, key := range deadKeys {
		assert.Zero(t, rdb.Exists(ctx, key).Val(), key)
	}
}

func TestPartitionedErrors(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	s := newPartitionedScenario(t)
	// A stream that is not partitioned, and one whose p1 is not a stream.
	plain := uniqueStream(t)
	addEntries(t, rdb, plain, 1)
	odd := uniqueStream(t)
	addEntries(t, rdb, odd+":p0", 1)
	require.NoError(t, rdb.Set(ctx, odd+":p1", "x", time.Minute).Err())
	const missing = "no:such:stream"
	noPartition := "stream no:such:stream does not exist: none of its 4 partitions (no:such:stream:p0 to no:such:stream:p3) exists"

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"zero", []string{"info", s.base, "-partitions", "0"}, 2, `invalid value "0" for flag -partitions: want a number of partitions from 1 to 1024; leave -partitions out for a stream that is not partitioned`},
		{"negative", []string{"groups", s.base, "-partitions", "-1"}, 2, `invalid value "-1" for flag -partitions: want a number of partitions from 1 to 1024`},
		{"too many", []string{"trim", s.base, "-safe", "-partitions", "1025"}, 2, `invalid value "1025" for flag -partitions: want a number of partitions from 1 to 1024`},
		{"not a number", []string{"dlq", "list", s.base, "-partitions", "four"}, 2, `invalid value "four" for flag -partitions`},
		{"hash tag", []string{"info", "orders:{eu}", "-partitions", "4"}, 2, `"orders:{eu}" has the hash tag {eu}: its partitions would all share one cluster slot`},
		{"delete", []string{"dlq", "delete", s.base, "-partitions", "4", "-id", "1-0"}, 2,
			"dlq delete: a dead letter's ID belongs to one partition: name the partition stream (such as " + s.base + ":p3) instead of giving -partitions"},
		{"replay by ID", []string{"dlq", "replay", s.base, "-partitions", "4", "-id", "1-0"}, 2, "dlq replay: a dead letter's ID belongs to one partition"},
		{"list -after", []string{"dlq", "list", s.base, "-partitions", "4", "-after", "1-0"}, 2, "dlq list: -after pages through the dead letters of one partition"},
		{"no partition: info", []string{"info", missing, "-partitions", "4"}, 1, noPartition},
		{"no partition: groups", []string{"groups", missing, "-partitions", "4"}, 1, noPartition},
		{"no partition: dlq list", []string{"dlq", "list", missing, "-partitions", "4"}, 1, noPartition},
		{"no partition: dlq replay", []string{"dlq", "replay", missing, "-partitions", "4", "-all"}, 1, noPartition},
		{"one partition", []string{"info", missing, "-partitions", "1"}, 1, "none of its 1 partition (no:such:stream:p0) exists"},
		{"not partitioned", []string{"info", plain, "-partitions", "4"}, 1, plain + " is a stream that is not partitioned: leave out -partitions"},
		{"partition not a stream: info", []string{"info", odd, "-partitions", "2"}, 1, odd + ":p1 is a string, not a stream"},
		{"partition not a stream: trim", []string{"trim", odd, "-partitions", "2", "-safe"}, 1, odd + ":p1 is a string, not a stream"},
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

	// Usage errors come before Redis is called.
	r := cli(t, "-addr", closedAddr(t), "dlq", "delete", s.base, "-partitions", "4", "-id", "1-0")
	requireOneErrorLine(t, r)
	assert.Equal(t, 2, r.code)
	assert.Equal(t, int64(1), rdb.XLen(ctx, redstream.DeadLetterKey(s.parts[1])).Val())
}

func TestPartitionsHelp(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"info", "groups", "trim", "dlq list", "dlq replay", "dlq purge"} {
		r := cli(t, append([]string{"help"}, strings.Fields(name)...)...)
		require.Equal(t, 0, r.code, name)
		assert.Contains(t, r.stdout, "[-partitions N]", name)
		assert.Contains(t, r.stdout, "With -partitions N, STREAM is the base name of a partitioned stream", name)
		assert.Contains(t, r.stdout, "  -partitions N\n", name)
		assert.Regexp(t, `(?m)^  redstream `+name+` .*-partitions \d+`, r.stdout, name)
	}
	r := cli(t, "help", "dlq", "delete")
	require.Equal(t, 0, r.code)
	assert.Contains(t, r.stdout, "name the partition stream as STREAM")
}

// TestPartitionsOnCluster runs the partitioned commands against a real
// Redis Cluster, where the partitions, and their dead-letter streams, lie
// on different masters.
func TestPartitionsOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	t.Parallel()
	cl := redistest.StartCluster(t)
	rdb := cl.Client(t)
	ctx := testCtx(t)
	seeds := strings.Join(cl.Addrs(), ",")
	run := func(args ...string) result {
		t.Helper()
		return cli(t, append([]string{"-cluster", seeds}, args...)...)
	}
	ok := func(args ...string) string {
		t.Helper()
		r := run(args...)
		require.Equal(t, 0, r.code, "redstream %s: stderr %q", strings.Join(args, " "), r.stderr)
		require.Empty(t, r.stderr)
		return r.stdout
	}

	const n = 8
	base := uniqueStream(t)
	parts, err := redstream.Partitions(base, n)
	require.NoError(t, err)
	masters := map[string]bool{}
	deadKeys := make([]string, n)
	for i, part := range parts {
		addr, err := cl.MasterForKey(ctx, part)
		require.NoError(t, err)
		masters[addr] = true
		deadKeys[i] = redstream.DeadLetterKey(part)
	}
	require.Greater(t, len(masters), 1, "the partitions must span masters for this test to mean anything")
	p, err := redstream.NewProducer[redstream.Fields](rdb, base, redstream.WithPartitions(n))
	require.NoError(t, err)
	for i := range 2 * n {
		_, err := p.Publish(ctx, redstream.Fields{"n": strconv.Itoa(i % 10)})
		require.NoError(t, err)
	}
	deadLetterVia(t, rdb, base, deadKeys, 2*n, redstream.WithPartitions(n))

	// The partition leases lie on different masters too.
	for i, part := range parts {
		require.NoError(t, rdb.Set(ctx, "{"+part+"}:redstream-lease:billing", "worker-"+strconv.Itoa(i), time.Minute).Err())
	}
	var info partitionedJSON
	require.NoError(t, json.Unmarshal([]byte(ok("info", base, "-partitions", strconv.Itoa(n), "-json")), &info))
	assert.Equal(t, int64(2*n), info.Length)
	assert.Equal(t, int64(2*n), info.DeadLetterLength)
	require.Len(t, info.Partitions, n)
	for i, pj := range info.Partitions {
		require.NotNil(t, pj, parts[i])
		assert.Equal(t, int64(2), pj.Length, parts[i])
		require.Len(t, pj.Groups, 1, parts[i])
		assert.Equal(t, "worker-"+strconv.Itoa(i), pj.Groups[0].Owner, parts[i])
	}

	out := ok("dlq", "list", base, "-partitions", strconv.Itoa(n))
	for _, part := range parts {
		assert.Equal(t, 2, strings.Count(out, "\n"+part+" "), "rows of %s in %q", part, out)
	}
	assert.Equal(t, "removed 16 entries\n", ok("trim", base, "-partitions", strconv.Itoa(n), "-safe"))
	assert.Equal(t, "replayed 16 dead letters to the 8 partitions of "+base+"\n", ok("dlq", "replay", base, "-partitions", strconv.Itoa(n), "-all"))
	assert.Equal(t, "purged 0 dead letters of the 8 partitions of "+base+" ("+deadKeys[0]+" to "+deadKeys[n-1]+")\n",
		ok("dlq", "purge", base, "-partitions", strconv.Itoa(n), "-yes"))

	r := run("info", "no:such:stream", "-partitions", strconv.Itoa(n))
	requireOneErrorLine(t, r)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "stream no:such:stream does not exist: none of its 8 partitions")
	r = run("dlq", "list", "no:such:stream", "-partitions", strconv.Itoa(n))
	requireOneErrorLine(t, r)
	assert.Contains(t, r.stderr, "stream no:such:stream does not exist: none of its 8 partitions")
}
