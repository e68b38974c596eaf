package load

import (
	"context"
	"net"
	"path/filepath"
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
