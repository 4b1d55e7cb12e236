package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Waiting for a test cluster to be whole: every node up, every slot served,
// every node agreeing, and the client's slot map current; and reading
// CLUSTER NODES.

// WaitHealthy waits until the cluster has settled: every live node reports
// cluster_state:ok with all 16384 slots ok, all live nodes agree on which
// master serves each slot, every such master is live, no live node is
// flagged as failing by another, and every live replica's link to its
// master is up. Live nodes are the running processes of a started cluster,
// or the nodes of an external cluster that its seeds do not flag as failed.
// WaitHealthy polls and fails the test if the cluster has not settled
// within 30 seconds.
func (c *Cluster) WaitHealthy(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	if err := c.poll(ctx, func() error { _, err := c.health(ctx); return err }); err != nil {
		tb.Fatalf("redistest: Redis Cluster %v not healthy: %v", c.Addrs(), err)
	}
}

// waitReady waits until a freshly created cluster is healthy, has every
// master and replica in place, and serves writes and reads on all masters.
func (c *Cluster) waitReady(ctx context.Context) error {
	probe := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer probe.Close()
	keys := make([]string, clusterProbeKeys)
	for i := range keys {
		keys[i] = "redistest:probe:" + strconv.Itoa(i)
	}
	return c.poll(ctx, func() error {
		h, err := c.health(ctx)
		if err != nil {
			return err
		}
		if h.masters != clusterMasters || h.replicas != clusterMasters*clusterReplicas {
			return fmt.Errorf("%d masters and %d replicas, want %d and %d",
				h.masters, h.replicas, clusterMasters, clusterMasters*clusterReplicas)
		}
		return probeKeys(ctx, probe, keys)
	})
}

// probeKeys writes, reads back and deletes keys through rdb.
func probeKeys(ctx context.Context, rdb *redis.ClusterClient, keys []string) error {
	pipe := rdb.Pipeline()
	for _, k := range keys {
		pipe.Set(ctx, k, k, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("probe SET through ClusterClient: %w", err)
	}
	gets := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		gets[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("probe GET through ClusterClient: %w", err)
	}
	for i, g := range gets {
		if g.Val() != keys[i] {
			return fmt.Errorf("probe GET %s = %q, want %q", keys[i], g.Val(), keys[i])
		}
	}
	for _, k := range keys {
		pipe.Del(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("probe DEL through ClusterClient: %w", err)
	}
	return nil
}

// poll calls check until it returns nil or ctx is done, returning check's
// last error in the latter case.
func (c *Cluster) poll(ctx context.Context, check func() error) error {
	ticker := time.NewTicker(clusterPollInterval)
	defer ticker.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last check: %w", ctx.Err(), err)
		case <-ticker.C:
		}
	}
}

// clusterHealth is what a successful health check counted.
type clusterHealth struct {
	masters, replicas int
}

