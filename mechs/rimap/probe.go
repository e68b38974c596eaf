package rimap

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"maps"

	"github.com/saslgate/saslgate/mechs"
)

// ProbeResult is what Probe found for one configured server.
type ProbeResult struct {
	Server Server
	// Err is nil when the server greeted (and, with TLS, its certificate
	// verified) as a request's connection must; else the reason a request
	// would fail, in the words the daemon logs.
	Err error
	// Certificate is set when Err is about the server's certificate (not
	// trusted, wrong name, expired) rather than about reaching the server.
	Certificate bool
	// Config is set when Err is a configuration error: the certificate,
	// STARTTLS refused, or LOGINDISABLED on a plaintext connection.
	Config bool
}

// Probe opens a connection to each configured server exactly as a request
// would (resolve now, connect and greeting under the configured timeouts,
// STARTTLS or implicit TLS with the configured verification), then logs out
// without sending a LOGIN: no credential leaves the machine. It is for
// checking a configuration (saslgate doctor); an error means the options do
// not parse.
func Probe(ctx context.Context, opts mechs.Options) ([]ProbeResult, error) {
	// no pool: it would dial in the background and outlive the probe
	values := maps.Clone(opts.Values)
	if values == nil {
		values = map[string]string{}
	}
	values[KeyPoolSize] = "0"
	m, err := New(mechs.Options{Option: opts.Option, Values: values}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	out := make([]ProbeResult, 0, len(m.cfg.Servers))
	for i, s := range m.cfg.Servers {
		var tc *tls.Config
		if m.tls != nil {
			tc = m.tls[i]
		}
		r := ProbeResult{Server: s}
		c, res, cfgErr := dialServer(ctx, s, m.cfg, tc)
		if c != nil {
			c.logout()
		} else {
			r.Err = errors.New(res.Reason)
			r.Config = cfgErr
			// only a failed handshake answers NoContact among the configuration errors
			r.Certificate = cfgErr && res.Reply == ReplyNoContact
		}
		out = append(out, r)
	}
	return out, nil
}
