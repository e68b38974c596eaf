package mechs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/mechstest"
)

func fixed(name string, v mechs.Verdict, reply string, calls *[]string) mechs.Mechanism {
	return mechstest.Func{MechName: name, Fn: func(context.Context, mechs.Request) (mechs.Result, error) {
		*calls = append(*calls, name)
		return mechs.Result{Verdict: v, Reply: reply}, nil
	}}
}

func TestChain_Rule(t *testing.T) {
	const (
		A = mechs.Accept
		R = mechs.Reject
		T = mechs.TempFail
	)
	reply := map[mechs.Verdict]string{A: "OK", R: "NO", T: "NO [ALERT] down"}
	tests := []struct {
		verdicts  []mechs.Verdict
		wantV     mechs.Verdict
		wantBy    string
		wantCalls string
	}{
		{[]mechs.Verdict{A}, A, "m0", "m0"},
		{[]mechs.Verdict{R}, R, "m0", "m0"},
		{[]mechs.Verdict{T}, T, "m0", "m0"},
		{[]mechs.Verdict{A, R}, A, "m0", "m0"},
		{[]mechs.Verdict{R, A}, A, "m1", "m0,m1"},
		{[]mechs.Verdict{R, R}, R, "m1", "m0,m1"},
		{[]mechs.Verdict{T, A}, T, "m0", "m0"}, // a back end down is never "try the next"
		{[]mechs.Verdict{R, T, A}, T, "m1", "m0,m1"},
		{[]mechs.Verdict{R, R, A}, A, "m2", "m0,m1,m2"},
	}
	for i, tc := range tests {
		var calls []string
		var steps []mechs.Mechanism
		for j, v := range tc.verdicts {
			steps = append(steps, fixed(fmt.Sprintf("m%d", j), v, reply[v], &calls))
		}
		res, err := mechs.NewChain(nil, steps...).Authenticate(context.Background(), mechs.Request{Login: "u", Password: "p"})
		if err != nil {
			t.Fatalf("test %d: %v", i, err)
		}
		if res.Verdict != tc.wantV || res.By != tc.wantBy || strings.Join(calls, ",") != tc.wantCalls {
			t.Errorf("test %d %v: got %v by %s calls %v, want %v by %s calls %s", i, tc.verdicts,
				res.Verdict, res.By, calls, tc.wantV, tc.wantBy, tc.wantCalls)
		}
		if res.Reply != reply[tc.wantV] {
			t.Errorf("test %d: reply %q, want %q", i, res.Reply, reply[tc.wantV])
		}
	}
}

// Nothing a broken mechanism does can become an OK, and a TempFail stops
// the chain.
func TestChain_FailsClosed(t *testing.T) {
	accept := mechstest.Static{MechName: "next", Users: map[string]string{"u": "p"}}
	broken := map[string]mechstest.Func{
		"error": {MechName: "b", Fn: func(context.Context, mechs.Request) (mechs.Result, error) {
			return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}, errors.New("boom")
		}},
		"panic": {MechName: "b", Fn: func(context.Context, mechs.Request) (mechs.Result, error) { panic("boom") }},
		"zero verdict": {MechName: "b", Fn: func(context.Context, mechs.Request) (mechs.Result, error) {
			return mechs.Result{Reply: "OK"}, nil
		}},
		"accept with NO": {MechName: "b", Fn: func(context.Context, mechs.Request) (mechs.Result, error) {
			return mechs.Result{Verdict: mechs.Accept, Reply: "NO"}, nil
		}},
		"reject with OK": {MechName: "b", Fn: func(context.Context, mechs.Request) (mechs.Result, error) {
			return mechs.Result{Verdict: mechs.Reject, Reply: "OK"}, nil
		}},
	}
	for name, b := range broken {
		t.Run(name, func(t *testing.T) {
			res, _ := mechs.NewChain(nil, b, accept).Authenticate(context.Background(), mechs.Request{Login: "u", Password: "p"})
			if res.Verdict != mechs.TempFail || res.Reply != mechs.ReplyInternal {
				t.Fatalf("got %v %q, want TEMPFAIL %q", res.Verdict, res.Reply, mechs.ReplyInternal)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, _ := mechs.NewChain(nil, accept).Authenticate(ctx, mechs.Request{Login: "u", Password: "p"})
		if res.Verdict != mechs.TempFail {
			t.Fatalf("got %v", res.Verdict)
		}
	})
}

func TestChain_DebugTrace(t *testing.T) {
	var b strings.Builder
	l := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var calls []string
	c := mechs.NewChain(l, fixed("sasldb", mechs.Reject, "NO", &calls), fixed("pam", mechs.Accept, "OK", &calls))
	if c.Name() != "sasldb,pam" {
		t.Fatalf("name %q", c.Name())
	}
	c.Authenticate(context.Background(), mechs.Request{Login: "u", Password: "hunter2"})
	out := b.String()
	for _, want := range []string{"sasldb: REJECT - try next", "pam: ACCEPT"} {
		if !strings.Contains(out, want) {
			t.Errorf("trace lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Fatal("password in the trace")
	}
}

func TestPassword_Redacted(t *testing.T) {
	p := mechs.Password("hunter2")
	req := mechs.Request{Login: "u", Password: p}
	var b strings.Builder
	l := slog.New(slog.NewJSONHandler(&b, nil))
	l.Info("x", "pw", p, "req", req)
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%v %+v %#v %s %q %x", req, req, req, p, p, p), b.String()} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, fmt.Sprintf("%x", "hunter2")) {
			t.Fatalf("password leaked: %s", s)
		}
	}
	if p.Reveal() != "hunter2" {
		t.Fatal("Reveal")
	}
}

func TestStaticConformance(t *testing.T) {
	mechstest.Run(t, mechstest.Fixture{
		New: func(*testing.T, *slog.Logger) mechs.Mechanism {
			return mechstest.Static{MechName: "static", Users: map[string]string{"alice": "s3cret"}}
		},
		Good:         mechs.Request{Login: "alice", Password: "s3cret", Service: "imap"},
		UnknownLogin: "mallory",
	})
}

func TestRegistry(t *testing.T) {
	mechs.Register("zz-test", 99, func(mechs.Options, *slog.Logger) (mechs.Mechanism, error) {
		return mechstest.Static{MechName: "zz-test"}, nil
	})
	if !mechs.Known("ZZ-Test") {
		t.Fatal("case-insensitive lookup failed")
	}
	if _, err := mechs.New("nope", mechs.Options{}, nil); !errors.Is(err, mechs.ErrUnknown) {
		t.Fatalf("unknown: %v", err)
	}
	names := mechs.Names()
	if names[len(names)-1] != "zz-test" {
		t.Fatalf("order: %v", names)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate Register did not panic")
		}
	}()
	mechs.Register("zz-test", 1, func(mechs.Options, *slog.Logger) (mechs.Mechanism, error) { return nil, nil })
}
