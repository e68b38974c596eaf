package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// connState is where a connection is, so that Shutdown can tell a request
// being answered (wait for it) from a client that already has its reply or
// stalls (close it).
type connState struct{ phase atomic.Int32 }

const (
	phaseReading int32 = iota
	phaseAnswering
	phaseDraining
)

// shutdownReadGrace is how long, once shutdown has begun, a connection may
// take to deliver a request: real clients send the whole request in one
// write, so anything slower is a stalled client.
const shutdownReadGrace = time.Second

// Serve accepts connections on ln until Shutdown. It returns ErrServerClosed
// after Shutdown, or the listener's permanent error.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.serving.Add(1)
	s.mu.Unlock()
	defer s.serving.Done()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		// Take a connection slot before accepting: past MaxConns clients
		// wait in the kernel's backlog instead of being refused.
		s.conns <- struct{}{}
		conn, err := ln.Accept()
		if err != nil {
			<-s.conns
			if s.isClosed() {
				if !s.KeepBacklog {
					s.acceptBacklog(ln)
				}
				return ErrServerClosed
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.Logger.Error("accept: "+err.Error(), slog.Duration("retry_in", backoff))
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("daemon: accept: %w", err)
		}
		backoff = 0
		s.accepted.Add(1)
		s.start(conn)
	}
}

// Accepted counts the connections accepted so far: the watchdog's evidence
// that the accept loop runs.
func (s *Server) Accepted() uint64 { return s.accepted.Load() }

// acceptBacklog serves the clients that connected before shutdown began and
// still wait in the listen backlog: they have sent their requests and would
// otherwise be reset. Run removes mux before Shutdown, so no new client
// arrives and the backlog only shrinks.
func (s *Server) acceptBacklog(ln net.Listener) {
	dl, ok := ln.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return
	}
	for {
		s.conns <- struct{}{}
		_ = dl.SetDeadline(time.Now().Add(10 * time.Millisecond))
		conn, err := ln.Accept()
		if err != nil {
			<-s.conns
			return
		}
		s.start(conn)
	}
}

