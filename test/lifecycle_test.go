package test

// Daemon life cycle: detaching (Type=forking semantics), the single-instance
// guard (against saslgate and against the real Cyrus saslauthd), signals,
// stale sockets and the run directory (spec §3.4, §3.5, §7.3, §13 cases
// 49-51).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// lcProcStat returns a process's state letter and session id from
// /proc/<pid>/stat; ok is false when there is no such process.
func lcProcStat(pid int) (state byte, session int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+2:])) // state ppid pgrp session ...
	if len(f) < 4 {
		return 0, 0, false
	}
	session, _ = strconv.Atoi(f[3])
	return f[0][0], session, true
}

// lcAlive: the process exists and is not a zombie. Every thread is looked
// at: a multi-threaded process's leader turns zombie before its other
// threads are gone and its descriptors (the listening socket) are closed.
func lcAlive(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // that thread is gone
			}
			return true // cannot tell: assume it still runs
		}
		if i := bytes.LastIndexByte(b, ')'); i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X') {
			return true
		}
	}
	return false
}

func lcWaitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for lcAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// lcIsProgram reports whether pid runs the executable at path (also when the
// file has since been replaced, e.g. by a rebuild).
func lcIsProgram(pid int, path string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && strings.HasPrefix(exe, path)
}

// lcStopPid stops a daemon we started but that is not our child: SIGTERM,
// then SIGKILL to its process group (it is a session leader).
func lcStopPid(pid int) {
	if !lcAlive(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if !lcWaitGone(pid, 5*time.Second) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		lcWaitGone(pid, 5*time.Second)
	}
}

// lcReadPidFile returns the pid in dir/saslauthd.pid and the raw content.
func lcReadPidFile(dir string) (int, string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "saslauthd.pid"))
	if err != nil {
		return 0, "", err
	}
	pid, err := strconv.Atoi(strings.TrimSuffix(string(b), "\n"))
	return pid, string(b), err
}

// lcReapRunDir, at the end of the test, stops a saslgate whose pid is in
// dir's pid file (a detached daemon the test started, or one a failing
// test started by mistake).
func lcReapRunDir(t *testing.T, dir string) {
	bin := saslgateBin(t)
	t.Cleanup(func() {
		if pid, _, err := lcReadPidFile(dir); err == nil && pid > 0 && lcIsProgram(pid, bin) {
			lcStopPid(pid)
		}
	})
}

type lcRunResult struct {
	stdout, stderr string
	code           int
	pid            int  // the process we started (the parent, for a detached start)
	timedOut       bool // still running after the timeout: killed
}

func (r lcRunResult) String() string {
	return fmt.Sprintf("exit %d (timed out: %v), stdout %q, stderr %q", r.code, r.timedOut, r.stdout, r.stderr)
}

// lcRunSaslgate runs bin/saslgate with args and waits at most timeout. A
// detached child that keeps our stderr longer than 2 s after the parent
// exits is not waited for.
func lcRunSaslgate(t *testing.T, timeout time.Duration, argv0 string, args ...string) lcRunResult {
	t.Helper()
	return lcRunProg(t, timeout, saslgateBin(t), argv0, args...)
}

func lcRunProg(t *testing.T, timeout time.Duration, prog, argv0 string, args ...string) lcRunResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	if argv0 != "" {
		cmd.Args[0] = argv0
	}
	cmd.WaitDelay = 2 * time.Second
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", prog, err)
	}
	_ = cmd.Wait()
	return lcRunResult{stdout: so.String(), stderr: se.String(), code: cmd.ProcessState.ExitCode(),
		pid: cmd.Process.Pid, timedOut: ctx.Err() != nil}
}

// lcServeArgs is saslgate serve -a sasldb on the fixture with run dir dir.
func lcServeArgs(fx *sdbFixture, dir string, extra ...string) []string {
	return append([]string{"serve", "--failure-delay", "0", "--auth-penalty", "0", "-a", "sasldb", "--sasldb-path", fx.DB, "-m", dir}, extra...)
}

