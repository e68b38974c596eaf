// Package throttle slows down password guessing without locking anyone
// out: it computes how long the daemon waits before answering NO, from a
// fixed failure delay plus Dovecot-style penalties kept per client address
// and per login.
//
// The rules, for one answer:
//
//   - OK is never delayed, whatever the address or login has done before.
//     So a correct password is never slowed down, and no attacker can lock a
//     user out by failing logins in the user's name or from the user's
//     network (NAT, a shared proxy).
//   - TEMPFAIL is not the client's fault: never delayed, never counted.
//   - NO (a back-end rejection, or the cache's memory of one) waits
//     FailureDelay + max(address penalty, login penalty), jittered by
//     ±Jitter. The penalties are those before this failure is counted, so a
//     single typo costs FailureDelay alone.
//   - A key's penalty is 0 until its first failure, then PenaltyBase
//     doubling with each further failure up to PenaltyMax (2, 4, 8, 15 s by
//     default). Each Decay without a counted failure halves it (one doubling
//     undone); a key back at 0 is forgotten.
//   - The same wrong password again (the same login, realm and password as
//     the key's previous failure) is not counted: a phone retrying an old
//     password every few minutes gets FailureDelay plus what it earned
//     once, and its penalty still decays.
//   - The address key is the client's IPv4 address, or its IPv6 /48 (one
//     site), taken from the request's "ip;port" field; a request without
//     one has only the login key. The login key is (login, realm),
//     case-folded, for every service.
//   - An address in a trusted network is exempt: never delayed, and its
//     failures are not counted against the login either.
//   - A success neither clears nor raises anything: an attacker cannot wash
//     an address's record with one account it owns.
//   - At most MaxKeys keys are tracked (least recently failed evicted
//     first); nothing is stored for a success; a password is stored only as
//     8 bytes of an HMAC under a key drawn at start-up.
//
// Caveat: because OK is never delayed, a client that can drop its
// connection early learns "not OK" before the delay ends. The delay slows
// clients that wait for their answer (most guessing tools, and every SMTP
// or IMAP session relayed through Postfix or Cyrus), not one that races.
package throttle

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash/maphash"
	mrand "math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/saslgate/saslgate/mechs"
)

// Defaults, Dovecot's where it has one.
const (
	DefaultFailureDelay = 2 * time.Second
	DefaultJitter       = 0.25
	DefaultPenaltyBase  = 2 * time.Second
	DefaultPenaltyMax   = 15 * time.Second
	DefaultDecay        = 5 * time.Minute
	DefaultMaxKeys      = 65536
	DefaultIPv4Prefix   = 32
	DefaultIPv6Prefix   = 48
)

// Config configures New. Start from DefaultConfig: a zero FailureDelay,
// Jitter or PenaltyBase means none.
type Config struct {
	// FailureDelay is the wait before every NO.
	FailureDelay time.Duration
	// Jitter spreads every delay uniformly over ±Jitter of it (0 to 1).
	Jitter float64
	// PenaltyBase is a key's penalty after its first failure; each further
	// failure doubles it, up to PenaltyMax.
	PenaltyBase, PenaltyMax time.Duration
	// Decay is how long without a counted failure halves a key's penalty;
	// 0 means DefaultDecay.
	Decay time.Duration
	// MaxKeys bounds the keys (addresses and logins) tracked; 0 means
	// DefaultMaxKeys.
	MaxKeys int
	// Trusted lists the networks whose clients are never delayed.
	Trusted []netip.Prefix
	// IPv4Prefix and IPv6Prefix group client addresses; 0 means 32 and 48.
	IPv4Prefix, IPv6Prefix int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		FailureDelay: DefaultFailureDelay,
		Jitter:       DefaultJitter,
		PenaltyBase:  DefaultPenaltyBase,
		PenaltyMax:   DefaultPenaltyMax,
		Decay:        DefaultDecay,
		MaxKeys:      DefaultMaxKeys,
	}
}

// Throttle tracks failures and computes delays. It is safe for concurrent
// use. A nil *Throttle never delays.
type Throttle struct {
	cfg      Config
	maxLevel int // the level whose penalty reaches PenaltyMax
	now      func() time.Time
	rnd      *mrand.Rand // guarded by mu; nil: the global source
	seed     maphash.Seed
	pwKey    [32]byte

	mu   sync.Mutex
	keys map[key]*state
	lru  state // sentinel: lru.next is the most recently failed
}

