// Package rimap is saslauthd's "rimap" mechanism: it checks a password by
// logging in to a remote IMAP server with it.
//
// The exchange follows saslauthd 2.1.28 (saslauthd/auth_rimap.c) byte for
// byte on a plaintext connection: the greeting must start with "* OK", the
// command is `saslauthd LOGIN "login" "password"` with `"` and `\` escaped,
// the tagged reply is classified line by line (`* CAPABILITY` lines are
// skipped, anything else untagged is "unexpected"), and `saslauthd LOGOUT`
// follows. The replies are saslauthd's, word for word.
//
// What it adds:
//
//   - The host is resolved for each new connection, not once at start, so
//     the daemon starts while DNS is down and follows DNS changes.
//   - Several servers, tried in order (rimap_hosts).
//   - STARTTLS or implicit TLS, with certificate verification.
//   - A connect timeout and a command timeout; the request's context is
//     honoured throughout.
//   - A small pool of connections that are already connected, greeted and
//     (with TLS) handshaken, so that a request pays only for the LOGIN.
//   - Credentials a quoted string cannot carry (CR, LF, 8-bit bytes) are
//     sent as literals, so they reach the server intact.
//   - LOGINDISABLED is a configuration error (TEMPFAIL), not a bad password.
//   - The password is never logged, at any level.
//
// The IMAP exchange is a small hand-written client rather than go-imap's
// imapclient: imapclient picks its own tags ("T1", ...) and string
// encodings, treats untagged "* OK [ALERT]" and "* BYE" lines as ordinary
// unilateral data and fails on a greeting such as "HELLO" before the caller
// sees it, so it cannot send saslauthd's exact bytes nor reproduce its
// classification. go-imap's server side is used by the tests.
package rimap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/saslgate/saslgate/mechs"
)

const name = "rimap"

func init() {
	mechs.Register(name, 50, mechs.Constructor(New))
}

// The replies, as saslauthd 2.1.28 words them.
const (
	ReplyOK          = "OK remote authentication successful"
	ReplyRejected    = "NO remote server rejected your credentials"
	ReplyNoContact   = "NO [ALERT] Couldn't contact remote authentication server"
	ReplyUnavailable = "NO [ALERT] The remote authentication server is currently unavailable"
	ReplyUnexpected  = "NO [ALERT] Unexpected response from remote authentication server"
	ReplySync        = "NO [ALERT] error synchronizing with remote authentication server"
	ReplyInternal    = "NO [ALERT] saslauthd internal error"
)

// Option keys read from mechs.Options.Values. Unset or empty means the
// default.
const (
	// KeyHosts lists more servers, "host[/port]" separated by spaces or
	// commas, tried in order after -O's (or instead, when -O is empty).
	KeyHosts = "rimap_hosts"
	// KeyTLS is none (the default, as saslauthd), starttls or implicit.
	KeyTLS = "rimap_tls"
	// KeyCAFile is a PEM file of the CAs that sign the server's
	// certificate; unset means the system's roots.
	KeyCAFile = "rimap_ca_file"
	// KeyServerName is the name the certificate must carry; unset means
	// each server's host as configured.
	KeyServerName = "rimap_server_name"
	// KeyTLSVerify is yes (the default) or no; no accepts any certificate
	// and is logged as a warning at start.
	KeyTLSVerify = "rimap_tls_verify"
	// KeyConnectTimeout bounds resolving and connecting to one address, as
	// a Go duration or whole seconds.
	KeyConnectTimeout = "rimap_connect_timeout"
	// KeyCommandTimeout bounds the greeting, STARTTLS with its handshake,
	// and each LOGIN exchange.
	KeyCommandTimeout = "rimap_command_timeout"
	// KeyPoolSize is how many idle, greeted connections are kept ready; 0
	// gives saslauthd's connection per request.
	KeyPoolSize = "rimap_pool_size"
	// KeyPoolIdle is how long a ready connection may wait unused before it
	// is logged out.
	KeyPoolIdle = "rimap_pool_idle"
)

// Defaults.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultCommandTimeout = 10 * time.Second
	DefaultPoolSize       = 4
	DefaultPoolIdle       = 30 * time.Second
)

// TLSMode says how a connection is secured.
type TLSMode uint8

const (
	TLSNone     TLSMode = iota // plaintext, as saslauthd
	TLSStartTLS                // plaintext greeting, then STARTTLS before LOGIN
	TLSImplicit                // TLS from the first byte (port 993, "imaps")
)

