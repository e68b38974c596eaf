package rimap

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// pool keeps up to size connections that are connected, greeted and (with
// TLS) secured, so that a request pays only for its LOGIN. A connection
// whose LOGIN was rejected goes back (the server is still waiting for a
// LOGIN on it); one whose LOGIN succeeded is logged out, and a new one is
// opened in the background to replace it. Connections idle for longer than
// idle are logged out; one the server closed or spoke on is never handed
// out.
type pool struct {
	m      *Mech
	size   int
	idle   time.Duration
	ctx    context.Context // cancelled by close: stops background dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // janitor and filler

	mu       sync.Mutex
	conns    []*conn // ready, the most recently used last
	filling  bool
	closed   bool
	failedAt time.Time // the last background dial that failed

	// counters, for tests and debugging
	dials, reuses, expired, dead atomic.Int64
}

func newPool(m *Mech, size int, idle time.Duration) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{m: m, size: size, idle: idle, ctx: ctx, cancel: cancel}
	p.wg.Add(1)
	go p.janitor()
	p.refill() // warm up now, in the background: a failure is only logged
	return p
}

// get returns a ready connection that is still usable, or nil. The most
// recently used comes first, so that under light load the others reach
// their idle limit and are let go.
func (p *pool) get() *conn {
	for {
		p.mu.Lock()
		n := len(p.conns)
		if n == 0 || p.closed {
			p.mu.Unlock()
			return nil
		}
		c := p.conns[n-1]
		p.conns[n-1] = nil
		p.conns = p.conns[:n-1]
		p.mu.Unlock()
		switch {
		case time.Since(c.idle) > p.idle:
			p.expired.Add(1)
			c.logout()
		case !c.alive():
			p.dead.Add(1)
			c.close()
		default:
			p.reuses.Add(1)
			return c
		}
	}
}

// put takes back a connection whose LOGIN was rejected.
func (p *pool) put(c *conn) {
	c.idle = time.Now()
	p.mu.Lock()
	if p.closed || len(p.conns) >= p.size {
		p.mu.Unlock()
		c.logout()
		return
	}
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

// refillBackoff keeps a server that is down from getting a background dial
// on top of every request's own.
const refillBackoff = time.Second

// refill starts a background filler unless one runs, the pool is full, or
// the last background dial failed a moment ago.
func (p *pool) refill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.filling || len(p.conns) >= p.size || time.Since(p.failedAt) < refillBackoff {
		return
	}
	p.filling = true
	p.wg.Add(1)
	go p.fill()
}

// fill opens connections one after the other until the pool is full. It
// stops at the first failure: the next request tries again, so a server
// that is down is not hammered.
func (p *pool) fill() {
	defer p.wg.Done()
	done := func() { p.filling = false; p.mu.Unlock() }
	for {
		p.mu.Lock()
		if p.closed || len(p.conns) >= p.size {
			done()
			return
		}
		p.mu.Unlock()
		c, res, config := p.m.connect(p.ctx)
		if c == nil {
			p.mu.Lock()
			p.failedAt = time.Now()
			done()
			switch {
			case p.ctx.Err() != nil:
			case config:
				p.m.logConfig(res.Reason)
			default:
				p.m.logLimited(slog.LevelWarn, "cannot open a ready connection: "+res.Reason)
			}
			return
		}
		p.dials.Add(1)
		c.idle = time.Now()
		p.mu.Lock()
		if p.closed || len(p.conns) >= p.size {
			done()
			c.logout()
			return
		}
		p.conns = append(p.conns, c)
		p.mu.Unlock()
	}
}

// janitor logs out connections past their idle time and drops those the
// server closed, so that neither lingers until the next request.
func (p *pool) janitor() {
	defer p.wg.Done()
	t := time.NewTicker(min(max(p.idle/4, 5*time.Millisecond), 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			p.sweep()
		}
	}
}

func (p *pool) sweep() {
	now := time.Now()
	var expired, dead []*conn
	p.mu.Lock()
	keep := p.conns[:0]
	for _, c := range p.conns {
		switch st := peek(c.raw); {
		case now.Sub(c.idle) > p.idle:
			expired = append(expired, c)
		case st == peekEOF || st == peekError || st == peekData && !c.secure:
			// (data on a TLS connection may be a session ticket: get sorts
			// that out)
			dead = append(dead, c)
		default:
			keep = append(keep, c)
		}
	}
	clear(p.conns[len(keep):])
	p.conns = keep
	p.mu.Unlock()
	p.expired.Add(int64(len(expired)))
	p.dead.Add(int64(len(dead)))
	for _, c := range expired {
		c.logout()
	}
	for _, c := range dead {
		c.close()
	}
}

// ready reports how many connections wait in the pool.
func (p *pool) ready() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// close logs out the ready connections and waits for the background work.
func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	for _, c := range conns {
		c.logout()
	}
}
