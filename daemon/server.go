// Package daemon is saslgate's server side: the mux socket and its pid
// lock, one goroutine per connection with deadlines on every read and write,
// the -n cap on mechanism calls, -r, the credential cache, logging in
// saslauthd's format, detaching, signals and shutdown.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/protocol"
)

// Defaults for the bounds saslauthd does not have.
const (
	DefaultReadTimeout    = 30 * time.Second
	DefaultDrainTimeout   = 30 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultRequestTimeout = 60 * time.Second
	DefaultMaxConns       = 4096
	// drainLimit bounds how much a client may send after its request before
	// we stop reading and close.
	drainLimit = 64 << 10
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("daemon: server closed")

// Server answers saslauthd requests on one or more listeners.
type Server struct {
	// Logger receives saslauthd's log lines; nil discards them.
	Logger *slog.Logger
	// ReadTimeout bounds reading one request; DrainTimeout the drain after
	// the reply; WriteTimeout the reply; RequestTimeout the wait for a
	// mechanism slot plus the mechanism call.
	ReadTimeout, DrainTimeout, WriteTimeout, RequestTimeout time.Duration
	// MaxInFlight caps concurrent mechanism calls (-n); 0 means no cap.
	// Requests beyond it wait, they are never refused.
	MaxInFlight int
	// MaxConns caps open connections; beyond it the daemon stops accepting
	// and new clients wait in the listen backlog.
	MaxConns int
	// JoinRealm is -r: login becomes login@realm when the realm is set.
	JoinRealm bool
	// Cache, when set, is consulted before the mechanism (-c).
	Cache *Cache

	auth     atomic.Pointer[authState]
	initOnce sync.Once
	inflight chan struct{}
	conns    chan struct{}

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	active    map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

type authState struct {
	m    mechs.Mechanism
	name string // the -a list, for the [mech=] field of chain-less lines
}

// SetAuth installs the mechanism (usually a *mechs.Chain). It may be called
// while serving: requests already running finish on the old one (SIGHUP).
func (s *Server) SetAuth(m mechs.Mechanism) {
	s.auth.Store(&authState{m: m, name: m.Name()})
}

// Auth returns the installed mechanism.
func (s *Server) Auth() mechs.Mechanism {
	if a := s.auth.Load(); a != nil {
		return a.m
	}
	return nil
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		if s.MaxInFlight > 0 {
			s.inflight = make(chan struct{}, s.MaxInFlight)
		}
		mc := s.MaxConns
		if mc <= 0 {
			mc = DefaultMaxConns
		}
		s.conns = make(chan struct{}, mc)
		s.listeners = map[net.Listener]struct{}{}
		s.active = map[net.Conn]struct{}{}
	})
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

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
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
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
		if !s.track(conn, true) {
			conn.Close()
			<-s.conns
			return ErrServerClosed
		}
		go func() {
			defer func() { <-s.conns }()
			defer s.track(conn, false)
			s.serveConn(conn)
		}()
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

func (s *Server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.active[c] = struct{}{}
		s.wg.Add(1)
	} else {
		delete(s.active, c)
		s.wg.Done()
	}
	return true
}

// Shutdown stops accepting, lets the requests in flight finish and get their
// replies, and returns when every connection is closed or ctx ends (then the
// remaining connections are closed).
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
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
// drain, close (saslauthd's ipc_unix.c order).
func (s *Server) serveConn(conn net.Conn) {
	defer conn.Close()
	defer func() {
		if p := recover(); p != nil {
			s.Logger.Error(fmt.Sprintf("panic serving a connection: %v", p), slog.String("stack", string(debug.Stack())))
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(orDefault(s.ReadTimeout, DefaultReadTimeout)))
	rd := protocol.NewReader(conn)
	req, err := rd.ReadRequest()
	var reply string
	var tooLong *protocol.FieldTooLongError
	switch {
	case err == nil:
		reply = s.authenticate(req)
	case errors.As(err, &tooLong):
		s.Logger.Error(fmt.Sprintf("%s exceeded MAX_REQ_LEN: %d", tooLong.Field, protocol.MaxField))
		reply = protocol.ReplyTooLong
	case errors.Is(err, protocol.ErrNullLogin):
		s.Logger.Error("NULL login received")
		reply = protocol.ReplyNullLogin
	case errors.Is(err, protocol.ErrNullPassword):
		s.Logger.Error("NULL password received")
		reply = protocol.ReplyNullPasswd
	case errors.Is(err, protocol.ErrTruncated):
		return // saslauthd: no reply, nothing logged
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.Logger.Error("read: timed out waiting for the request; closing",
			slog.Duration("read_timeout", orDefault(s.ReadTimeout, DefaultReadTimeout)))
		return
	default:
		s.Logger.Error("read: " + err.Error())
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(orDefault(s.WriteTimeout, DefaultWriteTimeout)))
	if err := protocol.WriteReply(conn, reply); err != nil {
		s.Logger.Error("write: " + err.Error())
		return
	}
	s.Logger.Debug("response: " + reply)
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(orDefault(s.DrainTimeout, DefaultDrainTimeout)))
	_, _ = rd.Drain(drainLimit)
}

