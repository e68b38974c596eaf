package shadow

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/internal/unixpw"
	"github.com/saslgate/saslgate/mechs/mechstest"
)

const (
	goodPw  = "Secret123"
	utf8Pw  = "pässwörd mit Leerzeichen ☃"
	today   = 20000 // the fake clock's day number
	noValue = -1    // an empty shadow(5) field
)

// fakeNow is noon on day `today`.
func fakeNow() time.Time { return time.Unix(today*secondsPerDay+12*3600, 0) }

// hashes are made once per run by libxcrypt itself.
var hashes = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for key, in := range map[string][2]string{
		"y": {goodPw, "$y$"}, "6": {goodPw, "$6$"}, "utf8": {utf8Pw, "$y$"},
	} {
		h, err := unixpw.Hash(in[0], in[1])
		if err != nil {
			panic(err)
		}
		m[key] = h
	}
	return m
})

// entry is a fake user: its passwd and shadow answers.
type entry struct {
	noShadow  bool  // passwd entry but no shadow entry
	userErr   error // getpwnam fails
	shadowErr error // getspnam fails
	hash      string
	lastChg   int64
	min, max  int64
	warn      int64
	inact     int64
	expire    int64
}

// sp is a shadow entry with the fields useradd leaves on a fresh account.
func sp(hash string) entry {
	return entry{hash: hash, lastChg: today - 10, min: 0, max: 99999, warn: 7, inact: noValue, expire: noValue}
}

func (e entry) with(f func(*entry)) entry { f(&e); return e }

// fakeSys serves entries and counts crypt computations.
type fakeSys struct {
	users  map[string]entry
	crypts atomic.Int64
}

