package daemon

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (f *fakeClock) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeClock) Add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// backend is a rimap-like back end: one password per login, switchable to
// TEMPFAIL, counting its calls.
type backend struct {
	mu       sync.Mutex
	pw       map[string]string
	tempfail bool
	calls    atomic.Int32
}

const (
	replyGood = "OK remote authentication successful"
	replyBad  = "NO remote server rejected your credentials"
	replyDown = "NO remote server unavailable"
)

func (b *backend) set(login, pw string) { b.mu.Lock(); b.pw[login] = pw; b.mu.Unlock() }
func (b *backend) down(v bool)          { b.mu.Lock(); b.tempfail = v; b.mu.Unlock() }

func (b *backend) fn(req mechs.Request) func(context.Context) mechs.Result {
	return func(context.Context) mechs.Result {
		b.calls.Add(1)
		b.mu.Lock()
		defer b.mu.Unlock()
		switch {
		case b.tempfail:
			return mechs.Result{Verdict: mechs.TempFail, Reply: replyDown, Reason: "connection refused", By: "rimap"}
		case b.pw[req.Login] == req.Password.Reveal():
			return mechs.Result{Verdict: mechs.Accept, Reply: replyGood, By: "rimap"}
		}
		return mechs.Result{Verdict: mechs.Reject, Reply: replyBad, By: "rimap"}
	}
}

// step is one request in a script, or a change to the world before it.
type step struct {
	advance time.Duration // move the clock first
	do      func(*backend)
	login   string // default "alice"
	svc     string // default "imap"
	pw      string
	gen     uint64 // default 1; genU for mechs.GenUnknown
	flush   bool

	want    string
	outcome CacheOutcome
	calls   int32 // total back-end calls after this step
}

func runScript(t *testing.T, cfg CacheConfig, steps []step) *Cache {
	t.Helper()
	c := NewCacheWith(cfg)
	clk := newFakeClock()
	c.now = clk.Now
	b := &backend{pw: map[string]string{"alice": "good", "bob": "bobpw"}}
	for i, st := range steps {
		clk.Add(st.advance)
		if st.do != nil {
			st.do(b)
		}
		if st.flush {
			c.Flush()
		}
		if st.pw == "" {
			continue
		}
		req := mechs.Request{Login: cmpOr(st.login, "alice"), Password: mechs.Password(st.pw), Service: cmpOr(st.svc, "imap")}
		gen := st.gen
		switch gen {
		case 0:
			gen = 1
		case genU:
			gen = mechs.GenUnknown
		}
		res, o := c.Do(context.Background(), req, gen, b.fn(req))
		if res.Reply != st.want || o != st.outcome || b.calls.Load() != st.calls {
			t.Fatalf("step %d (%s/%s pw %q gen %d): reply %q outcome %v calls %d; want %q %v %d",
				i, req.Login, req.Service, st.pw, gen, res.Reply, o, b.calls.Load(), st.want, st.outcome, st.calls)
		}
		if strings.HasPrefix(res.Reply, "OK") != (res.Verdict == mechs.Accept) {
			t.Fatalf("step %d: verdict %v with reply %q", i, res.Verdict, res.Reply)
		}
	}
	return c
}

