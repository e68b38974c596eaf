package daemon

import (
	"time"

	"github.com/saslgate/saslgate/mechs"
)

// Observer is told what the Server does, for metrics (daemon/metrics
// implements it). Its methods are called on the request path, from many
// goroutines at once, and must be cheap: no I/O, no lock held for long. A
// nil Server.Observer costs nothing.
type Observer interface {
	// Request is called once per well-formed request, when its answer is
	// known and before any failure delay is waited.
	Request(RequestEvent)
	// Reply is called for every reply written to a client: the answers to
	// requests and the protocol's own refusals.
	Reply(ok bool)
	// ConnError is called when a request is refused by the protocol or a
	// connection ends without a reply.
	ConnError(ConnError)
}

// The RequestEvent.Mech of answers no single mechanism gave.
const (
	MechCache = "cache" // a cache entry answered; no back end was asked for this request
	MechNone  = "none"  // no mechanism decided (no chain, an internal error)
)

// RequestEvent describes one answered request.
type RequestEvent struct {
	// Mech is the mechanism that decided (the chain step, or a rewrite
	// rule such as login_chars), MechCache or MechNone.
	Mech    string
	Verdict mechs.Verdict
	// Duration is the time to the answer once the request is rewritten:
	// the cache, the wait for a -n slot and the chain, not the failure
	// delay.
	Duration time.Duration
	// Delay is the failure delay and penalty the answer waits; 0 if none.
	Delay time.Duration
}

// ConnError is why a connection got a refusal or no reply at all.
type ConnError uint8

const (
	// Refused with a NO by the protocol, before any mechanism.
	ConnFieldTooLong ConnError = iota + 1
	ConnNullLogin
	ConnNullPassword
	// Closed without a reply.
	ConnBadFrame    // the client closed mid-request or sent a short frame
	ConnReadTimeout // the request did not arrive within the read timeout
	ConnReadError   // any other read error
	ConnWriteError  // the reply could not be written
	ConnPanic       // serving the connection panicked
)

// ConnErrors lists every ConnError, for pre-registering metrics.
func ConnErrors() []ConnError {
	return []ConnError{ConnFieldTooLong, ConnNullLogin, ConnNullPassword,
		ConnBadFrame, ConnReadTimeout, ConnReadError, ConnWriteError, ConnPanic}
}

func (e ConnError) String() string {
	switch e {
	case ConnFieldTooLong:
		return "field_too_long"
	case ConnNullLogin:
		return "null_login"
	case ConnNullPassword:
		return "null_password"
	case ConnBadFrame:
		return "bad_frame"
	case ConnReadTimeout:
		return "read_timeout"
	case ConnReadError:
		return "read_error"
	case ConnWriteError:
		return "write_error"
	case ConnPanic:
		return "panic"
	}
	return "invalid"
}

// ServerStats is the Server's state at one moment, for metrics read at
// scrape time.
type ServerStats struct {
	OpenConns int // connections accepted and not yet closed
	MechCalls int // mechanism chains running (cache hits are not calls)
}

// Stats returns the current counts.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	n := len(s.active)
	s.mu.Unlock()
	return ServerStats{OpenConns: n, MechCalls: int(s.calls.Load())}
}
