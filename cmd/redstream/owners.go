package main

import (
	"context"

	"github.com/redstream/redstream"
	"github.com/redstream/redstream/internal/opsview"
)

// leaseOwners holds, by stream and then by group, the consumer that holds
// the stream's lease in the group ([opsview.LeaseOwners]).
type leaseOwners = opsview.LeaseOwners

// leaseOwners reads the lease of every group of every snapshot in infos
// (nil ones are skipped) in one pipeline ([opsview.ReadLeaseOwners]).
func (a *app) leaseOwners(ctx context.Context, infos ...*redstream.StreamInfo) (leaseOwners, error) {
	rdb, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	return opsview.ReadLeaseOwners(ctx, rdb, infos...)
}
