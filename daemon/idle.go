package daemon

import (
	"context"
	"runtime/debug"
	"time"
)

// idleCheck is how often releaseWhenIdle looks at the accept count.
const idleCheck = 10 * time.Second

// releaseWhenIdle hands the heap that a burst left behind back to the
// operating system once the server has been idle for a full interval
// after serving: Go's scavenger returns it only slowly, and an admin
// reads a daemon that kept 20 MiB after a burst as a leak. It costs one
// garbage collection per burst, none while busy or while idle.
func releaseWhenIdle(ctx context.Context, s *Server, every time.Duration, release func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	seen, busy := s.Accepted(), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.Accepted()
		switch {
		case now != seen:
			busy = true
		case busy && s.Stats().OpenConns == 0:
			busy = false
			release()
		}
		seen = now
	}
}

// freeOSMemory is release for a running daemon.
func freeOSMemory() { debug.FreeOSMemory() }
