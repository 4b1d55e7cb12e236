package redistest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// Faults a test injects into its cluster: a primary killed, a node
// restarted or paused.

// KillMaster sends SIGKILL to the process of the master serving key's hash
// slot, waits for it to exit and returns its address. Its replica takes over
// after about two [ClusterNodeTimeout]s; [Cluster.WaitHealthy] waits for
// that. The killed node stays down until [Cluster.RestartNode]. KillMaster
// fails the test if the master cannot be found, and skips it for an
// external cluster (REDIS_CLUSTER_ADDRS), whose processes are not ours.
func (c *Cluster) KillMaster(tb testing.TB, key string) (addr string) {
	tb.Helper()
	if c.nodes == nil {
		tb.Skipf("redistest: SKIPPING: KillMaster needs a cluster started by StartCluster, not the external %s=%v", EnvClusterAddrs, c.seeds)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	addr, err := c.MasterForKey(ctx, key)
	if err != nil {
		tb.Fatalf("redistest: KillMaster(%q): %v", key, err)
	}
	s := c.node(addr)
	if s == nil {
		tb.Fatalf("redistest: KillMaster(%q): master %s is not a node of this cluster %v", key, addr, c.Addrs())
	}
	s.Kill()
	return addr
}

// RestartNode starts the killed node at addr again with its cluster config
// file, on the same port, and waits until it answers PING. A master that was
// failed over in the meantime rejoins as a replica of its successor, once
// the cluster has told it so; [Cluster.WaitHealthy] waits for that. A node
// that is still running is stopped first, as by [Server.Stop]. RestartNode
// fails the test if addr is not a node of the cluster or does not come
// back, and skips it for an external cluster (REDIS_CLUSTER_ADDRS).
func (c *Cluster) RestartNode(tb testing.TB, addr string) {
	tb.Helper()
	if c.nodes == nil {
		tb.Skipf("redistest: SKIPPING: RestartNode needs a cluster started by StartCluster, not the external %s=%v", EnvClusterAddrs, c.seeds)
	}
	s := c.node(addr)
	if s == nil {
		tb.Fatalf("redistest: RestartNode(%q): not a node of this cluster %v", addr, c.Addrs())
	}
	s.Restart(tb)
}

// ReplicaOf returns the address of a replica of the master at masterAddr,
// as the cluster lists it.
func (c *Cluster) ReplicaOf(ctx context.Context, masterAddr string) (string, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return "", err
	}
	var masterID string
	for _, n := range nodes {
		if n.Addr == masterAddr {
			masterID = n.ID
		}
	}
	for _, n := range nodes {
		if masterID != "" && !n.Master && n.MasterID == masterID && !n.Failing {
			return n.Addr, nil
		}
	}
	return "", fmt.Errorf("redistest: no live replica of %s", masterAddr)
}

// PauseNode freezes the process of the node at addr (SIGSTOP), so that it
// neither answers nor replicates, and returns a func that lets it go on
// (SIGCONT); a node still paused when the test ends is resumed first. It
// fails the test for a node that is not running, and skips it for an
// external cluster or where the signals do not exist.
func (c *Cluster) PauseNode(tb testing.TB, addr string) (resume func()) {
	tb.Helper()
	if c.nodes == nil {
		tb.Skipf("redistest: SKIPPING: PauseNode needs a cluster started by StartCluster, not the external %s=%v", EnvClusterAddrs, c.seeds)
	}
	s := c.node(addr)
	if s == nil {
		tb.Fatalf("redistest: PauseNode(%q): not a node of this cluster %v", addr, c.Addrs())
	}
	s.mu.Lock()
	proc := s.proc
	s.mu.Unlock()
	if proc == nil {
		tb.Fatalf("redistest: PauseNode(%q): the node is not running", addr)
	}
	if err := pauseProcess(proc); err != nil {
		if errors.Is(err, errUnsupported) {
			tb.Skipf("redistest: SKIPPING: PauseNode: %v", err)
		}
		tb.Fatalf("redistest: PauseNode(%q): %v", addr, err)
	}
	var once sync.Once
	resume = func() {
		once.Do(func() { _ = resumeProcess(proc) })
	}
	tb.Cleanup(resume)
	return resume
}
