package commands

import (
	"context"
	"log/slog"
	"time"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/daemon/metrics"
)

// metricsShutdownGrace bounds the wait for scrapes in progress at exit.
const metricsShutdownGrace = 2 * time.Second

// metricsStarter returns the daemon.Config.Start hook that serves the
// --metrics endpoint (addr "" is off). daemon.Run calls it in the process
// that serves, after the pid lock and the socket: a parent that detaches
// never holds the port its child needs, and a second instance is refused
// as "another instance" rather than on the busy port. A bad or busy
// address stops the start.
func metricsStarter(addr string, srv *daemon.Server) func(*slog.Logger) (func(), error) {
	if addr == "" {
		return nil
	}
	return func(log *slog.Logger) (func(), error) {
		m := metrics.New(Version)
		m.Attach(srv)
		ep, err := m.Listen(addr, log)
		if err != nil {
			return nil, err
		}
		log.Info("metrics: serving " + ep.URL() + " (no authentication)")
		return func() {
			ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownGrace)
			defer cancel()
			if err := ep.Shutdown(ctx); err != nil {
				log.Warn(err.Error())
			}
		}, nil
	}
}
