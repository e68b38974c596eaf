package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A UNIX-socket listener is served the way saslauthd's prefork workers
// serve it: a few goroutines blocked in accept(2) on the listening
// descriptor, each answering the connection it took before it accepts
// again. Through Go's netpoller every connection cost an epoll
// registration and removal, a wake-up of a parked goroutine, and a
// hand-off between threads: about two thirds of the CPU of a cache hit,
// far more than saslgate's own work (the bench's shadow-cache scenario).
//
// The set is kept small on purpose: under load the clients queue in the
// listen backlog, and an acceptor finds the next connection, with its
// request already sent, without sleeping; more acceptors would each sleep
// in accept(2) and be woken per connection. An acceptor that takes longer
// than releaseAfter over a connection (a mechanism call, a failure delay,
// a client slow to send) is replaced at once, so a slow request never
// holds up the ones queued behind it; it leaves when done if the set is
// full again. A client whose request is not there within rawReadWait
// moves to the netpoller (rawConn), so it parks a goroutine, not a thread.

// rawReadWait is how long an acceptor waits in poll(2) for request bytes
// before it hands the connection to the netpoller. libsasl writes the
// whole request right after connect, so a real client's bytes arrive well
// within it; only a stalled or deliberately slow client pays the move.
const rawReadWait = 5 * time.Millisecond

// releaseAfter is how long an acceptor may answer one connection before
// another takes its place in accept(2): far above a cache hit or a sasldb
// lookup (a few microseconds), far below a crypt(3) or PAM call.
const releaseAfter = time.Millisecond

// acceptTickKeepBacklog is how often an activated socket's acceptors look
// whether Shutdown began: such a socket is systemd's to keep, so it cannot
// be shut down to wake the accept(2) as an own socket is.
const acceptTickKeepBacklog = 100 * time.Millisecond

// acceptors is the size of the set: enough that one is in accept(2) while
// the others answer, on every core.
func acceptors() int32 { return int32(max(2, runtime.GOMAXPROCS(0))) }

// rawListener is one listening socket served by acceptors.
type rawListener struct {
	s      *Server
	ln     net.Listener
	fd     int          // a blocking duplicate of ln's descriptor
	want   int32        // the size of the set
	active atomic.Int32 // acceptors in the set: not replaced

	mu        sync.Mutex
	accepting int           // acceptors not answering a connection
	stopped   bool          // Shutdown began, or accept failed for good
	stop      chan struct{} // closed with stopped
	done      chan struct{} // closed once stopped and accepting is 0
	err       error         // the permanent accept error, if any
}

// serveUnix serves ul with acceptors; it returns like Serve, once no
// acceptor accepts any more. Acceptors still answering a connection then
// are connections Shutdown waits for, and they exit after it.
func (s *Server) serveUnix(ul *net.UnixListener) error {
	rl := &rawListener{s: s, ln: ul, want: cmp.Or(s.acceptors, acceptors()),
		stop: make(chan struct{}), done: make(chan struct{})}
	var derr error
	rc, err := ul.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) {
			rl.fd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		})
	}
	if err = errors.Join(err, derr); err != nil {
		ul.Close()
		return fmt.Errorf("daemon: listener descriptor: %w", err)
	}
	defer unix.Close(rl.fd)
	// O_NONBLOCK belongs to the open file, which ul (and, under socket
	// activation, systemd) share; nothing else accepts on it.
	if err := unix.SetNonblock(rl.fd, false); err != nil {
		ul.Close()
		return fmt.Errorf("daemon: listener descriptor: %w", err)
	}
	if s.KeepBacklog {
		tv := unix.NsecToTimeval(acceptTickKeepBacklog.Nanoseconds())
		if err := unix.SetsockoptTimeval(rl.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			ul.Close()
			return fmt.Errorf("daemon: listener timeout: %w", err)
		}
	}
	if !s.register(ul, rl.wake) {
		return ErrServerClosed
	}
	defer s.unregister(ul)

	for range rl.want {
		rl.spawn()
	}
	<-rl.done
	if rl.err != nil {
		return rl.err
	}
	return ErrServerClosed
}

