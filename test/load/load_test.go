package load

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// slowServer answers every request "OK" after delay, one connection at a
// time, as a crypt-bound daemon with one worker would.
func slowServer(t *testing.T, delay time.Duration) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "mux")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := protocol.NewReader(c).ReadRequest(); err == nil {
				time.Sleep(delay)
				_ = protocol.WriteReply(c, "OK")
			}
			c.Close()
		}
	}()
	return sock
}

func TestRunStops(t *testing.T) {
	sock := slowServer(t, 2*time.Millisecond)
	req := []protocol.Request{{Login: "u", Password: "p", Service: "s"}}
	for _, tc := range []struct {
		name     string
		spec     Spec
		min, max int // bounds on Result.Requests
	}{
		// a run of 10 ms at 2 ms a request gives about 5; MinRequests
		// carries it on to 40
		{"min requests extend a short duration", Spec{Concurrency: 2, Duration: 10 * time.Millisecond, MinRequests: 40}, 40, 41},
		{"duration alone", Spec{Concurrency: 1, Duration: 10 * time.Millisecond}, 1, 10},
		{"request count", Spec{Concurrency: 3, Requests: 7}, 7, 7},
		{"min requests below what the duration gives", Spec{Concurrency: 1, Duration: 30 * time.Millisecond, MinRequests: 1}, 2, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			s.Socket, s.Reqs, s.Want, s.Timeout = sock, req, []string{"OK"}, 5*time.Second
			r := Run(context.Background(), s)
			if r.Errors+r.Mismatches > 0 {
				t.Fatalf("errors: %s", r)
			}
			if r.Requests < tc.min || r.Requests > tc.max {
				t.Errorf("%d requests, want %d..%d (%s)", r.Requests, tc.min, tc.max, r)
			}
			if r.P99 < 2*time.Millisecond || r.P99 > r.Max {
				t.Errorf("p99 %s, max %s: want 2ms <= p99 <= max", r.P99, r.Max)
			}
		})
	}
}

// TestRunFailures: every way a request can go wrong is counted and the
// first one named; a server that never answers costs a request its timeout,
// not the run; cancelling the context ends the run.
func TestRunFailures(t *testing.T) {
	req := []protocol.Request{{Login: "u", Password: "p", Service: "s"}}
	t.Run("no socket", func(t *testing.T) {
		r := Run(context.Background(), Spec{Socket: filepath.Join(t.TempDir(), "none"), Requests: 3, Reqs: req, Timeout: time.Second})
		if r.Errors != 3 || r.Requests != 0 || !strings.Contains(r.FirstError, "connect: No such file or directory") {
			t.Fatalf("%s", r)
		}
	})
	t.Run("wrong reply", func(t *testing.T) {
		sock := slowServer(t, 0)
		r := Run(context.Background(), Spec{Socket: sock, Requests: 4, Reqs: req, Want: []string{"NO"}, Timeout: 5 * time.Second})
		if r.Mismatches != 4 || r.Errors != 0 || r.Requests != 4 {
			t.Fatalf("%s", r)
		}
	})
	t.Run("silent server", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "mux")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var held []net.Conn
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				held = append(held, c) // read nothing, answer nothing
			}
		}()
		t0 := time.Now()
		r := Run(context.Background(), Spec{Socket: sock, Concurrency: 2, Requests: 2, Reqs: req, Timeout: 200 * time.Millisecond})
		if d := time.Since(t0); r.Errors != 2 || !strings.Contains(r.FirstError, "size read") || d > 5*time.Second {
			t.Fatalf("%s after %v", r, d)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		sock := slowServer(t, time.Millisecond)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		t0 := time.Now()
		r := Run(ctx, Spec{Socket: sock, Concurrency: 2, Duration: time.Hour, Reqs: req, Want: []string{"OK"}, Timeout: 5 * time.Second})
		if d := time.Since(t0); d > 5*time.Second || r.Requests == 0 || r.Errors != 0 {
			t.Fatalf("%s after %v", r, d)
		}
	})
	t.Run("requests in turn", func(t *testing.T) {
		sock := slowServer(t, 0)
		reqs := []protocol.Request{{Login: "a", Password: "p"}, {Login: "b", Password: "p"}}
		r := Run(context.Background(), Spec{Socket: sock, Requests: 6, Reqs: reqs, Want: []string{"OK", "NO"}, Timeout: 5 * time.Second})
		if r.Requests != 6 || r.Mismatches != 3 {
			t.Fatalf("%s: want the 3 requests expecting NO counted as mismatches", r)
		}
	})
}
