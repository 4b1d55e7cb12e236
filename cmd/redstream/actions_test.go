package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/redistest"
)

// cliFails runs args against the test server and requires the exit code
// code and one error line containing want.
func cliFails(t *testing.T, code int, want string, args ...string) result {
	t.Helper()
	r := cli(t, append([]string{"-addr", redistest.Addr(t)}, args...)...)
	requireOneErrorLine(t, r)
	assert.Equal(t, code, r.code, "redstream %s", strings.Join(args, " "))
	assert.Contains(t, r.stderr, want)
	return r
}

// owners maps each pending ID of group to its consumer.
func owners(t *testing.T, rdb redis.UniversalClient, stream, group string) map[string]string {
	t.Helper()
	p, err := rdb.XPendingExt(testCtx(t), &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 100}).Result()
	require.NoError(t, err)
	out := map[string]string{}
	for _, e := range p {
		out[e.ID] = e.Consumer
	}
	return out
}

func lastDelivered(t *testing.T, rdb redis.UniversalClient, stream, group string) string {
	t.Helper()
	for _, g := range rdb.XInfoGroups(testCtx(t), stream).Val() {
		if g.Name == group {
			return g.LastDeliveredID
		}
	}
	t.Fatalf("no group %s", group)
	return ""
}

func TestPendingAck(t *testing.T) {
	t.Parallel()
	s := newScenario(t) // billing: ids[1], ids[2] pending for c1
	rdb := redistest.Client(t)

	assert.Equal(t, "acknowledged 1 of 1 entry of group billing of "+s.stream+"\n",
		cliOK(t, "pending", "ack", s.stream, "-group", "billing", s.ids[1]))
	assert.Equal(t, map[string]string{s.ids[2]: "c1"}, owners(t, rdb, s.stream, "billing"))

	// One not pending: the other is acknowledged, the command fails.
	r := cliFails(t, 1, "entry "+s.ids[1]+" is not pending in group billing of "+s.stream,
		"pending", "ack", s.stream, "-group", "billing", s.ids[1], s.ids[2])
	assert.Equal(t, "acknowledged 1 of 2 entries of group billing of "+s.stream+"\n", r.stdout)
	assert.Empty(t, owners(t, rdb, s.stream, "billing"))
}

func TestPendingDeadLetter(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rdb := redistest.Client(t)

	assert.Equal(t, "dead-lettered 2 of 2 entries of group billing of "+s.stream+"\n",
		cliOK(t, "pending", "dead-letter", s.stream, "-group", "billing", s.ids[1], s.ids[2]))
	assert.Empty(t, owners(t, rdb, s.stream, "billing"), "acknowledged with the move")

	var page deadLettersJSON
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "dlq", "list", s.stream, "-json")), &page))
	require.Len(t, page.DeadLetters, 3) // the scenario's own, then ours
	for i, d := range page.DeadLetters[1:] {
		assert.Equal(t, s.ids[1+i], d.OriginID)
		assert.Equal(t, redstream.ReasonOperator, d.Reason)
		assert.Equal(t, "c1", d.Consumer)
		assert.Equal(t, int64(1), d.Deliveries)
		assert.Equal(t, "billing", d.Group)
	}
	assert.Equal(t, map[string]string{"n": "1", "note": "entry 1"}, page.DeadLetters[1].Fields)

	// The move happens once.
	r := cliFails(t, 1, "is not pending", "pending", "dead-letter", s.stream, "-group", "billing", s.ids[1])
	assert.Equal(t, "dead-lettered 0 of 1 entry of group billing of "+s.stream+"\n", r.stdout)
	assert.Equal(t, int64(3), rdb.XLen(testCtx(t), redstream.DeadLetterKey(s.stream)).Val())
}

func TestPendingClaim(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rdb := redistest.Client(t)

	assert.Equal(t, "claimed 1 of 1 entry of group billing of "+s.stream+" to consumer c2\n",
		cliOK(t, "pending", "claim", s.stream, "-group", "billing", "-consumer", "c2", s.ids[2]))
	assert.Equal(t, map[string]string{s.ids[1]: "c1", s.ids[2]: "c2"}, owners(t, rdb, s.stream, "billing"))

	cliFails(t, 2, "pending claim: -consumer is required", "pending", "claim", s.stream, "-group", "billing", s.ids[2])
}

