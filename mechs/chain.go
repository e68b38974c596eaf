package mechs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
)

// ReplyInternal is saslauthd's reply when a mechanism fails in a way it has
// no text for (do_auth's "internal mechanism failure").
const ReplyInternal = "NO internal mechanism failure"

// Chain tries mechanisms in order with Courier authdaemond's rule: Accept
// stops with the accepting mechanism's reply, Reject tries the next one,
// TempFail (or an error, a panic, a malformed result) stops with NO. When
// every mechanism rejects, the last rejection is the answer. A chain of one
// behaves exactly as that mechanism.
type Chain struct {
	steps  []Mechanism
	name   string
	logger *slog.Logger
}

// NewChain builds a chain; it panics on an empty list (a programmer error:
// the command line refuses an empty -a).
func NewChain(logger *slog.Logger, steps ...Mechanism) *Chain {
	if len(steps) == 0 {
		panic("mechs: empty chain")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	names := make([]string, len(steps))
	for i, m := range steps {
		names[i] = m.Name()
	}
	return &Chain{steps: steps, name: strings.Join(names, ","), logger: logger}
}

// Name is the comma-separated list of the chain's mechanisms, the form -a
// takes and the auth failure line's [mech=...] shows.
func (c *Chain) Name() string { return c.name }

// Steps returns the mechanisms in order.
func (c *Chain) Steps() []Mechanism { return append([]Mechanism(nil), c.steps...) }

// Authenticate runs the chain. It never returns an error: technical failures
// become a TempFail result whose Reason says what happened.
func (c *Chain) Authenticate(ctx context.Context, req Request) (Result, error) {
	trace, _ := ctx.Value(traceKey{}).(func(string))
	step := func(msg, reason string) {
		c.logger.LogAttrs(ctx, slog.LevelDebug, msg, slog.String("reason", reason))
		if trace != nil {
			trace(msg)
		}
	}
	var last Result
	for i, m := range c.steps {
		res := runStep(ctx, m, req)
		res.By = m.Name()
		switch res.Verdict {
		case Accept:
			step(m.Name()+": ACCEPT", res.Reason)
			return res, nil
		case Reject:
			if i < len(c.steps)-1 {
				step(m.Name()+": REJECT - try next", res.Reason)
			} else {
				step(m.Name()+": REJECT", res.Reason)
			}
			last = res
		default:
			step(m.Name()+": TEMPFAIL - stop", res.Reason)
			return res, nil
		}
	}
	return last, nil
}

type traceKey struct{}

// WithTrace returns a context under which a Chain reports each mechanism it
// tries and its verdict ("sasldb: REJECT - try next", "pam: ACCEPT") to fn,
// for the login-debug log.
func WithTrace(ctx context.Context, fn func(step string)) context.Context {
	return context.WithValue(ctx, traceKey{}, fn)
}

// Close closes every mechanism that holds resources.
func (c *Chain) Close() error {
	var errs []error
	for _, m := range c.steps {
		if cl, ok := m.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	return errors.Join(errs...)
}

// runStep calls one mechanism and normalises what comes back, so that
// nothing a mechanism does (error, panic, forgotten verdict, reply that
// contradicts the verdict) can turn into a wrong OK.
func runStep(ctx context.Context, m Mechanism, req Request) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			res = Result{Verdict: TempFail, Reply: ReplyInternal,
				Reason: fmt.Sprintf("panic: %v\n%s", p, debug.Stack())}
		}
	}()
	if err := ctx.Err(); err != nil {
		return Result{Verdict: TempFail, Reply: ReplyInternal, Reason: err.Error()}
	}
	res, err := m.Authenticate(ctx, req)
	if err != nil {
		reply := res.Reply
		if !strings.HasPrefix(reply, "NO") {
			reply = ReplyInternal
		}
		return Result{Verdict: TempFail, Reply: reply, Reason: err.Error()}
	}
	okReply := strings.HasPrefix(res.Reply, "OK")
	switch {
	case res.Verdict == Accept && okReply:
	case (res.Verdict == Reject || res.Verdict == TempFail) && strings.HasPrefix(res.Reply, "NO"):
	default:
		// saslauthd: "mechanism returned unknown response"
		return Result{Verdict: TempFail, Reply: ReplyInternal,
			Reason: fmt.Sprintf("mechanism returned unknown response: verdict %v", res.Verdict)}
	}
	return res
}

var (
	_ Mechanism = (*Chain)(nil)
	_ io.Closer = (*Chain)(nil)
)