// lcStartDetached starts saslgate without -d and returns the daemon's pid
// (from its pid file) and the parent's result. The daemon is stopped when
// the test ends.
func lcStartDetached(t *testing.T, fx *sdbFixture, dir string, extra ...string) (int, lcRunResult) {
	t.Helper()
	lcReapRunDir(t, dir)
	r := lcRunSaslgate(t, 20*time.Second, "", lcServeArgs(fx, dir, extra...)...)
	if r.code != 0 || r.timedOut {
		t.Fatalf("detached start: %s", r)
	}
	pid, _, err := lcReadPidFile(dir)
	if err != nil {
		t.Fatalf("detached start: pid file: %v", err)
	}
	return pid, r
}

func lcAskDave(sock string) string {
	return ask(sock, protocol.Request{Login: "dave", Password: sdbDavePw, Service: "smtp"})
}

func lcSocketIno(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("%s is %v, not a socket", path, fi.Mode())
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// lcWithoutSyslogNotice drops saslgate's "syslog unavailable" line (machines
// without /dev/log); Cyrus says nothing in that case.
func lcWithoutSyslogNotice(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.Contains(l, ":syslog unavailable:") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// (a) Without -d saslgate detaches; the parent exits 0 only when the
// socket is bound and the pid file written.
func TestLifecycleDetach(t *testing.T) {
	fx := sdbNewFixture(t)
	dir := filepath.Join(fx.Dir, "run")
	lcReapRunDir(t, dir)
	r := lcRunSaslgate(t, 20*time.Second, "", lcServeArgs(fx, dir)...)
	// Immediately: the socket must already exist and answer.
	muxFi, muxErr := os.Lstat(filepath.Join(dir, "mux"))
	conn, dialErr := net.Dial("unix", filepath.Join(dir, "mux"))
	if dialErr == nil {
		conn.Close()
	}
	if r.code != 0 || r.timedOut {
		t.Fatalf("parent: %s", r)
	}
	if r.stdout != "" {
		t.Errorf("parent stdout %q, want nothing", r.stdout)
	}
	if muxErr != nil || dialErr != nil {
		t.Fatalf("right after the parent exited: mux: %v, connect: %v", muxErr, dialErr)
	}
	if muxFi.Mode().Type() != fs.ModeSocket || muxFi.Mode().Perm() != 0o777 {
		t.Errorf("mux is %v, want a socket with mode 0777", muxFi.Mode())
	}
	pidPath := filepath.Join(dir, "saslauthd.pid")
	pfi, err := os.Stat(pidPath)
	if err != nil {
		t.Fatal(err)
	}
	if pfi.Mode().Perm() != 0o600 {
		t.Errorf("saslauthd.pid mode %v, want 0600", pfi.Mode().Perm())
	}
	pid, raw, err := lcReadPidFile(dir)
	if err != nil || !regexp.MustCompile(`^[1-9][0-9]*\n$`).MatchString(raw) {
		t.Fatalf("saslauthd.pid holds %q (%v), want \"<pid>\\n\"", raw, err)
	}
	if pid == r.pid {
		t.Errorf("the pid file names the parent (%d), not the child", pid)
	}
	if !lcAlive(pid) || !lcIsProgram(pid, saslgateBin(t)) {
		t.Fatalf("pid %d from the pid file is not a running saslgate", pid)
	}
	if _, sid, _ := lcProcStat(pid); sid != pid {
		t.Errorf("daemon %d is in session %d, want its own session (setsid)", pid, sid)
	}
	if _, err := os.Stat(filepath.Join(dir, "saslauthd.pid.lock")); err == nil {
		t.Errorf("saslauthd.pid.lock left behind")
	}
	if got := lcAskDave(filepath.Join(dir, "mux")); got != "OK" {
		t.Errorf("request to the detached daemon: %q, want OK", got)
	}
}

// A daemonized start prints nothing: Cyrus logs "master pid is" and
// "listening on socket" after detaching, to syslog only. saslgate's child
// keeps the parent's stderr until it is ready (so that start-up errors
// show), and its info lines leak there too. BUG (minor; see the report).
func TestLifecycleDetachQuietStderr(t *testing.T) {
	fx := sdbNewFixture(t)
	cyDir := filepath.Join(fx.Dir, "cy")
	cy := lcRunProg(t, 20*time.Second, need(t, "saslauthd")[0], "", "-a", "sasldb", "-m", cyDir, "-n", "1")
	if pid, _, err := lcReadPidFile(cyDir); err == nil {
		t.Cleanup(func() { lcStopPid(pid) })
	}
	if cy.code != 0 {
		t.Fatalf("Cyrus daemonized start: %s", cy)
	}
	_, sg := lcStartDetached(t, fx, filepath.Join(fx.Dir, "sg"))
	if got := lcWithoutSyslogNotice(sg.stderr); got != cy.stderr {
		t.Errorf("daemonized start: Cyrus prints %q, saslgate prints %q", cy.stderr, got)
	}
}

// (b) A second start on the same -m exits 2 and the first keeps working,
// whatever mode each runs in. (Cyrus 2.1.28 lets a -d start steal the
// socket, spec §3.5; saslgate refuses it.)
func TestLifecycleSecondInstance(t *testing.T) {
	fx := sdbNewFixture(t)
	for _, first := range []string{"detached", "foreground"} {
		t.Run("first "+first, func(t *testing.T) {
			dir := filepath.Join(fx.Dir, first)
			if first == "detached" {
				lcStartDetached(t, fx, dir)
			} else {
				sdbStartSaslgate(t, fx, "first", dir)
			}
			sock := filepath.Join(dir, "mux")
			ino := lcSocketIno(t, sock)
			_, pidBefore, _ := lcReadPidFile(dir)
			for _, second := range [][]string{nil, {"-d"}} {
				r := lcRunSaslgate(t, 10*time.Second, "", lcServeArgs(fx, dir, second...)...)
				if r.code != 2 || r.timedOut || !strings.Contains(r.stderr, "Another instance of saslauthd is currently running") {
					t.Errorf("second start %q: %s; want exit 2 and \"Another instance of saslauthd is currently running\"", second, r)
				}
				if !strings.Contains(r.stderr, "Cannot start saslauthd") {
					t.Errorf("second start %q: stderr %q lacks \"Cannot start saslauthd\"", second, r.stderr)
				}
				if got := lcAskDave(sock); got != "OK" {
					t.Errorf("after second start %q the first answers %q, want OK", second, got)
				}
				if lcSocketIno(t, sock) != ino {
					t.Errorf("second start %q replaced the first's socket", second)
				}
				if _, pidAfter, _ := lcReadPidFile(dir); pidAfter != pidBefore {
					t.Errorf("second start %q changed the pid file from %q to %q", second, pidBefore, pidAfter)
				}
			}
		})
	}
}

// lcStartCyrusForeground runs the real saslauthd -d (no pid lock) on dir.
func lcStartCyrusForeground(t *testing.T, dir string) *Daemon {
	t.Helper()
	d := startDaemon(t, "cyrus", need(t, "saslauthd")[0], "", dir, "-d", "-a", "sasldb", "-m", dir, "-n", "1")
	t.Cleanup(func() { sdbKillGroup(d) })
	return d
}

// lcStartCyrusDetached runs the real saslauthd daemonized (pid lock) on dir
// and returns its pid.
func lcStartCyrusDetached(t *testing.T, dir string) int {
	t.Helper()
	r := lcRunProg(t, 20*time.Second, need(t, "saslauthd")[0], "", "-a", "sasldb", "-m", dir, "-n", "1")
	pid, _, err := lcReadPidFile(dir)
	if err == nil {
		t.Cleanup(func() { lcStopPid(pid) })
	}
	if r.code != 0 || err != nil {
		t.Fatalf("Cyrus daemonized start: %s; pid file: %v", r, err)
	}
	// Cyrus reports success before it binds (spec §3.4): wait for mux.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", filepath.Join(dir, "mux")); err == nil {
			c.Close()
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("Cyrus daemon %d never bound %s/mux", pid, dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lcCyrusAnswers: the Cyrus daemon still serves its socket (any OK/NO reply;
// it reads the system's /etc/sasldb2).
func lcCyrusAnswers(sock string) bool {
	r := ask(sock, protocol.Request{Login: "nobody", Password: "x", Service: "smtp"})
	return strings.HasPrefix(r, "OK") || strings.HasPrefix(r, "NO")
}

// (c) saslgate refuses a run directory the real Cyrus saslauthd serves:
// in the foreground (no pid lock: saslgate sees the live socket) and
// daemonized (saslgate meets Cyrus's fcntl lock on saslauthd.pid). And the
// other way round: Cyrus daemonized refuses saslgate's run directory.
func TestLifecycleCyrusHoldsRunDir(t *testing.T) {
	fx := sdbNewFixture(t)
	t.Run("Cyrus foreground", func(t *testing.T) {
		dir := filepath.Join(fx.Dir, "cyfg")
		lcReapRunDir(t, dir)
		lcStartCyrusForeground(t, dir)
		sock := filepath.Join(dir, "mux")
		ino := lcSocketIno(t, sock)
		for _, mode := range [][]string{{"-d"}, nil} {
			r := lcRunSaslgate(t, 10*time.Second, "", lcServeArgs(fx, dir, mode...)...)
			if r.code != 2 || r.timedOut || !strings.Contains(r.stderr, "Another instance of saslauthd is currently running") {
				t.Errorf("saslgate %q next to Cyrus -d: %s; want exit 2", mode, r)
			}
			if lcSocketIno(t, sock) != ino || !lcCyrusAnswers(sock) {
				t.Errorf("saslgate %q took Cyrus's socket", mode)
			}
		}
	})
	t.Run("Cyrus daemonized", func(t *testing.T) {
		dir := filepath.Join(fx.Dir, "cybg")
		lcReapRunDir(t, dir)
		pid := lcStartCyrusDetached(t, dir)
		sock := filepath.Join(dir, "mux")
		ino := lcSocketIno(t, sock)
		for _, mode := range [][]string{{"-d"}, nil} {
			r := lcRunSaslgate(t, 10*time.Second, "", lcServeArgs(fx, dir, mode...)...)
			if r.code != 2 || r.timedOut || !strings.Contains(r.stderr, "Another instance of saslauthd is currently running") {
				t.Errorf("saslgate %q next to daemonized Cyrus: %s; want exit 2", mode, r)
			}
			if lcSocketIno(t, sock) != ino || !lcCyrusAnswers(sock) {
				t.Errorf("saslgate %q took Cyrus's socket", mode)
			}
			if got, _, _ := lcReadPidFile(dir); got != pid {
				t.Errorf("saslgate %q rewrote Cyrus's pid file: %d, want %d", mode, got, pid)
			}
		}
	})
	t.Run("saslgate holds it, Cyrus daemonized refuses", func(t *testing.T) {
		dir := filepath.Join(fx.Dir, "sgbg")
		lcStartDetached(t, fx, dir)
		sock := filepath.Join(dir, "mux")
		ino := lcSocketIno(t, sock)
		r := lcRunProg(t, 20*time.Second, need(t, "saslauthd")[0], "", "-a", "sasldb", "-m", dir, "-n", "1")
		if r.code != 2 {
			t.Errorf("Cyrus daemonized next to saslgate: %s; want exit 2", r)
		}
		if lcSocketIno(t, sock) != ino || lcAskDave(sock) != "OK" {
			t.Errorf("Cyrus took saslgate's socket")
		}
	})
}

// When saslgate refuses a run directory because a foreground Cyrus
// answers on its socket, it has already created an (empty) saslauthd.pid
// there and leaves it behind: LockRunDir opens it O_CREATE, finds the live
// socket, and only closes it. Cyrus -d writes no pid file, so the
// directory gains a stray empty pid file that outlives both (an init
// script's `start-stop-daemon --pidfile` then reads an empty file). BUG
// (minor; see the report).
func TestLifecycleRefusalLeavesNoPidFile(t *testing.T) {
	fx := sdbNewFixture(t)
	dir := filepath.Join(fx.Dir, "cyfg")
	lcReapRunDir(t, dir)
	lcStartCyrusForeground(t, dir)
	r := lcRunSaslgate(t, 10*time.Second, "", lcServeArgs(fx, dir, "-d")...)
	if r.code != 2 {
		t.Fatalf("saslgate next to Cyrus -d: %s; want exit 2", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "saslauthd.pid")); err == nil {
		t.Errorf("saslgate left %s/saslauthd.pid behind after refusing to start", dir)
	}
}

// (d) SIGTERM: requests in flight get their replies, then mux and the pid
// file are removed and the daemon exits 0.
func TestLifecycleSIGTERM(t *testing.T) {
	fx := sdbNewFixture(t)
	t.Run("foreground", func(t *testing.T) {
		dir := filepath.Join(fx.Dir, "fg")
		d := sdbStartSaslgate(t, fx, "saslgate", dir)
		sock := d.Socket()
		if _, err := os.Stat(filepath.Join(dir, "saslauthd.pid")); err != nil {
			t.Errorf("saslgate -d writes saslauthd.pid (unlike Cyrus -d): %v", err)
		}
		// A request in flight: half of it now, the rest after SIGTERM.
		req := sdbFields("dave", sdbDavePw, "smtp", "")
		inflight, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer inflight.Close()
		_ = inflight.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := inflight.Write(req[:9]); err != nil {
			t.Fatal(err)
		}
		// Clients hammering the socket across the shutdown.
		var stop atomic.Bool
		var okN, refusedN, droppedN, otherN atomic.Int64
		var others sync.Map
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					b, err := rawExchange(sock, req, false, 10*time.Second)
					switch {
					case err == nil && bytes.Equal(b, sdbWire("OK")):
						okN.Add(1)
					case len(b) == 0 && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)):
						refusedN.Add(1)
						time.Sleep(time.Millisecond)
					case len(b) == 0 && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)):
						// connected into the listen backlog, never accepted:
						// the kernel drops it when the listener closes
						droppedN.Add(1)
					default:
						otherN.Add(1)
						others.Store(sdbOutcome(b, err), true)
					}
				}
			}()
		}
		time.Sleep(200 * time.Millisecond) // let the in-flight connection be accepted
		if err := d.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		_, _ = inflight.Write(req[9:])
		var got bytes.Buffer
		_, rerr := got.ReadFrom(inflight)
		if o := sdbOutcome(got.Bytes(), rerr); o != sdbOutcome(sdbWire("OK"), nil) {
			t.Errorf("request in flight at SIGTERM: %s, want the reply then EOF", o)
		}
		inflight.Close() // saslgate drains until the client closes
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			t.Fatalf("saslgate still running 15 s after SIGTERM:\n%s", d.Out.String())
		}
		stop.Store(true)
		wg.Wait()
		if code := d.Cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code after SIGTERM: %d, want 0", code)
		}
		for _, f := range []string{"mux", "saslauthd.pid"} {
			if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
				t.Errorf("%s still exists after SIGTERM", f)
			}
		}
		if !strings.Contains(d.Out.String(), "master exited: ") {
			t.Errorf("no \"master exited:\" line:\n%s", d.Out.String())
		}
		var odd []string
		others.Range(func(k, _ any) bool { odd = append(odd, k.(string)); return true })
		t.Logf("clients across the shutdown: %d OK, %d refused, %d dropped from the backlog, %d other %v",
			okN.Load(), refusedN.Load(), droppedN.Load(), otherN.Load(), odd)
		// A connection still queued in the listen backlog when the listener
		// closes is reset by the kernel (best effort: only logged above).
		// Any other ending means a connection the daemon had accepted lost
		// its reply.
		for _, o := range odd {
			t.Errorf("a client across the shutdown saw %s", o)
		}
	})
	t.Run("detached", func(t *testing.T) {
		dir := filepath.Join(fx.Dir, "bg")
		pid, _ := lcStartDetached(t, fx, dir)
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if !lcWaitGone(pid, 15*time.Second) {
			t.Fatalf("daemon %d still running 15 s after SIGTERM", pid)
		}
		for _, f := range []string{"mux", "saslauthd.pid"} {
			if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
				t.Errorf("%s still exists after SIGTERM", f)
			}
		}
	})
}

