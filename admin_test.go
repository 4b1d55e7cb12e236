package redstream

import (
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stuckGroup is a stream of four entries, IDs 1000-0, 2000-0, 2000-1 and
// 3000-0, whose group "g" (created at 0) was delivered the first three: two
// to consumer "c1", one to "c2". The first entry has a failed attempt
// recorded.
type stuckGroup struct {
	rdb    *redis.Client
	stream string
	ids    []string
}

func newStuckGroup(t *testing.T) stuckGroup {
	t.Helper()
	ctx := testCtx(t)
	s := stuckGroup{rdb: mustRedis(t), stream: uniqueStream(t), ids: []string{"1000-0", "2000-0", "2000-1", "3000-0"}}
	for i, id := range s.ids {
		require.NoError(t, s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.stream, ID: id, Values: []string{"n", string(rune('0' + i))}}).Err())
	}
	require.NoError(t, s.rdb.XGroupCreate(ctx, s.stream, "g", "0").Err())
	s.read(t, "c1", 2)
	s.read(t, "c2", 1)
	_, err := recordAttempt(ctx, s.rdb, s.stream, "g", s.ids[0], 3)
	require.NoError(t, err)
	return s
}

// read delivers n new entries of group g to consumer and returns their IDs.
func (s stuckGroup) read(t *testing.T, consumer string, n int64) []string {
	t.Helper()
	res, err := s.rdb.XReadGroup(testCtx(t), &redis.XReadGroupArgs{Group: "g", Consumer: consumer, Streams: []string{s.stream, ">"}, Count: n, Block: -1}).Result()
	require.NoError(t, err)
	var ids []string
	for _, m := range res[0].Messages {
		ids = append(ids, m.ID)
	}
	require.Len(t, ids, int(n))
	return ids
}

// owners maps each pending ID of group g to its consumer.
func (s stuckGroup) owners(t *testing.T) map[string]string {
	t.Helper()
	p, err := s.rdb.XPendingExt(testCtx(t), &redis.XPendingExtArgs{Stream: s.stream, Group: "g", Start: "-", End: "+", Count: 100}).Result()
	require.NoError(t, err)
	out := map[string]string{}
	for _, e := range p {
		out[e.ID] = e.Consumer
	}
	return out
}

func (s stuckGroup) attempts(t *testing.T, id string) int64 {
	t.Helper()
	v, err := s.rdb.HMGet(testCtx(t), attemptsKey(s.stream, "g"), id).Result()
	require.NoError(t, err)
	return parseAttempts(v[0])
}

func requireNotPending(t *testing.T, err error, ids ...string) {
	t.Helper()
	require.ErrorIs(t, err, ErrNotPending)
	var npe *NotPendingError
	require.ErrorAs(t, err, &npe)
	assert.Equal(t, ids, npe.IDs)
}

func TestAckPending(t *testing.T) {
	t.Parallel()
	s := newStuckGroup(t)

	n, err := AckPending(testCtx(t), s.rdb, s.stream, "g", s.ids[0], s.ids[3], s.ids[2])
	assert.Equal(t, 2, n)
	requireNotPending(t, err, s.ids[3]) // never delivered
	assert.Equal(t, map[string]string{s.ids[1]: "c1"}, s.owners(t))
	assert.Zero(t, s.attempts(t, s.ids[0]), "the failed attempts go with the entry")

	n, err = AckPending(testCtx(t), s.rdb, s.stream, "g", s.ids[0])
	assert.Zero(t, n)
	requireNotPending(t, err, s.ids[0]) // acknowledged already
	assert.EqualError(t, err, "redstream: entry "+s.ids[0]+" is not pending in group g of "+s.stream)
}

