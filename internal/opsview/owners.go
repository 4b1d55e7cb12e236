// Package opsview holds what the admin CLI (cmd/redstream) and the
// dashboard both read from Redis to show an operator a stream, beyond
// what the library exports.
package opsview

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/keys"
)

// LeaseOwners holds, by stream and then by group, the consumer that holds
// the stream's partition lease in the group (WithExclusivePartitions); a
// missing entry means no lease, so owners[stream][group] is "" for none,
// also on a nil LeaseOwners. "?" means the Redis user may not read the
// lease key.
type LeaseOwners map[string]map[string]string

// ReadLeaseOwners reads the lease of every group of every snapshot in
// infos (nil ones are skipped), one GET per stream and group, in one
// pipeline: with a Cluster client the keys may lie on different masters.
func ReadLeaseOwners(ctx context.Context, rdb redis.UniversalClient, infos ...*redstream.StreamInfo) (LeaseOwners, error) {
	type lease struct {
		stream, group string
		get           *redis.StringCmd
	}
	var leases []lease
	_, pipeErr := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, info := range infos {
			if info == nil {
				continue
			}
			for _, g := range info.Groups {
				leases = append(leases, lease{stream: info.Stream, group: g.Name, get: pipe.Get(ctx, keys.Lease(info.Stream, g.Name))})
			}
		}
		return nil
	})
	// Pipelined reports the first failed command, and a GET of a missing
	// key fails with redis.Nil: look at each command, to name the lease.
	owners := LeaseOwners{}
	for _, l := range leases {
		name, err := l.get.Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case redis.HasErrorPrefix(err, "NOPERM"):
			// A user limited to the streams' keys may not read leases:
			// the owner is unknown, not absent.
			name = "?"
		case err != nil:
			return nil, fmt.Errorf("partition lease of group %s of stream %s (%s): %w", l.group, l.stream, keys.Lease(l.stream, l.group), err)
		}
		if owners[l.stream] == nil {
			owners[l.stream] = map[string]string{}
		}
		owners[l.stream][l.group] = name
	}
	if pipeErr != nil && !errors.Is(pipeErr, redis.Nil) && !redis.HasErrorPrefix(pipeErr, "NOPERM") {
		return nil, fmt.Errorf("partition leases: %w", pipeErr)
	}
	return owners, nil
}
