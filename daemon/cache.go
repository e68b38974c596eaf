package daemon

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/saslgate/saslgate/mechs"
)

// Cache is the credential cache (-c), saslauthd's with the weaknesses of
// spec §6 fixed. Do is the whole of it; Lookup and Store are the old,
// positive-only interface.
//
// What it holds. Entries are keyed by (login after -r, realm, service), as
// saslauthd's. Nothing in memory is a password, a login or an unkeyed hash
// of either: the key is an HMAC-SHA-256 of the three strings, and the
// password an HMAC-SHA-256 bound to (login, realm), both under a key drawn
// at start-up that is never written anywhere. So an entry has a fixed size
// whatever the length of the strings, and two users with one password do
// not look alike.
//
// The rules:
//   - A positive entry answers "OK" without the back end for TTL after the
//     back-end success that wrote it; a hit does not extend it (saslauthd).
//   - A negative entry remembers, for NegativeTTL, that one password was
//     rejected for the key: the same wrong password again gets the same NO
//     without the back end; any other password still goes to it. A key keeps
//     its last few wrong passwords.
//   - A rejection from the back end drops the positive entries of that login
//     and realm, for every service: the old password must stop working once
//     a back end says no (saslauthd keeps them). An acceptance with another
//     password drops the other services' positive entries for the same
//     reason.
//   - Every entry carries the generation the daemon passed (see
//     mechs.Freshness): an entry of another generation is absent, so a
//     changed sasldb, shadow or passwd file invalidates at once. Under
//     mechs.GenUnknown the cache is not used at all.
//   - Identical requests (same key, password and generation) in flight
//     together reach the back end once; the others get the same result.
//   - When the back end answers TEMPFAIL, a positive entry for that password
//     younger than StaleTTL still answers OK (Dovecot's stale-on-tempfail).
//   - At most MaxEntries keys, least recently used evicted first, O(1).
//
// A Cache is safe for concurrent use. A nil *Cache is valid: Do then only
// calls the back end.
type Cache struct {
	ttl, negTTL, staleTTL time.Duration
	max                   int
	key                   [32]byte
	macs                  sync.Pool        // of *macState
	idSeed                maphash.Seed     // for entryID and userID
	now                   func() time.Time // tests replace it

	mu      sync.Mutex
	ents    map[entryID]*entry
	users   map[userID]*entry // first entry of each (login, realm)
	lru     entry             // sentinel: lru.next is the most recently used
	flights map[flightKey]*flight
	epoch   uint64 // bumped by Flush: older flights store nothing

	stats cacheCounters
}

// CacheConfig configures NewCacheWith. A zero duration turns its feature
// off.
type CacheConfig struct {
	// MaxEntries bounds the number of keys (login, realm, service) held;
	// 0 means DefaultCacheEntries.
	MaxEntries int
	// TTL is how long a back-end success answers later requests.
	TTL time.Duration
	// NegativeTTL is how long a back-end rejection answers the same wrong
	// password again.
	NegativeTTL time.Duration
	// StaleTTL is how old a positive entry may be and still answer OK when
	// the back end answers TEMPFAIL. It counts from the same back-end
	// success as TTL; only a StaleTTL longer than TTL adds anything.
	StaleTTL time.Duration
}

// CacheEntryBytes is the size saslauthd gives one cache bucket; -s KiB is
// turned into an entry bound with it so that -s keeps its meaning.
const CacheEntryBytes = 96

// DefaultCacheEntries is saslauthd's default table: 1711 slots of 6 buckets.
const DefaultCacheEntries = 1711 * 6

// negPerKey is how many wrong passwords a key remembers: a phone and a
// laptop each with an old password, and some room.
const negPerKey = 4

// NewCache returns a positive-only cache of at most maxEntries entries
// living ttl: saslauthd's -c with -s and -t.
func NewCache(maxEntries int, ttl time.Duration) *Cache {
	return NewCacheWith(CacheConfig{MaxEntries: max(maxEntries, 1), TTL: ttl})
}

