package daemon

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// TestReleaseWhenIdle: the heap is released once per burst, after a full
// idle interval, never while connections come in, and not at start.
func TestReleaseWhenIdle(t *testing.T) {
	s := &Server{}
	sock, _ := startServer(t, s, users)
	var released atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const every = 250 * time.Millisecond
	go releaseWhenIdle(ctx, s, every, func() { released.Add(1) })

	time.Sleep(5 * every)
	if n := released.Load(); n != 0 {
		t.Fatalf("%d releases before any connection, want 0", n)
	}
	ok := protocol.Request{Login: "alice", Password: "secret"}
	for end := time.Now().Add(5 * every); time.Now().Before(end); time.Sleep(every / 10) {
		ask(t, sock, ok) // busy through several intervals
	}
	if n := released.Load(); n != 0 {
		t.Fatalf("%d releases while busy, want 0", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for released.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(every / 2)
	}
	time.Sleep(5 * every)
	if n := released.Load(); n != 1 {
		t.Fatalf("%d releases after one burst and a lull, want 1", n)
	}
}
