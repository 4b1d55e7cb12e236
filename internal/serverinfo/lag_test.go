package serverinfo

import "testing"

func TestLagReported(t *testing.T) {
	for _, c := range []struct {
		name                      string
		lag, entriesAdded, length int64
		want                      bool
	}{
		{"Redis 7", 4, 10, 10, true},
		{"Redis 7, a lag of 0", 0, 10, 10, true},
		{"Redis 7, entries deleted in between (nil lag)", -1, 10, 9, false},
		{"Redis 7, every entry deleted", 0, 10, 0, true},
		{"Redis 6.2: no lag, no entries-added", 0, 0, 10, false},
		{"miniredis: the length as lag, no entries-added", 10, 0, 10, false},
		{"an empty stream", 0, 0, 0, true},
	} {
		if got := LagReported(c.lag, c.entriesAdded, c.length); got != c.want {
			t.Errorf("%s: LagReported(%d, %d, %d) = %v, want %v", c.name, c.lag, c.entriesAdded, c.length, got, c.want)
		}
	}
}
