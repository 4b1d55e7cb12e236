package redstream

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/redistest"
	"github.com/redstream/redstream/internal/scripts"
)

// An operator's action on a pending entry that a stalled consumer ("a")
// still holds must leave a takeover record however the call fails once the
// entry was taken: when a looks again and finds the entry pending for no
// one, the record tells it the entry was finished elsewhere; without it, a
// takes the entry for forgotten by Redis and finishes it again from memory
// (a second run of the handler, and a "vanished" dead letter if it fails).
// AckPending and ClaimPending took the entry with one call and recorded
// the takeover with a second, which a failure after the first skipped.
// Each cut drops the reply of every try of the named command after Redis
// ran it, the client's resends included (go-redis tries 4 times).
func TestOperatorTakeoverIsRecordedHoweverTheCallFails(t *testing.T) {
	cases := []struct {
		name string
		act  func(t *testing.T, rdb redis.UniversalClient, stream, id string) error
		// byB: the entry was moved to b, which then acknowledges it.
		byB bool
	}{
		{name: "ack", act: func(t *testing.T, rdb redis.UniversalClient, stream, id string) error {
			_, err := AckPending(testCtx(t), rdb, stream, "g", id)
			return err
		}},
		{name: "claim", byB: true, act: func(t *testing.T, rdb redis.UniversalClient, stream, id string) error {
			_, err := ClaimPending(testCtx(t), rdb, stream, "g", "b", id)
			return err
		}},
	}
	for _, tc := range cases {
		// The commands an implementation may take the entry with: a
		// transaction, the bare command, or a script.
		for _, cut := range []string{"exec", "xack", "xclaim", "evalsha"} {
			t.Run(tc.name+"/"+cut, func(t *testing.T) {
				t.Parallel()
				rdb, stream, id := heldByA(t)
				ctx := testCtx(t)
				// Cached, so that a script is one EVALSHA.
				for _, s := range []*redis.Script{scripts.AckLapsed, scripts.Claim, scripts.MarkTaken} {
					require.NoError(t, s.Load(ctx, rdb).Err())
				}
				proxy := startCutProxy(t, redistest.Addr(t))
				viaProxy := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
				t.Cleanup(func() { viaProxy.Close() })

				proxy.CutAfter(cut, 4)
				err := tc.act(t, viaProxy, stream, id)
				t.Logf("%s with every %s reply lost: %v (%d cuts)", tc.name, cut, err, proxy.Cuts())
				if tc.byB {
					pending, perr := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "g", Start: "-", End: "+", Count: 10}).Result()
					require.NoError(t, perr)
					if len(pending) == 1 && pending[0].Consumer == "a" {
						require.Error(t, err, "the claim did not happen: it must say so")
						return
					}
					require.Len(t, pending, 1)
					require.Equal(t, "b", pending[0].Consumer, "claimed for b")
					require.NoError(t, rdb.XAck(ctx, stream, "g", id).Err(), "b handles it")
				} else if pendingCount(t, rdb, stream, "g") == 1 {
					require.Error(t, err, "the acknowledgement did not happen: it must say so")
					return
				}
				require.Zero(t, pendingCount(t, rdb, stream, "g"))

				res, err := renewLeases(ctx, rdb, stream, "g", "a", 0, 0, []string{id})
				require.NoError(t, err)
				assert.Equal(t, []string{id}, res.lost, "a lets it go: %+v", res)
			})
		}
	}
}
