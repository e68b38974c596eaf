package daemon

// The daemon under systemd: sockets passed by socket activation, sd_notify
// messages (READY, RELOADING, STOPPING, STATUS, MAINPID) and the watchdog.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/journal"
)

// envInheritedFds tells the re-executed background child how many
// activated sockets its parent handed down, at descriptors 3 onwards (the
// child cannot have LISTEN_PID: its pid is not known before it starts).
const envInheritedFds = "SASLGATE_LISTEN_FDS"

// stderrIsJournal reports whether stderr is systemd's journal stream.
func stderrIsJournal() bool {
	ok, err := journal.StderrIsJournalStream()
	return ok && err == nil
}

// listenFdsStart is SD_LISTEN_FDS_START.
const listenFdsStart = 3

// activatedFiles returns the sockets systemd passed to this process, or
// that the detaching parent handed down, and removes the variables that
// announce them, so that nothing the daemon starts (PAM workers) sees them.
func activatedFiles() ([]*os.File, error) {
	n := os.Getenv(envInheritedFds)
	if n == "" {
		return activation.Files(true), nil
	}
	os.Unsetenv(envInheritedFds)
	k, err := strconv.Atoi(n)
	if err != nil || k < 0 || k > 64 {
		return nil, fmt.Errorf("daemon: bad %s=%q", envInheritedFds, n)
	}
	files := make([]*os.File, 0, k)
	for fd := listenFdsStart; fd < listenFdsStart+k; fd++ {
		syscall.CloseOnExec(fd)
		files = append(files, os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd)))
	}
	return files, nil
}

// activatedListeners turns the passed sockets into listeners, closing every
// file. Only listening unix stream sockets are taken: the saslauthd protocol
// has no authentication of its own, so a TCP socket would offer a password
// oracle to the network, and a connected socket means the unit says
// Accept=yes, which would start one daemon per connection.
func activatedListeners(files []*os.File) ([]*net.UnixListener, error) {
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var lns []*net.UnixListener
	fail := func(err error) ([]*net.UnixListener, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	for i, f := range files {
		fd := listenFdsStart + i
		if err := checkListeningUnix(f); err != nil {
			return fail(fmt.Errorf("daemon: socket activation: descriptor %d: %w", fd, err))
		}
		ln, err := net.FileListener(f)
		if err != nil {
			return fail(fmt.Errorf("daemon: socket activation: descriptor %d: %w", fd, err))
		}
		ul, ok := ln.(*net.UnixListener)
		if !ok {
			ln.Close()
			return fail(fmt.Errorf("daemon: socket activation: descriptor %d is not a unix socket", fd))
		}
		// systemd owns the file: it outlives this process
		ul.SetUnlinkOnClose(false)
		lns = append(lns, ul)
	}
	return lns, nil
}

// checkListeningUnix refuses anything but a listening AF_UNIX SOCK_STREAM
// socket. It goes through SyscallConn: File.Fd would clear O_NONBLOCK on
// the description systemd shares.
func checkListeningUnix(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		sa, err := syscall.Getsockname(int(fd))
		if err != nil {
			cerr = fmt.Errorf("not a socket: %w", err)
			return
		}
		if _, ok := sa.(*syscall.SockaddrUnix); !ok {
			cerr = errors.New("not a unix socket: saslauthd's protocol must not be offered on the network (ListenStream= takes a path)")
			return
		}
		if typ, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE); err != nil || typ != syscall.SOCK_STREAM {
			cerr = errors.New("not a stream socket (use ListenStream=)")
			return
		}
		if acc, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || acc != 1 {
			cerr = errors.New("not a listening socket (the socket unit must have Accept=no)")
		}
	})
	if err != nil {
		return err
	}
	return cerr
}

// socketPaths lists the listeners' paths; an unnamed or abstract socket has
// none worth showing and is listed by its address.
func socketPaths(lns []*net.UnixListener) []string {
	var ps []string
	for _, ln := range lns {
		ps = append(ps, ln.Addr().String())
	}
	return ps
}

// notifyTimeout bounds one sd_notify: a service manager that stopped
// reading its notify socket must not stall the daemon.
const notifyTimeout = 2 * time.Second

// notifier sends sd_notify(3) messages, in order, when NOTIFY_SOCKET is set
// and does nothing otherwise. NOTIFY_SOCKET stays in the environment
// (go-systemd reads it there): what the daemon starts inherits it, but
// systemd's default NotifyAccess=main ignores every process but the main
// one.
type notifier struct {
	log     *slog.Logger
	mu      sync.Mutex // one message at a time, in order
	timeout time.Duration
	send    func(state string) (bool, error)
}

