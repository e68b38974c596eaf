package mechs_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/getpwent"
	"github.com/saslgate/saslgate/mechs/internal/unixpw/unixpwtest"
	"github.com/saslgate/saslgate/mechs/mechstest"
	"github.com/saslgate/saslgate/mechs/sasldb"
	"github.com/saslgate/saslgate/mechs/shadow"
)

// old sets a file's mtime to one fixed time in the past, so that only the
// inode, size, mode or ctime can tell versions apart; its ctime becomes now,
// so tests that need a settled file pass racy = 0.
func old(t *testing.T, p string) {
	t.Helper()
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(p, past, past); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFileGeneration(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, "alice:x\n")
	write(t, b, "bob:y\n")
	old(t, a)
	old(t, b)

	g0 := mechs.FileGeneration(0, a, b)
	if g0 == mechs.GenUnknown {
		t.Fatal("settled files: unknown generation")
	}
	if g := mechs.FileGeneration(0, a, b); g != g0 {
		t.Fatal("unchanged files: generation moved")
	}
	if g := mechs.FileGeneration(0, b, a); g == g0 {
		t.Fatal("order of the files does not count")
	}

	steps := []struct {
		name   string
		change func(t *testing.T)
	}{
		{"same size, mtime put back (ctime moves)", func(t *testing.T) {
			write(t, a, "alice:z\n")
			old(t, a)
		}},
		{"replaced by rename, same size and mtime (inode moves)", func(t *testing.T) {
			tmp := filepath.Join(dir, "a+")
			write(t, tmp, "alice:w\n")
			old(t, tmp)
			if err := os.Rename(tmp, a); err != nil {
				t.Fatal(err)
			}
		}},
		{"second file grows", func(t *testing.T) { write(t, b, "bob:y\ncarol:z\n") }},
		{"mode changes", func(t *testing.T) {
			if err := os.Chmod(b, 0o640); err != nil {
				t.Fatal(err)
			}
		}},
		{"removed", func(t *testing.T) {
			if err := os.Remove(b); err != nil {
				t.Fatal(err)
			}
		}},
	}
	prev := g0
	seen := map[uint64]string{g0: "start"}
	for _, st := range steps {
		st.change(t)
		g := mechs.FileGeneration(0, a, b)
		if g == mechs.GenUnknown || g == prev {
			t.Fatalf("%s: generation %x, before %x", st.name, g, prev)
		}
		if was, dup := seen[g]; dup {
			t.Fatalf("%s: same generation as %q", st.name, was)
		}
		seen[g] = st.name
		prev = g
	}
	if g := mechs.FileGeneration(0, a, b); g != prev {
		t.Fatal("a missing file is not a stable state")
	}

	t.Run("racy", func(t *testing.T) {
		write(t, a, "fresh\n") // ctime and mtime are now
		if g := mechs.FileGeneration(time.Hour, a); g != mechs.GenUnknown {
			t.Fatalf("a file changed within the racy window: %x", g)
		}
		if g := mechs.FileGeneration(0, a); g == mechs.GenUnknown {
			t.Fatal("racy 0: unknown")
		}
	})
	t.Run("stat error", func(t *testing.T) {
		// a path through a regular file fails with ENOTDIR, not ENOENT
		if g := mechs.FileGeneration(0, filepath.Join(a, "x")); g != mechs.GenUnknown {
			t.Fatalf("unstat-able file: %x", g)
		}
	})
}

// fresh is a mechanism with a settable generation.
type fresh struct {
	mechstest.Static
	gen atomic.Uint64
}

func (f *fresh) Generation() uint64 { return f.gen.Load() }