const genU = ^uint64(0)

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestCache_Rules(t *testing.T) {
	base := CacheConfig{MaxEntries: 100, TTL: time.Hour, NegativeTTL: 10 * time.Minute, StaleTTL: 24 * time.Hour}
	changePw := func(b *backend) { b.set("alice", "new") }
	tests := []struct {
		name  string
		cfg   CacheConfig
		steps []step
	}{
		{"positive TTL from the back-end success, a hit does not extend it", base, []step{
			{pw: "good", want: replyGood, outcome: CacheMiss, calls: 1},
			{pw: "good", want: "OK", outcome: CacheHit, calls: 1},
			{advance: time.Hour - time.Second, pw: "good", want: "OK", outcome: CacheHit, calls: 1},
			{advance: time.Second, pw: "good", want: replyGood, outcome: CacheMiss, calls: 2},
			{pw: "good", want: "OK", outcome: CacheHit, calls: 2},
		}},
		{"key is login, realm and service", base, []step{
			{pw: "good", want: replyGood, outcome: CacheMiss, calls: 1},
			{pw: "good", svc: "smtp", want: replyGood, outcome: CacheMiss, calls: 2},
			{pw: "bobpw", login: "bob", want: replyGood, outcome: CacheMiss, calls: 3},
			{pw: "good", svc: "smtp", want: "OK", outcome: CacheHit, calls: 3},
			{pw: "bobpw", login: "bob", want: "OK", outcome: CacheHit, calls: 3},
		}},
		{"negative TTL: the same wrong password is answered, another reaches the back end", base, []step{
			{pw: "bad1", want: replyBad, outcome: CacheMiss, calls: 1},
			{pw: "bad1", want: replyBad, outcome: CacheNegativeHit, calls: 1},
			{pw: "bad2", want: replyBad, outcome: CacheMiss, calls: 2},
			{pw: "good", want: replyGood, outcome: CacheMiss, calls: 3},
			{pw: "bad1", want: replyBad, outcome: CacheNegativeHit, calls: 3},
			{pw: "bad1", svc: "smtp", want: replyBad, outcome: CacheMiss, calls: 4},
			{advance: 10*time.Minute - time.Second, pw: "bad2", want: replyBad, outcome: CacheNegativeHit, calls: 4},
			{advance: time.Second, pw: "bad1", want: replyBad, outcome: CacheMiss, calls: 5},
			{pw: "bad2", want: replyBad, outcome: CacheMiss, calls: 6},
		}},
		{"a key keeps its last few wrong passwords", base, []step{
			{pw: "w1", want: replyBad, calls: 1}, {pw: "w2", want: replyBad, calls: 2},
			{pw: "w3", want: replyBad, calls: 3}, {pw: "w4", want: replyBad, calls: 4},
			{pw: "w5", want: replyBad, calls: 5},
			{pw: "w5", want: replyBad, outcome: CacheNegativeHit, calls: 5},
			{pw: "w2", want: replyBad, outcome: CacheNegativeHit, calls: 5},
			{pw: "w1", want: replyBad, outcome: CacheMiss, calls: 6},
		}},
		{"negative caching off", CacheConfig{TTL: time.Hour}, []step{
			{pw: "bad", want: replyBad, outcome: CacheMiss, calls: 1},
			{pw: "bad", want: replyBad, outcome: CacheMiss, calls: 2},
		}},
		{"a rejection drops the user's positive entries, every service", base, []step{
			{pw: "good", want: replyGood, calls: 1},
			{pw: "good", svc: "smtp", want: replyGood, calls: 2},
			{pw: "good", login: "bob", want: replyBad, calls: 3}, // another user: no effect
			{pw: "good", want: "OK", outcome: CacheHit, calls: 3},
			{pw: "bad", svc: "smtp", want: replyBad, calls: 4},
			{pw: "good", want: replyGood, outcome: CacheMiss, calls: 5},
			{pw: "good", svc: "smtp", want: replyGood, outcome: CacheMiss, calls: 6},
			{pw: "good", want: "OK", outcome: CacheHit, calls: 6},
		}},
		{"password changed in the back end: the old one stops once a back end says no", base, []step{
			{pw: "good", want: replyGood, calls: 1},
			{pw: "good", svc: "smtp", want: replyGood, calls: 2},
			{do: changePw, pw: "good", want: "OK", outcome: CacheHit, calls: 2}, // TTL: saslauthd's price
			{pw: "new", want: replyGood, outcome: CacheMiss, calls: 3},
			// accepting another password dropped smtp's entry for the old one
			{pw: "good", svc: "smtp", want: replyBad, outcome: CacheMiss, calls: 4},
			{pw: "good", want: replyBad, outcome: CacheMiss, calls: 5},
			{pw: "new", want: replyGood, outcome: CacheMiss, calls: 6}, // the rejection dropped it too
			{pw: "new", want: "OK", outcome: CacheHit, calls: 6},
		}},
		{"a cached rejection does not drop a newer success", base, []step{
			{pw: "bad", want: replyBad, calls: 1},
			{pw: "good", want: replyGood, calls: 2},
			{pw: "bad", want: replyBad, outcome: CacheNegativeHit, calls: 2},
			{pw: "good", want: "OK", outcome: CacheHit, calls: 2},
		}},
		{"a success for a cached-bad password clears it", base, []step{
			{pw: "new", want: replyBad, calls: 1},
			{pw: "new", want: replyBad, outcome: CacheNegativeHit, calls: 1},
			{do: changePw, advance: 10 * time.Minute, pw: "new", want: replyGood, calls: 2},
			{pw: "new", want: "OK", outcome: CacheHit, calls: 2},
		}},
		{"another generation is absent", base, []step{
			{pw: "good", gen: 7, want: replyGood, outcome: CacheMiss, calls: 1},
			{pw: "good", gen: 7, want: "OK", outcome: CacheHit, calls: 1},
			{pw: "good", gen: 8, want: replyGood, outcome: CacheMiss, calls: 2},
			{pw: "good", gen: 8, want: "OK", outcome: CacheHit, calls: 2},
			{pw: "good", gen: 7, want: replyGood, outcome: CacheMiss, calls: 3},
			{pw: "bad", gen: 7, want: replyBad, outcome: CacheMiss, calls: 4},
			{pw: "bad", gen: 7, want: replyBad, outcome: CacheNegativeHit, calls: 4},
			{pw: "bad", gen: 9, want: replyBad, outcome: CacheMiss, calls: 5},
		}},
		{"unknown generation: the cache is not used, a rejection still invalidates", base, []step{
			{pw: "good", want: replyGood, calls: 1},
			{pw: "good", gen: genU, want: replyGood, outcome: CacheBypass, calls: 2},
			{pw: "good", gen: genU, want: replyGood, outcome: CacheBypass, calls: 3},
			{pw: "good", want: "OK", outcome: CacheHit, calls: 3},
			{pw: "bad", gen: genU, want: replyBad, outcome: CacheBypass, calls: 4},
			{pw: "bad", gen: genU, want: replyBad, outcome: CacheBypass, calls: 5},
			{pw: "good", want: replyGood, outcome: CacheMiss, calls: 6},
		}},
		{"stale on tempfail, within StaleTTL only, for the cached password only", base, []step{
			{pw: "good", want: replyGood, calls: 1},
			{pw: "good", svc: "smtp", want: replyGood, calls: 2},
			{advance: 2 * time.Hour, do: func(b *backend) { b.down(true) },
				pw: "good", want: "OK", outcome: CacheStale, calls: 3},
			{pw: "bad", want: replyDown, outcome: CacheMiss, calls: 4},
			{pw: "good", gen: 2, want: replyDown, outcome: CacheMiss, calls: 5}, // another generation
			{pw: "good", svc: "smtp", want: "OK", outcome: CacheStale, calls: 6},
			{advance: 22*time.Hour - time.Second, pw: "good", svc: "smtp", want: "OK", outcome: CacheStale, calls: 7},
			{advance: time.Second, pw: "good", svc: "smtp", want: replyDown, outcome: CacheMiss, calls: 8},
			{do: func(b *backend) { b.down(false) }, pw: "good", svc: "smtp", want: replyGood, calls: 9},
		}},
		{"stale off", CacheConfig{TTL: time.Hour}, []step{
			{pw: "good", want: replyGood, calls: 1},
			{advance: 2 * time.Hour, do: func(b *backend) { b.down(true) }, pw: "good", want: replyDown, calls: 2},
		}},
		{"StaleTTL without TTL keeps entries for outages only", CacheConfig{StaleTTL: time.Hour}, []step{
			{pw: "good", want: replyGood, calls: 1},
			{pw: "good", want: replyGood, calls: 2},
			{do: func(b *backend) { b.down(true) }, pw: "good", want: "OK", outcome: CacheStale, calls: 3},
		}},
		{"Flush forgets everything", base, []step{
			{pw: "good", want: replyGood, calls: 1},
			{pw: "bad", svc: "smtp", want: replyBad, calls: 2},
			{flush: true, pw: "good", want: replyGood, outcome: CacheMiss, calls: 3},
			{pw: "bad", svc: "smtp", want: replyBad, outcome: CacheMiss, calls: 4},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runScript(t, tc.cfg, tc.steps) })
	}
}

