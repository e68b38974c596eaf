package getpwent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
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
	goodPw = "Secret123"
	utf8Pw = "pässwörd mit Leerzeichen ☃"
)

// hashes are made once per run by libxcrypt itself.
var hashes = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for key, in := range map[string][2]string{
		"y": {goodPw, "$y$"}, "6": {goodPw, "$6$"}, "2b": {goodPw, "$2b$"}, "utf8": {utf8Pw, "$y$"},
	} {
		h, err := unixpw.Hash(in[0], in[1])
		if err != nil {
			panic(err)
		}
		m[key] = h
	}
	return m
})

type entry struct {
	passwd string // the password field
	err    error  // getpwnam fails
}

// fakeSys serves passwd entries and counts crypt computations.
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
			case e.err != nil:
				return nil, e.err
			}
			return &unixpw.Passwd{Name: name, Passwd: e.passwd, UID: 1000, GID: 1000, Dir: "/", Shell: "/bin/sh"}, nil
		},
		verify: func(password, hash string) bool { f.crypts.Add(1); return unixpw.Verify(password, hash) },
		dummy:  func(password string) bool { f.crypts.Add(1); return unixpw.VerifyDummy(password) },
	}
}

func newFake() (*DB, *fakeSys) {
	h := hashes()
	f := &fakeSys{users: map[string]entry{
		"u1":      {passwd: h["y"]},
		"sha":     {passwd: h["6"]},
		"bcrypt":  {passwd: h["2b"]},
		"utf8":    {passwd: h["utf8"]},
		"shadowd": {passwd: "x"}, // every user on a shadowed system
		"locked":  {passwd: "!" + h["y"]},
		"star":    {passwd: "*"},
		"empty":   {passwd: ""},
		"pwerr":   {err: &unixpw.LookupError{Op: "getpwnam", Name: "pwerr", Errno: syscall.EACCES}},
		"pwerr2":  {err: &unixpw.LookupError{Op: "getpwnam", Name: "pwerr2", Errno: syscall.ETIMEDOUT}},
		"pwplain": {err: errors.New("not an errno")},
	}}
	return &DB{sys: f.system()}, f
}

func TestAuthenticate(t *testing.T) {
	g, f := newFake()
	for i, c := range []struct {
		login, pw string
		reply     string
		verdict   mechs.Verdict
		reason    string
	}{
		{"u1", goodPw, "OK", mechs.Accept, ""},
		{"u1", "wrong", "NO Incorrect password", mechs.Reject, "password mismatch"},
		{"u1", goodPw[:8], "NO Incorrect password", mechs.Reject, "password mismatch"},
		{"U1", goodPw, "NO Invalid username", mechs.Reject, "no such user"},
		{"nosuchuser", goodPw, "NO Invalid username", mechs.Reject, "no such user"},
		{"sha", goodPw, "OK", mechs.Accept, ""},
		{"bcrypt", goodPw, "OK", mechs.Accept, ""},
		{"bcrypt", "wrong", "NO Incorrect password", mechs.Reject, "password mismatch"},
		{"utf8", utf8Pw, "OK", mechs.Accept, ""},
		{"utf8", strings.TrimSpace(utf8Pw[:10]), "NO Incorrect password", mechs.Reject, "password mismatch"},
		// §13 case 30: on a shadowed system everyone fails
		{"shadowd", goodPw, "NO Incorrect password", mechs.Reject, "in the shadow file"},
		{"shadowd", "x", "NO Incorrect password", mechs.Reject, "in the shadow file"},
		{"locked", goodPw, "NO Incorrect password", mechs.Reject, "locked"},
		{"star", goodPw, "NO Incorrect password", mechs.Reject, "no password"},
		{"empty", goodPw, "NO Incorrect password", mechs.Reject, "empty"},
		{"pwerr", goodPw, "NO Username lookup failure: Permission denied", mechs.TempFail, "user lookup failed"},
		{"pwerr2", goodPw, "NO Username lookup failure: Connection timed out", mechs.TempFail, "user lookup failed"},
		{"pwplain", goodPw, "NO Username lookup failure: Unknown error", mechs.TempFail, "not an errno"},
	} {
		before := f.crypts.Load()
		res, err := g.Authenticate(context.Background(), mechs.Request{
			Login: c.login, Password: mechs.Password(c.pw), Service: "imap", Realm: "example.com"})
		if err != nil {
			t.Fatalf("case %d %q: %v", i, c.login, err)
		}
		if res.Reply != c.reply || res.Verdict != c.verdict {
			t.Errorf("case %d %q: got %v %q, want %v %q", i, c.login, res.Verdict, res.Reply, c.verdict, c.reply)
		}
		if !strings.Contains(res.Reason, c.reason) {
			t.Errorf("case %d %q: reason %q lacks %q", i, c.login, res.Reason, c.reason)
		}
		if strings.Contains(res.Reason, c.pw) && len(c.pw) > 1 {
			t.Errorf("case %d %q: reason %q holds the password", i, c.login, res.Reason)
		}
		if n := f.crypts.Load() - before; n != 1 {
			t.Errorf("case %d %q: %d crypt computations, want 1", i, c.login, n)
		}
	}
}

func TestReplyLengths(t *testing.T) {
	for reply, n := range map[string]int{replyOK: 2, replyNoUser: 19, replyBadPassword: 21} {
		if len(reply) != n {
			t.Errorf("%q is %d bytes, want %d", reply, len(reply), n)
		}
	}
}

func TestCancelled(t *testing.T) {
	g, f := newFake()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := g.Authenticate(ctx, mechs.Request{Login: "u1", Password: goodPw})
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
	g, f := newFake()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res, err := g.Authenticate(ctx, mechs.Request{Login: "hang", Password: goodPw})
	if err != nil || res.Verdict != mechs.TempFail || res.Reply != mechs.ReplyInternal || !strings.Contains(res.Reason, "deadline") {
		t.Errorf("hung lookup: %+v, %v", res, err)
	}
	if n := f.crypts.Load(); n != 0 {
		t.Errorf("%d crypt computations", n)
	}
}

// TestWarnIfShadowed: a start-up warning, because saslauthd gives none and
// the mechanism then rejects everyone.
func TestWarnIfShadowed(t *testing.T) {
	for _, c := range []struct {
		root entry
		warn bool
	}{
		{entry{passwd: "x"}, true},
		{entry{passwd: "$6$abc$def"}, false},
		{entry{err: errors.New("down")}, false},
	} {
		var buf bytes.Buffer
		g, f := newFake()
		f.users["root"] = c.root
		g.warnIfShadowed(slog.New(slog.NewTextHandler(&buf, nil)))
		if got := strings.Contains(buf.String(), "level=WARN"); got != c.warn {
			t.Errorf("root %+v: warned %v, want %v: %s", c.root, got, c.warn, buf.String())
		}
	}
}

func TestConformanceFake(t *testing.T) {
	mechstest.Run(t, mechstest.Fixture{
		New: func(t *testing.T, logger *slog.Logger) mechs.Mechanism {
			g, _ := newFake()
			return g
		},
		Good:         mechs.Request{Login: "u1", Password: goodPw, Service: "smtp"},
		UnknownLogin: "nosuchuser",
	})
}

func TestRegistered(t *testing.T) {
	m, err := mechs.New("getpwent", mechs.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*DB); !ok || m.Name() != "getpwent" {
		t.Errorf("mechs.New gave %T %q", m, m.Name())
	}
}