func TestCombineFreshness(t *testing.T) {
	plain := mechstest.Static{MechName: "plain"}
	f1 := &fresh{Static: mechstest.Static{MechName: "f1"}}
	f2 := &fresh{Static: mechstest.Static{MechName: "f2"}}
	f1.gen.Store(10)
	f2.gen.Store(20)

	t.Run("no file-backed step", func(t *testing.T) {
		c := mechs.CombineFreshness(mechs.NewChain(nil, plain))
		g := c.Generation()
		if g == mechs.GenUnknown || c.Generation() != g {
			t.Fatalf("generation %x, want a constant", g)
		}
		if mechs.CombineFreshness(mechs.NewChain(nil, plain)).Generation() == g {
			t.Fatal("a new chain has the old chain's generation")
		}
	})
	t.Run("chain", func(t *testing.T) {
		c := mechs.CombineFreshness(mechs.NewChain(nil, f1, plain, f2))
		g := c.Generation()
		if g == mechs.GenUnknown || c.Generation() != g {
			t.Fatalf("generation %x", g)
		}
		f2.gen.Store(21)
		g2 := c.Generation()
		if g2 == g || g2 == mechs.GenUnknown {
			t.Fatal("a step's change does not show")
		}
		f1.gen.Store(mechs.GenUnknown)
		if c.Generation() != mechs.GenUnknown {
			t.Fatal("one unknown step must make the chain unknown")
		}
		f1.gen.Store(10)
		if c.Generation() != g2 {
			t.Fatal("not a function of the steps' generations")
		}
	})
	t.Run("nested chain and bare mechanism", func(t *testing.T) {
		c := mechs.CombineFreshness(mechs.NewChain(nil, plain, mechs.NewChain(nil, f1)))
		g := c.Generation()
		f1.gen.Store(11)
		if c.Generation() == g {
			t.Fatal("nested step ignored")
		}
		b := mechs.CombineFreshness(f1)
		g = b.Generation()
		f1.gen.Store(12)
		if b.Generation() == g {
			t.Fatal("bare mechanism ignored")
		}
	})
}

func TestFreshness_Sasldb(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("sasldb", "testdata", "basic.db"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "sasldb2")
	if err := os.WriteFile(p, src, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := sasldb.New(mechs.Options{Values: map[string]string{"sasldb_path": p}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	chain := mechs.CombineFreshness(mechs.NewChain(nil, mechstest.Static{MechName: "plain"}, d))
	// with inotify a change is an event, not a timestamp: no racy window
	watching := runtime.GOOS == "linux"
	settle := func() {
		if !watching {
			time.Sleep(mechs.RacyWindow + 100*time.Millisecond)
		}
	}
	if g := d.Generation(); watching == (g == mechs.GenUnknown) {
		t.Fatalf("just written: %x (watching %v)", g, watching)
	}
	settle()
	g1, c1 := d.Generation(), chain.Generation()
	if g1 == mechs.GenUnknown || d.Generation() != g1 || c1 == mechs.GenUnknown {
		t.Fatalf("settled: %x", g1)
	}
	// a lookup reads the file: that is no change
	if r, _ := d.Authenticate(context.Background(), mechs.Request{Login: "nobody", Password: "x", Realm: "r"}); r.Verdict == mechs.Accept {
		t.Fatal("accepted")
	}
	if d.Generation() != g1 {
		t.Fatal("a lookup moved the generation")
	}
	// saslpasswd2 rewrites pages in place: same inode, same size
	src[len(src)-1] ^= 0xff
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(src[len(src)-1:], int64(len(src)-1)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if g := d.Generation(); g == g1 || watching == (g == mechs.GenUnknown) {
		t.Fatalf("just changed: %x, before %x (watching %v)", g, g1, watching)
	}
	settle()
	if g := d.Generation(); g == mechs.GenUnknown || g == g1 {
		t.Fatalf("after a change: %x, before %x", g, g1)
	}
	if c := chain.Generation(); c == mechs.GenUnknown || c == c1 {
		t.Fatal("chain did not follow")
	}
}

// The system files are not ours to change: check that the real mechanisms
// are file-backed and give a stable generation.
func TestFreshness_SystemFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		new  func() (mechs.Mechanism, error)
	}{
		{"shadow", func() (mechs.Mechanism, error) { return shadow.New(mechs.Options{}, nil) }},
		{"getpwent", func() (mechs.Mechanism, error) { return getpwent.New(mechs.Options{}, nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// other test packages create users meanwhile: hold the lock they
			// take, so that the files change only under our own eyes
			unixpwtest.Lock(t)
			m, err := tc.new()
			if err != nil {
				t.Skip(err)
			}
			f, ok := m.(mechs.Freshness)
			if !ok {
				t.Fatal("not a mechs.Freshness")
			}
			g := f.Generation()
			if g == mechs.GenUnknown {
				t.Skip("a system file changed less than RacyWindow ago")
			}
			if f.Generation() != g {
				t.Fatal("unstable generation")
			}
			_, _ = m.Authenticate(context.Background(), mechs.Request{Login: "nobody-here", Password: "x"})
			if f.Generation() != g {
				t.Fatal("a lookup moved the generation")
			}
		})
	}
}

func BenchmarkFileGeneration(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		mechs.FileGeneration(0, "/etc/passwd", "/etc/shadow", "/etc/nsswitch.conf")
	}
}
