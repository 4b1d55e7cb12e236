package dashboard

import (
	"testing"

	"errors"
)

// A refusal naming the Redis user (Redis 7.2, Valkey) is shown without it.
func TestShownHidesTheUserOfARefusal(t *testing.T) {
	for in, want := range map[string]string{
		"NOPERM User dash-7 has no permissions to run the 'scan' command":                   "NOPERM this user has no permissions to run the 'scan' command",
		"NOPERM this user has no permissions to run the 'scan' command":                     "NOPERM this user has no permissions to run the 'scan' command",
		"NOPERM No permissions to access a key":                                             "NOPERM No permissions to access a key",
		"groups of s: NOPERM User x:y has no permissions to run the 'xinfo|groups' command": "groups of s: NOPERM this user has no permissions to run the 'xinfo|groups' command",
	} {
		if got := shown(errors.New(in)); got != want {
			t.Errorf("shown(%q) = %q, want %q", in, got, want)
		}
	}
}
