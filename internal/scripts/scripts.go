// Package scripts holds the Lua scripts redstream runs on Redis. Each
// touches keys of one hash slot only, so it runs on Redis Cluster.
package scripts

import (
	_ "embed"
	"strconv"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed deadletter.lua
	deadLetterSrc string
	//go:embed claimown.lua
	claimOwnSrc string
	//go:embed replay.lua
	replaySrc string
	//go:embed delconsumer.lua
	delConsumerSrc string
	//go:embed trim.lua
	trimSrc string
	//go:embed lease.lua
	leaseSrc string
	//go:embed members.lua
	membersSrc string
	//go:embed attempt.lua
	attemptSrc string
	//go:embed fencedread.lua
	fencedReadSrc string
	//go:embed ratelimit.lua
	rateLimitSrc string
	//go:embed schedule.lua
	scheduleSrc string
	//go:embed movedue.lua
	moveDueSrc string
	//go:embed cancelscheduled.lua
	cancelScheduledSrc string
	//go:embed listscheduled.lua
	listScheduledSrc string
	//go:embed dedupe.lua
	dedupeSrc string
	//go:embed record.lua
	recordSrc string
	//go:embed scheduleretry.lua
	scheduleRetrySrc string
	//go:embed taken.lua
	takenSrc string
	//go:embed marktaken.lua
	markTakenSrc string
	//go:embed acklapsed.lua
	ackLapsedSrc string
	//go:embed claim.lua
	claimSrc string
)

// Scripts run with EVALSHA, falling back to EVAL when the server has not
// cached them yet (after a restart, say).
//
// DeadLetter, Replay, Trim, Schedule, CancelScheduled and ScheduleRetry are wrapped by once: they take one more key,
// last, a marker unique to the call, so that a client that sends the same
// call again after a lost reply gets the first run's reply instead of a
// second run's.
var (
	DeadLetter  = redis.NewScript(once(takenSrc + deadLetterSrc))
	ClaimOwn    = redis.NewScript(takenSrc + claimOwnSrc)
	MarkTaken   = redis.NewScript(takenSrc + markTakenSrc)
	AckLapsed   = redis.NewScript(takenSrc + ackLapsedSrc)
	Claim       = redis.NewScript(takenSrc + claimSrc)
	Replay      = redis.NewScript(once(replaySrc))
	DelConsumer = redis.NewScript(delConsumerSrc)
	Trim        = redis.NewScript(once(trimSrc))
	Lease       = redis.NewScript(leaseSrc)
	Members     = redis.NewScript(membersSrc)
	Attempt     = redis.NewScript(attemptSrc)
	FencedRead  = redis.NewScript(fencedReadSrc)
	RateLimit   = redis.NewScript(rateLimitSrc)

	Schedule        = redis.NewScript(once(scheduleSrc))
	CancelScheduled = redis.NewScript(once(cancelScheduledSrc))
	ScheduleRetry   = redis.NewScript(once(takenSrc + scheduleRetrySrc))
	// MoveDue needs no marker: it removes what it moves in the same run,
	// so a resend moves nothing twice.
	MoveDue       = redis.NewScript(recordSrc + moveDueSrc)
	ListScheduled = redis.NewScript(recordSrc + listScheduledSrc)
	// Dedupe needs no marker either: its marker key is the business key's,
	// and it stores the nonce of the call that wrote it, so a resend of
	// that call gets the same reply.
	Dedupe = redis.NewScript(dedupeSrc)
)

// OnceTTL is how long, in milliseconds, a once-wrapped script keeps its
// reply for a resend: longer than a client spends resending one command
// (go-redis: MaxRetries times the read timeout and backoff, about 10 s by
// default).
const OnceTTL = 60000

// once wraps a script so that its last key is a marker: when the marker
// holds a reply, that reply is returned and the script does not run again;
// otherwise the script runs and its reply (values, errors and nil alike) is
// stored in the marker for OnceTTL. The script itself must not read the
// last key, nor iterate over KEYS.
func once(src string) string {
	return `local marker = KEYS[#KEYS]
local prev = redis.call('GET', marker)
if prev then
  return cjson.decode(prev)
end
local reply = (function()
` + src + `
end)()
if reply == nil then
  reply = false
end
redis.call('SET', marker, cjson.encode(reply), 'PX', ` + strconv.Itoa(OnceTTL) + `)
return reply
`
}

// FencedReadSource is FencedRead's source, for a caller that sends the
// script itself: the fenced read is sent once (EVALSHA, then EVAL when the
// server has not cached it, neither resent by the client), since a resend
// would deliver more entries while the first run's stay pending unseen.
func FencedReadSource() string { return fencedReadSrc }

// AckLapsedSource is AckLapsed's source, for a caller that sends the
// script once (an operator's acknowledgement, whose resend would find
// every entry not pending) or in a pipeline, where EVALSHA's fallback to
// EVAL cannot run.
func AckLapsedSource() string { return takenSrc + ackLapsedSrc }

// WithIDs returns a script's ARGV: fixed, then ids, as most of these
// scripts take them.
func WithIDs(ids []string, fixed ...any) []any {
	args := make([]any, 0, len(fixed)+len(ids))
	args = append(args, fixed...)
	for _, id := range ids {
		args = append(args, id)
	}
	return args
}
