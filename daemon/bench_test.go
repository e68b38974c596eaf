package daemon

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// BenchmarkServer is one request per connection, as libsasl sends them,
// through the whole server (socket, deadlines, chain, reply, drain) with an
// in-memory mechanism.
func BenchmarkServer(b *testing.B) {
	for _, cache := range []bool{false, true} {
		name := "nocache"
		if cache {
			name = "cache"
		}
		b.Run(name, func(b *testing.B) {
			s := &Server{Logger: slog.New(slog.DiscardHandler), MaxInFlight: 5}
			if cache {
				s.Cache = NewCache(1000, time.Hour)
			}
			sock, _ := startServerB(b, s)
			c := &protocol.Client{Path: sock, Timeout: 10 * time.Second}
			req := protocol.Request{Login: "alice", Password: "secret", Service: "smtp"}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if r, err := c.Do(context.Background(), req); err != nil || r != "OK" {
						b.Errorf("reply %q err %v", r, err)
						return
					}
				}
			})
		})
	}
}

func startServerB(b *testing.B, s *Server) (string, func()) {
	b.Helper()
	s.SetAuth(users)
	rd, err := LockRunDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ln, err := rd.Listen()
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(ln)
	b.Cleanup(func() { s.Shutdown(context.Background()); rd.Close() })
	return rd.SocketPath(), nil
}
