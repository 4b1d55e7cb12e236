package redistest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterCtx returns a context generous enough for a failover and a restart.
func clusterCtx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 2*clusterReadyTimeout)
	t.Cleanup(cancel)
	return c
}

// eventually polls check until it returns nil, failing the test with the
// last error once timeout has passed.
func eventually(t *testing.T, ctx context.Context, timeout time.Duration, what string, check func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(clusterPollInterval)
	defer ticker.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		case <-ticker.C:
		}
	}
}

// roles counts the nodes by role and maps each replica to its master's
// address, failing the test on a replica whose master is unknown.
func roles(t *testing.T, nodes []ClusterNode) (masters []ClusterNode, replicaOf map[string]string) {
	t.Helper()
	byID := make(map[string]ClusterNode, len(nodes))
	for _, n := range nodes {
		byID[n.ID] = n
	}
	replicaOf = make(map[string]string)
	for _, n := range nodes {
		switch {
		case n.Failing:
		case n.Master && len(n.Slots) > 0:
			masters = append(masters, n)
		case !n.Master:
			m, ok := byID[n.MasterID]
			if !ok {
				t.Fatalf("replica %s replicates unknown master %q", n.Addr, n.MasterID)
			}
			replicaOf[n.Addr] = m.Addr
		}
	}
	return masters, replicaOf
}

// readOnlyClient returns a client to the replica at addr that may read the
// keys of its master's slots.
func readOnlyClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr:      addr,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() },
	})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// TestCluster is not parallel: its external-cluster subtest sets an
// environment variable.
func TestCluster(t *testing.T) {
	began := time.Now()
	c := StartCluster(t)
	startTook := time.Since(began)
	ctx := clusterCtx(t)

	nodes, err := c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	masters, replicaOf := roles(t, nodes)
	if len(masters) != 3 || len(replicaOf) != 3 {
		t.Fatalf("got %d masters and %d replicas, want 3 and 3: %+v", len(masters), len(replicaOf), nodes)
	}
	for _, m := range masters {
		n := 0
		for _, of := range replicaOf {
			if of == m.Addr {
				n++
			}
		}
		if n != 1 {
			t.Errorf("master %s has %d replicas, want 1", m.Addr, n)
		}
	}
	if addrs := c.Addrs(); len(addrs) != 6 {
		t.Fatalf("Addrs() = %v, want 6 addresses", addrs)
	}
	if got, err := c.Masters(ctx); err != nil || len(got) != 3 {
		t.Fatalf("Masters() = %v, %v; want 3 addresses", got, err)
	}

	t.Run("External", func(t *testing.T) {
		t.Setenv(EnvClusterAddrs, strings.Join(c.Addrs()[:2], ", "))
		ext := StartCluster(t)
		if got, want := ext.Addrs(), c.Addrs()[:2]; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("external Addrs() = %v, want the seeds %v", got, want)
		}
		if got, err := ext.Masters(ctx); err != nil || len(got) != 3 {
			t.Errorf("external Masters() = %v, %v; want 3 addresses", got, err)
		}
		if err := ext.Client(t).Set(ctx, "redistest:external", "v", 0).Err(); err != nil {
			t.Errorf("SET through the external cluster's client: %v", err)
		}
		var inner *testing.T
		t.Run("KillMasterSkips", func(t *testing.T) {
			inner = t
			ext.KillMaster(t, "redistest:external")
			t.Error("KillMaster on an external cluster did not skip")
		})
		if !inner.Skipped() {
			t.Error("KillMaster on an external cluster: subtest not skipped")
		}
	})

	t.Run("Failover", func(t *testing.T) {
		testClusterFailover(t, c, replicaOf)
	})
	t.Logf("cluster start took %v", startTook.Round(time.Millisecond))
}

