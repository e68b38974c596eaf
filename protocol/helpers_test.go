package protocol_test

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// guard is how long a test waits for something that must happen promptly
// before failing. It is a hang detector, not a speed assertion.
const guard = 2 * time.Second

// wire builds the wire form of counted strings by hand, independently of
// AppendRequest, so tests of the reader do not trust the writer.
func wire(fields ...string) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// cat concatenates byte slices.
func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// hdr is a bare 2-byte big-endian length header.
func hdr(n int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(n)) }

func rep(s string, n int) string { return strings.Repeat(s, n) }

// sockPath returns a fresh socket path short enough for sun_path (108
// bytes); t.TempDir embeds the test name and can exceed it.
func sockPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "proto")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "mux")
}

// unixPair returns the two ends of a real AF_UNIX stream connection made
// through net.Listen/net.Dial. Both are closed when the test ends, which
// also unblocks any goroutine still reading them.
func unixPair(t testing.TB) (srv, cli *net.UnixConn) {
	t.Helper()
	ln, err := net.Listen("unix", sockPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.UnixConn), c.(*net.UnixConn)
}

// within runs f in a goroutine and fails the test if it has not returned
// after d. On failure the goroutine is left blocked; the test's cleanups
// close the connections it uses.
func within[T any](t testing.TB, d time.Duration, what string, f func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
		panic("unreachable")
	}
}

type readResult struct {
	req protocol.Request
	err error
}

// readWithin calls r.ReadRequest, failing the test if it blocks for guard.
func readWithin(t testing.TB, r *protocol.Reader) (protocol.Request, error) {
	t.Helper()
	res := within(t, guard, "ReadRequest", func() readResult {
		req, err := r.ReadRequest()
		return readResult{req, err}
	})
	return res.req, res.err
}

type drainResult struct {
	n   int64
	err error
}

// drainWithin calls r.Drain, failing the test if it blocks for guard.
func drainWithin(t testing.TB, r *protocol.Reader, limit int64) (int64, error) {
	t.Helper()
	res := within(t, guard, "Drain", func() drainResult {
		n, err := r.Drain(limit)
		return drainResult{n, err}
	})
	return res.n, res.err
}