// A client whose connection is still in the listen backlog at SIGTERM
// (connected and request written, not yet accepted) is reset: Shutdown
// closes the listener at once, and the kernel drops what it queued. Here
// the backlog is made deterministic with --max-conns 1 and one slow client
// holding the only slot; under load (TestLifecycleSIGTERM) the same happens
// to a few of the clients that connect in the last moment. Cyrus is no
// better (its master kills every process), but saslgate promises that the
// requests in flight get their replies, and from the client's side this one
// was. BUG (minor; see the report).
func TestLifecycleSIGTERMBacklogClient(t *testing.T) {
	fx := sdbNewFixture(t)
	d := sdbStartSaslgate(t, fx, "saslgate", filepath.Join(fx.Dir, "run"), "--max-conns", "1")
	req := sdbFields("dave", sdbDavePw, "smtp", "")
	a, err := net.Dial("unix", d.Socket())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_ = a.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := a.Write(req[:9]); err != nil { // holds the only slot
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	b, err := net.Dial("unix", d.Socket()) // queued in the backlog
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_ = b.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := b.Write(req); err != nil {
		t.Fatal(err)
	}
	if err := d.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_, _ = a.Write(req[9:])
	var ga, gb bytes.Buffer
	_, errA := ga.ReadFrom(a)
	a.Close()
	_, errB := gb.ReadFrom(b)
	b.Close()
	if o := sdbOutcome(ga.Bytes(), errA); o != sdbOutcome(sdbWire("OK"), nil) {
		t.Errorf("the accepted client: %s, want the reply then EOF", o)
	}
	if o := sdbOutcome(gb.Bytes(), errB); o != sdbOutcome(sdbWire("OK"), nil) {
		t.Errorf("the client waiting in the backlog at SIGTERM: %s, want the reply then EOF", o)
	}
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Errorf("saslgate still running 15 s after SIGTERM")
	}
}

