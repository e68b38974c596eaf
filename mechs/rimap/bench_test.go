package rimap

import (
	"context"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
)

// BenchmarkLogin measures one request against go-imap's in-memory server
// on loopback: with the pool a request pays for the LOGIN only; without it
// (saslauthd's way) for connect, greeting, LOGIN and LOGOUT. An accepted
// LOGIN uses its connection up, so "accept" back to back with a pool also
// measures how well the background refill keeps up; "accept-spaced" leaves
// 2 ms (not timed) between requests, as a mail server's logins come.
func BenchmarkLogin(b *testing.B) {
	srv := newMemServer(b, memConfig{insecureAuth: true}, "alice", "Bench-Secret-1")
	for _, pool := range []struct{ name, size string }{{"nopool", "0"}, {"pool", "4"}} {
		for _, v := range []struct {
			name string
			pw   string
			want mechs.Verdict
		}{{"accept", "Bench-Secret-1", mechs.Accept}, {"reject", "wrong", mechs.Reject}} {
			b.Run(pool.name+"/"+v.name, func(b *testing.B) {
				m, err := New(testOpts(srv.addr, KeyPoolSize, pool.size), nil)
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				if m.pool != nil {
					waitReady(b, m, 4)
				}
				req := mechs.Request{Login: "alice", Password: mechs.Password(v.pw), Service: "imap"}
				ctx := context.Background()
				b.ResetTimer()
				for b.Loop() {
					res, _ := m.Authenticate(ctx, req)
					if res.Verdict != v.want {
						b.Fatalf("%+v", res)
					}
				}
			})
		}
		b.Run(pool.name+"/accept-spaced", func(b *testing.B) {
			m, err := New(testOpts(srv.addr, KeyPoolSize, pool.size), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			if m.pool != nil {
				waitReady(b, m, 4)
			}
			req := mechs.Request{Login: "alice", Password: "Bench-Secret-1", Service: "imap"}
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, _ := m.Authenticate(ctx, req)
				if res.Verdict != mechs.Accept {
					b.Fatalf("%+v", res)
				}
				b.StopTimer()
				time.Sleep(2 * time.Millisecond)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkLoginTLS is BenchmarkLogin over implicit TLS, where a new
// connection also costs a handshake.
func BenchmarkLoginTLS(b *testing.B) {
	ca := newCA(b)
	srv := newMemServer(b, memConfig{implicit: ca.serverConfig(b, "127.0.0.1")}, "alice", "Bench-Secret-1")
	for _, pool := range []struct{ name, size string }{{"nopool", "0"}, {"pool", "4"}} {
		b.Run(pool.name+"/reject", func(b *testing.B) {
			m, err := New(testOpts(srv.addr, KeyPoolSize, pool.size, KeyTLS, "implicit", KeyCAFile, ca.pemFile), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			if m.pool != nil {
				waitReady(b, m, 4)
			}
			req := mechs.Request{Login: "alice", Password: "wrong", Service: "imap"}
			for b.Loop() {
				if res, _ := m.Authenticate(context.Background(), req); res.Verdict != mechs.Reject {
					b.Fatalf("%+v", res)
				}
			}
		})
	}
}
