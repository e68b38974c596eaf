package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/saslgate/saslgate/daemon/stats"
)

// exporterShutdownGrace bounds the wait for scrapes in progress at exit.
const exporterShutdownGrace = 2 * time.Second

// parentPoll is how often the exporter checks that its daemon still runs.
const parentPoll = time.Second

// RunExporter is saslgate-metrics: it serves the endpoint on ln with the
// snapshots of the daemon at the other end of snap, whose process is pid
// (the exporter's parent). It returns when ctx ends, when the daemon is
// gone (its socket fails, or the exporter has another parent), or when the
// endpoint fails; the daemon then starts a new exporter.
func RunExporter(ctx context.Context, ln net.Listener, snap net.Conn, pid int, logger *slog.Logger) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	src := ConnSource(snap)
	m := NewRemote(func() (stats.Snapshot, error) {
		s, err := src()
		if err != nil { // the stream is out of step or closed: start over
			cancel(fmt.Errorf("metrics: the daemon's snapshots: %w", err))
		}
		return s, err
	}, pid)
	ep := m.Serve(ln, logger)
	go func() {
		t := time.NewTicker(parentPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != pid {
					cancel(errors.New("metrics: the daemon is gone"))
					return
				}
			}
		}
	}()
	select {
	case <-ctx.Done():
	case <-ep.done:
		cancel(fmt.Errorf("metrics: the endpoint stopped: %w", ep.serveErr))
	}
	sctx, scancel := context.WithTimeout(context.Background(), exporterShutdownGrace)
	defer scancel()
	err := ep.Shutdown(sctx)
	snap.Close()
	if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
		return errors.Join(cause, err)
	}
	return err
}
