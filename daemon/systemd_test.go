package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/mechstest"
	"github.com/saslgate/saslgate/protocol"
)

// sockFile returns a descriptor of the given kind, as systemd could pass it.
func sockFile(t *testing.T, kind string) *os.File {
	t.Helper()
	dir := t.TempDir()
	fileOf := func(c interface{ File() (*os.File, error) }) *os.File {
		f, err := c.File()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	switch kind {
	case "unix listener":
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "mux"), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return fileOf(ln)
	case "tcp listener":
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return fileOf(ln)
	case "unixgram":
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "dg"), Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return fileOf(c)
	case "connected (Accept=yes)":
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "mux"), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		c, err := net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return fileOf(c)
	case "bound, not listening":
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: filepath.Join(dir, "mux")}); err != nil {
			t.Fatal(err)
		}
		return os.NewFile(uintptr(fd), "bound")
	case "regular file":
		f, err := os.Create(filepath.Join(dir, "file"))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	t.Fatalf("unknown kind %q", kind)
	return nil
}

func TestActivatedListeners(t *testing.T) {
	tests := []struct {
		kind    string
		wantErr string // "" accepts
	}{
		{"unix listener", ""},
		{"tcp listener", "not a unix socket"},
		{"unixgram", "not a stream socket"},
		{"connected (Accept=yes)", "Accept=no"},
		{"bound, not listening", "not a listening socket"},
		{"regular file", "not a socket"},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			f := sockFile(t, tc.kind)
			lns, err := activatedListeners([]*os.File{f})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if lns != nil {
					t.Fatalf("listeners returned with the error")
				}
				return
			}
			if err != nil || len(lns) != 1 {
				t.Fatalf("activatedListeners = %v, %v", lns, err)
			}
			path := lns[0].Addr().String()
			// the listener is ours to close, the socket file is systemd's
			lns[0].Close()
			if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
				t.Fatalf("closing the activated listener removed %s: %v", path, err)
			}
		})
	}
}

// TestActivatedListenersMixed: one bad descriptor among good ones refuses
// them all and closes the good ones it had taken.
func TestActivatedListenersMixed(t *testing.T) {
	good := sockFile(t, "unix listener")
	bad := sockFile(t, "tcp listener")
	lns, err := activatedListeners([]*os.File{good, bad})
	if err == nil || !strings.Contains(err.Error(), "descriptor 4") {
		t.Fatalf("err = %v, want one naming descriptor 4", err)
	}
	if lns != nil {
		t.Fatal("listeners returned with the error")
	}
}

func TestActivatedFilesBadCount(t *testing.T) {
	for _, v := range []string{"x", "-1", "65"} {
		t.Setenv(envInheritedFds, v)
		if _, err := activatedFiles(); err == nil {
			t.Errorf("%s=%q accepted", envInheritedFds, v)
		}
		if _, set := os.LookupEnv(envInheritedFds); set {
			t.Errorf("%s left in the environment", envInheritedFds)
		}
	}
}

// TestActivatedFilesNotOurs: LISTEN_FDS meant for another pid (the parent
// that exec'd us without fixing LISTEN_PID) is ignored and removed.
func TestActivatedFilesNotOurs(t *testing.T) {
	t.Setenv(envInheritedFds, "")
	os.Unsetenv(envInheritedFds)
	t.Setenv("LISTEN_PID", "1")
	t.Setenv("LISTEN_FDS", "1")
	files, err := activatedFiles()
	if err != nil || len(files) != 0 {
		t.Fatalf("activatedFiles = %v, %v", files, err)
	}
	if _, set := os.LookupEnv("LISTEN_FDS"); set {
		t.Error("LISTEN_FDS left for the PAM workers to inherit")
	}
}