type key struct {
	addr  netip.Addr // the masked address, for an address key
	login uint64     // keyed hash of (login, realm), for a login key
}

type state struct {
	k     key
	level int       // penalty level, 1..maxLevel
	since time.Time // start of the current decay period
	last  uint64    // fingerprint of the last counted failure

	prev, next *state
}

// New returns a throttle. r supplies the jitter (tests pass a seeded one);
// nil uses the global source.
func New(cfg Config, r *mrand.Rand) *Throttle {
	cfg.Jitter = min(max(cfg.Jitter, 0), 1)
	cfg.FailureDelay = max(cfg.FailureDelay, 0)
	if cfg.Decay <= 0 {
		cfg.Decay = DefaultDecay
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.IPv4Prefix <= 0 || cfg.IPv4Prefix > 32 {
		cfg.IPv4Prefix = DefaultIPv4Prefix
	}
	if cfg.IPv6Prefix <= 0 || cfg.IPv6Prefix > 128 {
		cfg.IPv6Prefix = DefaultIPv6Prefix
	}
	cfg.Trusted = append([]netip.Prefix(nil), cfg.Trusted...)
	for i, p := range cfg.Trusted {
		cfg.Trusted[i] = p.Masked()
		if p.Addr().Is4In6() {
			cfg.Trusted[i] = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0)).Masked()
		}
	}
	t := &Throttle{cfg: cfg, now: cfg.Now, rnd: r, seed: maphash.MakeSeed(), keys: map[key]*state{}}
	if t.now == nil {
		t.now = time.Now
	}
	if cfg.PenaltyBase > 0 && cfg.PenaltyMax > 0 {
		t.maxLevel = 1
		for p := cfg.PenaltyBase; p < cfg.PenaltyMax && t.maxLevel < 62; p *= 2 {
			t.maxLevel++
		}
	}
	if _, err := rand.Read(t.pwKey[:]); err != nil {
		panic("throttle: no randomness: " + err.Error())
	}
	t.lru.prev, t.lru.next = &t.lru, &t.lru
	return t
}

// Observe records the answer the back end (or the cache) gave req and
// returns how long to wait before sending it. Call it once per answered
// request, after the mechanism call and after giving back the -n slot, then
// Wait in the connection's goroutine.
func (t *Throttle) Observe(req mechs.Request, v mechs.Verdict) time.Duration {
	if t == nil || v != mechs.Reject {
		return 0 // OK is never delayed; TEMPFAIL is not the client's doing
	}
	addr, hasAddr := t.addrKey(req.ClientAddr)
	if hasAddr && t.trusted(addr) {
		return 0
	}
	if t.maxLevel == 0 { // no penalties: nothing to track
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.jitterLocked(t.cfg.FailureDelay)
	}
	keys := [2]key{{login: t.loginKey(req)}}
	n := 1
	if hasAddr {
		keys[1] = key{addr: addr}
		n = 2
	}
	fp := t.fingerprint(req)
	now := t.now()

	t.mu.Lock()
	defer t.mu.Unlock()
	var penalty time.Duration
	for _, k := range keys[:n] {
		s := t.getLocked(k, now)
		if s != nil {
			penalty = max(penalty, t.penalty(s.level))
		}
		t.failLocked(k, s, fp, now)
	}
	return t.jitterLocked(t.cfg.FailureDelay + penalty)
}

// Penalty is the penalty a failure of req would add now, for logging.
func (t *Throttle) Penalty(req mechs.Request) time.Duration {
	if t == nil {
		return 0
	}
	addr, hasAddr := t.addrKey(req.ClientAddr)
	if hasAddr && t.trusted(addr) {
		return 0
	}
	now := t.now()
	lk := key{login: t.loginKey(req)}
	t.mu.Lock()
	defer t.mu.Unlock()
	var p time.Duration
	if s := t.getLocked(lk, now); s != nil {
		p = t.penalty(s.level)
	}
	if hasAddr {
		if s := t.getLocked(key{addr: addr}, now); s != nil {
			p = max(p, t.penalty(s.level))
		}
	}
	return p
}

// Wait sleeps for d, or until ctx ends (then it returns ctx's error).
func Wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Reset forgets every key.
func (t *Throttle) Reset() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.keys)
	t.lru.prev, t.lru.next = &t.lru, &t.lru
}

// Len is the number of keys tracked.
func (t *Throttle) Len() int {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.keys)
}