func (t TLSMode) String() string {
	switch t {
	case TLSStartTLS:
		return "starttls"
	case TLSImplicit:
		return "implicit"
	}
	return "none"
}

// Server is one remote IMAP server.
type Server struct {
	Host string // name or IP address, as configured
	Port int
	// Spec is the server as written in the configuration (host/service).
	Spec string
}

// Config is the mechanism's parsed configuration.
type Config struct {
	Servers        []Server
	TLS            TLSMode
	CAFile         string
	ServerName     string
	TLSVerify      bool
	ConnectTimeout time.Duration
	CommandTimeout time.Duration
	PoolSize       int
	PoolIdle       time.Duration
}

// Mech is the rimap mechanism. It is safe for concurrent use; Close logs
// out the ready connections.
type Mech struct {
	cfg    Config
	logger *slog.Logger
	tls    []*tls.Config // per server, when cfg.TLS != TLSNone
	pool   *pool         // nil when cfg.PoolSize is 0

	limMu  sync.Mutex
	logged map[string]time.Time // rate limit of repeated warnings
}

// New builds the mechanism from saslauthd's -O (host[/port]) and the
// rimap_* values. Nothing is resolved or connected here: a host that does
// not resolve now is tried again on each request. The only errors are
// configuration errors, first among them a missing host.
func New(opts mechs.Options, logger *slog.Logger) (*Mech, error) {
	cfg, err := ParseConfig(opts)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Mech{cfg: cfg, logger: logger, logged: map[string]time.Time{}}
	if cfg.TLS != TLSNone {
		// Session resumption: every accepted LOGIN uses up its connection,
		// so handshakes are frequent; a resumed one skips the certificate
		// exchange and its public-key work.
		base := &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, mechs.Error(name, fmt.Errorf("%s: %w", KeyCAFile, err))
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return nil, mechs.Error(name, fmt.Errorf("%s: no PEM certificate in %s", KeyCAFile, cfg.CAFile))
			}
			base.RootCAs = roots
		}
		if !cfg.TLSVerify {
			base.InsecureSkipVerify = true
			logger.Warn("TLS certificate verification is disabled (" + KeyTLSVerify + "=no): anyone on the path can read the passwords")
		}
		for _, s := range cfg.Servers {
			c := base.Clone()
			c.ServerName = cfg.ServerName
			if c.ServerName == "" {
				c.ServerName = s.Host
			}
			m.tls = append(m.tls, c)
		}
	}
	specs := make([]string, len(cfg.Servers))
	for i, s := range cfg.Servers {
		specs[i] = s.Spec
	}
	logger.Debug("remote IMAP servers", "servers", strings.Join(specs, " "), "tls", cfg.TLS.String(),
		"pool_size", cfg.PoolSize, "pool_idle", cfg.PoolIdle)
	if cfg.PoolSize > 0 {
		m.pool = newPool(m, cfg.PoolSize, cfg.PoolIdle)
	}
	return m, nil
}

