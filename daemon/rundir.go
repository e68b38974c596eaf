package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// File names inside the run directory, as saslauthd names them.
const (
	SocketName  = "mux"
	PidFileName = "saslauthd.pid"
)

// ErrAnotherInstance means another daemon holds the run directory: its pid
// file is locked, or its socket answers.
var ErrAnotherInstance = errors.New("daemon: another instance of saslauthd is currently running")

// RunDir is a locked run directory: the pid file is held with an fcntl
// write lock (the same lock Cyrus saslauthd takes, so the two exclude each
// other) for as long as the daemon lives, in every mode, foreground
// included; saslauthd -d takes none and steals a live socket.
type RunDir struct {
	Path string
	pid  *os.File
	sock string
	ino  uint64 // the socket's inode, so Close removes only our own
}

// LockRunDir creates dir if missing (0755, as saslauthd's mkdir), then
// locks and writes its pid file. It returns ErrAnotherInstance when the lock
// is held or a live socket answers at dir/mux. activated lists the paths of
// the sockets systemd passed: dir/mux being one of them is normal (the
// kernel queues connections on it whether or not anyone serves it), so it
// is not taken for another daemon.
func LockRunDir(dir string, activated ...string) (*RunDir, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("daemon: -m requires an absolute pathname: %s", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("daemon: can not mkdir: %s: %w", dir, err)
	}
	path := filepath.Join(dir, PidFileName)
	// created: a refused start removes the pid file only if it made it
	created := true
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_CLOEXEC, 0o600)
	if errors.Is(err, os.ErrExist) {
		created = false
		f, err = os.OpenFile(path, os.O_RDWR|syscall.O_CLOEXEC, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("daemon: could not open pid file %s: %w", path, err)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		if created {
			os.Remove(path)
		}
		f.Close()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return nil, ErrAnotherInstance
		}
		return nil, fmt.Errorf("daemon: could not lock pid file %s: %w", path, err)
	}
	rd := &RunDir{Path: dir, pid: f, sock: filepath.Join(dir, SocketName)}
	// A foreground Cyrus saslauthd (-d) holds no lock: refuse to take a socket
	// that still answers.
	if !isActivated(rd.sock, activated) {
		if c, err := net.DialTimeout("unix", rd.sock, time.Second); err == nil {
			c.Close()
			if created {
				os.Remove(path)
			}
			rd.release()
			return nil, ErrAnotherInstance
		}
	}
	if err := rd.WritePid(os.Getpid()); err != nil {
		rd.release()
		return nil, err
	}
	return rd, nil
}

// isActivated reports whether the socket file at sock is one of the
// activated paths: the same file, so that /var/run/saslauthd/mux matches
// /run/saslauthd/mux through the symbolic link.
func isActivated(sock string, activated []string) bool {
	if len(activated) == 0 {
		return false
	}
	fi, err := os.Stat(sock)
	if err != nil {
		return false
	}
	for _, a := range activated {
		if ai, err := os.Stat(a); err == nil && os.SameFile(fi, ai) {
			return true
		}
	}
	return false
}

// WritePid rewrites the pid file as "<pid>\n".
func (r *RunDir) WritePid(pid int) error {
	if err := r.pid.Truncate(0); err != nil {
		return fmt.Errorf("daemon: pid file: %w", err)
	}
	if _, err := r.pid.WriteAt([]byte(strconv.Itoa(pid)+"\n"), 0); err != nil {
		return fmt.Errorf("daemon: pid file: %w", err)
	}
	return r.pid.Sync()
}

// Listen binds dir/mux: any stale socket is removed first (we hold the
// lock, so it is stale), and the socket is made 0777 as saslauthd's is;
// access control is the run directory's permissions.
func (r *RunDir) Listen() (*net.UnixListener, error) {
	if len(r.sock) > 107 {
		return nil, fmt.Errorf("daemon: socket path %s is longer than 107 bytes", r.sock)
	}
	if err := os.Remove(r.sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("daemon: remove stale socket: %w", err)
	}
	old := syscall.Umask(0)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: r.sock, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("daemon: listen on %s: %w", r.sock, err)
	}
	ln.SetUnlinkOnClose(false) // Close removes it, and only if it is still ours
	if err := os.Chmod(r.sock, 0o777); err != nil {
		ln.Close()
		return nil, fmt.Errorf("daemon: chmod %s: %w", r.sock, err)
	}
	if fi, err := os.Stat(r.sock); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			r.ino = st.Ino
		}
	}
	return ln, nil
}

// SocketPath is dir/mux.
func (r *RunDir) SocketPath() string { return r.sock }

// RemoveSocket removes mux if it is still the socket we bound, so that no
// new client can connect while the daemon finishes what is queued.
func (r *RunDir) RemoveSocket() {
	if r.ino == 0 {
		return
	}
	if fi, err := os.Stat(r.sock); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == r.ino {
			os.Remove(r.sock)
		}
	}
	r.ino = 0
}

// Close removes the socket (if it is still the one we bound) and the pid
// file, and releases the lock.
func (r *RunDir) Close() error {
	r.RemoveSocket()
	os.Remove(r.pid.Name())
	return r.release()
}

func (r *RunDir) release() error { return r.pid.Close() }
