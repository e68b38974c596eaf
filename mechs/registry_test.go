package mechs_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/saslgate/saslgate/mechs"
)

type ptrMech struct{}

func (*ptrMech) Name() string { return "ptr" }
func (*ptrMech) Authenticate(context.Context, mechs.Request) (mechs.Result, error) {
	return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}, nil
}

// Constructor: a failed typed constructor gives a nil Mechanism, not an
// interface holding a nil pointer that would pass a "!= nil" check.
func TestConstructor(t *testing.T) {
	boom := errors.New("boom")
	f := mechs.Constructor(func(mechs.Options, *slog.Logger) (*ptrMech, error) { return nil, boom })
	if m, err := f(mechs.Options{}, nil); m != nil || !errors.Is(err, boom) {
		t.Fatalf("failed constructor: %#v, %v", m, err)
	}
	f = mechs.Constructor(func(mechs.Options, *slog.Logger) (*ptrMech, error) { return &ptrMech{}, nil })
	if m, err := f(mechs.Options{}, nil); err != nil || m == nil || m.Name() != "ptr" {
		t.Fatalf("constructor: %#v, %v", m, err)
	}
}