func TestGroupCreateSetIDDestroy(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rdb := redistest.Client(t)
	ctx := testCtx(t)

	assert.Equal(t, "created group replay of "+s.stream+": it is delivered the whole stream (0)\n",
		cliOK(t, "group", "create", s.stream, "-group", "replay", "-id", "0"))
	assert.Equal(t, "0-0", lastDelivered(t, rdb, s.stream, "replay"))
	assert.Equal(t, "created group live of "+s.stream+": it is delivered new entries only ($)\n",
		cliOK(t, "group", "create", s.stream, "-group", "live"))
	assert.Equal(t, s.ids[4], lastDelivered(t, rdb, s.stream, "live"))
	t2, _ := idTime(s.ids[2])
	out := cliOK(t, "group", "create", s.stream, "-group", "from-time", "-time", t2.UTC().Format(time.RFC3339Nano))
	assert.Equal(t, "created group from-time of "+s.stream+": it is delivered the entries from "+fmtTime(t2)+" on\n", out)
	assert.Equal(t, redstream.GroupStartAt(t2), lastDelivered(t, rdb, s.stream, "from-time"))
	cliFails(t, 1, "group billing of stream "+s.stream+" exists already", "group", "create", s.stream, "-group", "billing")

	// setid: nothing moves without -yes.
	r := cliFails(t, 2, "group setid: would move group billing of "+s.stream+", now past "+s.ids[2]+" with 2 pending entries, to deliver the whole stream (0); add -yes",
		"group", "setid", s.stream, "-group", "billing", "-id", "0")
	assert.Empty(t, r.stdout)
	assert.Equal(t, s.ids[2], lastDelivered(t, rdb, s.stream, "billing"))
	assert.Equal(t, "moved group billing of "+s.stream+": it is delivered the whole stream (0)\n",
		cliOK(t, "group", "setid", s.stream, "-group", "billing", "-id", "0", "-yes"))
	assert.Equal(t, "0-0", lastDelivered(t, rdb, s.stream, "billing"))
	assert.Len(t, owners(t, rdb, s.stream, "billing"), 2, "pending entries stay pending")
	cliOK(t, "group", "setid", s.stream, "-group", "billing", "-time", t2.Format(time.RFC3339Nano), "-yes")
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "c1", Streams: []string{s.stream, ">"}, Block: -1}).Result()
	require.NoError(t, err)
	var read []string
	for _, m := range res[0].Messages {
		read = append(read, m.ID)
	}
	// Entries of the same millisecond as ids[2] come again too.
	assert.Contains(t, read, s.ids[2])
	assert.Equal(t, s.ids[4], read[len(read)-1])

	// destroy: nothing goes without -yes.
	cliFails(t, 2, "group destroy: would delete group audit of "+s.stream+" with 0 consumers and 0 pending entries; add -yes",
		"group", "destroy", s.stream, "-group", "audit")
	assert.Len(t, rdb.XInfoGroups(ctx, s.stream).Val(), 5)
	pending := rdb.XPending(ctx, s.stream, "billing").Val().Count
	assert.Equal(t, "deleted group billing of "+s.stream+" and its "+plural(pending, "pending entry", "pending entries")+"\n",
		cliOK(t, "group", "destroy", s.stream, "-group", "billing", "-yes"))
	assert.Len(t, rdb.XInfoGroups(ctx, s.stream).Val(), 4)
	assert.Equal(t, int64(5), rdb.XLen(ctx, s.stream).Val(), "the entries stay")
}

func TestConsumersDelete(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rdb := redistest.Client(t)
	deliver(t, rdb, s.stream, "billing", "c2", 1) // ids[3]

	assert.Equal(t, "moved 2 pending entries of consumer c1 to c2\ndeleted consumer c1 from group billing of "+s.stream+"\n",
		cliOK(t, "consumers", "delete", s.stream, "-group", "billing", "-consumer", "c1"))
	assert.Equal(t, map[string]string{s.ids[1]: "c2", s.ids[2]: "c2", s.ids[3]: "c2"}, owners(t, rdb, s.stream, "billing"))

	assert.Equal(t, "moved 3 pending entries of consumer c2 to standby\ndeleted consumer c2 from group billing of "+s.stream+"\n",
		cliOK(t, "consumers", "delete", s.stream, "-group", "billing", "-consumer", "c2", "-to", "standby"))
	consumers := rdb.XInfoConsumers(testCtx(t), s.stream, "billing").Val()
	require.Len(t, consumers, 1)
	assert.Equal(t, "standby", consumers[0].Name)
	assert.Equal(t, int64(3), consumers[0].Pending)

	// The last consumer with pending entries has no heir: nothing is dropped.
	cliFails(t, 1, "standby holds pending entries and group billing of "+s.stream+" has no other consumer to take them",
		"consumers", "delete", s.stream, "-group", "billing", "-consumer", "standby")
	assert.Len(t, owners(t, rdb, s.stream, "billing"), 3)
	cliFails(t, 1, "consumer c1 of group billing of stream "+s.stream+" does not exist",
		"consumers", "delete", s.stream, "-group", "billing", "-consumer", "c1")
}

