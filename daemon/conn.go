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
	if ul, ok := ln.(*net.UnixListener); ok {
		return s.serveUnix(ul)
	}
	wake := func() {
		// Wake the Accept: with a deadline it returns and the Serve loop
		// takes what is left in the backlog; otherwise close it.
		if dl, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
			_ = dl.SetDeadline(time.Now())
		} else {
			ln.Close()
		}
	}
	if !s.register(ln, wake) {
		return ErrServerClosed
	}
	defer s.unregister(ln)

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

// register adds ln to the listeners Shutdown wakes and counts its Serve
// loop; on a closed server it closes ln and reports false.
func (s *Server) register(ln net.Listener, wake func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		ln.Close()
		return false
	}
	s.listeners[ln] = wake
	s.serving.Add(1)
	return true
}

// unregister ends what register began.
func (s *Server) unregister(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
	ln.Close()
	s.serving.Done()
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
	s.dispatch(s.track(conn))
}

// dispatch gives job to an idle connection goroutine, or starts one.
func (s *Server) dispatch(job connJob) {
	select {
	case s.handoff <- job:
	default:
		go s.connWorker(job)
	}
}

// track registers conn as open, for Shutdown, and makes its job.
func (s *Server) track(conn net.Conn) connJob {
	job := connJob{conn: conn, st: &connState{}}
	s.mu.Lock()
	s.active[conn] = job.st
	s.wg.Add(1)
	job.closing = s.closed
	s.mu.Unlock()
	return job
}

// connJob is a connection and how far it is served. An acceptor that
// hands a connection on part-way leaves here what it did.
type connJob struct {
	conn    net.Conn
	st      *connState
	closing bool

	queued  []byte           // request bytes already read from conn
	drained bool             // queued was all conn had
	rd      *protocol.Reader // set once the request is read (or given to reuse)
	req     protocol.Request
	reqErr  error
	stage   connStage
}

type connStage uint8

const (
	stageRead connStage = iota
	stageAnswer
	stageDrain
)

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
	s.runJob(&job, false)
}

