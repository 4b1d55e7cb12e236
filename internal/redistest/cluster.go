package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// EnvClusterAddrs names the environment variable holding the
	// comma-separated seed addresses ("host:port,host:port") of an
	// externally managed Redis Cluster, used by [StartCluster] instead of
	// starting one.
	EnvClusterAddrs = "REDIS_CLUSTER_ADDRS"

	// ClusterNodeTimeout is the cluster-node-timeout of the nodes started by
	// [StartCluster]. A killed master is failed over by its replica roughly
	// two node timeouts later: one to be flagged as failing, the rest for
	// the other masters to agree and the replica to win the election.
	ClusterNodeTimeout = time.Second

	cliBinary = "redis-cli"

	// clusterMasters and clusterReplicas (per master) shape a started cluster.
	clusterMasters  = 3
	clusterReplicas = 1
	// clusterSlots is the number of hash slots of every Redis Cluster.
	clusterSlots = 16384

	// clusterReadyTimeout bounds the whole start of a cluster after its
	// processes answer PING, and each [Cluster.WaitHealthy].
	clusterReadyTimeout = 30 * time.Second
	// clusterPollInterval is how often the cluster's state is polled.
	clusterPollInterval = 25 * time.Millisecond
	// clusterProbeKeys is how many keys the start-up check writes through a
	// ClusterClient; their fixed names hash to slots of every master.
	clusterProbeKeys = 64
)

// Cluster is a Redis Cluster for tests: either six local redis-server
// processes (three masters, three replicas) owned by the test, started with
// [StartCluster], or an external cluster named by REDIS_CLUSTER_ADDRS. Its
// methods are safe for concurrent use.
type Cluster struct {
	seeds []string  // external cluster: its seed addresses
	nodes []*Server // owned cluster: every node, in creation order

	mu      sync.Mutex
	closed  bool
	clients map[string]*redis.Client // admin connections, by node address
}

// ClusterNode is one node of a Redis Cluster as listed by CLUSTER NODES.
type ClusterNode struct {
	// ID is the node's cluster ID.
	ID string
	// Addr is the node's client address, "host:port".
	Addr string
	// Master reports whether the node is a master. A replica replicates
	// the master whose ID is MasterID.
	Master bool
	// MasterID is the ID of the master of a replica; empty for a master.
	MasterID string
	// Failing reports whether the node that was asked flags this node as
	// failed (fail) or possibly failed (fail?, PFAIL).
	Failing bool
	// Slots are the hash slots the node serves; empty for replicas and for
	// masters that lost their slots in a failover.
	Slots []SlotRange
}

// SlotRange is an inclusive range of hash slots, from Start to End.
type SlotRange struct {
	Start, End int
}

// StartCluster returns a Redis Cluster for the test. If REDIS_CLUSTER_ADDRS
// is set it returns that external cluster, after checking that it is
// healthy as by [Cluster.WaitHealthy]; [Cluster.KillMaster] and
// [Cluster.RestartNode] then skip the test. Otherwise it starts six
// redis-server processes on free loopback ports, in a fresh temporary
// directory, joins them with redis-cli --cluster create into three masters
// with one replica each, and waits until every node reports cluster_state:ok,
// every replica is in sync and a ClusterClient can write and read keys on
// every master. The nodes run with a cluster-node-timeout of
// [ClusterNodeTimeout] and a cluster-replica-validity-factor of 0, so that
// any replica may take over from its killed master within a few seconds.
// The processes are killed and their files removed when the test completes,
// whether it passed or not. StartCluster skips or fails the test when
// redis-server or redis-cli is not on PATH (see the package doc).
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	if env := os.Getenv(EnvClusterAddrs); strings.TrimSpace(env) != "" {
		c := &Cluster{clients: make(map[string]*redis.Client)}
		for _, a := range strings.Split(env, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.seeds = append(c.seeds, a)
			}
		}
		tb.Cleanup(c.closeClients)
		c.WaitHealthy(tb)
		return c
	}

	serverBin, cliBin := lookClusterBinaries(tb)
	began := time.Now()
	dir := tb.TempDir()
	c := &Cluster{clients: make(map[string]*redis.Client)}
	for i := range clusterMasters * (1 + clusterReplicas) {
		c.nodes = append(c.nodes, &Server{bin: serverBin, dir: filepath.Join(dir, "node-"+strconv.Itoa(i))})
	}
	// Registered before anything starts, so that a failure below leaves no
	// process behind. Cleanups run last in, first out: clients the test
	// opens later are closed before the nodes are killed, and the nodes are
	// killed before the directory is removed.
	tb.Cleanup(c.killAll)
	tb.Cleanup(c.closeClients)

	if err := c.startNodes(); err != nil {
		tb.Fatalf("redistest: starting cluster nodes: %v", err)
	}
	processes := time.Since(began)

	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(clusterReplicas), "--cluster-yes")
	out, err := exec.CommandContext(ctx, cliBin, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("redistest: %s %s: %v\n%s", cliBin, strings.Join(args, " "), err, out)
	}
	created := time.Since(began)

	if err := c.waitReady(ctx); err != nil {
		tb.Fatalf("redistest: cluster created by %s did not become ready: %v\n--- %s output ---\n%s", cliBinary, err, cliBinary, out)
	}
	tb.Logf("redistest: Redis Cluster %v ready in %v (processes %v, %s --cluster create %v, settling %v)",
		c.Addrs(), time.Since(began).Round(time.Millisecond), processes.Round(time.Millisecond),
		cliBinary, (created - processes).Round(time.Millisecond), (time.Since(began) - created).Round(time.Millisecond))
	return c
}