func testClusterFailover(t *testing.T, c *Cluster, replicaOf map[string]string) {
	ctx := clusterCtx(t)
	rdb := c.Client(t)

	// Keys in many slots, on every master.
	const keys = 300
	for i := range keys {
		if err := rdb.Set(ctx, "failover:"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatalf("SET failover:%d: %v", i, err)
		}
	}
	perMaster := make(map[string]int64)
	var total int64
	for _, m := range mustMasters(t, ctx, c) {
		n, err := c.admin(m).DBSize(ctx).Result()
		if err != nil {
			t.Fatalf("DBSIZE on %s: %v", m, err)
		}
		perMaster[m] = n
		total += n
	}
	if len(perMaster) != 3 || total < keys {
		t.Fatalf("keys per master = %v, want %d keys spread over 3 masters", perMaster, keys)
	}
	for m, n := range perMaster {
		if n == 0 {
			t.Errorf("master %s holds no key: %v", m, perMaster)
		}
	}

	const key = "failover:0"
	victim, err := c.MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var heir string
	for r, m := range replicaOf {
		if m == victim {
			heir = r
		}
	}
	if heir == "" {
		t.Fatalf("master %s of %q has no replica: %v", victim, key, replicaOf)
	}
	// Replication is asynchronous: wait until the heir has the key, so that
	// the failover must keep it.
	replica := readOnlyClient(t, heir)
	eventually(t, ctx, 5*time.Second, "replica "+heir+" has "+key, func() error {
		got, err := replica.Get(ctx, key).Result()
		if err == nil && got != "0" {
			t.Fatalf("replica %s: GET %s = %q, want \"0\"", heir, key, got)
		}
		return err
	})

	killed := c.KillMaster(t, key)
	killedAt := time.Now()
	if killed != victim {
		t.Fatalf("KillMaster killed %s, want the master of %q, %s", killed, key, victim)
	}
	c.WaitHealthy(t)
	failoverTook := time.Since(killedAt)

	newMaster, err := c.MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if newMaster != heir {
		t.Fatalf("after failover %q is served by %s, want its former replica %s (killed %s)", key, newMaster, heir, killed)
	}
	if ms := mustMasters(t, ctx, c); len(ms) != 3 || strings.Contains(strings.Join(ms, ","), killed) {
		t.Fatalf("masters after failover = %v, want 3 without the killed %s", ms, killed)
	}

	// The old ClusterClient still maps the slot to the dead master: go-redis
	// reloads its state on MOVED, not on connection errors
	// (redis/go-redis#3979), so it needs telling.
	staleErr := rdb.Set(ctx, key, "stale", 0).Err()
	reloadedAt := time.Now()
	rdb.ReloadState(ctx)
	eventually(t, ctx, 5*time.Second, "SET "+key+" through the ClusterClient after failover and ReloadState", func() error {
		return rdb.Set(ctx, key, "after", 0).Err()
	})
	t.Logf("SET through the ClusterClient right after failover: %v; after ReloadState it succeeded in %v",
		staleErr, time.Since(reloadedAt).Round(time.Millisecond))
	if got, err := c.admin(newMaster).Get(ctx, key).Result(); err != nil || got != "after" {
		t.Fatalf("GET %s on the new master %s = %q, %v; want \"after\"", key, newMaster, got, err)
	}
	if got, err := rdb.Get(ctx, "failover:1").Result(); err != nil || got != "1" {
		t.Errorf("GET failover:1 after failover = %q, %v; want \"1\"", got, err)
	}

	// The killed master comes back as a replica of its successor.
	restartedAt := time.Now()
	c.RestartNode(t, killed)
	c.WaitHealthy(t)
	// Healthy means every slot is served; the restarted node may take a
	// moment more to be listed as its successor's replica.
	eventually(t, ctx, 15*time.Second, "the restarted "+killed+" replicating "+newMaster, func() error {
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		masters, replicaOf := roles(t, nodes)
		if len(masters) != 3 || len(replicaOf) != 3 || replicaOf[killed] != newMaster {
			return fmt.Errorf("%d masters, replicas %v", len(masters), replicaOf)
		}
		return nil
	})
	rejoinTook := time.Since(restartedAt)
	restarted := readOnlyClient(t, killed)
	eventually(t, ctx, 5*time.Second, "restarted "+killed+" has the new value of "+key, func() error {
		got, err := restarted.Get(ctx, key).Result()
		if err == nil && got != "after" {
			return fmt.Errorf("GET %s = %q, want \"after\"", key, got)
		}
		return err
	})

	t.Logf("failover (SIGKILL to WaitHealthy) took %v; restarted master rejoined as replica in %v",
		failoverTook.Round(time.Millisecond), rejoinTook.Round(time.Millisecond))
}

