package daemon

import (
	"io"
	"net"
	"sync/atomic"
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

// TestAcceptors_AnswerWhatNeedsNoWait: on a UNIX socket a cache hit and a
// request refused by the protocol are answered by the acceptor that took
// the connection; a back-end call, a drain and a client that sends its
// request late go on to a connection goroutine; all get the reply they
// would get anyway.
func TestAcceptors_AnswerWhatNeedsNoWait(t *testing.T) {
	var calls atomic.Int32
	m := goodPassword("m", "OK", "NO", &calls)
	// a wait that no Dial-then-Write misses, however loaded the machine
	s := &Server{Cache: NewCache(100, time.Hour), queuedWait: time.Second}
	sock, _ := startServer(t, s, m)
	steps := []struct {
		name       string
		req        []byte
		delay      bool // send the request after the acceptor's wait
		want       string
		byAcceptor bool
	}{
		{"first login: the back end", wire("u", "good", "imap", ""), false, "OK", false},
		{"cache hit", wire("u", "good", "imap", ""), false, "OK", true},
		{"another hit", wire("u", "good", "imap", ""), false, "OK", true},
		{"empty login: refused at once", wire("", "x", "imap", ""), false, protocol.ReplyNullLogin, true},
		{"too long: refused at once, the rest drained on", append([]byte{0x01, 0x01}, make([]byte, 257)...), false, protocol.ReplyTooLong, false},
		{"hit, sent late", wire("u", "good", "imap", ""), true, "OK", false},
		{"wrong password", wire("u", "bad", "imap", ""), false, "NO", false},
		{"the back end again (the rejection dropped the entry)", wire("u", "good", "imap", ""), false, "OK", false},
	}
	for _, st := range steps {
		before := s.byAcceptor.Load()
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if st.delay {
			time.Sleep(s.queuedWait + 200*time.Millisecond)
		}
		if _, err := c.Write(st.req); err != nil {
			t.Fatal(err)
		}
		got, err := protocol.ReadReply(c)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if _, err := io.ReadAll(c); err != nil { // the server's close
			t.Fatalf("%s: after the reply: %v", st.name, err)
		}
		c.Close()
		if got != st.want {
			t.Fatalf("%s: reply %q, want %q", st.name, got, st.want)
		}
		// the counter moves before the close that the client saw
		if by := s.byAcceptor.Load() > before; by != st.byAcceptor {
			t.Errorf("%s: answered by the acceptor = %v, want %v", st.name, by, st.byAcceptor)
		}
	}
	if calls.Load() != 3 {
		t.Errorf("%d back-end calls, want 3", calls.Load())
	}
}
