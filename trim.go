package redstream

import (
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream/internal/streamid"
)

// writeTrim sets the trimming an XADD does atomically with its write: MINID
// given per publish ([WithMinID]) wins over the producer's [WithMaxLen] or
// [WithMaxAge]. Trimming is approximate ("~"): Redis removes whole
// macro-nodes only, which is much cheaper, so a stream keeps somewhat more
// than asked. Trimming at write does not know about consumer groups and may
// remove entries a group has not read yet.
func writeTrim(a *redis.XAddArgs, cfg producerConfig, pc *publishConfig) {
	switch {
	case pc.minID != "":
		a.MinID, a.Approx = pc.minID, true
	case cfg.maxLen > 0:
		a.MaxLen, a.Approx = cfg.maxLen, true
	case cfg.maxAge > 0:
		a.MinID = streamid.FromTime(time.Now().Add(-cfg.maxAge)).String()
		a.Approx = true
	}
}
