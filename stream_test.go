package redstream

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/redstream/redstream/internal/slot"
)

func TestStreamName(t *testing.T) {
	got, err := StreamName("orders", "order", "created")
	require.NoError(t, err)
	assert.Equal(t, "orders:order:created", got)

	bad := [][3]string{
		{"", "order", "created"},
		{"orders", "", "created"},
		{"orders", "order", ""},
		{"or:ders", "order", "created"},
		{"orders", "or der", "created"},
		{"orders", "order", "cre{ated}"},
		{"orders", "order\n", "created"},
	}
	for _, parts := range bad {
		_, err := StreamName(parts[0], parts[1], parts[2])
		assert.ErrorIs(t, err, ErrInvalidStreamName, "%q", parts)
	}
}

func TestValidateStream(t *testing.T) {
	for _, ok := range []string{"orders:order:created", "orders:{eu}:created", "a{b", "{x}}", "}{x}"} {
		assert.NoError(t, ValidateStream(ok), ok)
	}
	for _, bad := range []string{"", "a}b", "a{}b", "{}", "}", "{x}", "{a{b}", "{orders:order:created}"} {
		assert.ErrorIs(t, ValidateStream(bad), ErrInvalidStreamName, bad)
	}
}

func TestDeadLetterKey(t *testing.T) {
	assert.Equal(t, "dead-letter:{orders:order:created}", DeadLetterKey("orders:order:created"))
	assert.Equal(t, "dead-letter:orders:{eu}:created", DeadLetterKey("orders:{eu}:created"))
}

// Every stream that ValidateStream accepts must get a dead-letter key in its
// own hash slot: the dead-letter script depends on it on Redis Cluster.
func TestDeadLetterKeySameSlot(t *testing.T) {
	checked := 0
	for _, stream := range validRandomStreams(1, 20000, 10, "ab:{}x-1") {
		checked++
		require.Equal(t, slot.Of(stream), slot.Of(DeadLetterKey(stream)), "stream %q dead-letter %q", stream, DeadLetterKey(stream))
	}
	assert.Greater(t, checked, 1000)
}

// No two streams that ValidateStream accepts may share redstream's keys:
// "x" and "{x}" shared their dead-letter stream, schedule, dedupe and
// lease keys (Slotted gives "{x}" for both), so a message scheduled on one
// was appended to the other, and each listed, replayed and purged the
// other's dead letters. A name that is only a hash tag is refused now.
func TestValidStreamsDoNotShareKeys(t *testing.T) {
	bySlotted, byDeadLetter := map[string]string{}, map[string]string{}
	for _, stream := range validRandomStreams(3, 50000, 6, "ab:{}x") {
		for name, seen := range map[string]map[string]string{slotted(stream): bySlotted, DeadLetterKey(stream): byDeadLetter} {
			if other, ok := seen[name]; ok && other != stream {
				t.Fatalf("streams %q and %q share the key prefix %q", other, stream, name)
			}
			seen[name] = stream
		}
	}
	assert.Greater(t, len(bySlotted), 1000)
}

func TestMessageTime(t *testing.T) {
	m := &Message[string]{ID: "1694012345678-3"}
	assert.Equal(t, time.UnixMilli(1694012345678), m.Time())
	assert.True(t, (&Message[string]{ID: "junk"}).Time().IsZero())
	m.values = map[string]any{"orderId": "42", "payload": "{}"}
	assert.Equal(t, "42", m.Header("orderId"))
	assert.Equal(t, "", m.Header("missing"))
	fields := m.Fields()
	assert.Equal(t, map[string]string{"orderId": "42", "payload": "{}"}, fields)
	fields["orderId"] = "changed"
	assert.Equal(t, "42", m.Header("orderId"), "Fields returns a copy")
}

// Consumer-name leases of different groups must not share a key: group
// "a" with consumer "b:c" and group "a:b" with consumer "c" did
// ("…:redstream-consumer:a:b:c"), so the second waited for the first's
// lease and failed to start with ErrNotReady.
func TestNameLeaseKeysOfDifferentGroupsDiffer(t *testing.T) {
	names := []string{"a", "b", "c", "a:b", "b:c", "a:b:c", ":", "a:", ":a", "3", "3:a", "1", "1:a"}
	seen := map[string][2]string{}
	for _, g := range names {
		for _, c := range names {
			k := nameLeaseKey("s", g, c)
			if other, ok := seen[k]; ok {
				t.Fatalf("group %q consumer %q and group %q consumer %q share %q", other[0], other[1], g, c, k)
			}
			seen[k] = [2]string{g, c}
		}
	}
	assert.Equal(t, "{s}:redstream-consumer:billing:worker-1", nameLeaseKey("s", "billing", "worker-1"), "unchanged for a group without a colon")
}

// validRandomStreams returns the names among n random ones, of 1 to maxLen
// bytes of alphabet, that ValidateStream accepts.
func validRandomStreams(seed uint64, n, maxLen int, alphabet string) []string {
	r := rand.New(rand.NewPCG(seed, seed+1))
	var valid []string
	for range n {
		b := make([]byte, 1+r.IntN(maxLen))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		if stream := string(b); ValidateStream(stream) == nil {
			valid = append(valid, stream)
		}
	}
	return valid
}
