package slot

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestOfKnownSlots(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	assert.Equal(t, 12739, Of("123456789"))
	assert.Equal(t, 12182, Of("foo"))
	assert.Equal(t, Of("user1000"), Of("{user1000}.following"))
	assert.Equal(t, Of("user1000"), Of("foo{user1000}{x}"))
	assert.Equal(t, Of("foo{}{bar}"), int(crc16("foo{}{bar}"))%Count, "empty first tag hashes the whole key")
	assert.Equal(t, Of("{bar"), int(crc16("{bar"))%Count)
}

func TestTag(t *testing.T) {
	tests := []struct {
		key  string
		tag  string
		isOK bool
	}{
		{"plain", "", false},
		{"a{b}c", "b", true},
		{"a{}b{c}", "", false},
		{"a{b", "", false},
		{"}a{b}", "b", true},
		{"{{a}}", "{a", true},
	}
	for _, tt := range tests {
		tag, ok := Tag(tt.key)
		assert.Equal(t, tt.isOK, ok, tt.key)
		assert.Equal(t, tt.tag, tag, tt.key)
	}
}
