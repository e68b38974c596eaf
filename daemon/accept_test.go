package daemon

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// TestRawConn_SlowClientMoves: a request whose bytes come slower than
// rawReadWait is served all the same (its connection moves to the
// netpoller), also when it pauses inside a field.
func TestRawConn_SlowClientMoves(t *testing.T) {
	sock, _ := startServer(t, &Server{}, users)
	tests := []struct {
		name  string
		parts [][]byte
		want  string
	}{
		{"whole", [][]byte{wire("alice", "secret", "imap", "")}, "OK"},
		{"pause before the request", [][]byte{nil, wire("alice", "secret", "imap", "")}, "OK"},
		{"pause inside the password", [][]byte{wire("alice", "secret", "imap", "")[:9], wire("alice", "secret", "imap", "")[9:]}, "OK"},
		{"wrong password, slowly", [][]byte{wire("bob", "nope")[:4], wire("bob", "nope")[4:], wire("imap", "")}, "NO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			for i, p := range tt.parts {
				if i > 0 {
					time.Sleep(4 * rawReadWait)
				}
				if _, err := c.Write(p); err != nil {
					t.Fatal(err)
				}
			}
			got, err := protocol.ReadReply(c)
			if err != nil {
				t.Fatal(err)
			}
			if got[:2] != tt.want {
				t.Fatalf("reply %q, want %s", got, tt.want)
			}
			if _, err := io.ReadAll(c); err != nil {
				t.Fatalf("after the reply: %v, want EOF", err)
			}
		})
	}
}

// TestRawConn_ShutdownCutsSlowReader: Shutdown gives a client that is
// still sending its request the grace it gives any, then closes it, whether
// its connection is still on the acceptor or already moved.
func TestRawConn_ShutdownCutsSlowReader(t *testing.T) {
	s := &Server{}
	sock, _ := startServer(t, s, users)
	var conns []net.Conn
	for _, wait := range []time.Duration{0, 4 * rawReadWait} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte{0})
		time.Sleep(wait)
		conns = append(conns, c)
	}
	t0 := time.Now()
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > shutdownReadGrace+2*time.Second {
		t.Errorf("Shutdown took %v with two stalled clients, want about the read grace (%v)", d, shutdownReadGrace)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("client %d: %v, want EOF", i, err)
		}
	}
}
