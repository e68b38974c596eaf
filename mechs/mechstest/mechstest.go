// Package mechstest holds test helpers for mechanisms: Func, an adapter that
// makes a function a Mechanism, Static, an in-memory user table, and Run, the
// conformance suite every mechanism must pass.
package mechstest

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
)

// Func adapts a function to a Mechanism.
type Func struct {
	MechName string
	Fn       func(ctx context.Context, req mechs.Request) (mechs.Result, error)
}

func (f Func) Name() string { return f.MechName }
func (f Func) Authenticate(ctx context.Context, req mechs.Request) (mechs.Result, error) {
	return f.Fn(ctx, req)
}

// Static accepts the users in its table with saslauthd's plain OK and
// rejects everything else with a bare NO, as sasldb does.
type Static struct {
	MechName string
	Users    map[string]string // login -> password
}

func (s Static) Name() string { return s.MechName }
func (s Static) Authenticate(_ context.Context, req mechs.Request) (mechs.Result, error) {
	if pw, ok := s.Users[req.Login]; ok && pw == req.Password.Reveal() {
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}, nil
	}
	return mechs.Result{Verdict: mechs.Reject, Reply: "NO", Reason: "no such user or wrong password"}, nil
}

// Fixture describes a mechanism under test and credentials it knows.
type Fixture struct {
	// New builds the mechanism with the given logger (which the suite reads
	// to make sure no password is logged).
	New func(t *testing.T, logger *slog.Logger) mechs.Mechanism
	// Good is a request the mechanism accepts.
	Good mechs.Request
	// UnknownLogin is a login the back end does not know.
	UnknownLogin string
}

// Run is the conformance suite: every mechanism must pass it.
func Run(t *testing.T, fx Fixture) {
	t.Helper()
	var logBuf syncBuffer
	logger := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := fx.New(t, logger)
	if m.Name() == "" {
		t.Fatal("Name() is empty")
	}
	ctx := context.Background()
	wrong := fx.Good
	wrong.Password = mechs.Password("wrong-" + fx.Good.Password.Reveal())
	unknown := fx.Good
	unknown.Login = fx.UnknownLogin

	check := func(name string, req mechs.Request, want mechs.Verdict) {
		t.Run(name, func(t *testing.T) {
			res, err := m.Authenticate(ctx, req)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if res.Verdict != want {
				t.Fatalf("verdict = %v (reply %q, reason %q), want %v", res.Verdict, res.Reply, res.Reason, want)
			}
			if want == mechs.Accept && !strings.HasPrefix(res.Reply, "OK") {
				t.Fatalf("accept reply %q does not start with OK", res.Reply)
			}
			if want != mechs.Accept && !strings.HasPrefix(res.Reply, "NO") {
				t.Fatalf("reject reply %q does not start with NO", res.Reply)
			}
			for _, pw := range []string{fx.Good.Password.Reveal(), wrong.Password.Reveal()} {
				if strings.Contains(res.Reply, pw) || strings.Contains(res.Reason, pw) {
					t.Fatalf("result carries the password: %+v", res)
				}
			}
		})
	}
	check("good", fx.Good, mechs.Accept)
	check("wrong password", wrong, mechs.Reject)
	check("unknown user", unknown, mechs.Reject)
	// a password that is a prefix or extension of the right one must fail
	prefix := fx.Good
	if p := fx.Good.Password.Reveal(); len(p) > 1 {
		prefix.Password = mechs.Password(p[:len(p)-1])
		check("password prefix", prefix, mechs.Reject)
	}
	longer := fx.Good
	longer.Password = mechs.Password(fx.Good.Password.Reveal() + "x")
	check("password extended", longer, mechs.Reject)

	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan string, 64)
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				req, want := fx.Good, mechs.Accept
				if i%2 == 1 {
					req, want = wrong, mechs.Reject
				}
				res, err := m.Authenticate(ctx, req)
				if err != nil || res.Verdict != want {
					errs <- res.Verdict.String()
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Errorf("concurrent request got %s", e)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		done := make(chan mechs.Result, 1)
		go func() { r, _ := m.Authenticate(cctx, wrong); done <- r }()
		select {
		case r := <-done:
			if r.Verdict == mechs.Accept {
				t.Fatal("wrong password accepted with a cancelled context")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Authenticate ignored a cancelled context")
		}
	})

	t.Run("no password in logs", func(t *testing.T) {
		out := logBuf.String()
		for _, pw := range []string{fx.Good.Password.Reveal(), wrong.Password.Reveal()} {
			if strings.Contains(out, pw) {
				t.Fatalf("log contains a password:\n%s", out)
			}
		}
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	_ mechs.Mechanism = Func{}
	_ mechs.Mechanism = Static{}
)
