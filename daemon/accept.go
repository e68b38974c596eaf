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
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/saslgate/saslgate/protocol"
)

// A UNIX-socket listener is served the way saslauthd's prefork workers
// serve it: a fixed set of acceptors, goroutines that each accept a
// connection and answer it themselves. Through net.Listener every
// connection cost an epoll registration and removal, a wake-up of a parked
// goroutine and a hand-off between threads: most of the CPU of a cache
// hit, far more than saslgate's own work (the bench's shadow-cache
// scenario). The acceptors call accept4(2) without a net.Conn, and make
// the calls of a connection answered at once with RawSyscall (rawsys.go);
// they wait for the listener on the netpoller, never in a blocking
// accept(2), since a thread blocked in a system call keeps the runtime's
// sysmon retaking Ps and handing them between threads.
//
// An acceptor answers a connection itself only when that needs no wait: the
// whole request is already queued (libsasl writes it right after connect,
// and under load it waits in the backlog with its request) and the answer is
// a positive cache entry or a protocol error. Anything else, a mechanism
// call, a failure delay, a client slow to send or that sends more than a
// request, goes on a connection goroutine, where the connection moves to
// the netpoller if it has to wait (rawConn). So a crypt(3) or PAM call runs
// exactly as on the net.Listener path, and no client holds an acceptor for
// longer than rawQueuedWait.
//
// The set is small on purpose: under load the clients queue in the listen
// backlog and an acceptor finds the next connection without waiting.

// rawQueuedWait is how long an acceptor waits for a connection's request
// to be all there before it hands the connection on. A libsasl client's
// write follows its connect within microseconds; this only bounds what a
// client that connects and sends nothing can take from an acceptor.
const rawQueuedWait = 500 * time.Microsecond

// rawReadWait is how long a connection goroutine waits in poll(2) for
// request bytes before the connection moves to the netpoller.
const rawReadWait = 5 * time.Millisecond

// acceptors is the size of the set: one per core, at least two, so that
// one accepts while another answers.
func acceptors() int { return max(2, runtime.GOMAXPROCS(0)) }

// rawListener is one listening socket served by acceptors.
type rawListener struct {
	s  *Server
	f  *os.File        // a duplicate of the listener's descriptor
	fd int             // f's descriptor
	rc syscall.RawConn // f's, waited on through the netpoller

	mu      sync.Mutex
	running int           // acceptors not yet exited
	stopped bool          // Shutdown began, or accept failed for good
	stop    chan struct{} // closed with stopped
	done    chan struct{} // closed once stopped and running is 0
	err     error         // the permanent accept error, if any
}

// serveUnix serves ul with acceptors; it returns like Serve, once every
// acceptor has exited. Connections handed on by then are ones Shutdown
// waits for.
func (s *Server) serveUnix(ul *net.UnixListener) error {
	// A listener's own RawConn cannot wait for readability; an os.File on
	// a duplicate of its descriptor (non-blocking, as the open file is)
	// is on the netpoller and can.
	var (
		dup  int
		derr error
	)
	lrc, err := ul.SyscallConn()
	if err == nil {
		err = lrc.Control(func(fd uintptr) { dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	}
	if err = errors.Join(err, derr); err == nil {
		if err = unix.SetNonblock(dup, true); err != nil { // as net sets it; os.NewFile polls only then
			unix.Close(dup)
		}
	}
	if err != nil {
		ul.Close()
		return fmt.Errorf("daemon: listener descriptor: %w", err)
	}
	f := os.NewFile(uintptr(dup), "listener")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		ul.Close()
		return fmt.Errorf("daemon: listener descriptor: %w", err)
	}
	rl := &rawListener{s: s, f: f, fd: dup, rc: rc, stop: make(chan struct{}), done: make(chan struct{})}
	if !s.register(ul, rl.wake) {
		return ErrServerClosed
	}
	defer s.unregister(ul)

	n := cmp.Or(s.acceptors, acceptors())
	rl.mu.Lock()
	rl.running = n
	rl.mu.Unlock()
	for range n {
		go rl.accept()
	}
	<-rl.done
	if rl.err != nil {
		return rl.err
	}
	return ErrServerClosed
}

// wake ends the acceptors' waits at Shutdown, by a deadline. An own
// socket's receiving side is shut down as well, which refuses new connects
// and still lets accept(2) take what is queued; an activated socket is
// systemd's to keep, and so is its queue.
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
	}
	_ = rl.f.SetReadDeadline(time.Now())
	rl.settle()
}

// settle closes done once stopped and no acceptor runs; rl.mu held.
func (rl *rawListener) settle() {
	if rl.stopped && rl.running == 0 {
		close(rl.done)
	}
}

// exit ends an acceptor.
func (rl *rawListener) exit() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.running--
	rl.settle()
}

func (rl *rawListener) stopping() bool {
	select {
	case <-rl.stop:
		return true
	default:
		return false
	}
}

