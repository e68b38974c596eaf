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

// startMetrics starts the --metrics endpoint (addr "" is off) for the
// server cfg describes, in the process that will serve it: a parent that
// detaches would hold the port its child needs. The address is bound now,
// so a bad or busy one stops the start; stop shuts the endpoint down once
// daemon.Run has returned (SIGTERM).
func startMetrics(addr string, cfg *daemon.Config) (stop func(), err error) {
	if addr == "" || daemon.Detaches(*cfg) {
		return func() {}, nil
	}
	m := metrics.New(Version)
	m.Attach(cfg.Server)
	log := cfg.Server.Logger
	ep, err := m.Listen(addr, log)
	if err != nil {
		return nil, err
	}
	// Run calls Build first, once its logging is set up for the mode it
	// runs in: the address is logged there, among the start-up lines.
	build, announced := cfg.Build, false
	cfg.Build = func(l *slog.Logger) (*daemon.Policy, error) {
		if !announced {
			announced = true
			l.Info("metrics: serving " + ep.URL() + " (no authentication)")
		}
		return build(l)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownGrace)
		defer cancel()
		if err := ep.Shutdown(ctx); err != nil {
			log.Warn(err.Error())
		}
	}, nil
}