func TestCache_HitResult(t *testing.T) {
	c := NewCacheWith(CacheConfig{TTL: time.Hour, NegativeTTL: time.Hour})
	ok := func(context.Context) mechs.Result {
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK", By: "sasldb"}
	}
	no := func(context.Context) mechs.Result {
		return mechs.Result{Verdict: mechs.Reject, Reply: "NO", Reason: "password mismatch", By: "shadow"}
	}
	r := mechs.Request{Login: "u", Password: "p", Service: "imap"}
	c.Do(context.Background(), r, 5, ok)
	res, o := c.Do(context.Background(), r, 5, ok)
	if want := (mechs.Result{Verdict: mechs.Accept, Reply: "OK", Reason: ReasonCached, By: "sasldb"}); res != want || o != CacheHit {
		t.Fatalf("hit: %+v %v", res, o)
	}
	r.Password = "q"
	c.Do(context.Background(), r, 5, no)
	res, o = c.Do(context.Background(), r, 5, no)
	if want := (mechs.Result{Verdict: mechs.Reject, Reply: "NO", Reason: ReasonCachedNegative, By: "shadow"}); res != want || o != CacheNegativeHit {
		t.Fatalf("negative hit: %+v %v", res, o)
	}
	if !o.Cached() || CacheMiss.Cached() || CacheStale.Cached() || !CacheShared.Cached() {
		t.Fatal("Cached()")
	}
	st := c.Stats()
	if st.Hits != 1 || st.NegativeHits != 1 || st.Misses != 2 || st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Malformed results are never cached nor served stale.
func TestCache_OddResults(t *testing.T) {
	c := NewCacheWith(CacheConfig{TTL: time.Hour, NegativeTTL: time.Hour})
	r := mechs.Request{Login: "u", Password: "p"}
	var calls int
	for _, res := range []mechs.Result{
		{Verdict: mechs.Accept, Reply: "NO"},
		{Verdict: mechs.Reject, Reply: "OK"},
		{Reply: "OK"},
	} {
		for i := 0; i < 2; i++ {
			got, o := c.Do(context.Background(), r, 1, func(context.Context) mechs.Result { calls++; return res })
			if got != res || o != CacheMiss {
				t.Fatalf("%+v: got %+v %v", res, got, o)
			}
		}
	}
	if calls != 6 || c.Len() != 0 {
		t.Fatalf("calls %d len %d", calls, c.Len())
	}
}

func TestCache_LRU(t *testing.T) {
	c := NewCacheWith(CacheConfig{MaxEntries: 3, TTL: time.Hour, NegativeTTL: time.Hour})
	b := &backend{pw: map[string]string{"a": "p", "b": "p", "c": "p", "d": "p", "e": "p"}}
	do := func(login, pw string) CacheOutcome {
		r := mechs.Request{Login: login, Password: mechs.Password(pw), Service: "imap"}
		_, o := c.Do(context.Background(), r, 1, b.fn(r))
		return o
	}
	do("a", "p")
	do("b", "p")
	do("c", "x") // a negative entry takes a place too
	if do("a", "p") != CacheHit {
		t.Fatal("a not cached")
	}
	do("d", "p") // evicts b, the least recently used
	if c.Len() != 3 {
		t.Fatalf("len %d", c.Len())
	}
	for _, login := range []string{"a", "d"} {
		if o := do(login, "p"); o != CacheHit {
			t.Fatalf("%s: %v", login, o)
		}
	}
	if do("c", "x") != CacheNegativeHit {
		t.Fatal("c's negative entry evicted")
	}
	if do("b", "p") != CacheMiss { // b comes back, evicting a
		t.Fatal("b not evicted")
	}
	if do("a", "p") != CacheMiss { // and a comes back, evicting d
		t.Fatal("a not evicted")
	}
	if do("c", "x") != CacheNegativeHit {
		t.Fatal("c evicted")
	}
	if c.Stats().Evictions != 3 {
		t.Fatalf("evictions %d", c.Stats().Evictions)
	}

	// many keys: the bound holds and the structures agree
	for i := 0; i < 10000; i++ {
		do(fmt.Sprint("user", i), "p")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for e := c.lru.next; e != &c.lru; e = e.next {
		n++
	}
	if len(c.ents) != 3 || n != 3 || len(c.users) != 3 {
		t.Fatalf("ents %d lru %d users %d", len(c.ents), n, len(c.users))
	}
}

// Entries of many services of one user, removed in any order, keep the
// per-user list intact.
func TestCache_SiblingList(t *testing.T) {
	c := NewCacheWith(CacheConfig{MaxEntries: 4, TTL: time.Hour})
	ok := func(context.Context) mechs.Result { return mechs.Result{Verdict: mechs.Accept, Reply: "OK"} }
	for i := 0; i < 50; i++ {
		svc := fmt.Sprint("svc", i%7)
		c.Do(context.Background(), mechs.Request{Login: "u", Password: "p", Service: svc}, 1, ok)
	}
	c.mu.Lock()
	n := 0
	var u userID
	for id, e := range c.users {
		u = id
		for ; e != nil; e = e.snext {
			if e.snext != nil && e.snext.sprev != e {
				t.Fatal("broken back link")
			}
			n++
		}
	}
	c.mu.Unlock()
	if n != 4 || c.Len() != 4 {
		t.Fatalf("siblings %d len %d", n, c.Len())
	}
	no := func(context.Context) mechs.Result { return mechs.Result{Verdict: mechs.Reject, Reply: "NO"} }
	c.Do(context.Background(), mechs.Request{Login: "u", Password: "x", Service: "other"}, 1, no)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ents) != 0 || c.users[u] != nil || c.lru.next != &c.lru {
		t.Fatalf("after a rejection: %d entries", len(c.ents))
	}
}

// waitWaiters waits until n requests wait for the flight of req.
func waitWaiters(t *testing.T, c *Cache, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		w := 0
		for _, f := range c.flights {
			w += f.waiters
		}
		c.mu.Unlock()
		if w >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters, want %d", w, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCache_Singleflight(t *testing.T) {
	for _, tc := range []struct {
		name  string
		res   mechs.Result
		calls int32 // back-end calls for the 50 requests, then 50 more
	}{
		{"accept", mechs.Result{Verdict: mechs.Accept, Reply: replyGood, By: "rimap"}, 1},
		{"reject", mechs.Result{Verdict: mechs.Reject, Reply: replyBad, By: "rimap"}, 1},
		{"tempfail", mechs.Result{Verdict: mechs.TempFail, Reply: replyDown, By: "rimap"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCacheWith(CacheConfig{TTL: time.Hour, NegativeTTL: time.Hour})
			release, releaseOthers := make(chan struct{}), make(chan struct{})
			var calls atomic.Int32
			fn := func(context.Context) mechs.Result {
				calls.Add(1)
				<-release
				return tc.res
			}
			fnOther := func(context.Context) mechs.Result {
				calls.Add(1)
				<-releaseOthers
				return tc.res
			}
			req := mechs.Request{Login: "alice", Password: "pw", Service: "smtp"}
			const n = 50
			results := make([]mechs.Result, n)
			outcomes := make([]CacheOutcome, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Go(func() { results[i], outcomes[i] = c.Do(context.Background(), req, 3, fn) })
			}
			waitWaiters(t, c, n-1)
			// a different password or generation does not share
			var other sync.WaitGroup
			other.Go(func() {
				r := req
				r.Password = "other"
				c.Do(context.Background(), r, 3, fnOther)
			})
			other.Go(func() { c.Do(context.Background(), req, 4, fnOther) })
			for calls.Load() != 3 {
				time.Sleep(time.Millisecond)
			}
			// the others first: the generation-4 answer must not be the
			// entry's last word
			close(releaseOthers)
			other.Wait()
			close(release)
			wg.Wait()
			count := map[CacheOutcome]int{}
			for i := range n {
				if results[i] != tc.res {
					t.Fatalf("request %d got %+v", i, results[i])
				}
				count[outcomes[i]]++
			}
			if count[CacheMiss] != 1 || count[CacheShared] != n-1 {
				t.Fatalf("outcomes %v", count)
			}
			// afterwards: from the cache (accept, reject) or the back end
			calls.Store(0)
			for i := 0; i < n; i++ {
				c.Do(context.Background(), req, 3, fn)
			}
			if want := map[string]int32{"accept": 0, "reject": 0, "tempfail": n}[tc.name]; calls.Load() != want {
				t.Fatalf("later calls %d, want %d", calls.Load(), want)
			}
			if len(c.flights) != 0 {
				t.Fatal("flights left behind")
			}
		})
	}
}

// When the leader's ctx ends, its waiters ask the back end themselves
// instead of inheriting its cancellation; a waiter whose own ctx ends gives
// up alone.
func TestCache_SingleflightCancel(t *testing.T) {
	c := NewCacheWith(CacheConfig{TTL: time.Hour})
	req := mechs.Request{Login: "alice", Password: "pw"}
	var calls atomic.Int32
	started := make(chan struct{}, 10)
	fn := func(ctx context.Context) mechs.Result {
		calls.Add(1)
		started <- struct{}{}
		<-ctx.Done()
		return mechs.Cancelled("rimap", ctx.Err())
	}
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	go c.Do(leaderCtx, req, 1, fn)
	<-started

	waiterCtx, cancelWaiter := context.WithCancel(context.Background())
	done := make(chan mechs.Result)
	go func() {
		res, _ := c.Do(waiterCtx, req, 1, func(ctx context.Context) mechs.Result {
			calls.Add(1)
			return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}
		})
		done <- res
	}()
	impatientCtx, cancelImpatient := context.WithCancel(context.Background())
	gaveUp := make(chan mechs.Result)
	go func() {
		res, _ := c.Do(impatientCtx, req, 1, fn)
		gaveUp <- res
	}()
	waitWaiters(t, c, 2)
	cancelImpatient()
	if res := <-gaveUp; res.Verdict != mechs.TempFail {
		t.Fatalf("impatient waiter: %+v", res)
	}
	cancelLeader()
	if res := <-done; res.Reply != "OK" {
		t.Fatalf("waiter got %+v, want its own answer", res)
	}
	cancelWaiter()
	if calls.Load() != 2 {
		t.Fatalf("calls %d", calls.Load())
	}
}