// wake ends the acceptors' accept(2) calls at Shutdown. Shutting down the
// receiving side of an own socket wakes them at once, refuses new
// connects, and still lets accept(2) take what is queued; an activated
// socket is left alone and its acceptors see the flag within
// acceptTickKeepBacklog.
func (rl *rawListener) wake() {
	rl.halt(nil)
}

// halt stops the acceptors: at Shutdown (err nil) or on a permanent accept
// error.
func (rl *rawListener) halt(err error) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.stopped {
		return
	}
	rl.stopped, rl.err = true, err
	close(rl.stop)
	if !rl.s.KeepBacklog {
		_ = unix.Shutdown(rl.fd, unix.SHUT_RD)
		// One more acceptor, to drain the backlog even when every other
		// one is answering a connection right now.
		rl.accepting++
		rl.active.Add(1)
		go rl.accept()
	}
	rl.settle()
}

// settle closes done once stopped and no acceptor accepts; rl.mu held.
func (rl *rawListener) settle() {
	if rl.stopped && rl.accepting == 0 {
		close(rl.done)
	}
}

// spawn starts an acceptor in the set, unless stopped.
func (rl *rawListener) spawn() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.stopped {
		return
	}
	rl.accepting++
	rl.active.Add(1)
	go rl.accept()
}

// replace takes a slow acceptor out of the set and starts another in its
// place.
func (rl *rawListener) replace() {
	if rl.active.Add(-1) < rl.want {
		rl.spawn()
	}
}

// rejoin puts a replaced acceptor back into the set if the set is short
// of one (an acceptor exited); otherwise the acceptor should exit.
func (rl *rawListener) rejoin() bool {
	for {
		n := rl.active.Load()
		if n >= rl.want {
			return false
		}
		if rl.active.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// leave marks an acceptor as no longer accepting: it answers a
// connection, or exits. fromServe brings it back after an answer, unless
// Shutdown began.
func (rl *rawListener) leave() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.accepting--
	rl.settle()
}

func (rl *rawListener) fromServe() bool {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.stopped {
		return false
	}
	rl.accepting++
	return true
}

// exit ends an acceptor of the set on its way to accept(2).
func (rl *rawListener) exit() {
	rl.active.Add(-1)
	rl.leave()
}

func (rl *rawListener) stopping() bool {
	select {
	case <-rl.stop:
		return true
	default:
		return false
	}
}

// slowWatch replaces its acceptor once a connection takes longer than
// releaseAfter. One per acceptor, re-armed per connection.
type slowWatch struct {
	rl       *rawListener
	t        *time.Timer
	mu       sync.Mutex
	armed    bool
	replaced bool
}

func (w *slowWatch) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed && !w.replaced {
		w.replaced = true
		w.rl.replace()
	}
}

func (w *slowWatch) start() {
	w.mu.Lock()
	w.armed, w.replaced = true, false
	w.mu.Unlock()
	w.t.Reset(releaseAfter)
}

// end disarms the watch and reports whether the acceptor was replaced.
func (w *slowWatch) end() bool {
	w.t.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	return w.replaced
}