func TestDeadLetterPending(t *testing.T) {
	t.Parallel()
	s := newStuckGroup(t)
	ctx := testCtx(t)

	n, err := DeadLetterPending(ctx, s.rdb, s.stream, "g", s.ids[0], s.ids[2], s.ids[3])
	assert.Equal(t, 2, n)
	requireNotPending(t, err, s.ids[3])
	assert.Equal(t, map[string]string{s.ids[1]: "c1"}, s.owners(t), "dead-lettered entries are acknowledged")
	assert.Zero(t, s.attempts(t, s.ids[0]))
	assert.Equal(t, int64(4), s.rdb.XLen(ctx, s.stream).Val(), "the stream keeps its entries")

	d, err := NewDeadLetters(s.rdb, s.stream)
	require.NoError(t, err)
	letters, _, err := d.List(ctx, ListOptions{})
	require.NoError(t, err)
	require.Len(t, letters, 2)
	byOrigin := map[string]DeadLetter{}
	for _, l := range letters {
		byOrigin[l.OriginID] = l
		assert.Equal(t, ReasonOperator, l.Reason)
		assert.Equal(t, "g", l.Group)
		assert.Equal(t, s.stream, l.Stream)
		assert.Equal(t, operatorErrorText, l.Error)
	}
	assert.Equal(t, "c1", byOrigin[s.ids[0]].Consumer)
	assert.Equal(t, int64(3), byOrigin[s.ids[0]].Deliveries, "the recorded attempts, above Redis's count of 1")
	assert.Equal(t, map[string]string{"n": "0"}, byOrigin[s.ids[0]].Fields)
	assert.Equal(t, "c2", byOrigin[s.ids[2]].Consumer)
	assert.Equal(t, int64(1), byOrigin[s.ids[2]].Deliveries)

	// Twice is once: the second move finds nothing pending.
	n, err = DeadLetterPending(ctx, s.rdb, s.stream, "g", s.ids[0])
	assert.Zero(t, n)
	requireNotPending(t, err, s.ids[0])
	assert.Equal(t, int64(2), s.rdb.XLen(ctx, DeadLetterKey(s.stream)).Val())

	// A pending entry trimmed from the stream has nothing to copy: it is
	// cleared from the pending list, not counted and not reported.
	require.NoError(t, s.rdb.XDel(ctx, s.stream, s.ids[1]).Err())
	n, err = DeadLetterPending(ctx, s.rdb, s.stream, "g", s.ids[1])
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Empty(t, s.owners(t))
}

func TestClaimPending(t *testing.T) {
	t.Parallel()
	s := newStuckGroup(t)

	n, err := ClaimPending(testCtx(t), s.rdb, s.stream, "g", "c3", s.ids[0], s.ids[3])
	assert.Equal(t, 1, n)
	requireNotPending(t, err, s.ids[3])
	assert.Equal(t, map[string]string{s.ids[0]: "c3", s.ids[1]: "c1", s.ids[2]: "c2"}, s.owners(t))
	assert.Equal(t, int64(3), s.attempts(t, s.ids[0]), "failed attempts are kept")

	n, err = ClaimPending(testCtx(t), s.rdb, s.stream, "g", "c2", s.ids[1])
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, "c2", s.owners(t)[s.ids[1]])

	_, err = ClaimPending(testCtx(t), s.rdb, s.stream, "g", "", s.ids[1])
	require.ErrorIs(t, err, ErrInvalidOption)
}

