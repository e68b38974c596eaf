package mechs

import (
	"errors"
	"path/filepath"
	"syscall"
	"unsafe"
)

// localFS are the file systems whose every change goes through this
// kernel's VFS, so that inotify sees it. Network file systems (NFS, CIFS,
// FUSE) change under us without an event: they keep the stat.
var localFS = map[int64]bool{
	0xEF53:     true, // ext2/3/4
	0x58465342: true, // xfs
	0x9123683E: true, // btrfs
	0x01021994: true, // tmpfs
	0x794c7630: true, // overlayfs
	0xF2F52010: true, // f2fs
	0x2FC12FC1: true, // zfs
	0x858458f6: true, // ramfs
}

const (
	fileMask = syscall.IN_MODIFY | syscall.IN_ATTRIB | syscall.IN_CLOSE_WRITE |
		syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF
	dirMask = syscall.IN_MODIFY | syscall.IN_ATTRIB | syscall.IN_CLOSE_WRITE |
		syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO |
		syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF | syscall.IN_ONLYDIR
	// the directory itself went away: its watch can tell nothing more
	dirGone = syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF | syscall.IN_IGNORED | syscall.IN_UNMOUNT
)

type inotifyWatch struct {
	fd    int
	dirs  map[int32]map[string]string // dir watch → base name → path
	files map[int32]string            // file watch → path
	paths []string
	buf   [4096]byte
}

// startInotify returns nil when the paths cannot be watched reliably.
func startInotify(paths []string) *inotifyWatch {
	w := &inotifyWatch{fd: -1, dirs: map[int32]map[string]string{}, files: map[int32]string{}}
	type target struct{ dir, base, path string }
	var ts []target
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil
		}
		dir := filepath.Dir(abs)
		// a symbolic link anywhere on the way: the change would land on a
		// directory we do not watch
		if real, err := filepath.EvalSymlinks(dir); err != nil || real != dir {
			return nil
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
			return nil
		} else if err != nil && !errors.Is(err, syscall.ENOENT) {
			return nil
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil || !localFS[int64(st.Type)] {
			return nil
		}
		ts = append(ts, target{dir, filepath.Base(abs), abs})
	}
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil // out of instances: stat still works
	}
	w.fd = fd
	for _, t := range ts {
		wd, err := syscall.InotifyAddWatch(fd, t.dir, dirMask)
		if err != nil {
			w.close()
			return nil
		}
		if w.dirs[int32(wd)] == nil {
			w.dirs[int32(wd)] = map[string]string{}
		}
		w.dirs[int32(wd)][t.base] = t.path
		w.paths = append(w.paths, t.path)
	}
	for _, p := range w.paths {
		w.watchFile(p)
	}
	return w
}

// watchFile adds (or, for the same inode, keeps) the watch on the file at
// p. A missing file is fine: its directory's watch reports its creation.
func (w *inotifyWatch) watchFile(p string) {
	if wd, err := syscall.InotifyAddWatch(w.fd, p, fileMask); err == nil {
		w.files[int32(wd)] = p
	}
}

// drain reads every queued event. changed reports one that concerns a
// watched file; ok false means the watch can no longer be trusted.
func (w *inotifyWatch) drain() (changed, ok bool) {
	for {
		n, err := readNonblock(w.fd, w.buf[:])
		switch {
		case errors.Is(err, syscall.EAGAIN):
			return changed, true
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil || n <= 0:
			return true, false
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&w.buf[off]))
			nameLen := int(ev.Len)
			name := w.buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+nameLen]
			off += syscall.SizeofInotifyEvent + nameLen
			if ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
				// events were lost: assume the worst, and watch the files
				// again in case one was replaced
				changed = true
				for _, p := range w.paths {
					w.watchFile(p)
				}
				continue
			}
			if p, isFile := w.files[ev.Wd]; isFile {
				changed = true
				if ev.Mask&syscall.IN_IGNORED != 0 {
					delete(w.files, ev.Wd)
					w.watchFile(p) // the path may name a new inode by now
				}
				continue
			}
			names, isDir := w.dirs[ev.Wd]
			if !isDir {
				continue // a file watch already dropped
			}
			if ev.Mask&dirGone != 0 {
				return true, false
			}
			if p, ours := names[cString(name)]; ours {
				changed = true
				if ev.Mask&(syscall.IN_CREATE|syscall.IN_MOVED_TO) != 0 {
					w.watchFile(p)
				}
			}
		}
	}
}

func (w *inotifyWatch) close() {
	if w.fd >= 0 {
		syscall.Close(w.fd)
		w.fd = -1
	}
}

// cString is the NUL-padded name of an inotify event.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
