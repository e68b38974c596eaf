package protocol

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// Client errors, worded as libsasl and testsaslauthd word them.
var (
	ErrWrite       = errors.New("write failed")
	ErrSizeRead    = errors.New("size read failed")
	ErrBadResponse = errors.New("bad response from saslauthd")
	ErrRead        = errors.New("read failed")
)

// Client talks to a saslauthd-compatible daemon the way libsasl does: one
// connection per request, the whole request in one write, no half-close.
type Client struct {
	// Path is the socket, e.g. /run/saslauthd/mux.
	Path string
	// Timeout bounds the whole exchange (0: only ctx bounds it).
	Timeout time.Duration
}

// ConnectError wraps a failure to reach the socket; its Err is the system
// error, which testsaslauthd prints as "connect() : <strerror>".
type ConnectError struct{ Err error }

func (e *ConnectError) Error() string { return "connect() : " + errText(e.Err) }
func (e *ConnectError) Unwrap() error { return e.Err }

// errText is the strerror part of a dial error ("No such file or
// directory"), without Go's "dial unix …:" decoration.
func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" && s[0] >= 'a' && s[0] <= 'z' {
			s = string(s[0]-'a'+'A') + s[1:]
		}
		return s
	}
	return err.Error()
}

// Do sends req and returns the reply text ("OK", "NO ...").
func (c *Client) Do(ctx context.Context, req Request) (string, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	conn, err := dial(ctx, c.Path)
	if err != nil {
		return "", &ConnectError{Err: err}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	return Exchange(conn, req)
}

// dial connects like libsasl's blocking connect(2): when the listen backlog
// is full Linux answers a non-blocking unix connect with EAGAIN, where a
// blocking one waits, so wait and retry until ctx ends.
func dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	wait := 100 * time.Microsecond
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil || !errors.Is(err, syscall.EAGAIN) {
			return conn, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// Exchange sends req on an open connection and reads the reply.
func Exchange(rw io.ReadWriter, req Request) (string, error) {
	buf, err := AppendRequest(make([]byte, 0, 1100), req)
	if err != nil {
		return "", err
	}
	if _, err := rw.Write(buf); err != nil {
		return "", fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return ReadReply(rw)
}

// ReadReply reads one counted reply as libsasl does: a length under 2 is a
// bad response; at most MaxReply bytes of text are kept.
func ReadReply(r io.Reader) (string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", fmt.Errorf("%w: %w", ErrSizeRead, err)
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n < 2 {
		return "", ErrBadResponse
	}
	n = min(n, MaxReply)
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("%w: %w", ErrRead, err)
	}
	return string(b), nil
}
