package redstream

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// cutProxy is a TCP proxy between a test's client and its redis-server
// that injects the faults a network and a paused process cause, at points
// a test chooses:
//
//   - CutAfter: Redis runs a command, then the connection dies before its
//     reply reaches the client (the reply is dropped, both ends closed).
//   - Stall: all traffic is held, in both directions, until Resume (a
//     stalled network, a paused process); nothing is lost.
//   - Down: every connection is closed, and new ones are closed as soon
//     as they open, until Up (Redis unreachable).
type cutProxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu      sync.Mutex
	cond    *sync.Cond
	stalled bool // all traffic held
	reqHeld bool // client-to-server traffic held
	down    bool
	cuts    map[string]int // command name (lower case) -> cuts left
	cutDone int
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// startCutProxy starts a proxy to target on a free loopback port; it
// stops with the test.
func startCutProxy(t testing.TB, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, target: target, cuts: map[string]int{}, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the address clients connect to.
func (p *cutProxy) Addr() string { return p.ln.Addr().String() }

// CutAfter arms the proxy: the next n requests that carry the command name
// (such as "xadd" or "evalsha") reach Redis, and the connection they came
// on is closed when Redis replies, the reply dropped.
func (p *cutProxy) CutAfter(command string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts[strings.ToLower(command)] += n
}

// Cuts returns how many connections CutAfter has cut.
func (p *cutProxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cutDone
}

// Stall holds all traffic until Resume.
func (p *cutProxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = true
}

// Down closes every connection and refuses new ones until Up.
func (p *cutProxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// Up lets connections through again.
func (p *cutProxy) Up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// StallRequests holds what clients send until Resume, and lets replies
// through: commands in flight complete, new ones wait.
func (p *cutProxy) StallRequests() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqHeld = true
}

// Resume lets held traffic through.
func (p *cutProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = false
	p.reqHeld = false
	p.cond.Broadcast()
}

func (p *cutProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.stalled, p.reqHeld = false, false
	p.cond.Broadcast()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			client.Close()
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		if p.closed || p.down {
			closed := p.closed
			p.mu.Unlock()
			client.Close()
			server.Close()
			if closed {
				return
			}
			continue
		}
		p.conns[client], p.conns[server] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pair := &proxyPair{p: p, client: client, server: server}
		p.wg.Add(2)
		go pair.forward(client, server, true)
		go pair.forward(server, client, false)
	}
}

// proxyPair is one client connection and its server connection.
type proxyPair struct {
	p              *cutProxy
	client, server net.Conn
	mu             sync.Mutex
	cutNext        bool // drop the next reply and close
}

// forward copies from src to dst; up is the client-to-server direction.
func (c *proxyPair) forward(src, dst net.Conn, up bool) {
	defer c.p.wg.Done()
	defer c.closeBoth()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !c.p.waitRunning(up) {
				return
			}
			chunk := buf[:n]
			if up {
				c.armFor(chunk)
			} else if c.takeCut() {
				return
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// armFor marks the pair to cut the reply to chunk if chunk carries a
// command the proxy was asked to cut after.
func (c *proxyPair) armFor(chunk []byte) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	lower := bytes.ToLower(chunk)
	for name, left := range c.p.cuts {
		if left > 0 && bytes.Contains(lower, []byte("\r\n"+name+"\r\n")) {
			c.p.cuts[name]--
			c.mu.Lock()
			c.cutNext = true
			c.mu.Unlock()
			return
		}
	}
}

// takeCut reports whether this reply is to be dropped, counting the cut.
func (c *proxyPair) takeCut() bool {
	c.mu.Lock()
	cut := c.cutNext
	c.cutNext = false
	c.mu.Unlock()
	if cut {
		c.p.mu.Lock()
		c.p.cutDone++
		c.p.mu.Unlock()
	}
	return cut
}

// waitRunning blocks while traffic in this direction (up: client to
// server) is held; false once the proxy is closed.
func (p *cutProxy) waitRunning(up bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for (p.stalled || up && p.reqHeld) && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}

func (c *proxyPair) closeBoth() {
	c.client.Close()
	c.server.Close()
	c.p.mu.Lock()
	delete(c.p.conns, c.client)
	delete(c.p.conns, c.server)
	c.p.mu.Unlock()
}

// eventuallyCut waits until the proxy has made n cuts.
func (p *cutProxy) eventuallyCut(t testing.TB, n int) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool { return p.Cuts() >= n }, "the proxy never cut %d replies", n)
}