func TestCache_SingleflightPanic(t *testing.T) {
	c := NewCacheWith(CacheConfig{TTL: time.Hour})
	req := mechs.Request{Login: "alice", Password: "pw"}
	release, started := make(chan struct{}), make(chan struct{})
	panicked := make(chan any)
	go func() {
		defer func() { panicked <- recover() }()
		c.Do(context.Background(), req, 1, func(context.Context) mechs.Result {
			close(started)
			<-release
			panic("boom")
		})
	}()
	<-started
	waiter := make(chan mechs.Result)
	go func() {
		res, _ := c.Do(context.Background(), req, 1, func(context.Context) mechs.Result { return mechs.Result{} })
		waiter <- res
	}()
	waitWaiters(t, c, 1)
	close(release)
	if p := <-panicked; p != "boom" {
		t.Fatalf("panic %v", p)
	}
	if res := <-waiter; res.Verdict != mechs.TempFail || res.Reply != mechs.ReplyInternal {
		t.Fatalf("waiter %+v", res)
	}
	res, o := c.Do(context.Background(), req, 1, func(context.Context) mechs.Result {
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}
	})
	if res.Reply != "OK" || o != CacheMiss {
		t.Fatalf("after the panic: %+v %v", res, o)
	}
}

// A request at the back end when Flush runs answers its client but stores
// nothing, and a request arriving after Flush does not wait for it.
func TestCache_FlushInFlight(t *testing.T) {
	c := NewCacheWith(CacheConfig{TTL: time.Hour})
	req := mechs.Request{Login: "alice", Password: "pw"}
	release := make(chan struct{})
	started := make(chan struct{})
	var calls atomic.Int32
	slow := func(context.Context) mechs.Result {
		calls.Add(1)
		close(started)
		<-release
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK old"}
	}
	got := make(chan string)
	go func() { res, _ := c.Do(context.Background(), req, 1, slow); got <- res.Reply }()
	<-started
	c.Flush()
	res, o := c.Do(context.Background(), req, 1, func(context.Context) mechs.Result {
		calls.Add(1)
		return mechs.Result{Verdict: mechs.Reject, Reply: "NO"}
	})
	if res.Reply != "NO" || o != CacheMiss {
		t.Fatalf("after Flush: %+v %v", res, o)
	}
	close(release)
	if r := <-got; r != "OK old" {
		t.Fatalf("in-flight request got %q", r)
	}
	if c.Len() != 0 || c.Lookup(req) || calls.Load() != 2 {
		t.Fatalf("len %d calls %d", c.Len(), calls.Load())
	}
}