// ParseConfig reads -O and the rimap_* values. Unknown keys are left
// alone: Values is shared with the other mechanisms.
func ParseConfig(opts mechs.Options) (Config, error) {
	fail := func(format string, a ...any) (Config, error) {
		return Config{}, mechs.Error(name, fmt.Errorf(format, a...))
	}
	get := func(key string) string { return strings.TrimSpace(opts.Get(key, "")) }
	cfg := Config{TLSVerify: true, ConnectTimeout: DefaultConnectTimeout, CommandTimeout: DefaultCommandTimeout,
		PoolSize: DefaultPoolSize, PoolIdle: DefaultPoolIdle}

	switch v := strings.ToLower(get(KeyTLS)); v {
	case "", "none", "no", "off":
	case "starttls":
		cfg.TLS = TLSStartTLS
	case "implicit", "tls", "imaps":
		cfg.TLS = TLSImplicit
	default:
		return fail("%s: %q is not none, starttls or implicit", KeyTLS, v)
	}
	defService := "imap"
	if cfg.TLS == TLSImplicit {
		defService = "imaps"
	}
	var specs []string
	if opts.Option != "" {
		// saslauthd takes -O whole: one host, split at its first '/'.
		specs = append(specs, opts.Option)
	}
	specs = append(specs, strings.FieldsFunc(get(KeyHosts), func(r rune) bool { return r == ',' || unicode.IsSpace(r) })...)
	if len(specs) == 0 {
		return fail("no hostname specified (-O host[/port])")
	}
	seen := map[string]bool{}
	for _, spec := range specs {
		s, err := parseServer(spec, defService)
		if err != nil {
			return Config{}, mechs.Error(name, err)
		}
		if key := net.JoinHostPort(s.Host, strconv.Itoa(s.Port)); !seen[key] {
			seen[key] = true
			cfg.Servers = append(cfg.Servers, s)
		}
	}

	cfg.CAFile = get(KeyCAFile)
	cfg.ServerName = get(KeyServerName)
	switch v := strings.ToLower(get(KeyTLSVerify)); v {
	case "", "yes", "true", "on", "1":
	case "no", "false", "off", "0":
		cfg.TLSVerify = false
	default:
		return fail("%s: %q is not yes or no", KeyTLSVerify, v)
	}
	var err error
	if cfg.ConnectTimeout, err = duration(get(KeyConnectTimeout), DefaultConnectTimeout); err != nil {
		return fail("%s: %v", KeyConnectTimeout, err)
	}
	if cfg.CommandTimeout, err = duration(get(KeyCommandTimeout), DefaultCommandTimeout); err != nil {
		return fail("%s: %v", KeyCommandTimeout, err)
	}
	if cfg.PoolIdle, err = duration(get(KeyPoolIdle), DefaultPoolIdle); err != nil {
		return fail("%s: %v", KeyPoolIdle, err)
	}
	if v := get(KeyPoolSize); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1024 {
			return fail("%s: %q is not a number from 0 to 1024", KeyPoolSize, v)
		}
		cfg.PoolSize = n
	}
	return cfg, nil
}

// parseServer reads "host[/service]" as saslauthd does: split at the first
// '/', the service a port number or a name from /etc/services.
func parseServer(spec, defService string) (Server, error) {
	host, service, found := strings.Cut(spec, "/")
	if !found {
		service = defService
	}
	// [v6]/port is accepted too, though saslauthd knows only the bare form
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if host == "" {
		return Server{}, fmt.Errorf("no hostname in %q (host[/port])", spec)
	}
	port, err := lookupPort(service)
	if err != nil {
		return Server{}, fmt.Errorf("unknown service %s/tcp in %q: %w", service, spec, err)
	}
	return Server{Host: host, Port: port, Spec: host + "/" + service}, nil
}

// wellKnown backs up /etc/services, which minimal systems lack.
var wellKnown = map[string]int{"imap": 143, "imap2": 143, "imaps": 993}

func lookupPort(service string) (int, error) {
	if service == "" {
		return 0, errors.New("empty service")
	}
	if service[0] >= '0' && service[0] <= '9' {
		n, err := strconv.Atoi(service)
		if err != nil || n < 1 || n > 65535 {
			return 0, errors.New("not a port number")
		}
		return n, nil
	}
	n, err := net.LookupPort("tcp", service)
	if err != nil {
		if wk, ok := wellKnown[strings.ToLower(service)]; ok {
			return wk, nil
		}
	}
	return n, err
}

// duration reads a Go duration ("1500ms") or whole seconds ("5").
func duration(v string, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		if nerr != nil {
			return 0, fmt.Errorf("%q is not a duration", v)
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q is not positive", v)
	}
	return d, nil
}

// Name implements mechs.Mechanism.
func (m *Mech) Name() string { return name }

// Config returns the parsed configuration.
func (m *Mech) Config() Config { return m.cfg }

