// Package scripts holds the Lua scripts redstream runs on Redis. Each
// touches keys of one hash slot only, so it runs on Redis Cluster.
package scripts

import (
	_ "embed"

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
)

// Scripts run with EVALSHA, falling back to EVAL when the server has not
// cached them yet (after a restart, say).
var (
	DeadLetter  = redis.NewScript(deadLetterSrc)
	ClaimOwn    = redis.NewScript(claimOwnSrc)
	Replay      = redis.NewScript(replaySrc)
	DelConsumer = redis.NewScript(delConsumerSrc)
	Trim        = redis.NewScript(trimSrc)
	Lease       = redis.NewScript(leaseSrc)
	Members     = redis.NewScript(membersSrc)
	Attempt     = redis.NewScript(attemptSrc)
)
