package mechs

import (
	"sync"
	"time"
)

// FileWatch is the generation of a set of files, kept cheaply enough to be
// read on every request: a cache hit must cost less than the lookup it
// saves, and a stat per file per request costs as much as a sasldb lookup.
//
// Where it can (Linux, files on a local file system, no symbolic links in
// the way) it holds an inotify watch on each file and on each file's
// directory, and a generation is one non-blocking read of the inotify
// descriptor. The kernel queues an event before the write, rename or chmod
// that caused it returns, so a change made before a request was sent is
// seen by that request: the same "next request" promise the stat gives,
// without the stat's racy window. Watching the file itself catches a change
// made through another path to the same inode (a bind mount, a hard link);
// watching the directory catches the file replaced by rename, as passwd and
// vipw do.
//
// Elsewhere, and as soon as a watch breaks (the directory removed, the
// descriptor failing), it falls back to FileGeneration for good.
//
// It starts watching on the first call to Generation, so a daemon without
// a cache never holds an inotify instance. Close releases it.
type FileWatch struct {
	racy  time.Duration
	paths []string

	mu      sync.Mutex
	started bool
	w       *inotifyWatch // nil: FileGeneration
	gen     uint64        // bumped on every change the watch reports
}

// NewFileWatch watches paths; racy is FileGeneration's, used when it falls
// back to stat.
func NewFileWatch(racy time.Duration, paths ...string) *FileWatch {
	return &FileWatch{racy: racy, paths: append([]string(nil), paths...)}
}

// Generation implements Freshness. A nil FileWatch knows nothing: it
// returns GenUnknown, so that nothing is cached.
func (f *FileWatch) Generation() uint64 {
	if f == nil {
		return GenUnknown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.started {
		f.started = true
		f.w = startInotify(f.paths)
		// random start: a watch closed and made again never repeats values
		f.gen = randomUint64()
	}
	if f.w != nil {
		changed, ok := f.w.drain()
		if ok {
			if changed {
				f.gen++
			}
			return nonzero(f.gen)
		}
		f.w.close()
		f.w = nil
	}
	return FileGeneration(f.racy, f.paths...)
}

// Watching reports whether changes come from inotify rather than stat.
func (f *FileWatch) Watching() bool {
	if f == nil {
		return false
	}
	f.Generation()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.w != nil
}

// Close releases the watch; Generation then stats. It is idempotent.
func (f *FileWatch) Close() error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = true
	if f.w != nil {
		f.w.close()
		f.w = nil
	}
	return nil
}

var _ Freshness = (*FileWatch)(nil)