// NewCacheWith returns a cache configured by cfg.
func NewCacheWith(cfg CacheConfig) *Cache {
	n := cfg.MaxEntries
	if n <= 0 {
		n = DefaultCacheEntries
	}
	c := &Cache{
		ttl:      max(cfg.TTL, 0),
		negTTL:   max(cfg.NegativeTTL, 0),
		staleTTL: max(cfg.StaleTTL, 0),
		max:      n,
		now:      time.Now,
		ents:     map[entryID]*entry{},
		users:    map[userID]*entry{},
		flights:  map[flightKey]*flight{},
	}
	if _, err := rand.Read(c.key[:]); err != nil {
		panic("daemon: no randomness for the cache key: " + err.Error())
	}
	c.macs.New = func() any { return &macState{h: hmac.New(sha256.New, c.key[:])} }
	c.idSeed = maphash.MakeSeed()
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	return c
}

type (
	// entryID and userID name an entry and a user by a keyed 128-bit hash
	// (two maphash sums under seeds drawn at start): they hold no login, and
	// are cheap, since a cache hit must cost less than the back end it
	// saves. Their collisions cannot authenticate anyone: the password MAC
	// covers the whole (login, realm, password).
	entryID [16]byte          // of (login, realm, service)
	userID  [16]byte          // of (login, realm)
	pwMAC   [sha256.Size]byte // HMAC-SHA-256 of (login, realm, password)
)

type entry struct {
	id   entryID
	user userID
	gen  uint64
	pos  posMark
	negs []negMark // at most negPerKey, oldest first

	prev, next   *entry // LRU list
	sprev, snext *entry // the other services of the same user
}

type posMark struct {
	set bool
	mac pwMAC
	at  time.Time // the back-end success
	by  string    // the mechanism that accepted
}

type negMark struct {
	mac       pwMAC
	at        time.Time // the back-end rejection
	reply, by string    // what the client got, and from which mechanism
}

type flightKey struct {
	id  entryID
	mac pwMAC
	gen uint64
}

type flight struct {
	done    chan struct{}
	res     mechs.Result
	retry   bool // the leader's ctx ended first: waiters ask again
	waiters int  // for tests
}

// CacheOutcome says how Do answered.
type CacheOutcome uint8

const (
	// CacheMiss: the back end answered this request.
	CacheMiss CacheOutcome = iota
	// CacheHit: OK from a positive entry; the back end was not asked.
	CacheHit
	// CacheNegativeHit: the NO of an earlier rejection of the same
	// password; the back end was not asked.
	CacheNegativeHit
	// CacheShared: an identical request in flight got the answer, which
	// this one shares; the back end was asked once for both.
	CacheShared
	// CacheStale: the back end answered TEMPFAIL and a positive entry past
	// its TTL but within StaleTTL answered OK.
	CacheStale
	// CacheBypass: the generation was unknown, the cache was not used.
	CacheBypass
)

func (o CacheOutcome) String() string {
	switch o {
	case CacheMiss:
		return "miss"
	case CacheHit:
		return "hit"
	case CacheNegativeHit:
		return "negative hit"
	case CacheShared:
		return "shared"
	case CacheStale:
		return "stale"
	case CacheBypass:
		return "bypass"
	}
	return "invalid"
}

// Cached reports whether the answer came from the cache rather than from a
// back-end call made for this request (hit, negative hit, shared).
func (o CacheOutcome) Cached() bool {
	return o == CacheHit || o == CacheNegativeHit || o == CacheShared
}

// ReasonCached is the Result.Reason of an answer from a cache entry.
const (
	ReasonCached         = "cached"
	ReasonCachedNegative = "cached rejection of the same password"
)

// Do answers req from the cache or by calling fn, the back end, which it
// calls at most once, with ctx, and with no lock held. gen is the chain's
// generation (mechs.CombineFreshness(chain).Generation()), taken before Do
// is called, never after fn: an entry must carry a generation no newer than
// the data the back end read.
//
// fn's result is returned as is, except that a TEMPFAIL may become a stale
// "OK" (CacheStale). A hit is Result{Accept, "OK", ReasonCached, By}; a
// negative hit repeats the first rejection's Reply and By. A request that
// waits for an identical one gets its result (CacheShared), or, if its own
// ctx ends first, mechs.Cancelled.
func (c *Cache) Do(ctx context.Context, req mechs.Request, gen uint64, fn func(context.Context) mechs.Result) (mechs.Result, CacheOutcome) {
	if c == nil {
		return fn(ctx), CacheMiss
	}
	k := c.keysOf(req)
	if gen == mechs.GenUnknown {
		res := fn(ctx)
		if isReject(res) {
			c.mu.Lock()
			c.dropUserLocked(k.user, pwMAC{}, false)
			c.mu.Unlock()
		}
		c.stats.bypass.Add(1)
		return res, CacheBypass
	}
	fk := flightKey{id: k.id, mac: k.mac, gen: gen}
	for {
		c.mu.Lock()
		if res, o, ok := c.lookupLocked(k, gen, c.now()); ok {
			c.mu.Unlock()
			return res, o
		}
		if f := c.flights[fk]; f != nil {
			f.waiters++
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return mechs.Cancelled("cache", ctx.Err()), CacheShared
			}
			if f.retry && ctx.Err() == nil {
				continue
			}
			c.stats.shared.Add(1)
			return f.res, CacheShared
		}
		f := &flight{done: make(chan struct{})}
		c.flights[fk] = f
		epoch := c.epoch
		c.mu.Unlock()
		return c.lead(ctx, k, fk, f, epoch, fn)
	}
}

