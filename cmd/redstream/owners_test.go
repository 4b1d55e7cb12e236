package main

import (
	"context"
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/redistest"
)

// groupsByName indexes the groups of a JSON snapshot by name.
func groupsByName(groups []groupJSON) map[string]groupJSON {
	out := make(map[string]groupJSON, len(groups))
	for _, g := range groups {
		out[g.Name] = g
	}
	return out
}

func TestOwner(t *testing.T) {
	t.Parallel()
	// The lease keys are written by hand, as ownership.go names them, so a
	// slip in leaseKey shows here.
	tests := []struct {
		name   string
		tagged bool                       // the stream's name has a hash tag
		lease  func(stream string) string // the key of billing's lease on stream
	}{
		{"plain stream", false, func(stream string) string { return "{" + stream + "}:redstream-lease:billing" }},
		{"stream with a hash tag", true, func(stream string) string { return stream + ":redstream-lease:billing" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb := redistest.Client(t)
			ctx := testCtx(t)
			s := newScenario(t)
			if tt.tagged {
				tagged := "{" + s.stream + "}:tagged"
				require.NoError(t, rdb.Rename(ctx, s.stream, tagged).Err())
				s.stream = tagged
			}
			require.NoError(t, rdb.Set(ctx, tt.lease(s.stream), "consumer-a", time.Minute).Err())

			out := cliOK(t, "info", s.stream)
			assert.Regexp(t, regexp.MustCompile(`(?m)^GROUP +LAG .* +CONSUMERS +OWNER +PAUSED$`), out)
			assert.Equal(t, "consumer-a", rowOf(out, "billing")[8], "owner")
			assert.Equal(t, "-", rowOf(out, "audit")[8], "no lease in audit")

			var info streamJSON
			require.NoError(t, json.Unmarshal([]byte(cliOK(t, "info", s.stream, "-json")), &info))
			groups := groupsByName(info.Groups)
			assert.Equal(t, "consumer-a", groups["billing"].Owner)
			assert.Empty(t, groups["audit"].Owner)

			out = cliOK(t, "groups", s.stream)
			assert.Equal(t, "consumer-a", rowOf(out, "billing")[8], "owner")
			assert.Equal(t, "-", rowOf(out, "audit")[8], "no lease in audit")

			var list []groupJSON
			require.NoError(t, json.Unmarshal([]byte(cliOK(t, "groups", s.stream, "-json")), &list))
			groups = groupsByName(list)
			assert.Equal(t, "consumer-a", groups["billing"].Owner)
			assert.Empty(t, groups["audit"].Owner)

			// A lease gone (expired or released) shows as none again.
			require.NoError(t, rdb.Del(ctx, tt.lease(s.stream)).Err())
			assert.Equal(t, "-", rowOf(cliOK(t, "groups", s.stream), "billing")[8])
		})
	}
}

func TestOwnerNotAString(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	s := newScenario(t)
	key := "{" + s.stream + "}:redstream-lease:audit"
	require.NoError(t, rdb.RPush(testCtx(t), key, "x").Err())

	r := cli(t, "-addr", redistest.Addr(t), "info", s.stream)
	requireOneErrorLine(t, r)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "partition lease of group audit of stream "+s.stream+" ("+key+"): WRONGTYPE")
	assert.Empty(t, r.stdout)
}