// TestActionErrors runs every action into each error it must report, and
// checks that none changed anything.
func TestActionErrors(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	missing := s.stream + ":missing"
	id := s.ids[1]
	pendingBefore := owners(t, rdb, s.stream, "billing")
	groupsBefore := rdb.XInfoGroups(ctx, s.stream).Val()

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ack: missing stream", []string{"pending", "ack", missing, "-group", "billing", id}, 1, "stream " + missing + " does not exist"},
		{"ack: unknown group", []string{"pending", "ack", s.stream, "-group", "nope", id}, 1, "group nope of stream " + s.stream + " does not exist"},
		{"ack: not pending", []string{"pending", "ack", s.stream, "-group", "billing", s.ids[0]}, 1, "entry " + s.ids[0] + " is not pending in group billing"},
		{"ack: no IDs", []string{"pending", "ack", s.stream, "-group", "billing"}, 2, "pending ack: missing ID..."},
		{"ack: bad ID", []string{"pending", "ack", s.stream, "-group", "billing", "12x"}, 2, `pending ack: ID "12x" is not a stream entry ID`},
		{"ack: no group", []string{"pending", "ack", s.stream, id}, 2, "pending ack: -group is required"},
		{"dead-letter: missing stream", []string{"pending", "dead-letter", missing, "-group", "billing", id}, 1, "stream " + missing + " does not exist"},
		{"dead-letter: unknown group", []string{"pending", "dead-letter", s.stream, "-group", "nope", id}, 1, "group nope of stream " + s.stream + " does not exist"},
		{"dead-letter: not pending", []string{"pending", "dead-letter", s.stream, "-group", "audit", id}, 1, "entry " + id + " is not pending in group audit"},
		{"claim: missing stream", []string{"pending", "claim", missing, "-group", "billing", "-consumer", "c2", id}, 1, "stream " + missing + " does not exist"},
		{"claim: unknown group", []string{"pending", "claim", s.stream, "-group", "nope", "-consumer", "c2", id}, 1, "group nope of stream " + s.stream + " does not exist"},
		{"claim: not pending", []string{"pending", "claim", s.stream, "-group", "billing", "-consumer", "c2", s.ids[4]}, 1, "entry " + s.ids[4] + " is not pending"},
		{"create: missing stream", []string{"group", "create", missing, "-group", "g"}, 1, "stream " + missing + " does not exist"},
		{"create: -id and -time", []string{"group", "create", s.stream, "-group", "g", "-id", "0", "-time", "2024-05-01T00:00:00Z"}, 2, "give -id or -time, not both"},
		{"create: bad -time", []string{"group", "create", s.stream, "-group", "g", "-time", "yesterday"}, 2, `-time "yesterday": want RFC 3339`},
		{"create: bad -id", []string{"group", "create", s.stream, "-group", "g", "-id", "now"}, 2, `-id "now" is not a stream entry ID`},
		{"setid: missing stream", []string{"group", "setid", missing, "-group", "billing", "-id", "0", "-yes"}, 1, "stream " + missing + " does not exist"},
		{"setid: missing stream, unconfirmed", []string{"group", "setid", missing, "-group", "billing", "-id", "0"}, 1, "stream " + missing + " does not exist"},
		{"setid: unknown group", []string{"group", "setid", s.stream, "-group", "nope", "-id", "0", "-yes"}, 1, "group nope of stream " + s.stream + " does not exist"},
		{"setid: unknown group, unconfirmed", []string{"group", "setid", s.stream, "-group", "nope", "-id", "0"}, 1, "group nope of stream " + s.stream + " does not exist"},
		{"setid: no position", []string{"group", "setid", s.stream, "-group", "billing", "-yes"}, 2, "give -id ID (or $ or 0) or -time TIME"},
		{"setid: unconfirmed", []string{"group", "setid", s.stream, "-group", "billing", "-id", "$"}, 2, "add -yes to move it"},
		{"destroy: missing stream", []string{"group", "destroy", missing, "-group", "billing", "-yes"}, 1, "stream " + missing + " does not exist"},
		{"destroy: unknown group", []string{"group", "destroy", s.stream, "-group", "nope", "-yes"}, 1, "group nope of stream " + s.stream + " does not exist"},
		{"destroy: unconfirmed", []string{"group", "destroy", s.stream, "-group", "billing"}, 2, "would delete group billing of " + s.stream + " with 1 consumer and 2 pending entries; add -yes"},
		{"destroy: no group", []string{"group", "destroy", s.stream, "-yes"}, 2, "group destroy: -group is required"},
		{"delete consumer: missing stream", []string{"consumers", "delete", missing, "-group", "billing", "-consumer", "c1"}, 1, "stream " + missing + " does not exist"},
		{"delete consumer: unknown group", []string{"consumers", "delete", s.stream, "-group", "nope", "-consumer", "c1"}, 1, "group nope of stream " + s.stream + " does not exist"},
		{"delete consumer: unknown consumer", []string{"consumers", "delete", s.stream, "-group", "billing", "-consumer", "c9"}, 1, "consumer c9 of group billing of stream " + s.stream + " does not exist"},
		{"delete consumer: to itself", []string{"consumers", "delete", s.stream, "-group", "billing", "-consumer", "c1", "-to", "c1"}, 2, "-to names the consumer being deleted"},
		{"delete consumer: no consumer", []string{"consumers", "delete", s.stream, "-group", "billing"}, 2, "consumers delete: -consumer is required"},
		{"group alone", []string{"group"}, 2, "group needs a subcommand: create, setid, destroy"},
		{"consumers alone", []string{"consumers"}, 2, "consumers needs a subcommand: delete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := cliFails(t, tc.code, tc.want, tc.args...)
			if tc.code == 2 {
				assert.Empty(t, r.stdout)
			}
		})
	}
	t.Cleanup(func() {
		// After every subtest: nothing changed.
		assert.Equal(t, pendingBefore, owners(t, rdb, s.stream, "billing"))
		assert.Equal(t, groupsBefore, rdb.XInfoGroups(ctx, s.stream).Val())
		assert.Equal(t, int64(1), rdb.XLen(ctx, redstream.DeadLetterKey(s.stream)).Val())
	})
}