// health checks once what [Cluster.WaitHealthy] waits for.
func (c *Cluster) health(ctx context.Context) (clusterHealth, error) {
	live := c.liveAddrs()
	if c.nodes == nil {
		// For an external cluster, live means not flagged by the seed.
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return clusterHealth{}, err
		}
		live = live[:0]
		for _, n := range nodes {
			if !n.Failing {
				live = append(live, n.Addr)
			}
		}
	}
	if len(live) == 0 {
		return clusterHealth{}, errors.New("no live node")
	}

	var h clusterHealth
	var refMap, refAddr string
	for _, addr := range live {
		rdb := c.admin(addr)
		info, err := rdb.ClusterInfo(ctx).Result()
		if err != nil {
			return h, fmt.Errorf("CLUSTER INFO on %s: %w", addr, err)
		}
		fields := infoFields(info)
		if st := fields["cluster_state"]; st != "ok" {
			return h, fmt.Errorf("%s reports cluster_state:%s", addr, st)
		}
		if ok := fields["cluster_slots_ok"]; ok != strconv.Itoa(clusterSlots) {
			return h, fmt.Errorf("%s reports cluster_slots_ok:%s", addr, ok)
		}

		nodes, err := c.nodesSeenBy(ctx, addr)
		if err != nil {
			return h, err
		}
		seen := make(map[string]ClusterNode, len(nodes))
		for _, n := range nodes {
			seen[n.Addr] = n
		}
		for _, l := range live {
			n, ok := seen[l]
			switch {
			case !ok:
				return h, fmt.Errorf("%s does not know live node %s", addr, l)
			case n.Failing:
				return h, fmt.Errorf("%s flags live node %s as failing", addr, l)
			}
		}
		var owners []string
		covered, masters, replicas := 0, 0, 0
		for _, n := range nodes {
			if n.Master && len(n.Slots) > 0 {
				if !slices.Contains(live, n.Addr) {
					return h, fmt.Errorf("%s sees slots %v served by %s, which is not live", addr, n.Slots, n.Addr)
				}
				masters++
				for _, r := range n.Slots {
					covered += r.End - r.Start + 1
					owners = append(owners, fmt.Sprintf("%05d-%05d@%s", r.Start, r.End, n.Addr))
				}
			}
			if !n.Master && slices.Contains(live, n.Addr) {
				replicas++
			}
		}
		if covered != clusterSlots {
			return h, fmt.Errorf("%s sees %d of %d slots served", addr, covered, clusterSlots)
		}
		slices.Sort(owners)
		slotMap := strings.Join(owners, " ")
		if refAddr == "" {
			refMap, refAddr, h = slotMap, addr, clusterHealth{masters: masters, replicas: replicas}
		} else if slotMap != refMap {
			return h, fmt.Errorf("%s and %s disagree on the slot map: %s vs %s", refAddr, addr, refMap, slotMap)
		}

		repl, err := rdb.Info(ctx, "replication").Result()
		if err != nil {
			return h, fmt.Errorf("INFO replication on %s: %w", addr, err)
		}
		fields = infoFields(repl)
		if fields["role"] == "slave" && fields["master_link_status"] != "up" {
			return h, fmt.Errorf("replica %s has master_link_status:%s", addr, fields["master_link_status"])
		}
	}
	return h, nil
}

// nodesSeenBy returns CLUSTER NODES as reported by the node at addr.
func (c *Cluster) nodesSeenBy(ctx context.Context, addr string) ([]ClusterNode, error) {
	text, err := c.admin(addr).ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("redistest: CLUSTER NODES on %s: %w", addr, err)
	}
	nodes, err := parseClusterNodes(text, addr)
	if err != nil {
		return nil, fmt.Errorf("redistest: CLUSTER NODES on %s: %w", addr, err)
	}
	return nodes, nil
}

// serves reports whether n serves slot.
func (n ClusterNode) serves(slot int) bool {
	for _, r := range n.Slots {
		if r.Start <= slot && slot <= r.End {
			return true
		}
	}
	return false
}

// parseClusterNodes parses a CLUSTER NODES reply given by the node at self.
// Each line reads
//
//	<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...
//
// A node that has not learnt its own IP yet lists itself as ":port", hence
// self. Nodes in the handshake or without an address are left out, and so
// are slots being imported or migrated ("[slot->-id]").
func parseClusterNodes(text, self string) ([]ClusterNode, error) {
	var nodes []ClusterNode
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		flags := strings.Split(f[2], ",")
		if slices.Contains(flags, "handshake") || slices.Contains(flags, "noaddr") {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		addr, _, _ = strings.Cut(addr, ",")
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("malformed address in line %q: %w", line, err)
		}
		if host == "" && slices.Contains(flags, "myself") {
			if selfHost, _, err := net.SplitHostPort(self); err == nil {
				addr = net.JoinHostPort(selfHost, port)
			}
		}
		n := ClusterNode{
			ID:      f[0],
			Addr:    addr,
			Master:  slices.Contains(flags, "master"),
			Failing: slices.Contains(flags, "fail") || slices.Contains(flags, "fail?"),
		}
		if !n.Master && f[3] != "-" {
			n.MasterID = f[3]
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue
			}
			lo, hi, isRange := strings.Cut(s, "-")
			if !isRange {
				hi = lo
			}
			start, err1 := strconv.Atoi(lo)
			end, err2 := strconv.Atoi(hi)
			if err := errors.Join(err1, err2); err != nil || start > end {
				return nil, fmt.Errorf("malformed slot range %q in line %q", s, line)
			}
			n.Slots = append(n.Slots, SlotRange{Start: start, End: end})
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// infoFields parses the "key:value" lines of an INFO or CLUSTER INFO reply.
func infoFields(info string) map[string]string {
	fields := make(map[string]string)
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			fields[k] = v
		}
	}
	return fields
}