// runJob serves job on this goroutine to the end: reply, close, slot given
// back. On an acceptor (onAcceptor), whatever would wait goes on to a
// connection goroutine instead, which then owns the connection.
func (s *Server) runJob(job *connJob, onAcceptor bool) (handed bool) {
	defer func() {
		if handed {
			return
		}
		<-s.conns
		s.mu.Lock()
		delete(s.active, job.conn)
		s.mu.Unlock()
		s.wg.Done()
	}()
	defer func() {
		if !handed {
			job.conn.Close()
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			s.Logger.Error(fmt.Sprintf("panic serving a connection: %v", p), slog.String("stack", string(debug.Stack())))
			s.connError(ConnPanic)
		}
	}()
	if s.serveConn(job, onAcceptor) {
		handed = true
		s.dispatch(*job)
	} else if onAcceptor {
		s.byAcceptor.Add(1) // before the close: a test's client sees it at EOF
	}
	return handed
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
	for _, wake := range s.listeners {
		wake()
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
			if rc, ok := c.(*rawConn); ok {
				rc.abort() // its goroutine closes the descriptor
			} else {
				c.Close()
			}
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// serveConn handles one connection: read one request, answer, half-close,
// drain, close (saslauthd's ipc_unix.c order), from the stage job is at.
// job.closing is set for the connections taken from the backlog after
// Shutdown began. With onAcceptor it stops before anything that would wait
// and reports true: the job, at its new stage, goes to a goroutine.
func (s *Server) serveConn(job *connJob, onAcceptor bool) (handOn bool) {
	conn, st := job.conn, job.st
	if job.stage == stageRead {
		if isProbe(conn) {
			return false // the watchdog's: it only waits for the close
		}
		// under the lock: a Shutdown scanning connections either sees this
		// deadline or is seen by it
		s.mu.Lock()
		_ = conn.SetReadDeadline(time.Now().Add(s.readTimeout(job.closing || s.closed)))
		s.mu.Unlock()
		if job.rd == nil {
			job.rd = protocol.NewReaderQueued(conn, job.queued, job.drained)
		} else { // an acceptor's, used again
			job.rd.Reset(conn, job.queued, job.drained)
		}
		job.queued = nil
		job.req, job.reqErr = job.rd.ReadRequest()
		st.phase.Store(phaseAnswering)
		job.stage = stageAnswer
	}
	if job.stage == stageAnswer {
		reply, ok, handOn := s.replyTo(job, onAcceptor)
		if handOn {
			return true
		}
		if !ok {
			return false
		}
		_ = conn.SetWriteDeadline(time.Now().Add(orDefault(s.WriteTimeout, DefaultWriteTimeout)))
		if err := protocol.WriteReply(conn, reply); err != nil {
			s.Logger.Error("write: " + err.Error())
			s.connError(ConnWriteError)
			return false
		}
		if o := s.Observer; o != nil {
			o.Reply(strings.HasPrefix(reply, "OK"))
		}
		if s.Logger.Enabled(context.Background(), slog.LevelDebug) {
			s.Logger.Debug("response: " + reply)
		}
		// The client has its reply. Drain as saslauthd does, so that it
		// sees EOF rather than a reset, but not past shutdown: Shutdown
		// cuts a drain short by moving its deadline, and a drain that
		// starts after it does not happen.
		s.mu.Lock()
		st.phase.Store(phaseDraining)
		closing := s.closed
		s.mu.Unlock()
		// Nothing left to drain (the usual case: a client sends its
		// request and waits): the close alone sends the client its EOF,
		// which saves the half-close and a wake-up per connection.
		if closing || job.rd.Settled() {
			return false
		}
		job.stage = stageDrain
		if onAcceptor {
			return true
		}
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(orDefault(s.DrainTimeout, DefaultDrainTimeout)))
	_, _ = job.rd.Drain(drainLimit)
	return false
}

// readTimeout is the time a client has to send its request; closing: the
// server is shutting down.
func (s *Server) readTimeout(closing bool) time.Duration {
	d := orDefault(s.ReadTimeout, DefaultReadTimeout)
	if closing {
		d = min(d, shutdownReadGrace)
	}
	return d
}

// replyTo says what to answer job's request (ok false: close without a
// reply), logging what saslauthd logs. On an acceptor only a protocol
// error or a cache hit is answered; anything else is handed on.
func (s *Server) replyTo(job *connJob, onAcceptor bool) (reply string, ok, handOn bool) {
	err := job.reqErr
	var tooLong *protocol.FieldTooLongError
	switch {
	case err == nil:
		if onAcceptor {
			reply, ok = s.answerCached(job.req)
			return reply, ok, !ok
		}
		return s.authenticate(job.req), true, false
	case errors.As(err, &tooLong):
		s.Logger.Error(fmt.Sprintf("%s exceeded MAX_REQ_LEN: %d", tooLong.Field, protocol.MaxField))
		s.connError(ConnFieldTooLong)
		return protocol.ReplyTooLong, true, false
	case errors.Is(err, protocol.ErrNullLogin):
		s.Logger.Error("NULL login received")
		s.connError(ConnNullLogin)
		return protocol.ReplyNullLogin, true, false
	case errors.Is(err, protocol.ErrNullPassword):
		s.Logger.Error("NULL password received")
		s.connError(ConnNullPassword)
		return protocol.ReplyNullPasswd, true, false
	case errors.Is(err, protocol.ErrTruncated):
		s.connError(ConnBadFrame)
		return "", false, false // saslauthd: no reply, nothing logged
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.Logger.Error("read: timed out waiting for the request; closing",
			slog.Duration("read_timeout", s.readTimeout(job.closing || s.isClosed())))
		s.connError(ConnReadTimeout)
		return "", false, false
	default:
		s.Logger.Error("read: " + err.Error())
		s.connError(ConnReadError)
		return "", false, false
	}
}

func (s *Server) connError(e ConnError) {
	if o := s.Observer; o != nil {
		o.ConnError(e)
	}
}