// lead calls the back end for a flight and settles it.
func (c *Cache) lead(ctx context.Context, k cacheKeys, fk flightKey, f *flight, epoch uint64, fn func(context.Context) mechs.Result) (res mechs.Result, o CacheOutcome) {
	settled := false
	defer func() {
		if settled {
			return
		}
		// fn panicked: release the waiters, then let the panic go on
		c.mu.Lock()
		c.landLocked(fk, f)
		f.res = mechs.TempFailed(mechs.ReplyInternal, "daemon/cache: the identical request this one waited for panicked")
		close(f.done)
		c.mu.Unlock()
	}()
	c.stats.misses.Add(1)
	res = fn(ctx)
	c.mu.Lock()
	res, o = c.settleLocked(k, fk.gen, res, c.now(), epoch == c.epoch)
	c.landLocked(fk, f)
	f.res = res
	f.retry = res.Verdict == mechs.TempFail && ctx.Err() != nil
	close(f.done)
	c.mu.Unlock()
	settled = true
	return res, o
}

// landLocked removes a finished flight, unless Flush already did and a
// newer one took its place.
func (c *Cache) landLocked(fk flightKey, f *flight) {
	if c.flights[fk] == f {
		delete(c.flights, fk)
	}
}

func isAccept(r mechs.Result) bool {
	return r.Verdict == mechs.Accept && strings.HasPrefix(r.Reply, "OK")
}

func isReject(r mechs.Result) bool {
	return r.Verdict == mechs.Reject && strings.HasPrefix(r.Reply, "NO")
}

// lookupLocked answers from a live entry of generation gen, and prunes what
// it finds expired.
func (c *Cache) lookupLocked(k cacheKeys, gen uint64, now time.Time) (mechs.Result, CacheOutcome, bool) {
	e := c.ents[k.id]
	if e == nil {
		return mechs.Result{}, CacheMiss, false
	}
	if e.gen != gen {
		c.removeLocked(e) // stale for good: generations do not come back
		return mechs.Result{}, CacheMiss, false
	}
	if res, ok := c.posHitLocked(e, k, now); ok {
		return res, CacheHit, true
	}
	for _, n := range e.negs {
		if now.Sub(n.at) < c.negTTL && hmac.Equal(n.mac[:], k.mac[:]) {
			c.touchLocked(e)
			c.stats.negHits.Add(1)
			return mechs.Result{Verdict: mechs.Reject, Reply: n.reply, Reason: ReasonCachedNegative, By: n.by}, CacheNegativeHit, true
		}
	}
	c.pruneLocked(e, now)
	return mechs.Result{}, CacheMiss, false
}

// posHitLocked answers from e's positive mark, if live and for k's
// password.
func (c *Cache) posHitLocked(e *entry, k cacheKeys, now time.Time) (mechs.Result, bool) {
	if !e.pos.set || now.Sub(e.pos.at) >= c.ttl || !hmac.Equal(e.pos.mac[:], k.mac[:]) {
		return mechs.Result{}, false
	}
	c.touchLocked(e)
	c.stats.hits.Add(1)
	return mechs.Result{Verdict: mechs.Accept, Reply: "OK", Reason: ReasonCached, By: e.pos.by}, true
}

