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
	// CertNames are the DNS names and IP addresses of the certificate the
	// server presented, when Certificate is set: what rimap_server_name
	// could say.
	CertNames []string
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
			if r.Certificate {
				r.CertNames = certNames(ctx, s, m.cfg, tc)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// certNames connects once more, accepting any certificate, to read the
// names the server's certificate carries; no LOGIN is sent.
func certNames(ctx context.Context, s Server, cfg Config, tc *tls.Config) []string {
	var names []string
	insecure := tc.Clone()
	insecure.InsecureSkipVerify = true
	insecure.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 {
			cert := cs.PeerCertificates[0]
			names = append(names, cert.DNSNames...)
			for _, ip := range cert.IPAddresses {
				names = append(names, ip.String())
			}
		}
		return nil
	}
	if c, _, _ := dialServer(ctx, s, cfg, insecure); c != nil {
		c.logout()
	}
	return names
}