// TestPassword runs the actions against a server that requires a
// password: right from -password or REDIS_PASSWORD, wrong, or missing. The
// password is never printed.
func TestPassword(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-operator-pw"
	srv := redistest.Start(t, "--requirepass", secret)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: secret})
	t.Cleanup(func() { _ = rdb.Close() })
	stream := uniqueStream(t)
	ids := addEntries(t, rdb, stream, 3)
	require.NoError(t, rdb.XGroupCreate(testCtx(t), stream, "billing", "0").Err())
	deliver(t, rdb, stream, "billing", "c1", 3)

	runWith := func(env map[string]string, args ...string) result {
		var stdout, stderr bytes.Buffer
		code := newApp(&stdout, &stderr, func(k string) string { return env[k] }).main(testCtx(t), append([]string{"-addr", srv.Addr()}, args...))
		r := result{stdout: stdout.String(), stderr: stderr.String(), code: code}
		assert.NotContains(t, r.stdout+r.stderr, secret)
		assert.NotContains(t, r.stdout+r.stderr, "wrong-"+secret)
		return r
	}
	actions := [][]string{
		{"pending", "ack", stream, "-group", "billing", ids[0]},
		{"pending", "dead-letter", stream, "-group", "billing", ids[1]},
		{"pending", "claim", stream, "-group", "billing", "-consumer", "c2", ids[2]},
		{"group", "create", stream, "-group", "audit", "-id", "0"},
		{"group", "setid", stream, "-group", "audit", "-id", "$", "-yes"},
		{"consumers", "delete", stream, "-group", "billing", "-consumer", "c2", "-to", "c3"},
		{"group", "destroy", stream, "-group", "audit", "-yes"},
	}
	for _, args := range actions {
		for _, wrong := range []struct {
			flags []string
			env   map[string]string
			want  string
		}{
			{[]string{"-password", "wrong-" + secret}, nil, "WRONGPASS"},
			{nil, map[string]string{"REDIS_PASSWORD": "wrong-" + secret}, "WRONGPASS"},
			{nil, nil, "NOAUTH"},
		} {
			r := runWith(wrong.env, append(wrong.flags, args...)...)
			requireOneErrorLine(t, r)
			assert.Equal(t, 1, r.code, "%q", args)
			assert.Contains(t, r.stderr, "cannot connect to "+srv.Addr())
			assert.Contains(t, r.stderr, wrong.want)
		}
	}
	// The flag and the environment both work; the flag wins.
	for i, args := range actions {
		env := map[string]string{"REDIS_PASSWORD": secret}
		if i%2 == 0 {
			env = map[string]string{"REDIS_PASSWORD": "wrong"}
			args = append([]string{"-password", secret}, args...)
		}
		r := runWith(env, args...)
		require.Equal(t, 0, r.code, "%q: %s", args, r.stderr)
	}
	assert.Equal(t, map[string]string{ids[2]: "c3"}, owners(t, rdb, stream, "billing"))
	assert.Equal(t, int64(1), rdb.XLen(testCtx(t), redstream.DeadLetterKey(stream)).Val())

	r := runWith(nil, "-h")
	assert.Contains(t, r.stdout, "-password")
}

