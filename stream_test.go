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
	for _, bad := range []string{"", "a}b", "a{}b", "{}", "}"} {
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
	const alphabet = "ab:{}x-1"
	r := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for range 20000 {
		b := make([]byte, 1+r.IntN(10))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		stream := string(b)
		if ValidateStream(stream) != nil {
			continue
		}
		checked++
		require.Equal(t, slot.Of(stream), slot.Of(DeadLetterKey(stream)), "stream %q dead-letter %q", stream, DeadLetterKey(stream))
	}
	assert.Greater(t, checked, 1000)
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
