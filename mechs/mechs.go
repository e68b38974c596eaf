// Package mechs is the contract between the daemon and the authentication
// back ends ("mechanisms" in saslauthd's words): the Mechanism interface, the
// verdicts a mechanism can reach, a registry filled at init time, and Chain,
// which tries several mechanisms in order with Courier authdaemond's rule.
package mechs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Verdict is what a mechanism decided about one credential.
type Verdict uint8

const (
	// invalid is the zero value on purpose: a mechanism that forgets to set a
	// verdict fails closed (Chain treats it as TempFail and logs a bug).
	invalid Verdict = iota
	// Accept: the credentials are good. A chain stops and the client gets OK.
	Accept
	// Reject: this back end says no (unknown user, wrong password). A chain
	// tries the next mechanism.
	Reject
	// TempFail: the back end cannot decide now (down, timed out, broken
	// configuration). A chain stops and the client gets NO; it is never
	// turned into "bad password" by trying the next back end.
	TempFail
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "ACCEPT"
	case Reject:
		return "REJECT"
	case TempFail:
		return "TEMPFAIL"
	}
	return "INVALID"
}

// Password is a secret. It formats and logs as REDACTED so that a request
// printed by mistake never shows it; use Bytes or Reveal where the clear text
// is really needed.
type Password string

// Redacted is what a Password prints as.
const Redacted = "REDACTED"

func (Password) String() string               { return Redacted }
func (Password) GoString() string             { return Redacted }
func (Password) LogValue() slog.Value         { return slog.StringValue(Redacted) }
func (Password) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
func (p Password) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// Reveal returns the clear text. Call it only where the password is handed
// to a back end.
func (p Password) Reveal() string { return string(p) }

// Request is one credential to check, after the daemon's rewrite rules.
type Request struct {
	Login      string   // user name as the mechanism should see it (after -r)
	Password   Password // never empty when it reaches a mechanism
	Service    string   // the application's SASL service name (smtp, imap, ...)
	Realm      string   // the realm field as sent by the client (may be empty)
	ClientAddr string   // "ip;port" when the client sent the 5th field, else ""
}

// Result is a mechanism's answer.
type Result struct {
	Verdict Verdict
	// Reply is the exact text saslauthd would send for this outcome with a
	// single -a NAME, e.g. "OK", "NO", "NO Incorrect password". It must
	// start with "OK" exactly when Verdict is Accept.
	Reply string
	// Reason is extra detail for the log only (never sent to the client,
	// never containing the password).
	Reason string
	// By names the mechanism that decided; Chain sets it.
	By string
}

// Mechanism checks one credential.
//
// Authenticate returns a non-nil error only for a technical failure; Chain
// then treats the attempt as TempFail. A wrong password or unknown user is
// (Result{Verdict: Reject, ...}, nil). Implementations must honour ctx, must
// be safe for concurrent use, and must never put the password in Reply,
// Reason or an error. A mechanism holding resources implements io.Closer.
type Mechanism interface {
	Name() string
	Authenticate(ctx context.Context, req Request) (Result, error)
}

// Error prefixes err with the mechanism's package name, as every mechanism's
// errors are.
func Error(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("mechs/%s: %w", name, err)
}

// ErrUnknown is returned by New for a name nothing registered.
var ErrUnknown = errors.New("mechs: unknown authentication mechanism")

// Accepted, Rejected and TempFailed build results; reason is for the log.
func Accepted(reply string) Result { return Result{Verdict: Accept, Reply: reply} }

// Rejected: this back end says no; a chain tries the next one.
func Rejected(reply, reason string) Result {
	return Result{Verdict: Reject, Reply: reply, Reason: reason}
}

// TempFailed: the back end cannot answer now; a chain stops.
func TempFailed(reply, reason string) Result {
	return Result{Verdict: TempFail, Reply: reply, Reason: reason}
}

// Cancelled is the result for a request whose ctx ended before the back end
// answered: saslauthd has no such case, so it gets the generic failure
// reply.
func Cancelled(name string, err error) Result {
	return TempFailed(ReplyInternal, "mechs/"+name+": "+err.Error())
}

// IsContextErr reports whether err is the end of a context.
func IsContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
