package throttle

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newT is a throttle with the defaults, no jitter and a fake clock.
func newT(mod func(*Config)) (*Throttle, *clock) {
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg := DefaultConfig()
	cfg.Jitter = 0
	cfg.Now = clk.Now
	if mod != nil {
		mod(&cfg)
	}
	return New(cfg, nil), clk
}

func rq(login, pw, addr string) mechs.Request {
	return mechs.Request{Login: login, Password: mechs.Password(pw), Service: "smtp", ClientAddr: addr}
}

const s = time.Second

// event is one answer in a script: the delay Observe must return.
type event struct {
	advance time.Duration
	req     mechs.Request
	v       mechs.Verdict // default Reject
	want    time.Duration
}

func TestThrottle_Rules(t *testing.T) {
	const a1, a2 = "192.0.2.1;5555", "198.51.100.7;1234"
	tests := []struct {
		name   string
		mod    func(*Config)
		events []event
	}{
		{"growth: failure delay plus the penalty earned before, doubling to the cap", nil, []event{
			{req: rq("u", "p1", a1), want: 2 * s},
			{req: rq("u", "p2", a1), want: 4 * s},
			{req: rq("u", "p3", a1), want: 6 * s},
			{req: rq("u", "p4", a1), want: 10 * s},
			{req: rq("u", "p5", a1), want: 17 * s},
			{req: rq("u", "p6", a1), want: 17 * s},
			{req: rq("u", "p7", a1), want: 17 * s},
		}},
		{"decay: each quiet period halves the penalty, then it is forgotten", nil, []event{
			{req: rq("u", "p1", a1), want: 2 * s},
			{req: rq("u", "p2", a1), want: 4 * s},
			{req: rq("u", "p3", a1), want: 6 * s},
			{req: rq("u", "p4", a1), want: 10 * s},
			{req: rq("u", "p5", a1), want: 17 * s}, // level 4 now: 15 s
			{advance: 5*time.Minute - s, req: rq("v", "x", "203.0.113.9;1"), want: 2 * s},
			{advance: s, req: rq("u", "p6", a1), want: 10 * s},               // one period: 8 s, and back to 15
			{advance: 10 * time.Minute, req: rq("u", "p7", a1), want: 6 * s}, // two periods: 4 s
			{advance: time.Hour, req: rq("u", "p8", a1), want: 2 * s},        // forgotten
		}},
		{"the same wrong password again does not grow the penalty", nil, []event{
			{req: rq("u", "old", a1), want: 2 * s},
			{req: rq("u", "old", a1), want: 4 * s},
			{req: rq("u", "old", a1), want: 4 * s},
			{req: rq("u", "old", a1), want: 4 * s},
			// and it does not stop the decay
			{advance: 5 * time.Minute, req: rq("u", "old", a1), want: 2 * s},
			{req: rq("u", "other", a1), want: 4 * s},
			{req: rq("u", "old", a1), want: 6 * s}, // not the previous failure: counts
			{req: rq("u", "old", a1), want: 10 * s},
			{req: rq("u", "old", a1), want: 10 * s},
		}},
		{"same password but another login counts for the address", nil, []event{
			{req: rq("u1", "pw", a1), want: 2 * s},
			{req: rq("u2", "pw", a1), want: 4 * s},
			{req: rq("u3", "pw", a1), want: 6 * s},
		}},
		{"per address: another address is not penalised", nil, []event{
			{req: rq("u1", "1", a1), want: 2 * s},
			{req: rq("u2", "2", a1), want: 4 * s},
			{req: rq("u3", "3", a1), want: 6 * s},
			{req: rq("u4", "4", a2), want: 2 * s},
			{req: rq("u5", "5", ""), want: 2 * s},
		}},
		{"per login, across addresses and services, realm-aware, case-folded", nil, []event{
			{req: rq("Alice", "1", a1), want: 2 * s},
			{req: rq("alice", "2", a2), want: 4 * s},
			{req: rq("ALICE", "3", ""), want: 6 * s},
			{req: mechs.Request{Login: "alice", Password: "4", Service: "imap"}, want: 10 * s},
			{req: mechs.Request{Login: "alice", Realm: "other.example", Password: "5"}, want: 2 * s},
		}},
		{"the larger of the two penalties applies", nil, []event{
			{req: rq("u", "1", ""), want: 2 * s},
			{req: rq("u", "2", ""), want: 4 * s},
			{req: rq("u", "3", ""), want: 6 * s},     // login at 8 s
			{req: rq("v", "1", a1), want: 2 * s},     // address new
			{req: rq("u", "4", a1), want: 10 * s},    // login 8 > address 2
			{req: rq("w", "1", a1), want: 2*s + 4*s}, // address 4, w new
		}},
		{"IPv6 is grouped per /48", nil, []event{
			{req: rq("u1", "1", "2001:db8:1:1::1;25"), want: 2 * s},
			{req: rq("u2", "2", "2001:db8:1:ffff::2;25"), want: 4 * s},
			{req: rq("u3", "3", "[2001:db8:1:2::3];25"), want: 6 * s},
			{req: rq("u4", "4", "fe80::1%eth0;25"), want: 2 * s},
			{req: rq("u5", "5", "2001:db8:2::1;25"), want: 2 * s}, // another /48
		}},
		{"IPv4 per address, IPv4-mapped IPv6 is IPv4", nil, []event{
			{req: rq("u1", "1", "192.0.2.1;1"), want: 2 * s},
			{req: rq("u2", "2", "::ffff:192.0.2.1;2"), want: 4 * s},
			{req: rq("u3", "3", "192.0.2.1"), want: 6 * s}, // no port
			{req: rq("u4", "4", "192.0.2.2;1"), want: 2 * s},
		}},
		{"an unparsable address is ignored, the login still counts", nil, []event{
			{req: rq("u", "1", "mail.example.org;25"), want: 2 * s},
			{req: rq("u", "2", "mail.example.org;25"), want: 4 * s},
			{req: rq("v", "1", "mail.example.org;25"), want: 2 * s},
		}},
		{"trusted networks are exempt and count nothing", func(c *Config) {
			c.Trusted = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:aa::/48"),
				netip.MustParsePrefix("::ffff:172.16.0.0/108")}
		}, []event{
			{req: rq("u", "1", "10.1.2.3;1"), want: 0},
			{req: rq("u", "2", "10.1.2.3;1"), want: 0},
			{req: rq("u", "3", "2001:db8:aa:1::1;1"), want: 0},
			{req: rq("u", "4", "172.16.0.1;1"), want: 0},
			{req: rq("u", "5", "10.9.9.9;1"), want: 0},
			{req: rq("u", "6", a1), want: 2 * s}, // nothing was counted against u
		}},
		{"OK is never delayed and changes nothing; TEMPFAIL neither", nil, []event{
			{req: rq("u", "1", a1), want: 2 * s},
			{req: rq("u", "2", a1), want: 4 * s},
			{req: rq("u", "3", a1), want: 6 * s},
			{req: rq("u", "good", a1), v: mechs.Accept, want: 0},
			{req: rq("u", "good", a2), v: mechs.Accept, want: 0},
			{req: rq("u", "good", ""), v: mechs.Accept, want: 0},
			{req: rq("u", "x", a1), v: mechs.TempFail, want: 0},
			{req: rq("u", "y", a1), v: mechs.TempFail, want: 0},
			{req: rq("u", "4", a1), want: 10 * s}, // the success washed nothing
		}},
		{"no penalties: the failure delay alone", func(c *Config) { c.PenaltyBase = 0 }, []event{
			{req: rq("u", "1", a1), want: 2 * s},
			{req: rq("u", "2", a1), want: 2 * s},
			{req: rq("u", "3", a1), want: 2 * s},
		}},
		{"no failure delay: penalties alone", func(c *Config) { c.FailureDelay = 0 }, []event{
			{req: rq("u", "1", a1), want: 0},
			{req: rq("u", "2", a1), want: 2 * s},
			{req: rq("u", "3", a1), want: 4 * s},
		}},
		{"custom prefixes", func(c *Config) { c.IPv4Prefix = 24; c.IPv6Prefix = 64 }, []event{
			{req: rq("u1", "1", "192.0.2.1;1"), want: 2 * s},
			{req: rq("u2", "2", "192.0.2.200;1"), want: 4 * s},
			{req: rq("u3", "3", "2001:db8:0:1::1;1"), want: 2 * s},
			{req: rq("u4", "4", "2001:db8:0:2::1;1"), want: 2 * s},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			th, clk := newT(tc.mod)
			for i, e := range tc.events {
				clk.Add(e.advance)
				v := e.v
				if v == 0 {
					v = mechs.Reject
				}
				if got := th.Observe(e.req, v); got != e.want {
					t.Fatalf("event %d (%s %v from %q): delay %v, want %v", i, e.req.Login, v, e.req.ClientAddr, got, e.want)
				}
			}
		})
	}
}

