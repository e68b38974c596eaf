// Command saslgate-metrics serves saslgate's Prometheus endpoint
// (--metrics ADDR) in a process of its own, started by the daemon: the
// daemon keeps no HTTP server, and its executable stays without the
// Prometheus stack. It is not run by hand: the daemon passes the listening
// socket as descriptor 3 and its snapshot socket as descriptor 4.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/saslgate/saslgate/daemon/metrics"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		// the daemon adds its own time and level to each line
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{}
			}
			return a
		},
	}))
	if err := run(logger); err != nil {
		logger.Error(err.Error())
		os.Exit(1)
	}
}

func run(logger *slog.Logger) error {
	lf, sf := os.NewFile(3, "metrics listener"), os.NewFile(4, "snapshots")
	defer lf.Close() // net dups them
	defer sf.Close()
	ln, err := net.FileListener(lf)
	if err != nil {
		return fmt.Errorf("saslgate-metrics: descriptor 3 (started by saslgate serve --metrics only): %w", err)
	}
	snap, err := net.FileConn(sf)
	if err != nil {
		return fmt.Errorf("saslgate-metrics: descriptor 4 (started by saslgate serve --metrics only): %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return metrics.RunExporter(ctx, ln, snap, os.Getppid(), logger)
}