// A client that got its reply but keeps its connection open holds up
// SIGTERM: Server.Shutdown waits for every connection, and a connection
// in its post-reply drain ends only when the client closes or at
// --drain-timeout (30 s). The same holds for a client stalled inside its
// request (--read-timeout, 30 s). Debian's init script stops with
// --retry=TERM/30/KILL/5, so one idle client turns a clean stop into a
// SIGKILL that leaves mux and saslauthd.pid behind. Cyrus's master exits at
// once. The reply has already been delivered, so nothing is lost by
// closing such a connection at shutdown. BUG (see the report). The test
// allows 10 s, a third of the drain timeout, so it asserts behaviour, not
// speed.
func TestLifecycleSIGTERMIdleClient(t *testing.T) {
	fx := sdbNewFixture(t)
	dir := filepath.Join(fx.Dir, "run")
	d := sdbStartSaslgate(t, fx, "saslgate", dir)
	c, err := net.Dial("unix", d.Socket())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(sdbFields("dave", sdbDavePw, "smtp", "")); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, rerr := got.ReadFrom(c) // the reply, then EOF: the server half-closed
	if o := sdbOutcome(got.Bytes(), rerr); o != sdbOutcome(sdbWire("OK"), nil) {
		t.Fatalf("reply: %s", o)
	}
	// The client keeps its end open, as a client that is slow to close.
	if err := d.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Errorf("saslgate still running 10 s after SIGTERM because one client that already has its reply has not closed")
	}
}

