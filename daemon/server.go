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
	"strings"
	"sync"
	"sync/atomic"
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
	active    map[net.Conn]*connState
	closed    bool
	wg        sync.WaitGroup // connections
	serving   sync.WaitGroup // Serve loops
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
		s.active = map[net.Conn]*connState{}
	})
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
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
