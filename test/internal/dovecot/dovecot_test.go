package dovecot

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func need(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root"
	} else if _, err := exec.LookPath("dovecot"); err != nil {
		why = "dovecot not found (make deps installs it)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and the peer is missing: %s", why)
	}
	t.Skip(why)
}

// login runs one IMAP LOGIN and returns the tagged answer's status.
func login(t *testing.T, s *Server, user, pass string, timeout time.Duration) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.Port), timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte("a LOGIN " + user + " " + pass + "\r\n")); err != nil {
		return "", err
	}
	status, err := tagged(r, "a ")
	if err != nil || status != "OK" {
		return status, err
	}
	// the session behind the LOGIN must work too (mbox refuses an imap
	// process that serves several clients, right after LOGIN)
	if _, err := c.Write([]byte("b NOOP\r\n")); err != nil {
		return "", err
	}
	if noop, err := tagged(r, "b "); err != nil || noop != "OK" {
		return "", fmt.Errorf("NOOP after LOGIN: %q, %v", noop, err)
	}
	return status, nil
}

func tagged(r *bufio.Reader, tag string) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(line, tag) {
			return strings.Fields(line)[1], nil
		}
	}
}

// TestLifecycle: the users log in; a stalled server answers nothing until
// it is continued; after Stop and after Kill it restarts on the same port.
func TestLifecycle(t *testing.T) {
	need(t)
	dir, err := os.MkdirTemp("", "sgdv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := Start(dir, map[string]string{"alice": "pw-alice"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	check := func(stage, user, pass, want string) {
		t.Helper()
		got, err := login(t, s, user, pass, 5*time.Second)
		if err != nil || got != want {
			t.Fatalf("%s: LOGIN %s: %q, %v; want %s", stage, user, got, err, want)
		}
	}
	check("started", "alice", "pw-alice", "OK")
	check("started", "alice", "wrong", "NO")

	if err := s.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if _, err := login(t, s, "alice", "pw-alice", 500*time.Millisecond); err == nil {
		t.Fatal("a stalled Dovecot answered")
	}
	if err := s.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	check("continued", "alice", "pw-alice", "OK")

	port := s.Port
	s.Stop()
	if s.Running() {
		t.Fatal("running after Stop")
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
		t.Fatal("port still open after Stop")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	check("restarted after Stop", "alice", "pw-alice", "OK")
	s.Kill()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Port != port {
		t.Fatalf("port moved from %d to %d", port, s.Port)
	}
	check("restarted after Kill", "alice", "pw-alice", "OK")
	if err := s.Restart(); err == nil {
		t.Fatal("Restart of a running server succeeded")
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log")); strings.Contains(string(log), "Error:") {
		t.Errorf("dovecot.log has errors:\n%s", log)
	}
}

func TestStartRejectsBadUsers(t *testing.T) {
	dir := t.TempDir()
	for _, users := range []map[string]string{{"a:b": "x"}, {"a": "x\ny"}} {
		if _, err := Start(dir, users); err == nil || !strings.Contains(err.Error(), "passwd-file") {
			t.Errorf("Start(%q): %v, want a passwd-file error", users, err)
		}
	}
}
