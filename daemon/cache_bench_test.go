package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/sasldb"
)

// BenchmarkCacheVsSasldb compares a cache hit, as the server runs it (the
// chain's generation, then Do), with the sasldb lookup it saves: a hit must
// cost no more than the lookup.
func BenchmarkCacheVsSasldb(b *testing.B) {
	src, err := os.ReadFile(filepath.Join("..", "cmd", "commands", "demo.sasldb2"))
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "sasldb2")
	if err := os.WriteFile(path, src, 0o600); err != nil {
		b.Fatal(err)
	}
	old := time.Now().Add(-time.Minute) // past the file's "racy" window
	if err := os.Chtimes(path, old, old); err != nil {
		b.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond) // and its ctime too
	db, err := sasldb.New(mechs.Options{Values: map[string]string{"sasldb_path": path}}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	chain := mechs.NewChain(nil, db)
	req := mechs.Request{Login: "demo", Password: "demo-password", Service: "smtp", Realm: "saslgate.test"}
	ctx := context.Background()

	b.Run("sasldb-lookup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r, _ := chain.Authenticate(ctx, req); r.Verdict != mechs.Accept {
				b.Fatalf("%+v", r)
			}
		}
	})
	b.Run("cache-hit", func(b *testing.B) {
		c := NewCacheWith(CacheConfig{MaxEntries: 1000, TTL: time.Hour})
		fresh := mechs.CombineFreshness(chain)
		fn := func(ctx context.Context) mechs.Result { r, _ := chain.Authenticate(ctx, req); return r }
		if _, o := c.Do(ctx, req, fresh.Generation(), fn); o != CacheMiss {
			b.Fatalf("first request: %v", o)
		}
		b.ReportAllocs()
		for b.Loop() {
			if r, o := c.Do(ctx, req, fresh.Generation(), fn); o != CacheHit || r.Verdict != mechs.Accept {
				b.Fatalf("%v %+v", o, r)
			}
		}
	})
}
