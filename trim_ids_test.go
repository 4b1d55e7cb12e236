package redstream

import (
	"context"
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/redstream/redstream/internal/streamid"
)

// Stream IDs are two unsigned 64-bit integers; these tests hold Trim to
// exact arithmetic where doubles (Lua numbers) stop being exact: above 2^53
// and at 2^64-1.

// TestTrimExactIDsAbove2Pow53 is the input of issue 11, item 6: with Lua
// numbers, 9007199254740995 rounds to 9007199254740996, so the entry after
// the acknowledged one looked consumed too and was trimmed.
func TestTrimExactIDsAbove2Pow53(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	p, err := NewProducer[Order](rdb, stream)
	require.NoError(t, err)
	for _, id := range []string{"9007199254740995-0", "9007199254740996-0"} {
		got, err := p.Publish(ctx, Order{ID: id}, WithID(id))
		require.NoError(t, err)
		require.Equal(t, id, got)
	}
	acked := deliverTo(t, rdb, stream, "g", "c", 1)
	require.Equal(t, []string{"9007199254740995-0"}, acked)
	require.NoError(t, rdb.XAck(ctx, stream, "g", acked...).Err())

	res, err := Trim(ctx, rdb, stream, TrimPolicy{})
	require.NoError(t, err)
	assert.Equal(t, TrimResult{Removed: 1, MinID: "9007199254740995-1"}, res, "the bound is the ID after the last delivered")
	assert.Equal(t, map[string]bool{"9007199254740996-0": true}, remaining(t, rdb, stream))
	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	require.NoError(t, err)
	require.Len(t, groups, 1)
	assert.Equal(t, int64(1), groups[0].Lag, "the entry the group has not been delivered")
}

// maxPart is the greatest value of either ID part, 2^64-1.
const maxPart = "18446744073709551615"

// TestTrimExactIDsAtPartLimits trims around the other places where ID
// arithmetic on doubles goes wrong: sequences above 2^53, the sequence
// 2^64-1 (the next ID carries into the milliseconds) and the greatest ID,
// after which no ID exists.
func TestTrimExactIDsAtPartLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entries []string
		start   string // where the group "g" starts; "" for no group
		read    int    // entries delivered to "g"
		ack     []int  // indexes of the delivered entries "g" acknowledged
		policy  TrimPolicy
		removed int64
		minID   string
		kept    []string
	}{
		{
			name:    "sequence 2^64-1 carries into milliseconds",
			entries: []string{"5-" + maxPart, "6-0"},
			start:   "0", read: 1, ack: []int{0},
			removed: 1, minID: "6-0", kept: []string{"6-0"},
		},
		{
			name:    "sequence above 2^53",
			entries: []string{"1-9007199254740993", "1-9007199254740994"},
			start:   "0", read: 1, ack: []int{0},
			removed: 1, minID: "1-9007199254740994", kept: []string{"1-9007199254740994"},
		},
		{
			name:    "MaxLen above 2^53 without groups",
			entries: []string{"9007199254740993-0", "9007199254740993-1"},
			policy:  TrimPolicy{MaxLen: 1},
			removed: 1, minID: "9007199254740993-1", kept: []string{"9007199254740993-1"},
		},
		{
			name:    "MaxLen above 2^53 stops at what the group needs",
			entries: []string{"9007199254740993-0", "9007199254740994-0", "9007199254740995-0"},
			start:   "0", read: 1, ack: []int{0},
			policy:  TrimPolicy{MaxLen: 1},
			removed: 1, minID: "9007199254740993-1", kept: []string{"9007199254740994-0", "9007199254740995-0"},
		},
		{
			name:    "group consumed the greatest ID",
			entries: []string{maxPart + "-18446744073709551614", maxPart + "-" + maxPart},
			start:   "0", read: 2, ack: []int{0, 1},
			removed: 2, minID: "+",
		},
		{
			name:    "group still has an entry pending below the greatest ID",
			entries: []string{maxPart + "-18446744073709551614", maxPart + "-" + maxPart},
			start:   "0", read: 2, ack: []int{1},
			minID: maxPart + "-18446744073709551614", kept: []string{maxPart + "-18446744073709551614", maxPart + "-" + maxPart},
		},
		{
			name:    "group created at the greatest ID",
			entries: []string{"1-0", "2-0"},
			start:   maxPart + "-" + maxPart,
			removed: 2, minID: "+",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rdb := mustRedis(t)
			ctx, stream := testCtx(t), uniqueStream(t)
			for _, id := range tt.entries {
				require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: id, Values: []string{"f", "v"}}).Err())
			}
			if tt.start != "" {
				require.NoError(t, rdb.XGroupCreate(ctx, stream, "g", tt.start).Err())
			}
			if tt.read > 0 {
				delivered := deliverTo(t, rdb, stream, "g", "c", tt.read)
				require.Equal(t, tt.entries[:tt.read], delivered)
				for _, i := range tt.ack {
					require.NoError(t, rdb.XAck(ctx, stream, "g", delivered[i]).Err())
				}
			}

			res, err := Trim(ctx, rdb, stream, tt.policy)
			require.NoError(t, err)
			assert.Equal(t, TrimResult{Removed: tt.removed, MinID: tt.minID}, res)
			want := map[string]bool{}
			for _, id := range tt.kept {
				want[id] = true
			}
			assert.Equal(t, want, remaining(t, rdb, stream))
		})
	}
}