func TestTailNoFollow(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	stream := uniqueStream(t)
	ids := addEntries(t, rdb, stream, 12)

	lines := strings.Split(strings.TrimSuffix(cliOK(t, "tail", stream, "-n", "3", "-no-follow"), "\n"), "\n")
	require.Len(t, lines, 3)
	for i, line := range lines {
		assert.True(t, strings.HasPrefix(line, ids[9+i]+"  "), "line %q", line)
	}
	lines = strings.Split(strings.TrimSuffix(cliOK(t, "tail", stream, "-no-follow"), "\n"), "\n")
	require.Len(t, lines, 10, "10 by default")
	assert.True(t, strings.HasPrefix(lines[0], ids[2]+"  "))
	lines = strings.Split(strings.TrimSuffix(cliOK(t, "tail", stream, "-no-follow", "-from", ids[4], "-n", "2"), "\n"), "\n")
	require.Len(t, lines, 2)
	assert.True(t, strings.HasPrefix(lines[0], ids[5]+"  "))
	assert.Empty(t, cliOK(t, "tail", stream, "-no-follow", "-from", "$"))

	var e entryJSON
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "tail", stream, "-no-follow", "-n", "1", "-json")), &e))
	assert.Equal(t, ids[11], e.ID)

	cliFails(t, 1, "stream no:such:stream does not exist", "tail", "no:such:stream", "-no-follow")
}

// TestNothingToRemoveIsNoError: trim and dlq purge of what does not exist
// (a stream, or every partition of one) succeed and say so, as the
// library's Trim does.
func TestNothingToRemoveIsNoError(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rdb := redistest.Client(t)
	require.NoError(t, rdb.Del(testCtx(t), redstream.DeadLetterKey(s.stream)).Err())

	assert.Equal(t, "no dead letters to purge for "+s.stream+" ("+redstream.DeadLetterKey(s.stream)+")\n", cliOK(t, "dlq", "purge", s.stream))
	assert.Equal(t, "purged 0 dead letters of "+s.stream+" ("+redstream.DeadLetterKey(s.stream)+")\n", cliOK(t, "dlq", "purge", s.stream, "-yes"))
	assert.Equal(t, "no dead letters to purge: stream no:such:stream does not exist\n", cliOK(t, "dlq", "purge", "no:such:stream", "-yes"))
	assert.Contains(t, cliOK(t, "dlq", "purge", "no:such:stream", "-partitions", "2"), "no dead letters to purge: stream no:such:stream does not exist")

	assert.Equal(t, "removed 0 entries (stream no:such:stream does not exist)\n", cliOK(t, "trim", "no:such:stream", "-safe"))
	res, err := redstream.Trim(testCtx(t), rdb, "no:such:stream", redstream.TrimPolicy{})
	require.NoError(t, err, "the library agrees")
	assert.Zero(t, res.Removed)
	assert.Contains(t, cliOK(t, "trim", "no:such:stream", "-maxlen", "5", "-partitions", "3"), "removed 0 entries (stream no:such:stream does not exist")
	assert.Zero(t, rdb.Exists(testCtx(t), "no:such:stream").Val())
}