func TestPartitionedOwner(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	s := newPartitionedScenario(t) // billing on p0, p1 and p3; audit on p0
	require.NoError(t, rdb.Set(ctx, "{"+s.parts[0]+"}:redstream-lease:billing", "consumer-a", time.Minute).Err())
	require.NoError(t, rdb.Set(ctx, "{"+s.parts[3]+"}:redstream-lease:billing", "consumer-b", time.Minute).Err())
	// A lease on a partition that does not exist yet is not shown: the
	// partition has no group.
	require.NoError(t, rdb.Set(ctx, "{"+s.parts[2]+"}:redstream-lease:billing", "consumer-c", time.Minute).Err())

	out := cliOK(t, "info", s.base, "-partitions", "4")
	assert.Equal(t, "-", rowOf(out, "billing")[8], "a sum has no owner")
	assert.Equal(t, []string{s.parts[0], "3", "0", "0", "0", "-", "1", "1", "consumer-a"}, rowOf(out, s.parts[0]))
	assert.Equal(t, []string{s.parts[1], "1", "1", "-", "-", "-", "1", "0", "-"}, rowOf(out, s.parts[1]))
	assert.Equal(t, []string{s.parts[2], "-", "-", "-", "-", "-", "-", "-", "-"}, rowOf(out, s.parts[2]))
	assert.Equal(t, []string{s.parts[3], "2", "1", "-", "-", "-", "0", "2", "consumer-b"}, rowOf(out, s.parts[3]))

	var info partitionedJSON
	require.NoError(t, json.Unmarshal([]byte(cliOK(t, "info", s.base, "-partitions", "4", "-json")), &info))
	for _, g := range info.Groups {
		assert.Empty(t, g.Owner, "a sum has no owner: group %s", g.Name)
	}
	require.Len(t, info.Partitions, 4)
	want := []map[string]string{{"billing": "consumer-a", "audit": ""}, {"billing": ""}, nil, {"billing": "consumer-b"}}
	for i, p := range info.Partitions {
		if want[i] == nil {
			assert.Nil(t, p, s.parts[i])
			continue
		}
		require.NotNil(t, p, s.parts[i])
		got := map[string]string{}
		for _, g := range p.Groups {
			got[g.Name] = g.Owner
		}
		assert.Equal(t, want[i], got, s.parts[i])
	}

	assert.Equal(t, "-", rowOf(cliOK(t, "groups", s.base, "-partitions", "4"), "billing")[8], "a sum has no owner")
}

// TestOwnerOfExclusiveConsumer checks the CLI against the leases a real
// consumer takes, so that the CLI's copy of the lease key cannot drift
// from the library's unnoticed.
func TestOwnerOfExclusiveConsumer(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	base := uniqueStream(t)
	parts, err := redstream.Partitions(base, 2)
	require.NoError(t, err)
	for _, part := range parts {
		addEntries(t, rdb, part, 1)
	}
	c, err := redstream.NewConsumer(rdb, "billing", redstream.WithGroupStart("0"), redstream.WithBlock(20*time.Millisecond),
		redstream.WithConsumerName("worker-1"))
	require.NoError(t, err)
	require.NoError(t, redstream.Handle(c, base, func(context.Context, *redstream.Message[redstream.Fields]) error { return nil },
		redstream.WithPartitions(2), redstream.WithExclusivePartitions()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	// Each partition's owner in group billing, "?" until the group exists.
	owners := func() []string {
		out := []string{"?", "?"}
		r := cli(t, "-addr", redistest.Addr(t), "info", base, "-partitions", "2", "-json")
		var info partitionedJSON
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil || len(info.Partitions) != 2 {
			return out
		}
		for i, p := range info.Partitions {
			if p != nil && len(p.Groups) == 1 {
				out[i] = p.Groups[0].Owner
			}
		}
		return out
	}
	var last []string
	require.Eventually(t, func() bool {
		last = owners()
		return last[0] == "worker-1" && last[1] == "worker-1"
	}, 10*time.Second, 20*time.Millisecond, "the owners never became worker-1")
	assert.Equal(t, []string{"worker-1", "worker-1"}, last)
	assert.Regexp(t, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(parts[1])+` +1 +0 +\S+ +\S+ +worker-1$`), cliOK(t, "info", base, "-partitions", "2"))
}

func TestOwnerUnreadable(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	ctx := testCtx(t)
	s := newScenario(t)
	require.NoError(t, rdb.Set(ctx, "{"+s.stream+"}:redstream-lease:billing", "consumer-a", time.Minute).Err())
	// A user limited to the stream's keys may not read its leases.
	user := "owners-" + regexp.MustCompile(`[^a-z0-9]`).ReplaceAllString(s.stream, "")
	require.NoError(t, rdb.Do(ctx, "ACL", "SETUSER", user, "reset", "on", ">secret", "~"+s.stream, "~dead-letter:*", "+@all").Err())
	t.Cleanup(func() { _ = rdb.Do(context.Background(), "ACL", "DELUSER", user).Err() })

	r := cli(t, "-url", "redis://"+user+":secret@"+redistest.Addr(t), "groups", s.stream)
	require.Equal(t, 0, r.code, "stderr %q", r.stderr)
	assert.Equal(t, "?", rowOf(r.stdout, "billing")[8], "the owner is unknown, not absent")
	assert.Equal(t, "?", rowOf(r.stdout, "billing")[9], "whether it is paused is unknown, not no")
}