func TestCache_Nil(t *testing.T) {
	var c *Cache
	res, o := c.Do(context.Background(), mechs.Request{}, 1, func(context.Context) mechs.Result {
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}
	})
	if res.Reply != "OK" || o != CacheMiss {
		t.Fatal(res, o)
	}
}

// Lookup and Store, the interface the server used before Do, keep their
// saslauthd semantics.
func TestCache_Legacy(t *testing.T) {
	c := NewCache(10, time.Hour)
	clk := newFakeClock()
	c.now = clk.Now
	r := mechs.Request{Login: "u", Password: "p", Service: "imap"}
	if c.Lookup(r) {
		t.Fatal("empty cache hit")
	}
	c.Store(r)
	if !c.Lookup(r) {
		t.Fatal("miss after Store")
	}
	for _, o := range []mechs.Request{
		{Login: "u", Password: "q", Service: "imap"},
		{Login: "u", Password: "p", Service: "smtp"},
		{Login: "u", Password: "p", Service: "imap", Realm: "x"},
	} {
		if c.Lookup(o) {
			t.Fatalf("hit for %+v", o)
		}
	}
	clk.Add(time.Hour)
	if c.Lookup(r) {
		t.Fatal("hit after the TTL")
	}
}

// No field boundary confusion: (ab, c) and (a, bc) are different keys.
func TestCache_KeyFraming(t *testing.T) {
	c := NewCacheWith(CacheConfig{})
	a := c.keysOf(mechs.Request{Login: "ab", Realm: "c", Service: "s", Password: "p"})
	b := c.keysOf(mechs.Request{Login: "a", Realm: "bc", Service: "s", Password: "p"})
	if a.user == b.user || a.id == b.id || a.mac == b.mac {
		t.Fatal("framing collision")
	}
	d := c.keysOf(mechs.Request{Login: "ab", Realm: "c", Service: "t", Password: "p"})
	if a.user != d.user || a.mac != d.mac || a.id == d.id {
		t.Fatal("the password MAC must depend on the user, not the service")
	}
	e := c.keysOf(mechs.Request{Login: "other", Realm: "c", Service: "s", Password: "p"})
	if e.mac == a.mac {
		t.Fatal("two users with one password look alike")
	}
}