func newNotifier(log *slog.Logger) *notifier {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil
	}
	return &notifier{log: log, timeout: notifyTimeout,
		send: func(state string) (bool, error) { return sd.SdNotify(false, state) }}
}

// Notify sends the lines as one message; a nil notifier does nothing. It
// returns within the notifier's timeout even when the socket is stuck (the
// send then finishes, or not, in the background).
func (n *notifier) Notify(lines ...string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	state := strings.Join(lines, "\n")
	done := make(chan error, 1)
	go func() { _, err := n.send(state); done <- err }()
	t := time.NewTimer(n.timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			n.log.Warn("sd_notify: " + err.Error())
		}
	case <-t.C:
		n.log.Warn("sd_notify: the notify socket did not take the message in time",
			slog.Duration("timeout", n.timeout))
	}
}

// statusLine is the STATUS= text while serving.
func statusLine(paths []string, p *Policy, activated bool) string {
	how := "own socket"
	if activated {
		how = "socket activation"
	}
	mech := ""
	if p != nil {
		mech = "; mechanisms " + p.Rules.Services.Default
	}
	return "STATUS=Serving " + strings.Join(paths, ", ") + " (" + how + ")" + mech
}

// watchdogInterval reads WATCHDOG_USEC (and WATCHDOG_PID) and removes them
// from the environment; 0 means no watchdog.
func watchdogInterval(log *slog.Logger) time.Duration {
	d, err := sd.SdWatchdogEnabled(true)
	if err != nil {
		log.Warn("watchdog: " + err.Error())
		return 0
	}
	return d
}

// probePrefix starts the abstract address a probe connection binds, so that
// the server recognizes its own probes without a system call: it closes
// them at once, and they count as neither requests nor errors.
var probePrefix = func() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "@saslgate-probe-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:]) + "-"
}()

var probeSeq atomic.Uint64

// isProbe reports whether conn is one of this process's probe connections.
func isProbe(conn net.Conn) bool {
	ra, ok := conn.RemoteAddr().(*net.UnixAddr)
	return ok && ra != nil && strings.HasPrefix(ra.Name, probePrefix)
}

// errNoPath: the listener has no file-system path to dial.
var errNoPath = errors.New("daemon: the socket has no path to probe")

// probe connects to the socket at path and waits for the server to close
// the connection: proof that an accept loop took it and a connection
// goroutine ran, within timeout.
func probe(path string, timeout time.Duration) error {
	if path == "" || strings.HasPrefix(path, "@") {
		return errNoPath
	}
	d := net.Dialer{Timeout: timeout,
		LocalAddr: &net.UnixAddr{Name: probePrefix + strconv.FormatUint(probeSeq.Add(1), 10), Net: "unix"}}
	c, err := d.Dial("unix", path)
	if err != nil {
		return fmt.Errorf("daemon: probe %s: %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	var b [1]byte
	n, err := c.Read(b[:])
	switch {
	case n > 0:
		return fmt.Errorf("daemon: probe %s: unexpected reply", path)
	case errors.Is(err, io.EOF):
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("daemon: probe %s: not served within %s", path, timeout)
	default:
		return fmt.Errorf("daemon: probe %s: %w", path, err)
	}
}

// probeAll probes every listener that has a path; errNoPath ones are skipped.
func probeAll(paths []string, timeout time.Duration) error {
	for _, p := range paths {
		if err := probe(p, timeout); err != nil && !errors.Is(err, errNoPath) {
			return err
		}
	}
	return nil
}

// watchdog pings systemd (WATCHDOG=1) every interval/2 for as long as the
// daemon still serves: when the server accepted a connection since the last
// tick, or, when it did not (idle, or wedged), when a probe of every socket
// is served within a quarter of the interval. A deadlock or an accept loop
// whose connection slots all hang stops the pings, and systemd restarts the
// daemon. It returns when ctx ends.
func watchdog(ctx context.Context, s *Server, paths []string, interval time.Duration, ping func(), log *slog.Logger) {
	tick := interval / 2
	t := time.NewTicker(tick)
	defer t.Stop()
	seen := s.Accepted()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok := true
		if now := s.Accepted(); now == seen {
			if err := probeAll(paths, tick/2); err != nil {
				ok = false
				if !failing {
					log.Error("watchdog: not pinging systemd: " + err.Error())
				}
			}
		}
		// after the probe: its own accept is not evidence for the next tick
		seen = s.Accepted()
		if ctx.Err() != nil {
			return
		}
		if ok {
			if failing {
				log.Info("watchdog: serving again, pinging systemd")
			}
			ping()
		}
		failing = !ok
	}
}
