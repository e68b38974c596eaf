package daemon

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/saslgate/saslgate/mechs"
)

// Cache is saslauthd's -c credential cache with its semantics (spec §6):
// only successful logins are stored, keyed by (login after -r, realm,
// service); an entry lives TTL from the back-end success that wrote it and a
// hit does not extend it; a wrong password for a cached user goes to the back
// end and leaves the good entry alone.
//
// Unlike saslauthd it keeps no file and no unsalted MD5: the entry holds an
// HMAC-SHA-256 of the password under a key drawn at start-up that never
// leaves memory, and the comparison is constant-time.
type Cache struct {
	ttl  time.Duration
	max  int
	key  [32]byte
	now  func() time.Time
	mu   sync.Mutex
	ents map[cacheKey]cacheEntry
}

type cacheKey struct{ login, realm, service string }

type cacheEntry struct {
	mac     [sha256.Size]byte
	created time.Time
}

// CacheEntryBytes is the size saslauthd gives one cache bucket; -s KiB is
// turned into an entry bound with it so that -s keeps its meaning.
const CacheEntryBytes = 96

// NewCache returns a cache of at most maxEntries entries living ttl.
func NewCache(maxEntries int, ttl time.Duration) *Cache {
	c := &Cache{ttl: ttl, max: max(maxEntries, 1), now: time.Now, ents: map[cacheKey]cacheEntry{}}
	if _, err := rand.Read(c.key[:]); err != nil {
		panic("daemon: no randomness for the cache key: " + err.Error())
	}
	return c
}

func (c *Cache) mac(pw mechs.Password) [sha256.Size]byte {
	h := hmac.New(sha256.New, c.key[:])
	h.Write([]byte(pw.Reveal()))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// Lookup reports whether req matches a live entry.
func (c *Cache) Lookup(req mechs.Request) bool {
	k := cacheKey{req.Login, req.Realm, req.Service}
	c.mu.Lock()
	e, ok := c.ents[k]
	c.mu.Unlock()
	if !ok || !e.created.After(c.now().Add(-c.ttl)) {
		return false
	}
	m := c.mac(req.Password)
	return hmac.Equal(m[:], e.mac[:])
}

// Store records a successful back-end authentication.
func (c *Cache) Store(req mechs.Request) {
	k := cacheKey{req.Login, req.Realm, req.Service}
	e := cacheEntry{mac: c.mac(req.Password), created: c.now()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, exists := c.ents[k]; !exists && len(c.ents) >= c.max {
		c.evictLocked()
	}
	c.ents[k] = e
}

// evictLocked drops expired entries, or else the oldest one.
func (c *Cache) evictLocked() {
	cutoff := c.now().Add(-c.ttl)
	var oldestK cacheKey
	var oldest time.Time
	first := true
	for k, e := range c.ents {
		if !e.created.After(cutoff) {
			delete(c.ents, k)
			continue
		}
		if first || e.created.Before(oldest) {
			oldestK, oldest, first = k, e.created, false
		}
	}
	if len(c.ents) >= c.max && !first {
		delete(c.ents, oldestK)
	}
}

// Flush empties the cache.
func (c *Cache) Flush() {
	c.mu.Lock()
	clear(c.ents)
	c.mu.Unlock()
}

// Len is the number of entries held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ents)
}
