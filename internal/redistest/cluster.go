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
