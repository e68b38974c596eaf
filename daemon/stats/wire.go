package stats

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"
)

// The snapshot exchange on the socket between the daemon and its exporter:
// the exporter writes one request byte, the daemon answers with a 4-byte
// big-endian length and the Snapshot in JSON.
const (
	request = '?'
	// MaxSnapshot bounds an answer: a snapshot is a few KiB.
	MaxSnapshot = 1 << 20
	// ioTimeout bounds writing an answer, and reading one.
	ioTimeout = 5 * time.Second
)

// Serve answers snapshot requests on c until the exporter closes it, sends
// something else, or ctx ends; it closes c.
func (st *Stats) Serve(ctx context.Context, c net.Conn) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	var b [1]byte
	// no read deadline: scrapes may be minutes apart; ctx's end sets one
	for {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("stats: read a request: %w", err)
		}
		if b[0] != request {
			return fmt.Errorf("stats: unexpected request byte %#x", b[0])
		}
		body, err := json.Marshal(st.Snapshot())
		if err != nil {
			return fmt.Errorf("stats: %w", err)
		}
		msg := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
		_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
		if _, err := c.Write(append(msg, body...)); err != nil {
			return fmt.Errorf("stats: write a snapshot: %w", err)
		}
	}
}

// Fetch asks the daemon at the other end of c for a snapshot. Calls must
// not overlap.
func Fetch(c net.Conn) (Snapshot, error) {
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte{request}); err != nil {
		return Snapshot{}, fmt.Errorf("stats: ask for a snapshot: %w", err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return Snapshot{}, fmt.Errorf("stats: read a snapshot: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxSnapshot {
		return Snapshot{}, fmt.Errorf("stats: a snapshot of %d bytes, more than %d", n, MaxSnapshot)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		return Snapshot{}, fmt.Errorf("stats: read a snapshot: %w", err)
	}
	var snap Snapshot
	if err := json.Unmarshal(body, &snap); err != nil {
		return Snapshot{}, fmt.Errorf("stats: %w", err)
	}
	return snap, nil
}

// WarnIfExposed logs a warning when the endpoint's address is not a
// loopback one: the endpoint has no authentication.
func WarnIfExposed(logger *slog.Logger, addr net.Addr) {
	if tcp, ok := addr.(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && logger != nil {
		logger.Warn("metrics: " + addr.String() + " is not a loopback address; the endpoint has no authentication")
	}
}
