package mechs

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// Options are the settings a mechanism gets from the command line and the
// config file. Option is saslauthd's -O string (rimap's host, for instance);
// Values holds named settings ("sasldb_path", ...).
type Options struct {
	Option string
	Values map[string]string
}

// Get returns a named setting or def.
func (o Options) Get(key, def string) string {
	if v, ok := o.Values[key]; ok {
		return v
	}
	return def
}

// Factory builds a mechanism. It runs at start-up and on reload, before any
// request, so it reports configuration errors rather than deferring them.
type Factory func(opts Options, logger *slog.Logger) (Mechanism, error)

type registration struct {
	name  string
	order int
	f     Factory
}

var (
	regMu    sync.RWMutex
	registry = map[string]registration{}
)

// Register makes a mechanism available under name. order places it in the
// list saslauthd -v prints (saslauthd's compile order: sasldb 10, getpwent
// 20, pam 40, rimap 50, shadow 60, others after). Call it from init only; it
// panics on a programmer error.
func Register(name string, order int, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	if name == "" || f == nil {
		panic("mechs: Register with empty name or nil factory")
	}
	if _, dup := registry[name]; dup {
		panic("mechs: Register called twice for " + name)
	}
	registry[name] = registration{name: name, order: order, f: f}
}

// Constructor adapts a mechanism package's typed constructor, New(opts,
// logger) (*T, error), to a Factory, so that a failed New yields a nil
// Mechanism rather than a non-nil interface holding a nil pointer.
func Constructor[M Mechanism](newM func(Options, *slog.Logger) (M, error)) Factory {
	return func(o Options, l *slog.Logger) (Mechanism, error) {
		m, err := newM(o, l)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
}

// New builds the mechanism registered under name, matched case-insensitively
// as saslauthd does.
func New(name string, o Options, l *slog.Logger) (Mechanism, error) {
	regMu.RLock()
	r, ok := registry[strings.ToLower(name)]
	regMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknown, name)
	}
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	m, err := r.f(o, l.With("mech", r.name))
	if err != nil {
		// saslauthd's own words, which admins grep for
		return nil, fmt.Errorf("failed to initialize mechanism %s: %w", r.name, err)
	}
	return m, nil
}

// Known reports whether name is registered.
func Known(name string) bool {
	regMu.RLock()
	defer regMu.RUnlock()
	_, ok := registry[strings.ToLower(name)]
	return ok
}

// Names lists the registered mechanisms in saslauthd's -v order.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	rs := make([]registration, 0, len(registry))
	for _, r := range registry {
		rs = append(rs, r)
	}
	// insertion sort: the list is tiny
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && (rs[j].order < rs[j-1].order || rs[j].order == rs[j-1].order && rs[j].name < rs[j-1].name); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.name
	}
	return out
}