// TestOperatorActionErrors checks the errors every action shares: a
// missing stream, an unknown group and bad arguments, each leaving the
// group as it was.
func TestOperatorActionErrors(t *testing.T) {
	t.Parallel()
	s := newStuckGroup(t)
	before := s.owners(t)
	actions := map[string]func(stream, group string, ids ...string) error{
		"ack": func(stream, group string, ids ...string) error {
			_, err := AckPending(testCtx(t), s.rdb, stream, group, ids...)
			return err
		},
		"dead-letter": func(stream, group string, ids ...string) error {
			_, err := DeadLetterPending(testCtx(t), s.rdb, stream, group, ids...)
			return err
		},
		"claim": func(stream, group string, ids ...string) error {
			_, err := ClaimPending(testCtx(t), s.rdb, stream, group, "c9", ids...)
			return err
		},
		"set ID": func(stream, group string, ids ...string) error {
			return SetGroupID(testCtx(t), s.rdb, stream, group, ids[0])
		},
		"destroy": func(stream, group string, _ ...string) error {
			_, err := DestroyGroup(testCtx(t), s.rdb, stream, group)
			return err
		},
		"delete consumer": func(stream, group string, _ ...string) error {
			_, _, err := DeleteConsumer(testCtx(t), s.rdb, stream, group, "c1", "c2")
			return err
		},
	}
	for name, act := range actions {
		t.Run(name, func(t *testing.T) {
			err := act(s.stream+":missing", "g", s.ids[0])
			require.ErrorIs(t, err, ErrNoStream)
			assert.Contains(t, err.Error(), s.stream+":missing")

			err = act(s.stream, "nosuchgroup", s.ids[0])
			require.ErrorIs(t, err, ErrNoGroup)
			assert.Contains(t, err.Error(), "nosuchgroup")

			require.ErrorIs(t, act(s.stream, "", s.ids[0]), ErrInvalidOption)
			require.ErrorIs(t, act("a}b", "g", s.ids[0]), ErrInvalidStreamName)
			if name != "destroy" && name != "delete consumer" {
				require.ErrorIs(t, act(s.stream, "g", "12x"), ErrInvalidID)
			}
		})
	}
	for _, fn := range []func() error{
		func() error { _, err := AckPending(testCtx(t), s.rdb, s.stream, "g"); return err },
		func() error { _, err := DeadLetterPending(testCtx(t), s.rdb, s.stream, "g"); return err },
		func() error { _, err := ClaimPending(testCtx(t), s.rdb, s.stream, "g", "c1"); return err },
	} {
		require.ErrorIs(t, fn(), ErrInvalidOption, "no IDs")
	}
	assert.Equal(t, before, s.owners(t))
}

func TestGroupStartAt(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "1699999999999-18446744073709551615", GroupStartAt(time.UnixMilli(1700000000000)))
	assert.Equal(t, "1699999999999-18446744073709551615", GroupStartAt(time.UnixMilli(1700000000000).Add(999*time.Microsecond)))
	assert.Equal(t, "0-18446744073709551615", GroupStartAt(time.UnixMilli(1)))
	assert.Equal(t, "0", GroupStartAt(time.UnixMilli(0)))
	assert.Equal(t, "0", GroupStartAt(time.UnixMilli(-5)))
}

func TestCreateAndSetGroup(t *testing.T) {
	t.Parallel()
	s := newStuckGroup(t)
	ctx := testCtx(t)
	next := func(group string) []string {
		res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "r", Streams: []string{s.stream, ">"}, Count: 10, Block: -1}).Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		require.NoError(t, err)
		var ids []string
		for _, m := range res[0].Messages {
			ids = append(ids, m.ID)
		}
		return ids
	}

	// By time: the entries at or after 2000 ms.
	require.NoError(t, CreateGroup(ctx, s.rdb, s.stream, "by-time", GroupStartAt(time.UnixMilli(2000))))
	assert.Equal(t, s.ids[1:], next("by-time"))
	require.NoError(t, CreateGroup(ctx, s.rdb, s.stream, "new-only", ""))
	assert.Empty(t, next("new-only"))
	require.NoError(t, CreateGroup(ctx, s.rdb, s.stream, "by-id", s.ids[2]))
	assert.Equal(t, s.ids[3:], next("by-id"))

	err := CreateGroup(ctx, s.rdb, s.stream, "g", "0")
	require.ErrorIs(t, err, ErrGroupExists)
	require.ErrorIs(t, CreateGroup(ctx, s.rdb, s.stream+":missing", "g", "0"), ErrNoStream)
	assert.Zero(t, s.rdb.Exists(ctx, s.stream+":missing").Val(), "no stream created")
	require.ErrorIs(t, CreateGroup(ctx, s.rdb, s.stream, "h", "now"), ErrInvalidID)

	// Rewind g to a time: it is delivered again from there; what it has
	// pending stays pending.
	require.NoError(t, SetGroupID(ctx, s.rdb, s.stream, "g", GroupStartAt(time.UnixMilli(2000).Add(time.Millisecond))))
	assert.Equal(t, s.ids[3:], next("g"))
	require.NoError(t, SetGroupID(ctx, s.rdb, s.stream, "g", "0"))
	assert.Equal(t, s.ids, next("g"))
	require.NoError(t, SetGroupID(ctx, s.rdb, s.stream, "g", "$"))
	assert.Empty(t, next("g"))
	require.ErrorIs(t, SetGroupID(ctx, s.rdb, s.stream, "g", "-"), ErrInvalidID)
}