// nearLimits draws an ID part near where double arithmetic breaks (2^53,
// 2^64-1) or near 0, so that most cases hold neighbouring IDs that doubles
// cannot tell apart.
func nearLimits() *rapid.Generator[uint64] {
	return rapid.OneOf(
		rapid.Uint64Range(0, 2),
		rapid.Uint64Range(1<<53-2, 1<<53+3),
		rapid.Uint64Range(math.MaxUint64-3, math.MaxUint64),
	)
}

func idNearLimits() *rapid.Generator[streamid.ID] {
	return rapid.Custom(func(t *rapid.T) streamid.ID {
		return streamid.ID{Ms: nearLimits().Draw(t, "ms"), Seq: nearLimits().Draw(t, "seq")}
	})
}

// TestTrimExactIDsProperty checks trim.lua's ID comparisons and increments
// on a real server against the exact Go model: on random streams and groups
// with IDs near 2^53 and 2^64-1, Trim removes exactly the entries below the
// safe bound (the lowest, over the groups, of the oldest pending ID and the
// ID after the last-delivered one) and never one at or above it. Each case
// takes a few round trips; rapid runs 100 of them by default (-rapid.checks).
func TestTrimExactIDsProperty(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx := testCtx(t)
	rapid.Check(t, func(rt *rapid.T) {
		stream := uniqueStream(t)
		defer rdb.Del(context.WithoutCancel(ctx), stream)

		entries := rapid.SliceOfNDistinct(idNearLimits(), 1, 6, func(id streamid.ID) streamid.ID { return id }).Draw(rt, "entries")
		entries = slices.DeleteFunc(entries, streamid.ID.IsZero) // Redis refuses 0-0
		slices.SortFunc(entries, streamid.ID.Compare)
		for _, id := range entries {
			require.NoError(rt, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: id.String(), Values: []string{"f", "v"}}).Err())
		}

		// Model each group: its bound is where the entries it needs start;
		// past is true when it needs none (it is at the greatest ID).
		var (
			hasGroups bool
			safe      streamid.ID
			safePast  = true
		)
		groups := rapid.IntRange(0, 3).Draw(rt, "groups")
		for g := range groups {
			name := "g" + strconv.Itoa(g)
			require.NoError(rt, rdb.XGroupCreateMkStream(ctx, stream, name, "0").Err())
			read := rapid.IntRange(0, len(entries)).Draw(rt, "read")
			last := streamid.ID{}
			var pending []streamid.ID
			if read > 0 {
				msgs, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: name, Consumer: "c", Streams: []string{stream, ">"}, Count: int64(read), Block: -1}).Result()
				require.NoError(rt, err)
				require.Len(rt, msgs[0].Messages, read)
				for i, id := range entries[:read] {
					if rapid.Bool().Draw(rt, "ack") {
						require.NoError(rt, rdb.XAck(ctx, stream, name, id.String()).Err())
					} else {
						pending = append(pending, entries[i])
					}
				}
				last = entries[read-1]
			}
			if rapid.Bool().Draw(rt, "setID") {
				last = idNearLimits().Draw(rt, "lastDelivered")
				require.NoError(rt, rdb.XGroupSetID(ctx, stream, name, last.String()).Err())
			}
			need, ok := last.Next()
			past := !ok
			if len(pending) > 0 && (past || pending[0].Compare(need) < 0) {
				need, past = pending[0], false
			}
			hasGroups = true
			if !past && (safePast || need.Compare(safe) < 0) {
				safe, safePast = need, false
			}
		}
		unneeded := func(id streamid.ID) bool { return !hasGroups || safePast || id.Compare(safe) < 0 }

		var policy TrimPolicy
		if rapid.Bool().Draw(rt, "maxLen") {
			policy.MaxLen = int64(rapid.IntRange(1, len(entries)+1).Draw(rt, "keep"))
		}
		// want is how many of the oldest entries Trim removes, and minID
		// what it reports.
		want, minID := 0, ""
		switch {
		case policy.MaxLen == 0 && hasGroups:
			for want < len(entries) && unneeded(entries[want]) {
				want++
			}
			minID = "+"
			if !safePast {
				minID = safe.String()
			}
		case policy.MaxLen > 0:
			for int64(len(entries)-want) > policy.MaxLen && unneeded(entries[want]) {
				want++
			}
			if want > 0 {
				next, _ := entries[want-1].Next() // an entry is kept after it
				minID = next.String()
			}
		}

		res, err := Trim(ctx, rdb, stream, policy)
		require.NoError(rt, err)
		left := remaining(t, rdb, stream)
		for i, id := range entries {
			if i >= want {
				assert.True(rt, left[id.String()], "entry %s is at or above the safe bound %v (past every ID: %v) but was trimmed", id, safe, safePast && hasGroups)
			} else {
				assert.False(rt, left[id.String()], "entry %s is below the safe bound %v but was kept", id, safe)
			}
		}
		assert.Equal(rt, TrimResult{Removed: int64(want), MinID: minID}, res, "entries %v, policy %+v", entries, policy)
	})
}