func TestLockRunDirActivated(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, SocketName)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	link := filepath.Join(t.TempDir(), "run")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	otherLn, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer otherLn.Close()
	tests := []struct {
		name      string
		dir       string
		activated []string
		want      error
	}{
		{"not activated: the answering socket is another daemon's", dir, nil, ErrAnotherInstance},
		{"activated on dir/mux", dir, []string{sock}, nil},
		{"activated on the same file by another name", link, []string{sock}, nil},
		{"activated elsewhere: dir/mux still another daemon's", dir, []string{other}, ErrAnotherInstance},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := LockRunDir(tc.dir, tc.activated...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("LockRunDir = %v, want %v", err, tc.want)
			}
			if err == nil {
				rd.Close()
				// Close never removes a socket it did not bind
				if _, err := os.Lstat(sock); err != nil {
					t.Fatalf("the activated socket was removed: %v", err)
				}
			}
		})
	}
}

func TestNotifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	n := newNotifier(slog.New(slog.DiscardHandler))
	n.Notify("READY=1", "STATUS=Serving x")
	n.Notify("WATCHDOG=1")
	for _, want := range []string{"READY=1\nSTATUS=Serving x", "WATCHDOG=1"} {
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := c.Read(buf)
		if err != nil || string(buf[:k]) != want {
			t.Fatalf("datagram = %q, %v; want %q", buf[:k], err, want)
		}
	}

	os.Unsetenv("NOTIFY_SOCKET")
	if newNotifier(slog.New(slog.DiscardHandler)) != nil {
		t.Fatal("a notifier without NOTIFY_SOCKET")
	}
	var none *notifier
	none.Notify("READY=1") // a nil notifier does nothing
}

// TestNotifierStuck: a notify socket that takes nothing costs the caller
// the timeout, not a hang.
func TestNotifierStuck(t *testing.T) {
	lb := &logBuf{}
	block := make(chan struct{})
	defer close(block)
	n := &notifier{log: slog.New(NewLogHandler("t", false, lb, slog.LevelDebug)), timeout: 100 * time.Millisecond,
		send: func(string) (bool, error) { <-block; return true, nil }}
	start := time.Now()
	n.Notify("READY=1")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Notify took %s on a stuck socket", d)
	}
	if !strings.Contains(lb.String(), "did not take the message in time") {
		t.Fatalf("no warning logged: %q", lb.String())
	}
}