func TestDestroyGroup(t *testing.T) {
	t.Parallel()
	s := newStuckGroup(t)
	ctx := testCtx(t)

	pending, err := DestroyGroup(ctx, s.rdb, s.stream, "g")
	require.NoError(t, err)
	assert.Equal(t, int64(3), pending)
	assert.Empty(t, s.rdb.XInfoGroups(ctx, s.stream).Val())
	assert.Zero(t, s.rdb.Exists(ctx, attemptsKey(s.stream, "g")).Val(), "failed attempts go with the group")
	assert.Equal(t, int64(4), s.rdb.XLen(ctx, s.stream).Val())

	_, err = DestroyGroup(ctx, s.rdb, s.stream, "g")
	require.ErrorIs(t, err, ErrNoGroup)
}

func TestDeleteConsumer(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)

	t.Run("to the most recently active consumer", func(t *testing.T) {
		t.Parallel()
		s := newStuckGroup(t)
		s.read(t, "c2", 1) // c2 is now the most recently active
		heir, moved, err := DeleteConsumer(ctx, s.rdb, s.stream, "g", "c1", "")
		require.NoError(t, err)
		assert.Equal(t, "c2", heir)
		assert.Equal(t, 2, moved)
		assert.Equal(t, map[string]string{s.ids[0]: "c2", s.ids[1]: "c2", s.ids[2]: "c2", s.ids[3]: "c2"}, s.owners(t))
		assert.Equal(t, int64(3), s.attempts(t, s.ids[0]))
		for _, c := range s.rdb.XInfoConsumers(ctx, s.stream, "g").Val() {
			assert.NotEqual(t, "c1", c.Name)
		}
		_, _, err = DeleteConsumer(ctx, s.rdb, s.stream, "g", "c1", "")
		require.ErrorIs(t, err, ErrNoConsumer)
	})

	t.Run("to a named consumer", func(t *testing.T) {
		t.Parallel()
		s := newStuckGroup(t)
		heir, moved, err := DeleteConsumer(ctx, s.rdb, s.stream, "g", "c1", "c7")
		require.NoError(t, err)
		assert.Equal(t, "c7", heir)
		assert.Equal(t, 2, moved)
		assert.Equal(t, map[string]string{s.ids[0]: "c7", s.ids[1]: "c7", s.ids[2]: "c2"}, s.owners(t))

		_, _, err = DeleteConsumer(ctx, s.rdb, s.stream, "g", "c2", "c2")
		require.ErrorIs(t, err, ErrInvalidOption)
	})

	t.Run("no one to take its entries", func(t *testing.T) {
		t.Parallel()
		s := newStuckGroup(t)
		_, _, err := DeleteConsumer(ctx, s.rdb, s.stream, "g", "c2", "c1")
		require.NoError(t, err)
		_, _, err = DeleteConsumer(ctx, s.rdb, s.stream, "g", "c1", "")
		require.ErrorIs(t, err, ErrInvalidOption)
		assert.Contains(t, err.Error(), "no other consumer")
		assert.Len(t, s.owners(t), 3, "nothing dropped")
		assert.Len(t, s.rdb.XInfoConsumers(ctx, s.stream, "g").Val(), 1)
	})

	t.Run("holding nothing", func(t *testing.T) {
		t.Parallel()
		s := newStuckGroup(t)
		require.NoError(t, s.rdb.XGroupCreateConsumer(ctx, s.stream, "g", "idle").Err())
		_, moved, err := DeleteConsumer(ctx, s.rdb, s.stream, "g", "idle", "")
		require.NoError(t, err)
		assert.Zero(t, moved)
		assert.Len(t, s.rdb.XInfoConsumers(ctx, s.stream, "g").Val(), 2)
	})
}