// accept is one acceptor: it takes a connection slot, accepts and answers,
// and is replaced in accept(2) if the answer is slow.
func (rl *rawListener) accept() {
	s := rl.s
	w := &slowWatch{rl: rl}
	w.t = time.AfterFunc(time.Hour, w.fire)
	w.t.Stop()
	var backoff time.Duration
	for {
		select {
		case s.conns <- struct{}{}:
		case <-rl.stop:
			if s.KeepBacklog {
				rl.exit()
				return // what is queued is the next instance's
			}
			s.conns <- struct{}{} // serve the backlog
		}
		if rl.stopping() && s.KeepBacklog {
			<-s.conns
			rl.exit()
			return
		}
		fd, sa, err := unix.Accept4(rl.fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if err != nil {
			<-s.conns
			switch {
			case rl.stopping():
				// After the receiving side is shut down accept(2) still
				// returns what is queued, then EINVAL; an activated
				// socket's queue is the next instance's.
				if !s.KeepBacklog && (errors.Is(err, unix.ECONNABORTED) || errors.Is(err, unix.EINTR)) {
					continue
				}
				rl.exit()
				return
			case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
				continue // acceptTickKeepBacklog, or a signal
			case isTemporary(err):
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.Logger.Error("accept: "+err.Error(), slog.Duration("retry_in", backoff))
				time.Sleep(backoff)
				continue
			}
			rl.exit()
			rl.halt(fmt.Errorf("daemon: accept: %w", err))
			return
		}
		backoff = 0
		s.accepted.Add(1)
		if rl.stopping() {
			// Shutdown began: this loop drains the backlog (accept(2)
			// ends it with EINVAL) and stays counted as accepting until
			// then, since closing the listener resets whatever is still
			// queued; each connection is answered on its own goroutine.
			go rl.serve(fd, sa)
			continue
		}
		rl.leave()
		w.start()
		rl.serve(fd, sa)
		if w.end() && !rl.rejoin() {
			return // replaced while slow, and the set is full
		}
		if !rl.fromServe() {
			rl.active.Add(-1)
			return // stopping
		}
	}
}

func (rl *rawListener) serve(fd int, sa unix.Sockaddr) {
	s := rl.s
	c := &rawConn{fd: fd}
	if su, ok := sa.(*unix.SockaddrUnix); ok {
		c.remote = su.Name
	}
	s.serveJob(s.track(c))
}

// rawConn is an accepted connection served on the acceptor's thread with
// non-blocking system calls and poll(2), without the netpoller. Any wait
// longer than rawReadWait moves it to the netpoller first (a net.Conn on a
// duplicate of the descriptor), so a slow client parks a goroutine, not a
// thread. Only its serving goroutine reads, writes and closes it; Shutdown
// may set deadlines and abort it from another.
type rawConn struct {
	remote string

	mu      sync.Mutex
	fd      int      // -1 once moved or closed
	nc      net.Conn // after the move
	rdl     time.Time
	wdl     time.Time
	aborted bool
}

var errRawClosed = errors.New("daemon: connection closed")

// state returns the descriptor to use directly, or the net.Conn it moved
// to, and the deadline for dir ('r' or 'w').
func (c *rawConn) state(dir byte) (int, net.Conn, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dl := c.rdl
	if dir == 'w' {
		dl = c.wdl
	}
	return c.fd, c.nc, dl
}

func (c *rawConn) Read(b []byte) (int, error) {
	fd, nc, dl := c.state('r')
	if nc != nil {
		return nc.Read(b)
	}
	if fd < 0 {
		return 0, errRawClosed
	}
	for {
		n, err := syscall.Read(fd, b) // syscall's, not unix's: the race detector's I/O edge
		switch {
		case err == nil && n == 0 && len(b) > 0:
			return 0, io.EOF
		case err == nil:
			return n, nil
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EAGAIN):
			return 0, &net.OpError{Op: "read", Net: "unix", Err: err}
		}
		wait := rawReadWait
		if !dl.IsZero() {
			left := time.Until(dl)
			if left <= 0 {
				return 0, &net.OpError{Op: "read", Net: "unix", Err: os.ErrDeadlineExceeded}
			}
			wait = min(wait, left)
		}
		ready, err := pollIn(fd, wait)
		if err != nil {
			return 0, &net.OpError{Op: "read", Net: "unix", Err: err}
		}
		if ready {
			continue
		}
		if !dl.IsZero() && !time.Now().Before(dl) {
			return 0, &net.OpError{Op: "read", Net: "unix", Err: os.ErrDeadlineExceeded}
		}
		nc, err := c.move()
		if err != nil {
			return 0, err
		}
		return nc.Read(b)
	}
}