// (e) SIGHUP does not stop the daemon; it logs a reload line, and requests
// running across 20 SIGHUPs all get the right replies.
func TestLifecycleSIGHUP(t *testing.T) {
	fx := sdbNewFixture(t)
	d := sdbStartSaslgate(t, fx, "saslgate", filepath.Join(fx.Dir, "run"))
	sock := d.Socket()
	checks := []struct {
		req  protocol.Request
		want string
	}{
		{protocol.Request{Login: "dave", Password: sdbDavePw, Service: "smtp"}, "OK"},
		{protocol.Request{Login: "dave", Password: "wrong", Service: "smtp"}, "NO"},
		{protocol.Request{Login: "erin", Password: sdbErinPw, Service: "imap", Realm: sdbErinRealm}, "OK"},
		{protocol.Request{Login: "spacey", Password: sdbSpaceyPw, Service: "imap"}, "OK"},
	}
	var total, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	end := time.Now().Add(2 * time.Second)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; time.Now().Before(end); i++ {
				c := checks[i%len(checks)]
				got := ask(sock, c.req)
				total.Add(1)
				if got != c.want {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s: %q, want %q", c.req.Login, got, c.want))
				}
			}
		}()
	}
	for range 20 {
		if err := d.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP: %v", err)
		}
		time.Sleep(90 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("%d requests across 20 SIGHUPs, %d failed", total.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed across SIGHUPs; first: %v", failed.Load(), total.Load(), firstFailure.Load())
	}
	if total.Load() == 0 {
		t.Errorf("no request completed")
	}
	select {
	case <-d.done:
		t.Fatalf("saslgate exited after SIGHUP: %s\n%s", d.Cmd.ProcessState, d.Out.String())
	default:
	}
	sdbWaitOut(d, "reloaded: authentication mechanisms sasldb")
	if n := strings.Count(d.Out.String(), "reloaded: authentication mechanisms sasldb"); n == 0 {
		t.Errorf("no reload line logged:\n%s", d.Out.String())
	} else {
		t.Logf("%d reload lines for 20 SIGHUPs", n)
	}
	if got := lcAskDave(sock); got != "OK" {
		t.Errorf("after the SIGHUPs: %q, want OK", got)
	}
}

