package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// TestShutdownServesTheWholeBacklog: the clients queued in the listen
// backlog when Shutdown begins are all answered, however few acceptors
// and connection slots take them: none is reset by the listener's close.
func TestShutdownServesTheWholeBacklog(t *testing.T) {
	m, gate, in := gated()
	s := &Server{MaxConns: 2}
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
