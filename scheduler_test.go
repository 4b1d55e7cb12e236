package redstream

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestSchedulerNextWait(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_700_000_000_000)
	const poll = 250 * time.Millisecond
	for _, tc := range []struct {
		name    string
		soonest time.Time
		want    time.Duration
	}{
		{"nothing waiting", time.Time{}, poll},
		{"due before the next poll", now.Add(40 * time.Millisecond), 41 * time.Millisecond},
		{"due after the next poll", now.Add(time.Second), poll},
		{"due exactly a poll away", now.Add(poll - time.Millisecond), poll},
		{"past by this clock: the server's is behind", now.Add(-time.Second), poll},
		{"due now by this clock", now, poll},
	} {
		assert.Equal(t, tc.want, nextWait(poll, tc.soonest, now), tc.name)
	}
}