// authenticate runs saslauthd's do_auth for a well-formed request and
// returns the reply text.
func (s *Server) authenticate(preq protocol.Request) string {
	st := s.auth.Load()
	if st == nil {
		s.Logger.Error("no authentication mechanism installed")
		return mechs.ReplyInternal
	}
	login := preq.Login
	if s.JoinRealm && preq.Realm != "" {
		login = login + "@" + preq.Realm
		if len(login) > 512 { // saslauthd's 513-byte buffer
			login = login[:512]
		}
	}
	req := mechs.Request{Login: login, Password: mechs.Password(preq.Password),
		Service: preq.Service, Realm: preq.Realm, ClientAddr: preq.ClientAddr}
	who := fmt.Sprintf("[user=%s] [service=%s] [realm=%s]", logSafe(req.Login), logSafe(req.Service), logSafe(req.Realm))

	if s.Cache != nil && s.Cache.Lookup(req) {
		s.Logger.Debug("auth success (cached): " + who)
		return "OK"
	}

	ctx, cancel := context.WithTimeout(context.Background(), orDefault(s.RequestTimeout, DefaultRequestTimeout))
	defer cancel()
	if s.inflight != nil {
		select {
		case s.inflight <- struct{}{}:
			defer func() { <-s.inflight }()
		case <-ctx.Done():
			s.Logger.Error("auth failure: " + who + " [mech=" + st.name +
				"] [reason=timed out waiting for a free worker]")
			return mechs.ReplyInternal
		}
	}
	start := time.Now()
	res, err := st.m.Authenticate(ctx, req)
	if err != nil { // a bare mechanism (not a Chain) may return one
		res = mechs.Result{Verdict: mechs.TempFail, Reply: mechs.ReplyInternal, Reason: err.Error(), By: st.name}
	}
	mech := res.By
	if mech == "" {
		mech = st.name
	}
	switch {
	case res.Verdict == mechs.Accept && strings.HasPrefix(res.Reply, "OK"):
		if s.Cache != nil {
			s.Cache.Store(req)
		}
		s.Logger.Debug("auth success: " + who + " [mech=" + mech + "]")
		return res.Reply
	case strings.HasPrefix(res.Reply, "NO"):
		reason := strings.TrimPrefix(strings.TrimPrefix(res.Reply, "NO"), " ")
		if reason == "" {
			reason = "Unknown"
		}
		line := "auth failure: " + who + " [mech=" + mech + "] [reason=" + reason + "]"
		if preq.HasClientAddr && preq.ClientAddr != "" {
			line += " [remote=" + logSafe(preq.ClientAddr) + "]"
		}
		s.Logger.Info(line)
		if res.Verdict == mechs.TempFail {
			// the chain traces rejections at debug level; a back end that
			// could not answer is worth a warning on its own
			s.Logger.Warn(mech+": TEMPFAIL", slog.String("detail", res.Reason),
				slog.Duration("duration", time.Since(start)))
		}
		return res.Reply
	default:
		s.Logger.Error("mechanism returned unknown response: " + mech)
		return mechs.ReplyInternal
	}
}

// logSafe shows control characters as '?' so that a user name cannot start
// a forged log line.
func logSafe(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return '?'
		}
		return r
	}, s)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