// (f) A socket left by a daemon killed with SIGKILL does not stop the next
// start, which replaces it.
func TestLifecycleStaleSocket(t *testing.T) {
	fx := sdbNewFixture(t)
	t.Run("foreground", func(t *testing.T) {
		dir := filepath.Join(fx.Dir, "fg")
		d := sdbStartSaslgate(t, fx, "first", dir)
		sdbKillGroup(d)
		lcSocketIno(t, d.Socket()) // the socket file is still there
		if _, err := net.Dial("unix", d.Socket()); err == nil {
			t.Fatal("the killed daemon's socket still answers")
		}
		d2 := sdbStartSaslgate(t, fx, "second", dir)
		if got := lcAskDave(d2.Socket()); got != "OK" {
			t.Errorf("restarted daemon: %q, want OK", got)
		}
		if pid, _, err := lcReadPidFile(dir); err != nil || pid != d2.Cmd.Process.Pid {
			t.Errorf("pid file names %d (%v), want %d", pid, err, d2.Cmd.Process.Pid)
		}
	})
	t.Run("detached", func(t *testing.T) {
		dir := filepath.Join(fx.Dir, "bg")
		pid, _ := lcStartDetached(t, fx, dir)
		sock := filepath.Join(dir, "mux")
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if !lcWaitGone(pid, 10*time.Second) {
			t.Fatalf("daemon %d survived SIGKILL", pid)
		}
		lcSocketIno(t, sock) // the socket file is still there
		if _, err := net.Dial("unix", sock); err == nil {
			tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
			var st []string
			for _, task := range tasks {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
				st = append(st, string(b))
			}
			out, _ := exec.Command("ss", "-xlp").CombinedOutput()
			t.Fatalf("the killed daemon's socket still answers; tasks %q\n%s", st, out)
		}
		pid2, _ := lcStartDetached(t, fx, dir)
		if pid2 == pid {
			t.Errorf("pid file still names the killed daemon %d", pid)
		}
		if got := lcAskDave(sock); got != "OK" {
			t.Errorf("restarted daemon: %q, want OK", got)
		}
	})
}