// accept is one acceptor: it takes a connection slot, accepts, and
// answers or hands the connection on, until Shutdown. After Shutdown on an
// own socket it goes on until accept(2) reports the backlog empty: closing
// the listener would reset whatever is still queued.
func (rl *rawListener) accept() {
	defer rl.exit()
	s := rl.s
	buf := make([]byte, 4096) // a request as read on this acceptor
	var rd *protocol.Reader   // reused while connections end on this acceptor
	var (
		fd      int
		remote  string
		err     error
		backoff time.Duration
	)
	// accept4 runs inside RawConn.Read, which waits for the listener to
	// be readable when it returns false: an edge that comes between a
	// failed accept4 and the wait is not lost.
	try := func(lfd uintptr) bool {
		fd, remote, err = rawAccept4(int(lfd))
		return !errors.Is(err, unix.EAGAIN)
	}
	for {
		select {
		case s.conns <- struct{}{}:
		case <-rl.stop:
			if s.KeepBacklog {
				return // what is queued is the next instance's
			}
			s.conns <- struct{}{} // serve the backlog
		}
		if rl.stopping() && s.KeepBacklog {
			<-s.conns
			return
		}
		// Under load the backlog is seldom empty: only then wait, and on
		// the netpoller. After Shutdown nothing waits: what is queued is
		// all there is (Run removed the socket, SHUT_RD refuses connects).
		if try(uintptr(rl.fd)); errors.Is(err, unix.EAGAIN) && !rl.stopping() {
			if rerr := rl.rc.Read(try); rerr != nil {
				err = rerr // the deadline that Shutdown sets
			}
		}
		if err != nil {
			<-s.conns
			switch {
			case rl.stopping():
				// After the receiving side is shut down accept(2) still
				// returns what is queued, then EINVAL (or EAGAIN); an
				// activated socket's queue is the next instance's.
				if !s.KeepBacklog && (errors.Is(err, unix.ECONNABORTED) || errors.Is(err, unix.EINTR) ||
					errors.Is(err, os.ErrDeadlineExceeded)) {
					continue
				}
				return
			case errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED):
				continue
			case isTemporary(err):
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.Logger.Error("accept: "+err.Error(), slog.Duration("retry_in", backoff))
				time.Sleep(backoff)
				continue
			}
			rl.halt(fmt.Errorf("daemon: accept: %w", err))
			return
		}
		backoff = 0
		s.accepted.Add(1)
		rd = rl.serve(fd, remote, buf, rd)
	}
}

// serve answers one connection on the acceptor if it can do so without
// waiting, and hands it to a connection goroutine otherwise. rd is a
// Reader to use again (nil: a new one); serve returns the one to use next.
func (rl *rawListener) serve(fd int, remote string, buf []byte, rd *protocol.Reader) *protocol.Reader {
	s := rl.s
	c := &rawConn{fd: fd, remote: remote}
	job := s.track(c)
	if isProbe(c) {
		s.runJob(&job, true) // the watchdog's: closed at once
		return rd
	}
	n, ok, drained := readQueued(fd, buf, cmp.Or(s.queuedWait, rawQueuedWait))
	defer clear(buf[:n]) // a password, as protocol's field() clears its copy
	if !ok {
		job.queued = slices.Clone(buf[:n])
		s.dispatch(job)
		return rd
	}
	// The Reader copies buf into its own buffer on its first read, before
	// this acceptor reuses buf.
	job.queued, job.drained, job.rd = buf[:n], drained, rd
	if s.runJob(&job, true) {
		return nil // it went on with the connection
	}
	return job.rd
}

// readQueued reads what the client on fd has sent into buf, waiting for
// more up to wait in all, until ReadRequest can take it without waiting
// (a whole request, or the client closed or failed: ReadRequest then sees
// its EOF at once). ok false: the request is not all there; buf[:n] is
// what was read of it. drained: the last read emptied the socket's queue.
func readQueued(fd int, buf []byte, wait time.Duration) (n int, ok, drained bool) {
	var deadline time.Time
	for {
		m, err := rawRead(fd, buf[n:])
		switch {
		case err == nil && m == 0:
			return n, true, false
		case err == nil:
			drained = m < len(buf)-n
			n += m
			if protocol.Ready(buf[:n]) || n == len(buf) {
				return n, true, drained
			}
			continue
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EAGAIN):
			return n, true, false
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(wait)
		}
		if !now.Before(deadline) {
			return n, false, false
		}
		if ready, err := pollIn(fd, deadline.Sub(now)); err != nil || !ready {
			return n, false, false
		}
	}
}

// rawConn is an accepted connection served with non-blocking system calls
// and poll(2), without the netpoller: by its acceptor, or by a connection
// goroutine once handed on. Any wait longer than rawReadWait moves it to
// the netpoller first (a net.Conn on a duplicate of the descriptor), so a
// slow client parks a goroutine, not a thread. Only its serving goroutine
// reads, writes and closes it; Shutdown may set deadlines and abort it
// from another.
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
		n, err := rawRead(fd, b)
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
		n, err := rawWrite(fd, b[done:])
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
		err := rawClose(c.fd)
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
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	for {
		ts := unix.NsecToTimespec(max(d, time.Microsecond).Nanoseconds())
		n, err := unix.Ppoll(fds, &ts, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n > 0, err
	}
}