func (f *fakeSys) system() system {
	return system{
		user: func(ctx context.Context, name string) (*unixpw.Passwd, error) {
			if name == "hang" {
				<-ctx.Done() // a name service that never answers
				return nil, ctx.Err()
			}
			e, ok := f.users[name]
			switch {
			case !ok:
				return nil, nil
			case e.userErr != nil:
				return nil, e.userErr
			}
			return &unixpw.Passwd{Name: name, Passwd: "x", UID: 1000, GID: 1000, Dir: "/home/" + name, Shell: "/bin/sh"}, nil
		},
		shadow: func(ctx context.Context, name string) (*unixpw.Shadow, error) {
			if name == "hangshadow" {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			e, ok := f.users[name]
			switch {
			case !ok || e.noShadow:
				return nil, nil
			case e.shadowErr != nil:
				return nil, e.shadowErr
			}
			return &unixpw.Shadow{Name: name, Password: e.hash, LastChange: e.lastChg, Min: e.min, Max: e.max,
				Warn: e.warn, Inactive: e.inact, Expire: e.expire}, nil
		},
		verify: func(password, hash string) bool { f.crypts.Add(1); return unixpw.Verify(password, hash) },
		dummy:  func(password string) bool { f.crypts.Add(1); return unixpw.VerifyDummy(password) },
	}
}

func lookupErr(op string, errno syscall.Errno) error {
	return &unixpw.LookupError{Op: op, Name: "x", Errno: errno}
}

// fixtureUsers are §13's shadow fixtures (u1..u5) and the other cases of
// §2.6 and §12.
func fixtureUsers() map[string]entry {
	h := hashes()
	y, s6 := h["y"], h["6"]
	return map[string]entry{
		"u1":         sp(y),
		"u1sha":      sp(s6),
		"u2":         sp("!" + y),                                                  // locked (usermod -L)
		"u3":         sp(y).with(func(e *entry) { e.expire = 0 }),                  // chage -E 0 (cyrus-sasl#254)
		"u4":         sp(y).with(func(e *entry) { e.lastChg = 19000; e.max = 90 }), // password too old
		"u5":         sp(""),                                                       // empty hash
		"utf8":       sp(h["utf8"]),
		"star":       sp("*"),
		"bang":       sp("!"),
		"bangstar":   sp("!*"),
		"lockedx":    sp("!!"),
		"nis":        sp("*NP*"),
		"noshadow":   {noShadow: true},
		"hang":       sp(""),
		"hangshadow": sp(""),
		"pwerr":      {userErr: lookupErr("getpwnam", syscall.EACCES)},
		"pwerr2":     {userErr: lookupErr("getpwnam", syscall.ECONNREFUSED)},
		"pwplain":    {userErr: errors.New("not an errno")},
		"sperr":      sp(y).with(func(e *entry) { e.shadowErr = lookupErr("getspnam", syscall.EACCES) }),
		"sperr2":     sp(y).with(func(e *entry) { e.shadowErr = lookupErr("getspnam", syscall.ERANGE) }),

		"exp-yesterday":  sp(y).with(func(e *entry) { e.expire = today - 1 }),
		"exp-today":      sp(y).with(func(e *entry) { e.expire = today }), // expires after today
		"exp-tomorrow":   sp(y).with(func(e *entry) { e.expire = today + 1 }),
		"age-boundary":   sp(y).with(func(e *entry) { e.lastChg = today - 30; e.max = 30 }), // lstchg+max == today: still valid
		"age-over":       sp(y).with(func(e *entry) { e.lastChg = today - 31; e.max = 30 }),
		"age-nomax":      sp(y).with(func(e *entry) { e.lastChg = 1; e.max = noValue }),
		"age-nolastchg":  sp(y).with(func(e *entry) { e.lastChg = noValue; e.max = 1 }),
		"age-max0":       sp(y).with(func(e *entry) { e.lastChg = today - 1; e.max = 0 }),
		"age-max0-today": sp(y).with(func(e *entry) { e.lastChg = today; e.max = 0 }),
		"age-hugemax":    sp(y).with(func(e *entry) { e.lastChg = 19000; e.max = math.MaxInt64 }),
		"age-hugeneg":    sp(y).with(func(e *entry) { e.lastChg = math.MinInt64 + 5; e.max = -10 }),
		// lastchg = 0 is "must change at next login" (chage -d 0 / passwd -e).
		// saslauthd has no rule for it: the formula decides, so with a
		// maximum age it is long expired, and without one it is fine.
		"chg0-max":   sp(y).with(func(e *entry) { e.lastChg = 0; e.max = 30 }),
		"chg0-99999": sp(y).with(func(e *entry) { e.lastChg = 0; e.max = 99999 }),
		"chg0-nomax": sp(y).with(func(e *entry) { e.lastChg = 0; e.max = noValue }),
		// both expired: the account check comes first
		"both": sp(y).with(func(e *entry) { e.expire = 1; e.lastChg = 1; e.max = 1 }),
		// sp_min, sp_warn and sp_inact play no part
		"ignored": sp(y).with(func(e *entry) { e.min = 99999; e.warn = 0; e.inact = 0; e.lastChg = today }),
	}
}

func newFake() (*DB, *fakeSys) {
	f := &fakeSys{users: fixtureUsers()}
	return &DB{sys: f.system(), now: fakeNow}, f
}

type authCase struct {
	login, pw string
	reply     string
	verdict   mechs.Verdict
	reason    string // a substring of the log reason
}

var authCases = []authCase{
	// §13 cases 1, 2, 28, 29
	{"u1", goodPw, "OK", mechs.Accept, ""},
	{"u1", "wrong", "NO Incorrect password", mechs.Reject, "password mismatch"},
	{"u1", "secret123", "NO Incorrect password", mechs.Reject, "password mismatch"},
	{"u1", goodPw[:8], "NO Incorrect password", mechs.Reject, "password mismatch"},
	{"u1", goodPw + " ", "NO Incorrect password", mechs.Reject, "password mismatch"},
	{"nosuchuser", "x", "NO Invalid username", mechs.Reject, "no such user"},
	{"U1", goodPw, "NO Invalid username", mechs.Reject, "no such user"},
	{"u1 ", goodPw, "NO Invalid username", mechs.Reject, "no such user"},
	{"u2", goodPw, "NO Incorrect password", mechs.Reject, "locked"},
	{"u3", goodPw, "NO Account expired", mechs.Reject, "expired on day 0"},
	{"u3", "wrong", "NO Incorrect password", mechs.Reject, "password mismatch"},
	{"u4", goodPw, "NO Password expired", mechs.Reject, "too old"},
	{"u4", "wrong", "NO Incorrect password", mechs.Reject, "password mismatch"},
	{"u5", goodPw, "NO Incorrect password", mechs.Reject, "empty"},
	{"u5", "", "NO Incorrect password", mechs.Reject, "empty"},
	// formats and passwords
	{"u1sha", goodPw, "OK", mechs.Accept, ""},
	{"u1sha", "wrong", "NO Incorrect password", mechs.Reject, "password mismatch"},
	{"utf8", utf8Pw, "OK", mechs.Accept, ""},
	{"utf8", strings.ToUpper(utf8Pw), "NO Incorrect password", mechs.Reject, "password mismatch"},
	// unusable hashes
	{"star", goodPw, "NO Incorrect password", mechs.Reject, "no password"},
	{"bang", "wrong", "NO Incorrect password", mechs.Reject, "locked"},
	{"bangstar", goodPw, "NO Incorrect password", mechs.Reject, "locked"},
	{"lockedx", goodPw, "NO Incorrect password", mechs.Reject, "locked"},
	{"nis", goodPw, "NO Insufficient permission to access NIS authentication database (saslauthd)", mechs.Reject, "*NP*"},
	{"nis", "wrong", "NO Insufficient permission to access NIS authentication database (saslauthd)", mechs.Reject, "*NP*"},
	// lookups
	{"noshadow", goodPw, "NO Invalid shadow username", mechs.Reject, "no shadow entry"},
	{"pwerr", goodPw, "NO Username lookup failure: Permission denied", mechs.TempFail, "user lookup failed"},
	{"pwerr2", goodPw, "NO Username lookup failure: Connection refused", mechs.TempFail, "user lookup failed"},
	{"pwplain", goodPw, "NO Username lookup failure: Unknown error", mechs.TempFail, "not an errno"},
	{"sperr", goodPw, "NO Username shadow lookup failure: Permission denied", mechs.TempFail, "shadow lookup failed"},
	{"sperr2", goodPw, "NO Username shadow lookup failure: Numerical result out of range", mechs.TempFail, "shadow lookup failed"},
	// dates
	{"exp-yesterday", goodPw, "NO Account expired", mechs.Reject, "expired"},
	{"exp-today", goodPw, "OK", mechs.Accept, ""},
	{"exp-tomorrow", goodPw, "OK", mechs.Accept, ""},
	{"age-boundary", goodPw, "OK", mechs.Accept, ""},
	{"age-over", goodPw, "NO Password expired", mechs.Reject, "too old"},
	{"age-nomax", goodPw, "OK", mechs.Accept, ""},
	{"age-nolastchg", goodPw, "OK", mechs.Accept, ""},
	{"age-max0", goodPw, "NO Password expired", mechs.Reject, "too old"},
	{"age-max0-today", goodPw, "OK", mechs.Accept, ""},
	{"age-hugemax", goodPw, "OK", mechs.Accept, ""},
	{"age-hugeneg", goodPw, "NO Password expired", mechs.Reject, "too old"},
	{"chg0-max", goodPw, "NO Password expired", mechs.Reject, "changed on day 0"},
	{"chg0-99999", goodPw, "OK", mechs.Accept, ""},
	{"chg0-nomax", goodPw, "OK", mechs.Accept, ""},
	{"both", goodPw, "NO Account expired", mechs.Reject, "expired"},
	{"both", "wrong", "NO Incorrect password", mechs.Reject, "password mismatch"},
	{"ignored", goodPw, "OK", mechs.Accept, ""},
}

func TestAuthenticate(t *testing.T) {
	s, f := newFake()
	for i, c := range authCases {
		for _, rs := range [][2]string{{"smtp", ""}, {"", "example.com"}} { // realm and service play no part
			before := f.crypts.Load()
			res, err := s.Authenticate(context.Background(), mechs.Request{
				Login: c.login, Password: mechs.Password(c.pw), Service: rs[0], Realm: rs[1]})
			if err != nil {
				t.Fatalf("case %d %q: error %v", i, c.login, err)
			}
			if res.Reply != c.reply || res.Verdict != c.verdict {
				t.Errorf("case %d %q/%q: got %v %q, want %v %q", i, c.login, rs, res.Verdict, res.Reply, c.verdict, c.reply)
			}
			if !strings.Contains(res.Reason, c.reason) {
				t.Errorf("case %d %q: reason %q lacks %q", i, c.login, res.Reason, c.reason)
			}
			if c.pw != "" && strings.Contains(res.Reason, c.pw) {
				t.Errorf("case %d %q: reason %q holds the password", i, c.login, res.Reason)
			}
			if h := f.users[c.login].hash; len(h) > 4 && strings.Contains(res.Reason, h) {
				t.Errorf("case %d %q: reason %q holds the hash", i, c.login, res.Reason)
			}
			// every answer costs one hash computation: timing must not tell
			// an unknown or locked user from a wrong password
			if n := f.crypts.Load() - before; n != 1 {
				t.Errorf("case %d %q: %d crypt computations, want 1", i, c.login, n)
			}
		}
	}
}

// TestReplyLengths pins the replies to §2.6's byte counts.
func TestReplyLengths(t *testing.T) {
	for reply, n := range map[string]int{
		replyOK: 2, replyNoUser: 19, replyNoShadow: 26, replyNIS: 76, replyBadPassword: 21,
		replyAccountExpired: 18, replyPasswordExpired: 19,
	} {
		if len(reply) != n {
			t.Errorf("%q is %d bytes, want %d", reply, len(reply), n)
		}
	}
}

func TestCancelled(t *testing.T) {
	s, f := newFake()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := s.Authenticate(ctx, mechs.Request{Login: "u1", Password: goodPw})
	if err != nil || res.Verdict != mechs.TempFail || res.Reply != mechs.ReplyInternal {
		t.Fatalf("cancelled: %+v, %v", res, err)
	}
	if n := f.crypts.Load(); n != 0 {
		t.Errorf("%d crypt computations after cancel", n)
	}
}

// TestHungLookup: a name service that never answers cannot hold the
// request past its deadline.
func TestHungLookup(t *testing.T) {
	s, f := newFake()
	for _, login := range []string{"hang", "hangshadow"} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		start := time.Now()
		res, err := s.Authenticate(ctx, mechs.Request{Login: login, Password: goodPw})
		cancel()
		if err != nil || res.Verdict != mechs.TempFail || res.Reply != mechs.ReplyInternal {
			t.Errorf("%s: %+v, %v", login, res, err)
		}
		if !strings.Contains(res.Reason, "deadline") {
			t.Errorf("%s: reason %q", login, res.Reason)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", login, d)
		}
	}
	if n := f.crypts.Load(); n != 0 {
		t.Errorf("%d crypt computations", n)
	}
}

