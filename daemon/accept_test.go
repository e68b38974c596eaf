package daemon

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/mechstest"
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

// TestShutdownServesTheWholeBacklog: the clients queued in the listen
// backlog when Shutdown begins are all answered, however few acceptors
// and connection slots take them: none is reset by the listener's close.
func TestShutdownServesTheWholeBacklog(t *testing.T) {
	gate := make(chan struct{})
	var in atomic.Int32
	m := mechstest.Func{MechName: "gate", Fn: func(ctx context.Context, r mechs.Request) (mechs.Result, error) {
		in.Add(1)
		<-gate
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}, nil
	}}
	s := &Server{MaxConns: 2, acceptors: 1}
	sock, _ := startServer(t, s, m)
	const n = 12
	errs := make(chan error, n)
	replies := make(chan string, n)
	ask := func() {
		c := &protocol.Client{Path: sock, Timeout: 20 * time.Second}
		r, err := c.Do(context.Background(), protocol.Request{Login: "u", Password: "p"})
		if err != nil {
			errs <- err
			return
		}
		replies <- r
	}
	for range 2 {
		go ask()
	}
	for in.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	for range n - 2 { // the slots are taken: these wait in the backlog
		go ask()
	}
	time.Sleep(100 * time.Millisecond)
	stopped := make(chan error, 1)
	go func() { stopped <- s.Shutdown(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	close(gate)
	for range n {
		select {
		case err := <-errs:
			t.Errorf("a client queued at Shutdown: %v", err)
		case r := <-replies:
			if r != "OK" {
				t.Errorf("reply %q", r)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a client got nothing")
		}
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}