func TestThrottle_Penalty(t *testing.T) {
	th, clk := newT(nil)
	r := rq("u", "1", "192.0.2.1;1")
	if th.Penalty(r) != 0 {
		t.Fatal("clean key has a penalty")
	}
	th.Observe(r, mechs.Reject)
	th.Observe(rq("u", "2", "192.0.2.1;1"), mechs.Reject)
	if p := th.Penalty(r); p != 4*s {
		t.Fatalf("penalty %v", p)
	}
	if p := th.Penalty(rq("other", "x", "192.0.2.1;9")); p != 4*s {
		t.Fatalf("address penalty %v", p)
	}
	clk.Add(time.Hour)
	if p := th.Penalty(r); p != 0 || th.Len() != 0 {
		t.Fatalf("after an hour: %v, %d keys", p, th.Len())
	}
}

func TestThrottle_Jitter(t *testing.T) {
	cfg := DefaultConfig()
	th := New(cfg, mrand.New(mrand.NewPCG(1, 2)))
	lo, hi := time.Hour, time.Duration(0)
	for i := 0; i < 2000; i++ {
		d := th.Observe(rq(fmt.Sprint("u", i), "p", ""), mechs.Reject)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 1500*time.Millisecond || hi > 2500*time.Millisecond {
		t.Fatalf("delays in [%v, %v], want within 2 s ± 25%%", lo, hi)
	}
	if lo > 1600*time.Millisecond || hi < 2400*time.Millisecond {
		t.Fatalf("delays in [%v, %v]: not spread", lo, hi)
	}
	// the global source works too
	if d := New(cfg, nil).Observe(rq("u", "p", ""), mechs.Reject); d < 1500*time.Millisecond || d > 2500*time.Millisecond {
		t.Fatalf("delay %v", d)
	}
}

func TestThrottle_MemoryBound(t *testing.T) {
	th, clk := newT(func(c *Config) { c.MaxKeys = 100 })
	for i := 0; i < 10000; i++ {
		th.Observe(rq(fmt.Sprint("user", i), "p", fmt.Sprintf("10.%d.%d.%d;1", i>>16&255, i>>8&255, i&255)), mechs.Reject)
		if th.Len() > 100 {
			t.Fatalf("%d keys after %d failures", th.Len(), i+1)
		}
	}
	// a key failing all along stays (least recently failed go first)
	th.Reset()
	hot := rq("victim", "x", "192.0.2.1;1")
	for i := 0; i < 1000; i++ {
		th.Observe(rq("victim", fmt.Sprint("guess", i), "192.0.2.1;1"), mechs.Reject)
		th.Observe(rq(fmt.Sprint("noise", i), "p", ""), mechs.Reject)
	}
	if p := th.Penalty(hot); p != 15*s {
		t.Fatalf("hot key lost: penalty %v", p)
	}
	// and expired keys go away with time
	clk.Add(time.Hour)
	th.Observe(rq("late", "p", ""), mechs.Reject)
	th.Observe(rq("late2", "p", ""), mechs.Reject)
	th.mu.Lock()
	n := 0
	for st := th.lru.next; st != &th.lru; st = st.next {
		n++
	}
	th.mu.Unlock()
	if n != th.Len() {
		t.Fatalf("list %d, map %d", n, th.Len())
	}
}

// The acceptance test of the brief: 50 wrong passwords from one address
// make its next failures slow, while a good login from another address, or
// from the same one, is not delayed at all, and a failure from a clean
// address for another user costs the plain failure delay.
func TestThrottle_FiftyFailures(t *testing.T) {
	th, _ := newT(nil)
	const attacker = "203.0.113.66;40000"
	for i := 0; i < 50; i++ {
		th.Observe(rq(fmt.Sprint("user", i%5), fmt.Sprint("guess", i), attacker), mechs.Reject)
	}
	if d := th.Observe(rq("someone", "guess-51", attacker), mechs.Reject); d != 17*s {
		t.Fatalf("attacker's next failure: %v, want 17 s", d)
	}
	for _, r := range []mechs.Request{
		rq("user1", "right", "198.51.100.20;5000"), // a targeted user, clean address
		rq("user1", "right", attacker),             // even from the attacker's address
		rq("user1", "right", ""),
	} {
		if d := th.Observe(r, mechs.Accept); d != 0 {
			t.Fatalf("good login from %q delayed %v", r.ClientAddr, d)
		}
	}
	if d := th.Observe(rq("carol", "typo", "198.51.100.20;5000"), mechs.Reject); d != 2*s {
		t.Fatalf("clean address, clean user: %v", d)
	}
	// the targeted login is penalised everywhere for failures, never for OK
	if d := th.Observe(rq("user1", "typo", "198.51.100.21;5000"), mechs.Reject); d != 17*s {
		t.Fatalf("targeted login, clean address, wrong password: %v", d)
	}
}

func TestThrottle_Concurrent(t *testing.T) {
	th := New(DefaultConfig(), nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 500; i++ {
				v := mechs.Reject
				if i%3 == 0 {
					v = mechs.Accept
				}
				th.Observe(rq(fmt.Sprint("u", i%17), fmt.Sprint(i), fmt.Sprintf("192.0.2.%d;1", g)), v)
				th.Penalty(rq("u1", "", ""))
			}
		})
	}
	wg.Wait()
}

func TestThrottle_Nil(t *testing.T) {
	var th *Throttle
	if th.Observe(rq("u", "p", ""), mechs.Reject) != 0 || th.Penalty(rq("u", "p", "")) != 0 || th.Len() != 0 {
		t.Fatal("nil throttle delays")
	}
	th.Reset()
}

func TestWait(t *testing.T) {
	start := time.Now()
	if err := Wait(context.Background(), 20*time.Millisecond); err != nil || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("Wait: %v after %v", err, time.Since(start))
	}
	if err := Wait(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	start = time.Now()
	if err := Wait(ctx, time.Hour); err != context.Canceled || time.Since(start) > 5*time.Second {
		t.Fatalf("cancelled Wait: %v after %v", err, time.Since(start))
	}
}