func (t *Throttle) penalty(level int) time.Duration {
	if level <= 0 || t.maxLevel == 0 {
		return 0
	}
	if level >= t.maxLevel {
		return t.cfg.PenaltyMax
	}
	return min(t.cfg.PenaltyBase<<(level-1), t.cfg.PenaltyMax)
}

// getLocked returns k's state with its decay applied, or nil.
func (t *Throttle) getLocked(k key, now time.Time) *state {
	s := t.keys[k]
	if s == nil {
		return nil
	}
	if t.decayLocked(s, now) {
		return nil
	}
	return s
}

// decayLocked applies the periods of quiet since s.since; it removes s and
// reports true when nothing is left.
func (t *Throttle) decayLocked(s *state, now time.Time) bool {
	quiet := now.Sub(s.since)
	if quiet < t.cfg.Decay {
		return false
	}
	steps := quiet / t.cfg.Decay
	if steps >= time.Duration(s.level) {
		t.removeLocked(s)
		return true
	}
	s.level -= int(steps)
	s.since = s.since.Add(steps * t.cfg.Decay)
	return false
}

// failLocked counts a failure for k (whose decayed state is s, or nil).
func (t *Throttle) failLocked(k key, s *state, fp uint64, now time.Time) {
	if s == nil {
		for len(t.keys) >= t.cfg.MaxKeys {
			t.removeLocked(t.lru.prev)
		}
		s = &state{k: k, level: 1, since: now, last: fp}
		t.keys[k] = s
		s.prev, s.next = &t.lru, t.lru.next
		s.prev.next, s.next.prev = s, s
		return
	}
	if s.last != fp { // the same wrong password again does not count
		s.level = min(s.level+1, t.maxLevel)
		s.since = now
		s.last = fp
	}
	if t.lru.next != s {
		s.prev.next, s.next.prev = s.next, s.prev
		s.prev, s.next = &t.lru, t.lru.next
		s.prev.next, s.next.prev = s, s
	}
	// sweep a few fully decayed keys from the cold end
	for i := 0; i < 2 && t.lru.prev != &t.lru && t.lru.prev != s; i++ {
		if !t.decayLocked(t.lru.prev, now) {
			break
		}
	}
}

func (t *Throttle) removeLocked(s *state) {
	s.prev.next, s.next.prev = s.next, s.prev
	s.prev, s.next = nil, nil
	delete(t.keys, s.k)
}

func (t *Throttle) jitterLocked(d time.Duration) time.Duration {
	if d <= 0 || t.cfg.Jitter == 0 {
		return d
	}
	var u float64
	if t.rnd != nil {
		u = t.rnd.Float64()
	} else {
		u = mrand.Float64()
	}
	return time.Duration(float64(d) * (1 + t.cfg.Jitter*(2*u-1)))
}

// addrKey parses the request's client address, "ip;port" (saslauthd's 5th
// field, SASL_IPREMOTEPORT), and masks it to its group.
func (t *Throttle) addrKey(clientAddr string) (netip.Addr, bool) {
	if clientAddr == "" {
		return netip.Addr{}, false
	}
	host := clientAddr
	if i := strings.LastIndexByte(host, ';'); i >= 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	a = a.Unmap().WithZone("")
	bits := t.cfg.IPv6Prefix
	if a.Is4() {
		bits = t.cfg.IPv4Prefix
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Addr{}, false
	}
	return p.Addr(), true
}

func (t *Throttle) trusted(a netip.Addr) bool {
	for _, p := range t.cfg.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// loginKey is the per-login key: case-folded, so that "Alice" and "alice"
// (the same user to most back ends) share one record.
func (t *Throttle) loginKey(req mechs.Request) uint64 {
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.WriteString(strings.ToLower(req.Login))
	h.WriteByte(0)
	h.WriteString(strings.ToLower(req.Realm))
	return h.Sum64()
}

// fingerprint identifies (login, realm, password) for the same-password
// rule: 8 bytes of an HMAC-SHA-256 under a key that never leaves memory.
func (t *Throttle) fingerprint(req mechs.Request) uint64 {
	m := hmac.New(sha256.New, t.pwKey[:])
	var n [8]byte
	for _, s := range []string{req.Login, req.Realm} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		m.Write(n[:])
		m.Write([]byte(s))
	}
	pw := []byte(req.Password.Reveal())
	m.Write(pw)
	clear(pw)
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(m.Sum(sum[:0]))
}