// Input 6, its kind outside trim: pages and counts that go on "after" an ID
// with "(" + id, which Redis refuses for the greatest ID, and "before" 0-0.
func TestPagingAtTheIDLimits(t *testing.T) {
	t.Parallel()
	rdb := mustRedis(t)
	ctx, stream := testCtx(t), uniqueStream(t)
	maxID := streamid.Max.String()

	// Inspect counts a group's lag itself when Redis cannot (after a
	// deletion): the group has read up to the greatest ID.
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: "1-1", Values: []any{"k", "v"}}).Err())
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: maxID, Values: []any{"k", "v"}}).Err())
	require.NoError(t, rdb.XGroupCreate(ctx, stream, "g", "$").Err())
	require.NoError(t, rdb.XDel(ctx, stream, "1-1").Err())
	info, err := Inspect(ctx, rdb, stream)
	require.NoError(t, err)
	require.Len(t, info.Groups, 1)
	assert.True(t, info.Groups[0].LagKnown)
	assert.Zero(t, info.Groups[0].Lag)
	n, complete, err := countAfter(ctx, rdb, stream, maxID) // what Inspect falls back to
	require.NoError(t, err)
	assert.True(t, complete)
	assert.Zero(t, n)

	// Dead letters listed after the greatest ID, or newest first before
	// the least: none, not an error.
	d := mustDeadLetters(t, rdb, stream)
	require.NoError(t, rdb.XAdd(ctx, &redis.XAddArgs{Stream: d.Key(), Values: []any{metaStream, stream, "k", "v"}}).Err())
	letters, next, err := d.List(ctx, ListOptions{After: maxID})
	require.NoError(t, err)
	assert.Empty(t, letters)
	assert.Empty(t, next)
	letters, _, err = d.List(ctx, ListOptions{After: "0-0", NewestFirst: true})
	require.NoError(t, err)
	assert.Empty(t, letters)
}