// dump collects every string and byte reachable from v, following
// pointers, maps, slices and interfaces (reading unexported fields too).
func dump(v reflect.Value, seen map[uintptr]bool, out *bytes.Buffer) {
	switch v.Kind() {
	case reflect.String:
		out.WriteString(v.String())
		out.WriteByte(0)
	case reflect.Array, reflect.Slice:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			for i := 0; i < v.Len(); i++ {
				out.WriteByte(byte(v.Index(i).Uint()))
			}
			out.WriteByte(0)
			return
		}
		for i := 0; i < v.Len(); i++ {
			dump(v.Index(i), seen, out)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			dump(v.Field(i), seen, out)
		}
	case reflect.Pointer:
		if v.IsNil() || seen[v.Pointer()] {
			return
		}
		seen[v.Pointer()] = true
		dump(v.Elem(), seen, out)
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			dump(it.Key(), seen, out)
			dump(it.Value(), seen, out)
		}
	case reflect.Interface:
		if !v.IsNil() {
			dump(v.Elem(), seen, out)
		}
	}
}

// TestCache_NoPasswordInMemory: nothing the cache holds is a password, a
// login or an unkeyed hash of a password, in any common encoding; checked
// over every value reachable from the Cache, with positive, negative and
// in-flight entries present.
func TestCache_NoPasswordInMemory(t *testing.T) {
	c := NewCacheWith(CacheConfig{TTL: time.Hour, NegativeTTL: time.Hour, StaleTTL: 2 * time.Hour})
	const login = "alice.liddell-login"
	passwords := []string{"Correct-Horse-9!", "Wr0ng-Passw0rd?", "In-Flight-Secret#", "Another-Wr0ng-1"}
	ok := func(context.Context) mechs.Result {
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK", By: "shadow"}
	}
	no := func(context.Context) mechs.Result {
		return mechs.Result{Verdict: mechs.Reject, Reply: "NO Incorrect password", By: "shadow"}
	}
	req := func(pw, svc string) mechs.Request {
		return mechs.Request{Login: login, Realm: "example.org", Service: svc, Password: mechs.Password(pw)}
	}
	c.Do(context.Background(), req(passwords[1], "smtp"), 9, no)
	c.Do(context.Background(), req(passwords[3], "smtp"), 9, no)
	c.Do(context.Background(), req(passwords[0], "imap"), 9, ok)
	c.Do(context.Background(), req(passwords[0], "imap"), 9, ok) // a hit
	c.Do(context.Background(), req(passwords[1], "smtp"), 9, no) // a negative hit
	// and one in flight
	release, started := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		c.Do(context.Background(), req(passwords[2], "pop"), 9, func(context.Context) mechs.Result {
			close(started)
			<-release
			return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}
		})
	})
	<-started
	defer func() { close(release); wg.Wait() }()
	if c.Len() != 2 {
		t.Fatalf("len %d", c.Len())
	}

	c.mu.Lock()
	var mem bytes.Buffer
	dump(reflect.ValueOf(c), map[uintptr]bool{}, &mem)
	var gv strings.Builder
	for id, e := range c.ents {
		fmt.Fprintf(&gv, "%#v %#v %#v %#v\n", id, *e, e.pos, e.negs)
	}
	for k, f := range c.flights {
		fmt.Fprintf(&gv, "%#v %#v\n", k, *f)
	}
	c.mu.Unlock()
	gostr := gv.String()

	// the walk reaches the entries: their MACs, replies and the key are there
	for _, want := range [][]byte{
		[]byte("NO Incorrect password"), []byte("shadow"), c.key[:],
		func() []byte { k := c.keysOf(req(passwords[0], "imap")); return k.mac[:] }(),
		func() []byte { k := c.keysOf(req(passwords[1], "smtp")); return k.mac[:] }(),
		func() []byte { k := c.keysOf(req(passwords[2], "pop")); return k.mac[:] }(),
	} {
		if !bytes.Contains(mem.Bytes(), want) {
			t.Fatalf("the walk missed %q: the test proves nothing", want)
		}
	}

	forbidden := map[string][]byte{"login": []byte(login)}
	for i, pw := range passwords {
		p := []byte(pw)
		for name, sum := range map[string][]byte{
			"plain":  p,
			"md5":    md5sum(p),
			"sha1":   sha1sum(p),
			"sha256": sha256sum(p),
			"sha512": sha512sum(p),
		} {
			forbidden[fmt.Sprintf("password %d %s", i, name)] = sum
			if name != "plain" {
				forbidden[fmt.Sprintf("password %d %s hex", i, name)] = []byte(hex.EncodeToString(sum))
				forbidden[fmt.Sprintf("password %d %s HEX", i, name)] = []byte(strings.ToUpper(hex.EncodeToString(sum)))
				forbidden[fmt.Sprintf("password %d %s base64", i, name)] = []byte(base64.StdEncoding.EncodeToString(sum))
			}
		}
		// a hash over login and password together is no better
		forbidden[fmt.Sprintf("password %d sha256(login+pw)", i)] = sha256sum([]byte(login + pw))
	}
	for name, b := range forbidden {
		if bytes.Contains(mem.Bytes(), b) {
			t.Errorf("cache memory holds %s", name)
		}
		// %#v prints bytes as 0x.., so look for the hex of digests there
		if strings.Contains(gostr, string(b)) || strings.Contains(gostr, goBytes(b)) {
			t.Errorf("%%#v of the cache shows %s", name)
		}
	}
}

func md5sum(b []byte) []byte    { s := md5.Sum(b); return s[:] }
func sha1sum(b []byte) []byte   { s := sha1.Sum(b); return s[:] }
func sha256sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
func sha512sum(b []byte) []byte { s := sha512.Sum512(b); return s[:] }

// goBytes renders the first 8 bytes as %#v renders a byte array's start.
func goBytes(b []byte) string {
	var s []string
	for _, x := range b[:min(len(b), 8)] {
		s = append(s, fmt.Sprintf("%#x", x))
	}
	return strings.Join(s, ", ")
}

func BenchmarkCache_Do(b *testing.B) {
	c := NewCacheWith(CacheConfig{TTL: time.Hour, NegativeTTL: time.Hour})
	ok := func(context.Context) mechs.Result { return mechs.Result{Verdict: mechs.Accept, Reply: "OK"} }
	req := mechs.Request{Login: "alice", Realm: "example.org", Service: "smtp", Password: "correct horse"}
	c.Do(context.Background(), req, 1, ok)
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, o := c.Do(context.Background(), req, 1, ok); o != CacheHit {
					b.Fatal(o)
				}
			}
		})
	})
}