func (c *rawConn) Write(b []byte) (int, error) {
	fd, nc, _ := c.state('w')
	if nc != nil {
		return nc.Write(b)
	}
	if fd < 0 {
		return 0, errRawClosed
	}
	done := 0
	for done < len(b) {
		n, err := syscall.Write(fd, b[done:])
		switch {
		case err == nil:
			done += n
			continue
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EAGAIN):
			return done, &net.OpError{Op: "write", Net: "unix", Err: err}
		}
		// The client's receive queue is full: a reply never fills it, so
		// this is a client that does not read. Let the netpoller wait.
		nc, err := c.move()
		if err != nil {
			return done, err
		}
		n, err = nc.Write(b[done:])
		return done + n, err
	}
	return done, nil
}

// move hands the connection to the netpoller: a net.Conn on a duplicate of
// the descriptor, with the deadlines set so far.
func (c *rawConn) move() (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nc != nil {
		return c.nc, nil
	}
	if c.fd < 0 || c.aborted {
		return nil, errRawClosed
	}
	f := os.NewFile(uintptr(c.fd), c.remote)
	nc, err := net.FileConn(f)
	f.Close() // the descriptor; nc has its duplicate
	c.fd = -1
	if err != nil {
		return nil, fmt.Errorf("daemon: connection to the netpoller: %w", err)
	}
	if !c.rdl.IsZero() {
		_ = nc.SetReadDeadline(c.rdl)
	}
	if !c.wdl.IsZero() {
		_ = nc.SetWriteDeadline(c.wdl)
	}
	c.nc = nc
	return nc, nil
}

// abort, from Shutdown, makes the serving goroutine's current and next
// calls fail without closing the descriptor under it.
func (c *rawConn) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.aborted = true
	switch {
	case c.nc != nil:
		_ = c.nc.Close()
	case c.fd >= 0:
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
}

func (c *rawConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.nc != nil:
		return c.nc.Close()
	case c.fd >= 0:
		err := unix.Close(c.fd)
		c.fd = -1
		return err
	}
	return nil
}

// CloseWrite half-closes, before a drain.
func (c *rawConn) CloseWrite() error {
	fd, nc, _ := c.state('w')
	if nc != nil {
		if cw, ok := nc.(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite()
		}
		return nil
	}
	if fd < 0 {
		return errRawClosed
	}
	return unix.Shutdown(fd, unix.SHUT_WR)
}

func (c *rawConn) LocalAddr() net.Addr { return &net.UnixAddr{Net: "unix"} }

func (c *rawConn) RemoteAddr() net.Addr { return &net.UnixAddr{Name: c.remote, Net: "unix"} }

func (c *rawConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

func (c *rawConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	if c.nc != nil {
		return c.nc.SetReadDeadline(t)
	}
	return nil
}

func (c *rawConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wdl = t
	if c.nc != nil {
		return c.nc.SetWriteDeadline(t)
	}
	return nil
}

// SyscallConn lets protocol.Reader peek at the receive queue.
func (c *rawConn) SyscallConn() (syscall.RawConn, error) {
	fd, nc, _ := c.state('r')
	if nc != nil {
		if sc, ok := nc.(syscall.Conn); ok {
			return sc.SyscallConn()
		}
		return nil, errors.ErrUnsupported
	}
	if fd < 0 {
		return nil, errRawClosed
	}
	return rawFD(fd), nil
}

// rawFD runs a function on a descriptor that is not the netpoller's: the
// function is called once and must not wait.
type rawFD int

func (f rawFD) Control(fn func(uintptr)) error { fn(uintptr(f)); return nil }
func (f rawFD) Read(fn func(uintptr) bool) error {
	fn(uintptr(f))
	return nil
}
func (f rawFD) Write(fn func(uintptr) bool) error {
	fn(uintptr(f))
	return nil
}

// pollIn waits up to d for fd to be readable (or closed, or in error).
func pollIn(fd int, d time.Duration) (bool, error) {
	ms := int(max(d.Milliseconds(), 1))
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n > 0, err
	}
}
