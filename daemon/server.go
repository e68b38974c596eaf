// Package daemon is saslgate's server side: the mux socket and its pid
// lock, acceptors that answer what needs no wait (a cache hit) and hand the
// rest to connection goroutines, deadlines on every read and write,
// the -n cap on mechanism calls, -r, the credential cache, logging in
// saslauthd's format, detaching, signals and shutdown.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/saslgate/saslgate/daemon/rewrite"
	"github.com/saslgate/saslgate/daemon/throttle"
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
	// KeepBacklog leaves the clients queued in the listen backlog at
	// Shutdown to the next instance instead of serving them: under socket
	// activation systemd keeps the socket open across a restart.
	KeepBacklog bool
	// Cache, when set, is consulted before the mechanism (-c).
	Cache *Cache

	// Throttle, when set, delays failures (failure_delay, penalties).
	Throttle *throttle.Throttle

	// Observer, when set, is told of every request, reply and connection
	// error (metrics). Set it before Serve.
	Observer Observer

	calls      atomic.Int64 // mechanism chains running, for Stats
	policy     atomic.Pointer[policyState]
	initOnce   sync.Once
	stopCtx    context.Context // ends at Shutdown: failure delays stop waiting
	stop       context.CancelFunc
	inflight   chan struct{}
	conns      chan struct{}
	handoff    chan connJob  // to idle connection goroutines
	connIdle   time.Duration // 0: connIdle; tests shorten it
	acceptors  int           // 0: acceptors(); tests set it
	queuedWait time.Duration // 0: rawQueuedWait; tests set it

	accepted   atomic.Uint64 // connections accepted, for the watchdog
	byAcceptor atomic.Uint64 // connections served to the end by an acceptor

	mu        sync.Mutex
	listeners map[net.Listener]func() // each one's wake-up at Shutdown
	active    map[net.Conn]*connState
	closed    bool
	wg        sync.WaitGroup // connections
	serving   sync.WaitGroup // Serve loops
}

// Policy is what a request goes through besides the protocol: the rewrite
// rules (realm rules, -r, service mapping), the mechanism chains by name,
// and the login-debug level. SIGHUP swaps it whole.
type Policy struct {
	Rules rewrite.Rules
	// Chains holds one mechanism (a *mechs.Chain) for every chain name the
	// rules use; Rules.Services.Default is the chain of a service that has
	// none of its own.
	Chains map[string]mechs.Mechanism
	// LogLevel is the login-debug level: 0 saslauthd's lines only; 1 one
	// line per request with the rewrites, each mechanism's verdict and
	// cache hits; 2 the same with the password.
	LogLevel int
}

