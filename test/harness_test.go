package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// inCI reports whether missing peers must fail rather than skip.
func inCI() bool { return os.Getenv("CI") == "true" }

// need fails (in CI) or skips (elsewhere) unless every named program is on
// the PATH or at the given absolute path, and returns their paths.
func need(t *testing.T, progs ...string) []string {
	t.Helper()
	var paths []string
	for _, p := range progs {
		path, err := exec.LookPath(p)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/lib/postfix/sbin"} {
				if _, serr := os.Stat(filepath.Join(dir, p)); serr == nil {
					path, err = filepath.Join(dir, p), nil
					break
				}
			}
		}
		if err != nil {
			missing(t, fmt.Sprintf("%s not found (make deps installs it)", p))
		}
		paths = append(paths, path)
	}
	return paths
}

// needRoot fails in CI or skips elsewhere when not root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root")
	}
}

func missing(t *testing.T, why string) {
	t.Helper()
	if inCI() {
		t.Fatalf("CI=true and the peer is missing: %s", why)
	}
	t.Skip(why)
}

// saslgateBin is the binary under test, built by `make build`.
func saslgateBin(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(file), "..", "bin", "saslgate")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s missing: run `make build` (make e2e does): %v", bin, err)
	}
	abs, _ := filepath.Abs(bin)
	return abs
}

// syncBuf collects a daemon's output.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Daemon is a foreground daemon started by a test: saslgate or Cyrus.
type Daemon struct {
	Name   string
	RunDir string
	Cmd    *exec.Cmd
	Out    *syncBuf // stdout+stderr
	done   chan struct{}
}

// Socket is <run dir>/mux.
func (d *Daemon) Socket() string { return filepath.Join(d.RunDir, "mux") }

// startDaemon runs prog with args in the foreground (the caller passes -d
// and -m) and waits until its socket answers. argv0 sets the name the
// program sees (for saslgate called as saslauthd).
func startDaemon(t *testing.T, name, prog, argv0 string, runDir string, args ...string) *Daemon {
	t.Helper()
	cmd := exec.Command(prog, args...)
	if argv0 != "" {
		cmd.Args[0] = argv0
	}
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	// own process group: Cyrus's -d SIGTERM handler signals its whole group
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	d := &Daemon{Name: name, RunDir: runDir, Cmd: cmd, Out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.Stop(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", d.Socket())
		if err == nil {
			c.Close()
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("%s exited at start-up: %s\n%s", name, cmd.ProcessState, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: socket %s never answered:\n%s", name, d.Socket(), out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits (then SIGKILL).
func (d *Daemon) Stop(t *testing.T) {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-d.Cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// ask sends one request with saslgate's client and returns the reply text,
// or "ERR: ..." when there was no reply.
func ask(sock string, req protocol.Request) string {
	c := &protocol.Client{Path: sock, Timeout: 10 * time.Second}
	r, err := c.Do(context.Background(), req)
	if err != nil {
		return "ERR: " + err.Error()
	}
	return r
}

// rawExchange writes b on a fresh connection, optionally half-closes, and
// returns every byte received until the server closes (or the timeout).
func rawExchange(sock string, b []byte, halfClose bool, timeout time.Duration) ([]byte, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if len(b) > 0 {
		if _, err := c.Write(b); err != nil {
			return nil, err
		}
	}
	if halfClose {
		_ = c.(*net.UnixConn).CloseWrite()
	}
	return io.ReadAll(c)
}

// run runs a command and returns stdout, stderr and the exit code.
func run(t *testing.T, argv0 string, prog string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	if argv0 != "" {
		cmd.Args[0] = argv0
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", prog, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %s: timed out", prog, strings.Join(args, " "))
	}
	return so.String(), se.String(), cmd.ProcessState.ExitCode()
}