// lookClusterBinaries returns the paths of redis-server and redis-cli, or
// skips (or fails, when EnvRequire is true) the test if either is missing.
func lookClusterBinaries(tb testing.TB) (serverBin, cliBin string) {
	tb.Helper()
	serverBin, serverErr := exec.LookPath(serverBinary)
	cliBin, cliErr := exec.LookPath(cliBinary)
	err := errors.Join(serverErr, cliErr)
	if err == nil {
		return serverBin, cliBin
	}
	where := fmt.Sprintf("%s and %s are needed on PATH for a Redis Cluster and %s is unset", serverBinary, cliBinary, EnvClusterAddrs)
	if requireRedis() {
		tb.Fatalf("redistest: real-Redis test FAILED: %s, but %s=%s requires it (%v)",
			where, EnvRequire, os.Getenv(EnvRequire), err)
	}
	msg := fmt.Sprintf("redistest: SKIPPING real-Redis Cluster test: %s (%v; set %s=1 to fail instead)", where, err, EnvRequire)
	skipNoticeOnce.Do(func() { fmt.Fprintf(os.Stderr, "\n*** %s ***\n\n", msg) })
	tb.Skip(msg)
	return "", ""
}

// startNodes starts every node concurrently on free ports, each with its own
// directory, cluster config file and cluster bus port.
func (c *Cluster) startNodes() error {
	// Taking all ports while holding their listeners makes them distinct;
	// a node whose port is grabbed before it binds retries with new ones.
	ports, err := freePorts(2 * len(c.nodes))
	if err != nil {
		return err
	}
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, s := range c.nodes {
		wg.Go(func() { errs[i] = startClusterNode(s, ports[2*i], ports[2*i+1]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startClusterNode starts s as a cluster node on port, with its cluster bus
// on busPort, trying other free ports if either is taken.
func startClusterNode(s *Server, port, busPort int) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("creating node directory: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for attempt := range startAttempts {
		if attempt > 0 {
			ports, perr := freePorts(2)
			if perr != nil {
				return perr
			}
			port, busPort = ports[0], ports[1]
		}
		s.port = port
		// An explicit bus port (Redis 7+) frees us from needing port+10000
		// to be free and below 65536 as well. The config file is named by
		// port so that a failed attempt's file is never picked up again.
		s.extraArgs = []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, "nodes-"+strconv.Itoa(port)+".conf"),
			"--cluster-port", strconv.Itoa(busPort),
			"--cluster-node-timeout", strconv.FormatInt(ClusterNodeTimeout.Milliseconds(), 10),
			"--cluster-replica-validity-factor", "0",
			// Without this a master waits 5 s for more replicas before
			// the first (diskless) full sync, doubling the start time.
			"--repl-diskless-sync-delay", "0",
		}
		var bindErr bool
		if bindErr, err = s.startLocked(); err == nil || !bindErr {
			return err
		}
	}
	return fmt.Errorf("after %d attempts: %w", startAttempts, err)
}

// freePorts returns n distinct loopback TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// killAll kills every node of an owned cluster.
func (c *Cluster) killAll() {
	for _, s := range c.nodes {
		s.Kill()
	}
}

// closeClients closes the admin connections; later calls open new ones only
// to fail.
func (c *Cluster) closeClients() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for addr, rdb := range c.clients {
		_ = rdb.Close()
		delete(c.clients, addr)
	}
}

// Addrs returns the addresses of all nodes of a started cluster, masters and
// replicas, including killed ones; or the seed addresses of an external
// cluster. Any of them may seed a ClusterClient.
func (c *Cluster) Addrs() []string {
	if c.nodes == nil {
		return slices.Clone(c.seeds)
	}
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Client returns a new go-redis ClusterClient seeded with [Cluster.Addrs]
// and otherwise default options. The client is closed when the test and its
// subtests complete.
//
// After [Cluster.KillMaster] such a client keeps sending the dead master's
// slots to its address: go-redis v9 reloads its slot map on MOVED replies
// and every ClusterStateReloadInterval (60 s by default), but not on
// connection errors (redis/go-redis#3979). A test that wants the client to
// follow the failover calls its ReloadState after [Cluster.WaitHealthy].
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Nodes returns the cluster's nodes as listed by CLUSTER NODES on the first
// live node that answers, so it may lag behind a failover in progress; call
// [Cluster.WaitHealthy] first for a settled view. Nodes still in the
// handshake or without a known address are left out.
func (c *Cluster) Nodes(ctx context.Context) ([]ClusterNode, error) {
	var errs []error
	for _, addr := range c.liveAddrs() {
		nodes, err := c.nodesSeenBy(ctx, addr)
		if err == nil {
			return nodes, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("redistest: no live cluster node to ask")
	}
	return nil, errors.Join(errs...)
}

// Masters returns the addresses of the masters that serve slots and are not
// flagged as failing, as seen by [Cluster.Nodes], sorted.
func (c *Cluster) Masters(ctx context.Context) ([]string, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, n := range nodes {
		if n.Master && !n.Failing && len(n.Slots) > 0 {
			addrs = append(addrs, n.Addr)
		}
	}
	slices.Sort(addrs)
	return addrs, nil
}

// MasterForKey returns the address of the master serving key's hash slot as
// seen by [Cluster.Nodes]. During a failover that may still be the failed
// master; call [Cluster.WaitHealthy] first.
func (c *Cluster) MasterForKey(ctx context.Context, key string) (string, error) {
	var errs []error
	for _, addr := range c.liveAddrs() {
		rdb := c.admin(addr)
		slot, err := rdb.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("redistest: CLUSTER KEYSLOT on %s: %w", addr, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		nodes, err := c.nodesSeenBy(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range nodes {
			if n.Master && n.serves(int(slot)) {
				return n.Addr, nil
			}
		}
		return "", fmt.Errorf("redistest: %s knows no master for slot %d of key %q", addr, slot, key)
	}
	if len(errs) == 0 {
		return "", errors.New("redistest: no live cluster node to ask")
	}
	return "", errors.Join(errs...)
}

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

// liveAddrs returns the addresses of the running nodes of a started cluster,
// or the seeds of an external one.
func (c *Cluster) liveAddrs() []string {
	if c.nodes == nil {
		return slices.Clone(c.seeds)
	}
	var addrs []string
	for _, s := range c.nodes {
		if s.running() {
			addrs = append(addrs, s.Addr())
		}
	}
	return addrs
}

// node returns the owned node at addr, or nil.
func (c *Cluster) node(addr string) *Server {
	for _, s := range c.nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// running reports whether the server process is up (started and not
// killed or stopped).
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// admin returns the admin connection to the node at addr. Its short
// timeouts and absent retries keep a poll iteration short when a node is
// down or busy.
func (c *Cluster) admin(addr string) *redis.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rdb, ok := c.clients[addr]; ok {
		return rdb
	}
	rdb := redis.NewClient(&redis.Options{
		Addr:            addr,
		DialTimeout:     250 * time.Millisecond,
		ReadTimeout:     time.Second,
		WriteTimeout:    time.Second,
		MaxRetries:      -1,
		DialerRetries:   1,
		PoolSize:        2,
		DisableIdentity: true,
		Protocol:        2,
	})
	if c.closed {
		// After cleanup: hand out a closed client rather than leak one.
		_ = rdb.Close()
		return rdb
	}
	c.clients[addr] = rdb
	return rdb
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