// Close closes every chain.
func (p *Policy) Close() error {
	var errs []error
	for _, m := range p.Chains {
		if c, ok := m.(interface{ Close() error }); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

type policyState struct {
	p     *Policy
	fresh map[string]mechs.Freshness // per chain: the cache's generation
}

// SetPolicy installs p. It may be called while serving: requests already
// running finish on the old one (SIGHUP). Cache entries made under the old
// chains do not answer for the new ones.
func (s *Server) SetPolicy(p *Policy) {
	st := &policyState{p: p, fresh: map[string]mechs.Freshness{}}
	for name, m := range p.Chains {
		st.fresh[name] = mechs.CombineFreshness(m)
	}
	s.policy.Store(st)
}

// Policy returns the installed policy.
func (s *Server) Policy() *Policy {
	if st := s.policy.Load(); st != nil {
		return st.p
	}
	return nil
}

// SetAuth installs m as the only chain, with -r as JoinRealm says and no
// other rule: saslauthd's whole policy.
func (s *Server) SetAuth(m mechs.Mechanism) {
	s.SetPolicy(&Policy{
		Rules:  rewrite.Rules{RealmJoin: s.JoinRealm, Services: rewrite.ServiceMap{Default: m.Name()}},
		Chains: map[string]mechs.Mechanism{m.Name(): m},
	})
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
		s.handoff = make(chan connJob)
		s.stopCtx, s.stop = context.WithCancel(context.Background())
		s.listeners = map[net.Listener]func(){}
		s.active = map[net.Conn]*connState{}
	})
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// authenticate runs saslauthd's do_auth for a well-formed request, with
// saslgate's policy around it: rewrite rules, the service's chain, the cache,
// the failure delay, the login-debug line. It returns the reply text.
func (s *Server) authenticate(preq protocol.Request) string {
	reply, _ := s.answer(preq, false)
	return reply
}

// answerCached answers preq only if a positive cache entry can: what an
// acceptor, which must not wait, answers itself. false: nothing happened,
// not even a log line, and authenticate is the way on.
func (s *Server) answerCached(preq protocol.Request) (string, bool) {
	return s.answer(preq, true)
}

// answer is authenticate and answerCached: with cachedOnly it goes no
// further than the rules and a look in the cache unless that look hits.
// A request that misses runs the rules again on its goroutine; they cost
// a microsecond against a back end's milliseconds.
func (s *Server) answer(preq protocol.Request, cachedOnly bool) (string, bool) {
	ps := s.policy.Load()
	if ps == nil {
		if cachedOnly {
			return "", false
		}
		s.Logger.Error("no authentication mechanism installed")
		return mechs.ReplyInternal, true
	}
	p := ps.p
	in := mechs.Request{Login: preq.Login, Password: mechs.Password(preq.Password),
		Service: preq.Service, Realm: preq.Realm, ClientAddr: preq.ClientAddr}
	rw, err := p.Rules.Apply(in)
	lg := rw.Logged
	var gen uint64 = mechs.GenUnknown
	// the generation is read before the back end runs: an entry never
	// claims data newer than what the back end saw
	if f := ps.fresh[rw.Chain]; f != nil && s.Cache != nil && err == nil { // stats files: only for -c
		gen = f.Generation()
	}
	var hit mechs.Result
	if cachedOnly {
		if err != nil || p.Chains[rw.Chain] == nil {
			return "", false
		}
		var ok bool
		if hit, ok = s.Cache.Hit(lg, gen); !ok {
			return "", false
		}
	}
	// who is built only for a line that is logged: most requests log none
	who := func() string {
		return "[user=" + logSafe(lg.Login) + "] [service=" + logSafe(lg.Service) + "] [realm=" + logSafe(lg.Realm) + "]"
	}
	debug := s.Logger.Enabled(context.Background(), slog.LevelDebug)

	var (
		dbgMu sync.Mutex
		dbg   []string // the login-debug steps
	)
	note := func(step string) { dbgMu.Lock(); dbg = append(dbg, step); dbgMu.Unlock() }
	if len(rw.Trace) > 0 {
		note(rw.Trace.String())
	}
	start := time.Now()
	var res mechs.Result
	outcome := CacheBypass
	if cachedOnly {
		res, outcome = hit, CacheHit
	} else if refused, ok := rewrite.Refused(err); ok {
		res = refused
	} else if err != nil {
		res = mechs.TempFailed(mechs.ReplyInternal, err.Error())
	} else if chain := p.Chains[rw.Chain]; chain == nil {
		res = mechs.TempFailed(mechs.ReplyInternal, "no mechanism chain "+rw.Chain)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), orDefault(s.RequestTimeout, DefaultRequestTimeout))
		defer cancel()
		if p.LogLevel >= 1 {
			ctx = mechs.WithTrace(ctx, note)
		}
		res, outcome = s.Cache.Do(ctx, lg, gen, func(ctx context.Context) mechs.Result {
			// the -n slot is taken here, so cache hits and requests
			// waiting for an identical one never hold one
			if s.inflight != nil {
				select {
				case s.inflight <- struct{}{}:
					defer func() { <-s.inflight }()
				case <-ctx.Done():
					return mechs.TempFailed(mechs.ReplyInternal, "timed out waiting for a free worker (-n)")
				}
			}
			s.calls.Add(1)
			defer s.calls.Add(-1)
			r, err := chain.Authenticate(ctx, rw.Request)
			if err != nil { // a bare mechanism (not a Chain) may return one
				r = mechs.TempFailed(mechs.ReplyInternal, err.Error())
			}
			if r.By == "" {
				r.By = chain.Name()
			}
			return r
		})
	}
	mech := cmp.Or(res.By, p.Rules.Services.Default)
	var decided time.Duration
	metricMech := res.By // before the switch may replace res
	if s.Observer != nil {
		decided = time.Since(start)
		if outcome.Cached() || outcome == CacheStale {
			metricMech = MechCache
		}
	}
	reply := res.Reply
	switch {
	case res.Verdict == mechs.Accept && strings.HasPrefix(res.Reply, "OK"):
		if outcome == CacheHit || outcome == CacheStale {
			if debug {
				s.Logger.Debug("auth success (cached): " + who())
			}
			if outcome == CacheStale {
				s.Logger.Warn("back end unavailable, answered from the cache (cache_stale_ttl): "+who(),
					slog.String("detail", res.Reason))
			}
		} else if debug {
			s.Logger.Debug("auth success: " + who() + " [mech=" + mech + "]")
		}
	case strings.HasPrefix(res.Reply, "NO"):
		reason := strings.TrimPrefix(strings.TrimPrefix(res.Reply, "NO"), " ")
		if reason == "" {
			reason = "Unknown"
		}
		line := "auth failure: " + who() + " [mech=" + mech + "] [reason=" + reason + "]"
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
	default:
		s.Logger.Error("mechanism returned unknown response: " + mech)
		res, reply = mechs.TempFailed(mechs.ReplyInternal, "unknown response"), mechs.ReplyInternal
	}

	delay := s.Throttle.Observe(lg, res.Verdict)
	if o := s.Observer; o != nil {
		o.Request(RequestEvent{Mech: cmp.Or(metricMech, MechNone), Verdict: res.Verdict, Duration: decided, Delay: delay})
	}
	if p.LogLevel >= 1 {
		if outcome.Cached() {
			note("cache: " + outcome.String())
		}
		line := "login debug: " + who() + " " + strings.Join(dbg, "; ") + " => " + res.Verdict.String() +
			" " + strconv.Quote(reply)
		if delay > 0 {
			line += " after a failure delay of " + delay.Round(time.Millisecond).String()
		}
		if p.LogLevel >= 2 {
			s.Logger.Warn(PasswordDebugWarning + " " + line + " [password=" + strconv.Quote(preq.Password) + "]")
		} else {
			s.Logger.Info(line)
		}
	}
	// the failure delay holds this connection, not a worker slot
	_ = throttle.Wait(s.stopCtx, delay)
	return reply, true
}

// PasswordDebugWarning starts every line of log_level 2 and the warning at
// start-up: passwords are being logged.
const PasswordDebugWarning = "PASSWORD DEBUG (log_level 2) IS ON, PASSWORDS ARE LOGGED:"

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