// Hit answers req as Do would from a live positive entry of generation
// gen, and only from one: the answer that needs no back end, no wait and
// no failure delay. When it reports false it has changed nothing, and Do
// is the way on.
func (c *Cache) Hit(req mechs.Request, gen uint64) (mechs.Result, bool) {
	if c == nil || gen == mechs.GenUnknown {
		return mechs.Result{}, false
	}
	k := c.keysOf(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.ents[k.id]
	if e == nil || e.gen != gen {
		return mechs.Result{}, false
	}
	return c.posHitLocked(e, k, c.now())
}

// settleLocked records the back end's answer and returns what the client
// gets. store is false for a flight that began before a Flush.
func (c *Cache) settleLocked(k cacheKeys, gen uint64, res mechs.Result, now time.Time, store bool) (mechs.Result, CacheOutcome) {
	switch {
	case isAccept(res):
		// another password accepted: the other services' entries hold an
		// old one
		c.dropUserLocked(k.user, k.mac, true)
		if !store || c.ttl <= 0 && c.staleTTL <= 0 {
			return res, CacheMiss
		}
		e := c.entryLocked(k, gen)
		e.pos = posMark{set: true, mac: k.mac, at: now, by: res.By}
		e.negs = deleteNeg(e.negs, k.mac)
	case isReject(res):
		c.dropUserLocked(k.user, pwMAC{}, false)
		if !store || c.negTTL <= 0 {
			return res, CacheMiss
		}
		e := c.entryLocked(k, gen)
		e.negs = deleteNeg(e.negs, k.mac)
		if len(e.negs) == negPerKey {
			e.negs = append(e.negs[:0], e.negs[1:]...)
		}
		e.negs = append(e.negs, negMark{mac: k.mac, at: now, reply: res.Reply, by: res.By})
	default: // TEMPFAIL, or a result the server will refuse anyway
		if c.staleTTL <= 0 {
			return res, CacheMiss
		}
		e := c.ents[k.id]
		if e == nil || e.gen != gen || !e.pos.set || now.Sub(e.pos.at) >= c.staleTTL ||
			!hmac.Equal(e.pos.mac[:], k.mac[:]) {
			return res, CacheMiss
		}
		c.touchLocked(e)
		c.stats.stale.Add(1)
		why := "back end could not answer"
		if res.Reason != "" {
			why += ": " + res.Reason
		}
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK",
			Reason: "stale cache entry (" + now.Sub(e.pos.at).Round(time.Second).String() + " old); " + why,
			By:     res.By}, CacheStale
	}
	return res, CacheMiss
}

func deleteNeg(negs []negMark, mac pwMAC) []negMark {
	for i := range negs {
		if hmac.Equal(negs[i].mac[:], mac[:]) {
			return append(negs[:i], negs[i+1:]...)
		}
	}
	return negs
}

// dropUserLocked forgets the positive entries of a user, for every service;
// with keep set, those for password mac survive.
func (c *Cache) dropUserLocked(u userID, mac pwMAC, keep bool) {
	for e := c.users[u]; e != nil; {
		next := e.snext
		if e.pos.set && !(keep && hmac.Equal(e.pos.mac[:], mac[:])) {
			e.pos = posMark{}
			if len(e.negs) == 0 {
				c.removeLocked(e)
			}
		}
		e = next
	}
}

// pruneLocked drops what no rule can use any more.
func (c *Cache) pruneLocked(e *entry, now time.Time) {
	if e.pos.set && now.Sub(e.pos.at) >= max(c.ttl, c.staleTTL) {
		e.pos = posMark{}
	}
	live := e.negs[:0]
	for _, n := range e.negs {
		if now.Sub(n.at) < c.negTTL {
			live = append(live, n)
		}
	}
	clear(e.negs[len(live):])
	e.negs = live
	if !e.pos.set && len(e.negs) == 0 {
		c.removeLocked(e)
	}
}

// entryLocked returns k's entry for generation gen, emptied if it had
// another, created (evicting the least recently used) if there was none,
// and made the most recently used.
func (c *Cache) entryLocked(k cacheKeys, gen uint64) *entry {
	e := c.ents[k.id]
	if e == nil {
		for len(c.ents) >= c.max && c.lru.prev != &c.lru {
			c.removeLocked(c.lru.prev)
			c.stats.evictions.Add(1)
		}
		e = &entry{id: k.id, user: k.user, gen: gen}
		c.ents[k.id] = e
		if head := c.users[k.user]; head != nil {
			e.snext, head.sprev = head, e
		}
		c.users[k.user] = e
		e.prev, e.next = &c.lru, c.lru.next
		e.prev.next, e.next.prev = e, e
		return e
	}
	if e.gen != gen {
		e.gen, e.pos, e.negs = gen, posMark{}, nil
	}
	c.touchLocked(e)
	return e
}