func isTemporary(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// start hands conn to an idle connection goroutine, or starts one; the
// caller holds a connection slot that the goroutine gives back.
//
// Connection goroutines live on after their connection and wait a while for
// the next: a fresh goroutine per connection costs a new stack grown by
// copying for every request, which perf showed as a tenth of a cache hit's
// CPU.
func (s *Server) start(conn net.Conn) {
	job := connJob{conn: conn, st: &connState{}}
	s.mu.Lock()
	s.active[conn] = job.st
	s.wg.Add(1)
	job.closing = s.closed
	s.mu.Unlock()
	select {
	case s.handoff <- job:
	default:
		go s.connWorker(job)
	}
}

type connJob struct {
	conn    net.Conn
	st      *connState
	closing bool
}

// connIdle is how long a connection goroutine waits for another connection
// before it exits: long enough to live through a lull in a busy server,
// short enough that the goroutines of a burst are soon gone.
const connIdle = 5 * time.Second

func (s *Server) connWorker(job connJob) {
	wait := cmp.Or(s.connIdle, connIdle)
	idle := time.NewTimer(wait)
	defer idle.Stop()
	for {
		s.serveJob(job)
		idle.Reset(wait)
		select {
		case job = <-s.handoff:
		case <-idle.C:
			return
		}
	}
}

func (s *Server) serveJob(job connJob) {
	defer func() { <-s.conns }()
	defer func() {
		s.mu.Lock()
		delete(s.active, job.conn)
		s.mu.Unlock()
		s.wg.Done()
	}()
	s.serveConn(job.conn, job.st, job.closing)
}

// Shutdown stops accepting, serves the clients already waiting in the
// backlog, lets the requests in flight finish and get their replies, closes
// the connections that only drain or stall, and returns when every
// connection is closed or ctx ends (then the rest are closed).
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.stop() // failure delays answer now
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		// Wake the Accept: with a deadline it returns and the Serve loop
		// takes what is left in the backlog; otherwise close it.
		if dl, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
			_ = dl.SetDeadline(time.Now())
		} else {
			ln.Close()
		}
	}
	s.mu.Unlock()
	s.serving.Wait()

	s.mu.Lock()
	for c, st := range s.active {
		switch st.phase.Load() {
		case phaseDraining:
			_ = c.SetReadDeadline(time.Now())
		case phaseReading:
			_ = c.SetReadDeadline(time.Now().Add(shutdownReadGrace))
		}
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.active {
			c.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// serveConn handles one connection: read one request, answer, half-close,
// drain, close (saslauthd's ipc_unix.c order). closing is set for the
// connections taken from the backlog after Shutdown began.
func (s *Server) serveConn(conn net.Conn, st *connState, closing bool) {
	defer conn.Close()
	if isProbe(conn) {
		return // the watchdog's: it only waits for the close
	}
	defer func() {
		if p := recover(); p != nil {
			s.Logger.Error(fmt.Sprintf("panic serving a connection: %v", p), slog.String("stack", string(debug.Stack())))
			s.connError(ConnPanic)
		}
	}()
	// under the lock: a Shutdown scanning connections either sees this
	// deadline or is seen by it
	readTimeout := orDefault(s.ReadTimeout, DefaultReadTimeout)
	s.mu.Lock()
	if closing || s.closed {
		readTimeout = min(readTimeout, shutdownReadGrace)
	}
	_ = conn.SetReadDeadline(time.Now().Add(readTimeout))
	s.mu.Unlock()
	rd := protocol.NewReader(conn)
	req, err := rd.ReadRequest()
	st.phase.Store(phaseAnswering)
	var reply string
	var tooLong *protocol.FieldTooLongError
	switch {
	case err == nil:
		reply = s.authenticate(req)
	case errors.As(err, &tooLong):
		s.Logger.Error(fmt.Sprintf("%s exceeded MAX_REQ_LEN: %d", tooLong.Field, protocol.MaxField))
		reply = protocol.ReplyTooLong
		s.connError(ConnFieldTooLong)
	case errors.Is(err, protocol.ErrNullLogin):
		s.Logger.Error("NULL login received")
		reply = protocol.ReplyNullLogin
		s.connError(ConnNullLogin)
	case errors.Is(err, protocol.ErrNullPassword):
		s.Logger.Error("NULL password received")
		reply = protocol.ReplyNullPasswd
		s.connError(ConnNullPassword)
	case errors.Is(err, protocol.ErrTruncated):
		s.connError(ConnBadFrame)
		return // saslauthd: no reply, nothing logged
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.Logger.Error("read: timed out waiting for the request; closing",
			slog.Duration("read_timeout", readTimeout))
		s.connError(ConnReadTimeout)
		return
	default:
		s.Logger.Error("read: " + err.Error())
		s.connError(ConnReadError)
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(orDefault(s.WriteTimeout, DefaultWriteTimeout)))
	if err := protocol.WriteReply(conn, reply); err != nil {
		s.Logger.Error("write: " + err.Error())
		s.connError(ConnWriteError)
		return
	}
	if o := s.Observer; o != nil {
		o.Reply(strings.HasPrefix(reply, "OK"))
	}
	if s.Logger.Enabled(context.Background(), slog.LevelDebug) {
		s.Logger.Debug("response: " + reply)
	}
	// The client has its reply. Drain as saslauthd does, so that it sees
	// EOF rather than a reset, but not past shutdown: Shutdown cuts a drain
	// short by moving its deadline, and a drain that starts after it does
	// not happen.
	s.mu.Lock()
	st.phase.Store(phaseDraining)
	closing = s.closed
	s.mu.Unlock()
	// Nothing left to drain (the usual case: a client sends its request
	// and waits): the close alone sends the client its EOF, which saves
	// the half-close and a wake-up per connection.
	if closing || rd.Settled() {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(orDefault(s.DrainTimeout, DefaultDrainTimeout)))
	_, _ = rd.Drain(drainLimit)
}

func (s *Server) connError(e ConnError) {
	if o := s.Observer; o != nil {
		o.ConnError(e)
	}
}