// lcUmask reads the process's umask without changing it.
func lcUmask(t *testing.T) os.FileMode {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Umask:\s+([0-7]+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no Umask in /proc/self/status")
	}
	u, _ := strconv.ParseUint(string(m[1]), 8, 32)
	return os.FileMode(u)
}

// (g) A -m directory that does not exist is created (mode 0755 less the
// umask, as saslauthd's mkdir). saslgate also creates missing parents,
// where Cyrus creates one level only and otherwise exits 1 ("can not
// mkdir"): a deliberate difference.
func TestLifecycleCreatesRunDir(t *testing.T) {
	fx := sdbNewFixture(t)
	want := 0o755 &^ lcUmask(t)
	for _, c := range []struct {
		name, dir string
		detached  bool
	}{
		{"one level, foreground", filepath.Join(fx.Dir, "new"), false},
		{"one level, detached", filepath.Join(fx.Dir, "newbg"), true},
		{"two levels, foreground", filepath.Join(fx.Dir, "a", "b"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.detached {
				lcStartDetached(t, fx, c.dir)
			} else {
				sdbStartSaslgate(t, fx, "saslgate", c.dir)
			}
			fi, err := os.Stat(c.dir)
			if err != nil || !fi.IsDir() {
				t.Fatalf("%s: %v", c.dir, err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s created with mode %v, want %v", c.dir, fi.Mode().Perm(), want)
			}
			if got := lcAskDave(filepath.Join(c.dir, "mux")); got != "OK" {
				t.Errorf("%q, want OK", got)
			}
		})
	}
	// Cyrus, for the record: two missing levels are an error.
	r := lcRunProg(t, 20*time.Second, need(t, "saslauthd")[0], "", "-d", "-a", "sasldb", "-m", filepath.Join(fx.Dir, "c", "d"))
	if r.code != 1 || !strings.Contains(r.stderr, "can not mkdir") {
		t.Logf("NOTE: Cyrus with two missing levels: %s", r)
	}
}
