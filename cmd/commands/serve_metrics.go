package commands

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/daemon/stats"
)

// metricsStarter returns the daemon.Config.Start hook that serves the
// --metrics endpoint (addr "" is off). daemon.Run calls it in the process
// that serves, after the pid lock and the socket: a parent that detaches
// never holds the port its child needs, and a second instance is refused
// as "another instance" rather than on the busy port. A bad or busy
// address, or a missing exporter, stops the start.
//
// The daemon binds the address and counts (daemon/stats); the endpoint
// itself is the saslgate-metrics process (daemon/metrics), which asks for
// the counts at each scrape.
func metricsStarter(addr string, srv *daemon.Server) func(*slog.Logger) (func(), error) {
	if addr == "" {
		return nil
	}
	return func(log *slog.Logger) (func(), error) {
		path, err := stats.ExporterPath()
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		stats.WarnIfExposed(log, ln.Addr())
		url := "http://" + ln.Addr().String() + "/metrics"
		st := stats.New(Version)
		st.Attach(srv)
		exp, err := stats.StartExporter(path, ln.(*net.TCPListener), st, log)
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		log.Info("metrics: serving " + url + " (no authentication)")
		return exp.Stop, nil
	}
}