func (c *Cache) touchLocked(e *entry) {
	if c.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = &c.lru, c.lru.next
	e.prev.next, e.next.prev = e, e
}

func (c *Cache) removeLocked(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	if e.sprev != nil {
		e.sprev.snext = e.snext
	} else if e.snext != nil {
		c.users[e.user] = e.snext
	} else {
		delete(c.users, e.user)
	}
	if e.snext != nil {
		e.snext.sprev = e.sprev
	}
	e.sprev, e.snext = nil, nil
	delete(c.ents, e.id)
}

type cacheKeys struct {
	user userID
	id   entryID
	mac  pwMAC
}

// macState is an HMAC under the cache's key and a buffer to frame its
// input in, kept in a pool.
type macState struct {
	h   hash.Hash
	buf []byte
}

// sum returns the HMAC of the framed fields: each is length-prefixed so
// that no two different tuples hash alike. Afterwards neither the buffer
// nor the hash's block buffer holds any of the input.
func (m *macState) sum(out []byte, fields ...string) {
	n := 0
	for _, f := range fields {
		n += 8 + len(f)
	}
	if cap(m.buf) < n {
		m.buf = make([]byte, 0, n) // sized once: no copy left behind by append
	}
	b := m.buf[:0]
	for _, f := range fields {
		b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
		b = append(b, f...)
	}
	m.h.Reset()
	m.h.Write(b)
	m.h.Sum(out[:0])
	m.h.Reset()
	clear(b)
	if cap(m.buf) > 4096 {
		m.buf = nil // a rare long field: do not keep its buffer
	}
}

// keysOf computes the HMACs of a request.
func (c *Cache) keysOf(req mechs.Request) cacheKeys {
	var k cacheKeys
	c.idSum(k.user[:], req.Login, req.Realm)
	c.idSum(k.id[:], req.Login, req.Realm, req.Service)
	m := c.macs.Get().(*macState)
	defer c.macs.Put(m)
	m.sum(k.mac[:], "password", req.Login, req.Realm, req.Password.Reveal())
	return k
}

// idSum writes the keyed 64-bit hash of the length-framed fields to out.
func (c *Cache) idSum(out []byte, fields ...string) {
	var h maphash.Hash
	h.SetSeed(c.idSeed)
	for _, f := range fields {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.WriteString(f)
	}
	binary.BigEndian.PutUint64(out, h.Sum64())
}

// legacyGen is the generation of Lookup and Store, which know none.
const legacyGen uint64 = 1

// Lookup reports whether req matches a live positive entry stored by Store.
//
// Deprecated: use Do, which also applies the negative, invalidation,
// generation, singleflight and stale rules.
func (c *Cache) Lookup(req mechs.Request) bool {
	k := c.keysOf(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	_, o, ok := c.lookupLocked(k, legacyGen, c.now())
	return ok && o == CacheHit
}

// Store records a successful back-end authentication.
//
// Deprecated: use Do.
func (c *Cache) Store(req mechs.Request) {
	k := c.keysOf(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entryLocked(k, legacyGen)
	e.pos = posMark{set: true, mac: k.mac, at: c.now()}
}

// Flush empties the cache (SIGUSR1). Requests already at the back end
// answer their clients (and those waiting for them) but store nothing, and
// later requests do not wait for them: nothing learnt before Flush answers a
// request that arrives after it.
func (c *Cache) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.ents)
	clear(c.users)
	clear(c.flights)
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	c.epoch++
}

// Len is the number of keys held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ents)
}

// CacheStats are counters since start, for logs and metrics.
type CacheStats struct {
	Entries                               int
	Hits, NegativeHits, Shared, StaleHits uint64
	Misses, Bypassed, Evictions           uint64
}

type cacheCounters struct {
	hits, negHits, shared, stale, misses, bypass, evictions atomic.Uint64
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	return CacheStats{
		Entries:      c.Len(),
		Hits:         c.stats.hits.Load(),
		NegativeHits: c.stats.negHits.Load(),
		Shared:       c.stats.shared.Load(),
		StaleHits:    c.stats.stale.Load(),
		Misses:       c.stats.misses.Load(),
		Bypassed:     c.stats.bypass.Load(),
		Evictions:    c.stats.evictions.Load(),
	}
}