// TestClock: the day changes at midnight UTC, as time(NULL)/86400.
func TestClock(t *testing.T) {
	s, _ := newFake()
	req := mechs.Request{Login: "exp-today", Password: goodPw}
	for _, c := range []struct {
		now  time.Time
		want string
	}{
		{time.Unix((today+1)*secondsPerDay-1, 0), "OK"},
		{time.Unix((today+1)*secondsPerDay, 0), "NO Account expired"},
	} {
		s.now = func() time.Time { return c.now }
		res, _ := s.Authenticate(context.Background(), req)
		if res.Reply != c.want {
			t.Errorf("at %v: %q, want %q", c.now.UTC(), res.Reply, c.want)
		}
	}
}

func TestSumLess(t *testing.T) {
	for _, c := range []struct {
		a, b, c int64
		want    bool
	}{
		{1, 2, 4, true}, {1, 2, 3, false}, {0, 0, 1, true},
		{math.MaxInt64, 1, math.MaxInt64, false},
		{1, math.MaxInt64, math.MinInt64, false},
		{math.MinInt64, -1, math.MinInt64, true},
		{-5, math.MinInt64 + 1, math.MinInt64, true},
	} {
		if got := sumLess(c.a, c.b, c.c); got != c.want {
			t.Errorf("sumLess(%d, %d, %d) = %v", c.a, c.b, c.c, got)
		}
	}
}

func TestConformanceFake(t *testing.T) {
	mechstest.Run(t, mechstest.Fixture{
		New: func(t *testing.T, logger *slog.Logger) mechs.Mechanism {
			s, _ := newFake()
			return s
		},
		Good:         mechs.Request{Login: "u1", Password: goodPw, Service: "smtp"},
		UnknownLogin: "nosuchuser",
	})
}

func TestRegistered(t *testing.T) {
	m, err := mechs.New("SHADOW", mechs.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "shadow" {
		t.Errorf("Name() = %q", m.Name())
	}
	if _, ok := m.(*DB); !ok {
		t.Errorf("mechs.New gave %T", m)
	}
}