func TestProbe(t *testing.T) {
	dir := t.TempDir()
	// a socket that is listening but nobody accepts on: the kernel queues
	// the probe, the reply never comes
	idle, err := net.Listen("unix", filepath.Join(dir, "idle"))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := probe(idle.Addr().String(), 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not served") {
		t.Fatalf("probe of an unserved socket = %v", err)
	}
	if err := probe(filepath.Join(dir, "none"), time.Second); err == nil {
		t.Fatal("probe of a missing socket succeeded")
	}
	if err := probe("", time.Second); !errors.Is(err, errNoPath) {
		t.Fatalf("probe of an unnamed socket = %v", err)
	}

	var calls atomic.Int32
	m := mechstest.Func{MechName: "count", Fn: func(context.Context, mechs.Request) (mechs.Result, error) {
		calls.Add(1)
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}, nil
	}}
	sock, lb := startServer(t, &Server{}, m)
	for range 3 {
		if err := probe(sock, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// a probe is neither a request nor a truncated one: no mechanism call,
	// no log line
	if calls.Load() != 0 || lb.String() != "" {
		t.Fatalf("probes reached the request path: %d calls, log %q", calls.Load(), lb.String())
	}
}

// TestWatchdog: the pings follow the server's liveness. With its only
// connection slot held by a stalled client the accept loop cannot take the
// probe and the pings stop; once the client goes they resume.
func TestWatchdog(t *testing.T) {
	s := &Server{MaxConns: 1, ReadTimeout: time.Minute}
	sock, _ := startServer(t, s, users)
	pings := make(chan time.Time, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const interval = 400 * time.Millisecond
	go watchdog(ctx, s, []string{sock}, interval, func() { pings <- time.Now() }, slog.New(slog.DiscardHandler))

	waitPings := func(n int, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for i := 0; i < n; i++ {
			select {
			case <-pings:
			case <-deadline:
				t.Fatalf("%d of %d pings in %s", i, n, within)
			}
		}
	}
	waitPings(3, 5*interval) // idle: the probes keep it pinging

	held, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	// the tick after the slot was taken may still count that accept
	time.Sleep(interval)
	for len(pings) > 0 {
		<-pings
	}
	select {
	case p := <-pings:
		t.Fatalf("ping at %s while the only slot is held", p.Format(time.StampMilli))
	case <-time.After(3 * interval):
	}
	held.Close()
	waitPings(2, 5*interval)

	// traffic alone keeps it pinging, probes or not
	if r := ask(t, sock, protocol.Request{Login: "alice", Password: "secret"}); r != "OK" {
		t.Fatalf("reply %q", r)
	}
	cancel()
}

// TestShutdownKeepBacklog: with KeepBacklog a client queued in the backlog
// at Shutdown is neither served nor reset; the next server on the same
// socket (systemd's, across a restart) answers it.
func TestShutdownKeepBacklog(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	m := mechstest.Func{MechName: "gate", Fn: func(ctx context.Context, r mechs.Request) (mechs.Result, error) {
		if r.Login == "slow" {
			started <- struct{}{}
			<-release
		}
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK " + r.Login}, nil
	}}
	// the test holds the socket, as systemd does
	sys, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "mux"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	sock := sys.Addr().String()
	instance := func() (*Server, net.Listener) {
		f, err := sys.File()
		if err != nil {
			t.Fatal(err)
		}
		lns, err := activatedListeners([]*os.File{f})
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{MaxConns: 1, KeepBacklog: true, Logger: slog.New(slog.DiscardHandler)}
		s.SetAuth(m)
		return s, lns[0]
	}
	s1, ln1 := instance()
	served1 := make(chan error, 1)
	go func() { served1 <- s1.Serve(ln1) }()

	type result struct {
		reply string
		err   error
	}
	askAsync := func(login string) chan result {
		ch := make(chan result, 1)
		go func() {
			c := &protocol.Client{Path: sock, Timeout: 20 * time.Second}
			r, err := c.Do(context.Background(), protocol.Request{Login: login, Password: "pw"})
			ch <- result{r, err}
		}()
		return ch
	}
	inflight := askAsync("slow")
	<-started
	queued := askAsync("queued") // the only slot is busy: it waits in the backlog
	time.Sleep(100 * time.Millisecond)

	stopped := make(chan error, 1)
	go func() { stopped <- s1.Shutdown(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	close(release)
	if r := <-inflight; r.err != nil || r.reply != "OK slow" {
		t.Fatalf("in-flight request: %q, %v", r.reply, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if err := <-served1; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	select {
	case r := <-queued:
		t.Fatalf("the queued client was answered by the stopping server: %q, %v", r.reply, r.err)
	case <-time.After(300 * time.Millisecond):
	}

	s2, ln2 := instance()
	go func() { _ = s2.Serve(ln2) }()
	defer func() { _ = s2.Shutdown(context.Background()) }()
	if r := <-queued; r.err != nil || r.reply != "OK queued" {
		t.Fatalf("queued client after the restart: %q, %v", r.reply, r.err)
	}
}

// TestIsProbe: the server tells its own probes from clients by the
// abstract address they bind, and a client cannot be mistaken for one.
func TestIsProbe(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "mux"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { _ = probe(ln.Addr().String(), 5*time.Second) }()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if !isProbe(c) {
		t.Errorf("probe not recognized: remote address %q", c.RemoteAddr())
	}
	c.Close()
	for _, laddr := range []*net.UnixAddr{nil, {Name: "@saslgate-probe-1-00-1", Net: "unix"}} {
		d := net.Dialer{}
		if laddr != nil {
			d.LocalAddr = laddr
		}
		cl, err := d.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if isProbe(c) {
			t.Errorf("client bound to %v taken for a probe", laddr)
		}
		c.Close()
		cl.Close()
	}
}