// Authenticate implements mechs.Mechanism: one IMAP LOGIN with the
// request's login and password. It never returns an error; a server that
// cannot answer is a TempFail with saslauthd's reply for the case.
func (m *Mech) Authenticate(ctx context.Context, req mechs.Request) (mechs.Result, error) {
	if err := ctx.Err(); err != nil {
		return mechs.TempFailed(mechs.ReplyInternal, err.Error()), nil
	}
	pw := req.Password.Reveal()
	var c *conn
	pooled := false
	if m.pool != nil {
		c = m.pool.get()
		pooled = c != nil
	}
	if c == nil {
		var res mechs.Result
		if c, res = m.dial(ctx); c == nil {
			return res, nil
		}
	}
	out := c.login(ctx, m.cfg.CommandTimeout, req.Login, pw)
	if out.retry && pooled {
		// The ready connection had been closed under us and the LOGIN never
		// reached the server whole, so no attempt was counted: once more on
		// a new connection.
		m.logger.Debug("ready connection is gone; retrying on a new one", "server", c.where, "err", redact(out.res.Reason, pw))
		c.close()
		var res mechs.Result
		if c, res = m.dial(ctx); c == nil {
			return res, nil
		}
		out = c.login(ctx, m.cfg.CommandTimeout, req.Login, pw)
	}
	switch {
	case out.keep && m.pool != nil:
		m.pool.put(c)
	case out.logout:
		c.logout()
	default:
		c.close()
	}
	if m.pool != nil {
		m.pool.refill()
	}
	out.res.Reason = redact(out.res.Reason, pw)
	if out.config {
		m.logConfig(out.res.Reason)
	}
	return out.res, nil
}

// PoolStats counts what the pool of ready connections did.
type PoolStats struct {
	Ready   int   // connections waiting now
	Dials   int64 // opened in the background
	Reuses  int64 // handed to a request
	Expired int64 // logged out after the idle time
	Dead    int64 // found closed (or spoken on) by the server, dropped
}

// Stats reports the pool's counters; all zero without a pool.
func (m *Mech) Stats() PoolStats {
	p := m.pool
	if p == nil {
		return PoolStats{}
	}
	return PoolStats{Ready: p.ready(), Dials: p.dials.Load(), Reuses: p.reuses.Load(),
		Expired: p.expired.Load(), Dead: p.dead.Load()}
}

// Close logs out the ready connections and stops the pool. Requests still
// running finish; their connections are then closed.
func (m *Mech) Close() error {
	if m.pool != nil {
		m.pool.close()
	}
	return nil
}

// dial is connect for a request: a configuration error is logged as such.
func (m *Mech) dial(ctx context.Context) (*conn, mechs.Result) {
	c, res, config := m.connect(ctx)
	if config {
		m.logConfig(res.Reason)
	}
	return c, res
}

// connect opens a greeted (and, with TLS, secured) connection to the first
// server that gives one. For a single server it behaves as saslauthd:
// every address is tried until one accepts the TCP connection, and that
// connection's greeting decides. With several servers, any failure before
// the LOGIN (no credential has been sent) moves on to the next. config
// reports that a failure was a configuration error.
func (m *Mech) connect(ctx context.Context) (*conn, mechs.Result, bool) {
	var (
		last    mechs.Result
		reasons []string
		config  bool
	)
	for i, s := range m.cfg.Servers {
		var tc *tls.Config
		if m.tls != nil {
			tc = m.tls[i]
		}
		c, res, cfgErr := dialServer(ctx, s, m.cfg, tc)
		if c != nil {
			return c, mechs.Result{}, false
		}
		last = res
		config = config || cfgErr
		reasons = append(reasons, res.Reason)
		if ctx.Err() != nil {
			break
		}
	}
	last.Reason = strings.Join(reasons, "; ")
	return nil, last, config
}

// logConfig logs a configuration error (LOGINDISABLED, a certificate that
// does not verify, ...) at error level, once a minute for the same text.
func (m *Mech) logConfig(reason string) {
	m.logLimited(slog.LevelError, "configuration error: "+reason)
}

func (m *Mech) logLimited(level slog.Level, msg string) {
	const every = time.Minute
	m.limMu.Lock()
	now := time.Now()
	if t, ok := m.logged[msg]; ok && now.Sub(t) < every {
		m.limMu.Unlock()
		return
	}
	if len(m.logged) > 64 {
		clear(m.logged)
	}
	m.logged[msg] = now
	m.limMu.Unlock()
	m.logger.Log(context.Background(), level, msg)
}

// redact removes the password, bare or quoted, from text that came from
// the server (a server could echo the command back in an error).
func redact(s, pw string) string {
	if pw == "" || s == "" {
		return s
	}
	if q := string(quote(nil, pw)); strings.Contains(s, q) {
		s = strings.ReplaceAll(s, q, mechs.Redacted)
	}
	if strings.Contains(s, pw) {
		s = strings.ReplaceAll(s, pw, mechs.Redacted)
	}
	return s
}

var (
	_ mechs.Mechanism            = (*Mech)(nil)
	_ interface{ Close() error } = (*Mech)(nil)
)