func mustMasters(t *testing.T, ctx context.Context, c *Cluster) []string {
	t.Helper()
	ms, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestStartClusterSkipsWithoutBinaries(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(EnvRequire, "0")
	t.Setenv(EnvClusterAddrs, "")
	var inner *testing.T
	t.Run("start", func(t *testing.T) {
		inner = t
		StartCluster(t)
		t.Error("StartCluster without redis-server and redis-cli did not skip")
	})
	if !inner.Skipped() {
		t.Error("StartCluster without binaries: subtest not skipped")
	}
}

func TestParseClusterNodes(t *testing.T) {
	const (
		m1 = "07c37dfeb235213a872192d90877d0cd55635b91"
		r1 = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"
	)
	for _, tc := range []struct {
		name, text, self string
		want             []ClusterNode
		ok               bool
	}{
		{
			name: "master and replica",
			text: m1 + " 127.0.0.1:30004@31004,host-a myself,master - 0 1426238317239 4 connected 0-5460 5465 [5466->-" + r1 + "]\n" +
				r1 + " 127.0.0.1:30005@31005 slave " + m1 + " 0 1426238316232 5 connected\n",
			self: "127.0.0.1:30004",
			want: []ClusterNode{
				{ID: m1, Addr: "127.0.0.1:30004", Master: true, Slots: []SlotRange{{0, 5460}, {5465, 5465}}},
				{ID: r1, Addr: "127.0.0.1:30005", MasterID: m1},
			},
			ok: true,
		},
		{
			name: "own address not learnt yet",
			text: m1 + " :30004@31004 myself,master - 0 0 0 connected\r\n",
			self: "127.0.0.1:30004",
			want: []ClusterNode{{ID: m1, Addr: "127.0.0.1:30004", Master: true}},
			ok:   true,
		},
		{
			name: "failing nodes, handshake and noaddr left out",
			text: m1 + " 127.0.0.1:30004@31004 master,fail - 0 0 1 disconnected\n" +
				r1 + " 127.0.0.1:30005@31005 slave,fail? " + m1 + " 0 0 1 connected\n" +
				"abc 127.0.0.1:30006@31006 handshake - 0 0 0 connected\n" +
				"def :0@0 master,noaddr - 0 0 0 disconnected\n",
			want: []ClusterNode{
				{ID: m1, Addr: "127.0.0.1:30004", Master: true, Failing: true},
				{ID: r1, Addr: "127.0.0.1:30005", MasterID: m1, Failing: true},
			},
			ok: true,
		},
		{name: "short line", text: m1 + " 127.0.0.1:30004@31004 master\n"},
		{name: "bad slot", text: m1 + " 127.0.0.1:30004@31004 master - 0 0 1 connected 10-x\n"},
		{name: "reversed range", text: m1 + " 127.0.0.1:30004@31004 master - 0 0 1 connected 10-5\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseClusterNodes(tc.text, tc.self)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if g.ID != w.ID || g.Addr != w.Addr || g.Master != w.Master || g.MasterID != w.MasterID ||
					g.Failing != w.Failing || !slices.Equal(g.Slots, w.Slots) {
					t.Errorf("node %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestClusterNodeServes(t *testing.T) {
	n := ClusterNode{Slots: []SlotRange{{0, 10}, {20, 20}}}
	for slot, want := range map[int]bool{0: true, 10: true, 11: false, 20: true, 21: false, 16383: false} {
		if got := n.serves(slot); got != want {
			t.Errorf("serves(%d) = %v, want %v", slot, got, want)
		}
	}
}

func TestInfoFields(t *testing.T) {
	got := infoFields("# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n\r\ncluster_state:ok\n")
	for k, want := range map[string]string{"role": "slave", "master_link_status": "up", "cluster_state": "ok"} {
		if got[k] != want {
			t.Errorf("infoFields[%q] = %q, want %q", k, got[k], want)
		}
	}
	if _, ok := got["# Replication"]; ok || len(got) != 3 {
		t.Errorf("infoFields = %v, want exactly 3 fields", got)
	}
}
