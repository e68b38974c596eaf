package mechs_test

import (
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/saslgate/saslgate/mechs"
)

// newWatch watches the files and checks it really uses inotify, so that a
// fallback to stat cannot pass these tests by its racy window.
func newWatch(t *testing.T, paths ...string) *mechs.FileWatch {
	t.Helper()
	w := mechs.NewFileWatch(mechs.RacyWindow, paths...)
	t.Cleanup(func() { w.Close() })
	if runtime.GOOS == "linux" && !w.Watching() {
		t.Fatalf("not watching %v", paths)
	}
	return w
}

// Every kind of change is seen by the very next Generation, and nothing
// else moves it.
func TestFileWatch_Changes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("inotify is Linux only")
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, dir, p string)
		moves  bool
	}{
		{"read", func(t *testing.T, _, p string) { _, _ = os.ReadFile(p) }, false},
		{"other file in the directory", func(t *testing.T, dir, _ string) { write(t, filepath.Join(dir, "other"), "x") }, false},
		{"rewrite in place, same size", func(t *testing.T, _, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("B"), 0); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"replace by rename", func(t *testing.T, dir, p string) {
			write(t, filepath.Join(dir, "new"), "replaced")
			if err := os.Rename(filepath.Join(dir, "new"), p); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"chmod", func(t *testing.T, _, p string) {
			if err := os.Chmod(p, 0o640); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"remove", func(t *testing.T, _, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"write through a hard link elsewhere", func(t *testing.T, dir, p string) {
			other := t.TempDir()
			l := filepath.Join(other, "link")
			if err := os.Link(p, l); err != nil {
				t.Fatal(err)
			}
			write(t, l, "through the link")
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "db")
			write(t, p, "A")
			w := newWatch(t, p)
			g := w.Generation()
			if g == mechs.GenUnknown || w.Generation() != g {
				t.Fatalf("unstable before the change: %x", g)
			}
			tc.change(t, dir, p)
			g2 := w.Generation()
			if g2 == mechs.GenUnknown {
				t.Fatal("unknown after the change: the watch never is")
			}
			if moved := g2 != g; moved != tc.moves {
				t.Fatalf("generation moved = %v, want %v", moved, tc.moves)
			}
			if w.Generation() != g2 {
				t.Fatal("unstable after the change")
			}
		})
	}
}

// After a file is replaced by rename, the watch follows the new inode: a
// later in-place write to it is seen too, as is a file created after the
// watch started.
func TestFileWatch_FollowsNewInode(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("inotify is Linux only")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "db")
	w := newWatch(t, p) // absent at start
	g0 := w.Generation()
	write(t, p, "created")
	g1 := w.Generation()
	if g1 == g0 {
		t.Fatal("creation not seen")
	}
	write(t, filepath.Join(dir, "tmp"), "v2")
	if err := os.Rename(filepath.Join(dir, "tmp"), p); err != nil {
		t.Fatal(err)
	}
	g2 := w.Generation()
	if g2 == g1 {
		t.Fatal("rename not seen")
	}
	// through a hard link, so that only the watch on the new inode sees it
	l := filepath.Join(t.TempDir(), "l")
	if err := os.Link(p, l); err != nil {
		t.Fatal(err)
	}
	g3 := w.Generation() // the link count changed
	write(t, l, "v3")
	if w.Generation() == g3 {
		t.Fatal("write to the new inode through another path not seen")
	}
}

// Where inotify cannot be trusted the watch falls back to stat, which still
// reports changes.
func TestFileWatch_FallsBack(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("inotify is Linux only")
	}
	t.Run("symlink", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "db")
		write(t, p, "A")
		l := filepath.Join(dir, "link")
		if err := os.Symlink(p, l); err != nil {
			t.Fatal(err)
		}
		w := mechs.NewFileWatch(0, l)
		defer w.Close()
		if w.Watching() {
			t.Fatal("watching through a symlink")
		}
		g := w.Generation()
		write(t, p, "AB")
		if w.Generation() == g {
			t.Fatal("stat fallback missed the change")
		}
	})
	t.Run("directory removed", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "db")
		write(t, p, "A")
		w := newWatch(t, p)
		g := w.Generation()
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		g2 := w.Generation()
		if g2 == g || w.Watching() {
			t.Fatalf("directory removal: %x → %x, watching %v", g, g2, w.Watching())
		}
	})
	t.Run("closed", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "db")
		write(t, p, "A")
		w := newWatch(t, p)
		w.Close()
		w.Close()
		if w.Watching() {
			t.Fatal("watching after Close")
		}
	})
}

// The promise the cache relies on: once a write has returned, no
// Generation call, from any goroutine, gives the value from before it.
func TestFileWatch_NextRequestUnderConcurrency(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("inotify is Linux only")
	}
	p := filepath.Join(t.TempDir(), "db")
	write(t, p, "0")
	w := newWatch(t, p)
	for i := range 200 {
		before := w.Generation()
		write(t, p, string(rune('a'+i%26)))
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if g := w.Generation(); g == before {
					t.Errorf("round %d: generation from before the write", i)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}

func BenchmarkFileWatch(b *testing.B) {
	w := mechs.NewFileWatch(0, "/etc/passwd", "/etc/shadow", "/etc/nsswitch.conf")
	defer w.Close()
	b.Logf("watching: %v", w.Watching())
	b.ReportAllocs()
	for b.Loop() {
		w.Generation()
	}
}
