package main

import (
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// fakeDaemonEnv makes the test binary a tiny saslauthd-compatible daemon
// in the foreground: it writes its pid file, listens on RUNDIR/mux after a
// pause, sends READY=1 to NOTIFY_SOCKET and answers "OK" until SIGTERM.
const fakeDaemonEnv = "BENCHCMP_FAKE_DAEMON"

func TestMain(m *testing.M) {
	if dir := os.Getenv(fakeDaemonEnv); dir != "" {
		fakeDaemon(dir)
		return
	}
	os.Exit(m.Run())
}

func fakeDaemon(dir string) {
	_ = os.WriteFile(filepath.Join(dir, "saslauthd.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	time.Sleep(30 * time.Millisecond) // start-up work, which the measurement must see
	l, err := net.Listen("unix", filepath.Join(dir, "mux"))
	if err != nil {
		os.Exit(3)
	}
	if ns := os.Getenv("NOTIFY_SOCKET"); ns != "" {
		if c, err := net.Dial("unixgram", ns); err == nil {
			_, _ = c.Write([]byte("STATUS=up\nREADY=1"))
			c.Close()
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() { <-sigs; os.Exit(0) }()
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(4)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := protocol.NewReader(c).ReadRequest(); err == nil {
			_ = protocol.WriteReply(c, "OK")
		}
		c.Close()
	}
}

func TestMeasureStartup(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	runDir := filepath.Join(tmp, "run")
	t.Setenv(fakeDaemonEnv, runDir)
	s, err := measureStartup([]string{self}, runDir, filepath.Join(tmp, "notify"), protocol.Request{Login: "u", Password: "p", Service: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if s.answer < 30*time.Millisecond || s.answer > 5*time.Second {
		t.Errorf("answered after %s: want the 30 ms start-up and not much more", s.answer)
	}
	if s.ready < 30*time.Millisecond || s.ready > s.answer+time.Second {
		t.Errorf("READY=1 after %s (answer after %s)", s.ready, s.answer)
	}
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Errorf("run directory left behind: %v", err)
	}
}

// A daemon that never answers ends the measurement with an error, not a hang.
func TestMeasureStartupNoAnswer(t *testing.T) {
	defer func(w time.Duration) { startupWait = w }(startupWait)
	startupWait = 500 * time.Millisecond
	tmp := t.TempDir()
	start := time.Now()
	_, err := measureStartup([]string{"sleep", "30"}, filepath.Join(tmp, "run"), filepath.Join(tmp, "notify"), protocol.Request{Login: "u"})
	if err == nil {
		t.Fatal("no error from a daemon that never listens")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestDescendantsAndMemory(t *testing.T) {
	child := exec.Command("sleep", "10")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	ds := descendants(os.Getpid())
	if ds[0] != os.Getpid() || !slices.Contains(ds, child.Process.Pid) {
		t.Errorf("descendants(%d) = %v: want it first and the child %d", os.Getpid(), ds, child.Process.Pid)
	}
	m, err := measureMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.procs < 2 || m.rssMain <= 0 || m.anonMain <= 0 || m.anonMain > m.rssMain || m.rssTree <= m.rssMain || m.pssTree <= 0 || m.fds < 3 {
		t.Errorf("implausible sample %+v", m)
	}
	if _, err := procKB("/proc/self/status", "NoSuchKey"); err == nil {
		t.Error("procKB: no error for a missing key")
	}
	if _, err := measureMem(1 << 30); err == nil {
		t.Error("measureMem of a pid that does not exist: no error")
	}
}

// listenBacklog listens on a unix socket with the given backlog and never
// accepts, as a Cyrus whose workers are all busy.
func listenBacklog(t *testing.T, path string, backlog int) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		t.Fatal(err)
	}
}

func TestOpenIdle(t *testing.T) {
	dir := t.TempDir()
	wide, narrow := filepath.Join(dir, "wide"), filepath.Join(dir, "narrow")
	listenBacklog(t, wide, 100)
	listenBacklog(t, narrow, 3)
	closeAll := func(cs []net.Conn) {
		for _, c := range cs {
			c.Close()
		}
	}
	cs, refused := openIdle(wide, 20)
	closeAll(cs)
	if len(cs) != 20 || refused != "" {
		t.Errorf("backlog 100, 20 wanted: %d open, refused %q", len(cs), refused)
	}
	start := time.Now()
	cs, refused = openIdle(narrow, 20)
	closeAll(cs)
	// Linux queues backlog+1 connections
	if len(cs) < 3 || len(cs) > 4 || refused == "" {
		t.Errorf("backlog 3: %d open, refused %q: want 3 or 4 and a refusal", len(cs), refused)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the refusal took %s: a full backlog must fail at once", d)
	}
}
