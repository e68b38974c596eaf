package test

// saslgate under systemd, without systemd as PID 1: the test does what
// systemd does. It holds the listening socket (as saslgate.socket) and hands
// it to each daemon it starts as descriptor 3 with LISTEN_FDS=1 and
// LISTEN_PID set to the daemon's pid, and it reads the daemon's sd_notify
// datagrams on a NOTIFY_SOCKET of its own. One test uses systemd's own
// systemd-socket-activate instead.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs/rimap"
	"github.com/saslgate/saslgate/protocol"
)

// sdNotify is a NOTIFY_SOCKET: every datagram the daemon sends.
type sdNotify struct {
	Path string
	msgs chan string
	mu   sync.Mutex
	all  []string
}

func sdNewNotify(t *testing.T, dir string) *sdNotify {
	t.Helper()
	n := &sdNotify{Path: filepath.Join(dir, "notify"), msgs: make(chan string, 1024)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.Path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			m := string(buf[:k])
			n.mu.Lock()
			n.all = append(n.all, m)
			n.mu.Unlock()
			n.msgs <- m
		}
	}()
	return n
}

// sdHas reports whether a notify message has the line.
func sdHas(msg, line string) bool { return slices.Contains(strings.Split(msg, "\n"), line) }

// next returns the next message that has the line, failing after timeout.
func (n *sdNotify) next(t *testing.T, line string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-n.msgs:
			if sdHas(m, line) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s within %s; messages so far: %q", line, timeout, n.messages())
			return ""
		}
	}
}

func (n *sdNotify) messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.all)
}

// sdFixture is a run directory, a sasldb and a socket held by the test.
type sdFixture struct {
	fx     *sdbFixture
	RunDir string
	Sock   string
	ln     *net.UnixListener
	file   *os.File // what each daemon gets as descriptor 3
	notify *sdNotify
}

// sdSockMode is the unusual mode the test's "systemd" gives the socket, to
// show that the daemon never changes it.
const sdSockMode = 0o707

func sdNewFixture(t *testing.T) *sdFixture {
	t.Helper()
	need(t, "sh")
	fx := sdbNewFixture(t) // needs root and saslpasswd2
	f := &sdFixture{fx: fx, RunDir: filepath.Join(fx.Dir, "run")}
	if err := os.Mkdir(f.RunDir, 0o710); err != nil {
		t.Fatal(err)
	}
	f.Sock = filepath.Join(f.RunDir, "mux")
	f.ln, f.file = sdListen(t, f.Sock)
	f.notify = sdNewNotify(t, fx.Dir)
	return f
}

// sdListen makes a listening socket as systemd does and returns it with the
// descriptor to pass.
func sdListen(t *testing.T, path string) (*net.UnixListener, *os.File) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o710); err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, sdSockMode); err != nil {
		t.Fatal(err)
	}
	file, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Close(); ln.Close() })
	return ln, file
}

// sdCheckSocket: the socket file is still there, unchanged, and still
// listening (a connect succeeds: the kernel queues it).
func sdCheckSocket(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("the activated socket %s is gone: %v", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != sdSockMode {
		t.Fatalf("the activated socket %s was changed: %s", path, fi.Mode())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("the activated socket %s no longer listens: %v", path, err)
	}
	c.Close()
}

// sdProc is one daemon started the way systemd starts it.
type sdProc struct {
	Cmd  *exec.Cmd
	Out  *syncBuf
	done chan struct{}
}

// sdEnv is the environment without anything systemd would set.
func sdEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID",
			"JOURNAL_STREAM", "SASLGATE_LISTEN_FDS":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// sdStart starts saslgate with files as descriptors 3.. and LISTEN_PID set
// to its own pid (the shell execs it, so $$ is the daemon's pid), plus
// WATCHDOG_PID when a watchdog is asked for.
func sdStart(t *testing.T, f *sdFixture, files []*os.File, env []string, args ...string) *sdProc {
	t.Helper()
	script := `LISTEN_PID=$$; export LISTEN_PID; if [ -n "$WATCHDOG_USEC" ]; then WATCHDOG_PID=$$; export WATCHDOG_PID; fi; exec "$0" "$@"`
	argv := append([]string{"-c", script, saslgateBin(t)}, args...)
	cmd := exec.Command("/bin/sh", argv...)
	cmd.ExtraFiles = files
	cmd.Env = sdEnv(append([]string{"LISTEN_FDS=" + strconv.Itoa(len(files)), "NOTIFY_SOCKET=" + f.notify.Path}, env...)...)
	p := &sdProc{Cmd: cmd, Out: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Out, p.Out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("daemon %d output:\n%s", cmd.Process.Pid, p.Out.String())
		}
	})
	return p
}

// sdArgs is serve in the foreground on the fixture's sasldb, answering at
// once, with no config file.
func sdArgs(f *sdFixture, extra ...string) []string {
	return append([]string{"serve", "-f", "-a", "sasldb", "--sasldb-path", f.fx.DB, "-m", f.RunDir,
		"--config=", "--failure-delay", "0", "--auth-penalty", "0"}, extra...)
}

// wait returns the exit code, failing after timeout.
func (p *sdProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("daemon %d still running after %s", p.Cmd.Process.Pid, timeout)
		return -1
	}
}

func (p *sdProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (f *sdFixture) good() protocol.Request {
	return protocol.Request{Login: "dave", Password: sdbDavePw, Service: "smtp", Realm: f.fx.Host}
}

// sdAsk sends one request with a client timeout.
func sdAsk(sock string, req protocol.Request, timeout time.Duration) (string, error) {
	c := &protocol.Client{Path: sock, Timeout: timeout}
	return c.Do(context.Background(), req)
}

// TestSystemdReadyAnswers: READY=1 comes only once the socket is served: a
// request sent the moment it is read is answered at once. The socket is
// the run directory's mux, which is normal under activation, and the
// daemon neither removes nor changes it when it stops.
func TestSystemdReadyAnswers(t *testing.T) {
	f := sdNewFixture(t)
	p := sdStart(t, f, []*os.File{f.file}, nil, sdArgs(f)...)
	ready := f.notify.next(t, "READY=1", 15*time.Second)
	start := time.Now()
	r, err := sdAsk(f.Sock, f.good(), 2*time.Second)
	if err != nil || r != "OK" {
		t.Fatalf("request right after READY=1: %q, %v", r, err)
	}
	t.Logf("READY message %q; first request answered in %s", ready, time.Since(start))
	if want := "STATUS=Serving " + f.Sock + " (socket activation); mechanisms sasldb"; !sdHas(ready, want) {
		t.Errorf("READY message %q lacks %q", ready, want)
	}
	if sdHas(ready, "MAINPID="+strconv.Itoa(p.Cmd.Process.Pid)) {
		t.Errorf("a foreground daemon sent MAINPID: %q", ready)
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	stopping := f.notify.next(t, "STOPPING=1", 10*time.Second)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	t.Logf("stop: %q", stopping)
	sdCheckSocket(t, f.Sock)
	if _, err := os.Stat(filepath.Join(f.RunDir, "saslauthd.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left behind: %v", err)
	}
	for _, m := range f.notify.messages() {
		if sdHas(m, "WATCHDOG=1") {
			t.Errorf("watchdog ping without WATCHDOG_USEC: %q", m)
		}
	}
}

// TestSystemdNoReadyOnFailure: a start that fails sends no READY=1 and
// exits non-zero: the pid lock held by another instance (2), a TCP socket
// passed in (1: saslauthd's protocol is not for the network), a listening
// socket that is not a stream (1).
func TestSystemdNoReadyOnFailure(t *testing.T) {
	f := sdNewFixture(t)
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tcpFile, _ := tcp.File()
	defer tcpFile.Close()
	connected, err := net.Dial("unix", f.Sock) // what Accept=yes would pass
	if err != nil {
		t.Fatal(err)
	}
	defer connected.Close()
	connFile, _ := connected.(*net.UnixConn).File()
	defer connFile.Close()

	tests := []struct {
		name     string
		files    []*os.File
		lockPid  bool
		wantCode int
		wantOut  string
	}{
		{"pid file locked by another instance", []*os.File{f.file}, true, 2, "Another instance of saslauthd is currently running"},
		{"a TCP socket", []*os.File{tcpFile}, false, 1, "not a unix socket"},
		{"the mux and a TCP socket", []*os.File{f.file, tcpFile}, false, 1, "descriptor 4: not a unix socket"},
		{"a connected socket (Accept=yes)", []*os.File{connFile}, false, 1, "Accept=no"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.lockPid {
				pf, err := os.OpenFile(filepath.Join(f.RunDir, "saslauthd.pid"), os.O_RDWR|os.O_CREATE, 0o600)
				if err != nil {
					t.Fatal(err)
				}
				// the lock Cyrus saslauthd and saslgate take
				lk := syscall.Flock_t{Type: syscall.F_WRLCK}
				if err := syscall.FcntlFlock(pf.Fd(), syscall.F_SETLK, &lk); err != nil {
					t.Fatal(err)
				}
				defer func() { pf.Close(); os.Remove(pf.Name()) }()
			}
			before := len(f.notify.messages())
			p := sdStart(t, f, tc.files, nil, sdArgs(f)...)
			if code := p.wait(t, 15*time.Second); code != tc.wantCode {
				t.Fatalf("exit code %d, want %d", code, tc.wantCode)
			}
			if !strings.Contains(p.Out.String(), tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, p.Out.String())
			}
			time.Sleep(100 * time.Millisecond) // a datagram sent just before exit
			for _, m := range f.notify.messages()[before:] {
				if sdHas(m, "READY=1") {
					t.Fatalf("READY=1 from a failed start: %q", m)
				}
			}
			sdCheckSocket(t, f.Sock)
		})
	}
}

// TestSystemdRestartLosesNothing: 32 clients loop on requests while the
// daemon is restarted three times on the same socket, as systemctl restart
// does (SIGTERM, wait for the exit, start again): not one request fails.
// The clients that connect while no daemon runs wait in the backlog that
// systemd keeps, and the stopping daemon leaves them to the next one.
func TestSystemdRestartLosesNothing(t *testing.T) {
	f := sdNewFixture(t)
	p := sdStart(t, f, []*os.File{f.file}, nil, sdArgs(f)...)
	f.notify.next(t, "READY=1", 15*time.Second)

	var ok, failed, afterLast atomic.Int64
	var lastReady atomic.Bool
	var errMu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := sdAsk(f.Sock, f.good(), 30*time.Second)
				if err != nil || r != "OK" {
					failed.Add(1)
					errMu.Lock()
					errs = append(errs, fmt.Sprintf("%q %v", r, err))
					errMu.Unlock()
					continue
				}
				ok.Add(1)
				if lastReady.Load() {
					afterLast.Add(1)
				}
			}
		}()
	}
	const restarts = 3
	var gaps []time.Duration
	for i := range restarts {
		time.Sleep(400 * time.Millisecond)
		before := ok.Load()
		if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		down := time.Now()
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("restart %d: old daemon exited %d", i+1, code)
		}
		p = sdStart(t, f, []*os.File{f.file}, nil, sdArgs(f)...)
		f.notify.next(t, "READY=1", 30*time.Second)
		gaps = append(gaps, time.Since(down))
		t.Logf("restart %d: %d requests answered so far; no daemon for %s",
			i+1, before, time.Since(down).Round(time.Millisecond))
	}
	lastReady.Store(true)
	time.Sleep(400 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests OK, %d failed, %d after the last restart; restart gaps %v", ok.Load(), failed.Load(), afterLast.Load(), gaps)
	if failed.Load() != 0 {
		errMu.Lock()
		t.Fatalf("%d requests failed across the restarts, e.g. %v", failed.Load(), errs[:min(len(errs), 5)])
	}
	if ok.Load() < 300 || afterLast.Load() == 0 {
		t.Fatalf("too little traffic to show anything: %d OK, %d after the last restart", ok.Load(), afterLast.Load())
	}
	sdCheckSocket(t, f.Sock)
}

// sdSlowIMAP is an IMAP server that takes delay to answer LOGIN: OK for
// the password "slowgood", NO for anything else. It reports each LOGIN as
// it arrives.
type sdSlowIMAP struct {
	ln     net.Listener
	logins chan struct{}
}

func sdNewSlowIMAP(t *testing.T, delay time.Duration) *sdSlowIMAP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sdSlowIMAP{ln: ln, logins: make(chan struct{}, 64)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				_, _ = c.Write([]byte("* OK slow IMAP ready\r\n"))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
					switch cmd, _, _ := strings.Cut(rest, " "); strings.ToUpper(cmd) {
					case "LOGIN":
						s.logins <- struct{}{}
						time.Sleep(delay)
						if strings.HasSuffix(rest, ` "slowgood"`) {
							_, _ = c.Write([]byte(tag + " OK logged in\r\n"))
						} else {
							_, _ = c.Write([]byte(tag + " NO [AUTHENTICATIONFAILED] no\r\n"))
						}
					case "LOGOUT":
						_, _ = c.Write([]byte("* BYE\r\n" + tag + " OK bye\r\n"))
						return
					default:
						_, _ = c.Write([]byte(tag + " BAD what\r\n"))
					}
				}
			}()
		}
	}()
	return s
}

// TestSystemdStopAnswersInFlight: SIGTERM answers every request in flight
// before the daemon exits 0. Two slow paths: a back end that takes 1.5 s to
// answer (each request gets its real OK, not an error) and wrong passwords
// held by a 1 s failure delay (each gets its NO). The clients waiting in
// the backlog (one queued before SIGTERM beyond --max-conns, one that
// connects after it) are neither answered nor reset by the stopping daemon:
// they stay queued on the socket and the next daemon answers them.
func TestSystemdStopAnswersInFlight(t *testing.T) {
	f := sdNewFixture(t)
	const n = 8
	imap := sdNewSlowIMAP(t, 1500*time.Millisecond)
	cases := []struct {
		name  string
		args  []string
		req   protocol.Request
		want  string
		ready func(t *testing.T) // returns once the n requests are in the daemon
	}{
		{"slow back end", []string{"serve", "-f", "-a", "rimap", "-O", "127.0.0.1/" + strconv.Itoa(imap.ln.Addr().(*net.TCPAddr).Port),
			"--rimap-pool-size", "0", "-m", f.RunDir, "--config=", "--failure-delay", "0", "--auth-penalty", "0"},
			protocol.Request{Login: "carol", Password: "slowgood", Service: "imap"}, rimap.ReplyOK,
			func(t *testing.T) {
				for i := range n {
					select {
					case <-imap.logins:
					case <-time.After(15 * time.Second):
						t.Fatalf("only %d of %d LOGINs reached the back end", i, n)
					}
				}
			}},
		{"failure delay", sdArgs(f, "--failure-delay", "1s"),
			protocol.Request{Login: "dave", Password: "wrong", Service: "smtp", Realm: f.fx.Host}, "NO",
			func(t *testing.T) { time.Sleep(400 * time.Millisecond) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// n back-end calls at once, and n connections: the client beyond
			// them waits in the backlog
			p := sdStart(t, f, []*os.File{f.file}, nil, append(tc.args, "-n", strconv.Itoa(n), "--max-conns", strconv.Itoa(n))...)
			f.notify.next(t, "READY=1", 15*time.Second)
			type result struct {
				reply string
				err   error
			}
			replies := make(chan result, n)
			for range n {
				go func() {
					r, err := sdAsk(f.Sock, tc.req, 30*time.Second)
					replies <- result{r, err}
				}()
			}
			tc.ready(t)
			askLater := func() chan result {
				ch := make(chan result, 1)
				go func() {
					r, err := sdAsk(f.Sock, f.good(), 30*time.Second)
					ch <- result{r, err}
				}()
				return ch
			}
			queued := askLater()
			time.Sleep(100 * time.Millisecond)
			if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			term := time.Now()
			f.notify.next(t, "STOPPING=1", 10*time.Second)
			// STOPPING=1 goes out as the accept loops are told to stop
			time.Sleep(300 * time.Millisecond)
			late := askLater()
			for i := range n {
				r := <-replies
				if r.err != nil || r.reply != tc.want {
					t.Errorf("in-flight request %d: %q, %v; want %q", i, r.reply, r.err, tc.want)
				}
			}
			answered := time.Since(term)
			if code := p.wait(t, 30*time.Second); code != 0 {
				t.Fatalf("exit code %d after SIGTERM", code)
			}
			t.Logf("%d requests in flight at SIGTERM answered %q within %s; exit 0 after %s",
				n, tc.want, answered.Round(time.Millisecond), time.Since(term).Round(time.Millisecond))
			for _, w := range []struct {
				name string
				ch   chan result
			}{{"queued in the backlog at SIGTERM", queued}, {"came after SIGTERM", late}} {
				select {
				case r := <-w.ch:
					t.Fatalf("the client that %s got %q, %v from the stopping daemon", w.name, r.reply, r.err)
				case <-time.After(300 * time.Millisecond):
				}
			}
			next := sdStart(t, f, []*os.File{f.file}, nil, sdArgs(f)...)
			f.notify.next(t, "READY=1", 15*time.Second)
			for _, ch := range []chan result{queued, late} {
				if r := <-ch; r.err != nil || r.reply != "OK" {
					t.Fatalf("a waiting client after the restart: %q, %v", r.reply, r.err)
				}
			}
			next.stop(t)
			sdCheckSocket(t, f.Sock)
		})
	}
}

// TestSystemdWatchdog: with WATCHDOG_USEC the daemon pings at half the
// interval, and only while it serves: with its only connection slot held
// by a client that sends nothing, the pings stop; they resume when it
// leaves.
func TestSystemdWatchdog(t *testing.T) {
	f := sdNewFixture(t)
	const usec = 400_000
	p := sdStart(t, f, []*os.File{f.file}, []string{"WATCHDOG_USEC=" + strconv.Itoa(usec)},
		sdArgs(f, "--max-conns", "1")...)
	f.notify.next(t, "READY=1", 15*time.Second)
	start := time.Now()
	for range 5 {
		f.notify.next(t, "WATCHDOG=1", 2*time.Second)
	}
	per := time.Since(start) / 5
	t.Logf("5 pings, one every %s (WATCHDOG_USEC=%d)", per.Round(time.Millisecond), usec)
	if per > usec*time.Microsecond {
		t.Errorf("pings every %s: slower than the watchdog interval", per)
	}

	held, err := net.Dial("unix", f.Sock)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	time.Sleep(usec * time.Microsecond) // a tick may still count the accept
	for len(f.notify.msgs) > 0 {
		<-f.notify.msgs
	}
	select {
	case m := <-f.notify.msgs:
		t.Fatalf("%q while the daemon's only slot is held", m)
	case <-time.After(3 * usec * time.Microsecond):
	}
	held.Close()
	f.notify.next(t, "WATCHDOG=1", 3*usec*time.Microsecond)
	if r, err := sdAsk(f.Sock, f.good(), 5*time.Second); err != nil || r != "OK" {
		t.Fatalf("request after the stall: %q, %v", r, err)
	}
	p.stop(t)
}

// TestSystemdReload: SIGHUP sends RELOADING=1, then READY=1 once the new
// configuration is in place; a reload that fails still ends with READY=1,
// and its STATUS says the old configuration runs.
func TestSystemdReload(t *testing.T) {
	f := sdNewFixture(t)
	conf := filepath.Join(f.fx.Dir, "saslgate.conf")
	if err := os.WriteFile(conf, []byte("log_level: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := sdArgs(f)
	for i, a := range args {
		if a == "--config=" {
			args[i] = "--config=" + conf
		}
	}
	p := sdStart(t, f, []*os.File{f.file}, nil, args...)
	f.notify.next(t, "READY=1", 15*time.Second)

	order := func(t *testing.T) (reloading, ready string) {
		t.Helper()
		if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		var first string
		select {
		case first = <-f.notify.msgs:
		case <-time.After(10 * time.Second):
			t.Fatal("no message after SIGHUP")
		}
		if !sdHas(first, "RELOADING=1") {
			t.Fatalf("first message after SIGHUP: %q, want RELOADING=1", first)
		}
		return first, f.notify.next(t, "READY=1", 10*time.Second)
	}
	reloading, ready := order(t)
	t.Logf("reload: %q then %q", reloading, ready)
	if strings.Contains(ready, "failed") {
		t.Errorf("a good reload reported as failed: %q", ready)
	}

	if err := os.WriteFile(conf, []byte("no_such_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, ready = order(t)
	t.Logf("failed reload: %q", ready)
	if !strings.Contains(ready, "the last reload failed") {
		t.Errorf("a failed reload's READY has no word of it: %q", ready)
	}
	if r, err := sdAsk(f.Sock, f.good(), 5*time.Second); err != nil || r != "OK" {
		t.Fatalf("request after the failed reload: %q, %v", r, err)
	}
}

// TestSystemdTwoSockets: both sockets of the unit (/run/saslauthd/mux and
// Postfix's chroot path) are served by one daemon.
func TestSystemdTwoSockets(t *testing.T) {
	f := sdNewFixture(t)
	chroot := filepath.Join(f.fx.Dir, "spool", "var", "run", "saslauthd", "mux")
	_, second := sdListen(t, chroot)
	sdStart(t, f, []*os.File{f.file, second}, nil, sdArgs(f)...)
	ready := f.notify.next(t, "READY=1", 15*time.Second)
	if !strings.Contains(ready, f.Sock+", "+chroot) {
		t.Errorf("READY's STATUS does not list both sockets: %q", ready)
	}
	for _, sock := range []string{f.Sock, chroot} {
		if r, err := sdAsk(sock, f.good(), 5*time.Second); err != nil || r != "OK" {
			t.Errorf("%s: %q, %v", sock, r, err)
		}
	}
}

// TestSystemdDetached: started without -f (a Type=forking or init-script
// style start) under socket activation, the parent hands the socket to the
// background daemon, which sends READY=1 with MAINPID=<its pid> before the
// parent exits 0, and serves the socket.
func TestSystemdDetached(t *testing.T) {
	f := sdNewFixture(t)
	args := sdArgs(f)
	args = slices.DeleteFunc(args, func(a string) bool { return a == "-f" })
	parent := sdStart(t, f, []*os.File{f.file}, nil, args...)
	if code := parent.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("parent exited %d", code)
	}
	ready := f.notify.next(t, "READY=1", time.Second) // sent before the parent was told
	var mainPid int
	for _, l := range strings.Split(ready, "\n") {
		if v, ok := strings.CutPrefix(l, "MAINPID="); ok {
			mainPid, _ = strconv.Atoi(v)
		}
	}
	if mainPid <= 0 || mainPid == parent.Cmd.Process.Pid {
		t.Fatalf("READY message %q: MAINPID should be the background daemon's, not the parent's %d", ready, parent.Cmd.Process.Pid)
	}
	defer lcStopPid(mainPid)
	if pid, _, err := lcReadPidFile(f.RunDir); err != nil || pid != mainPid {
		t.Errorf("pid file says %d (%v), MAINPID %d", pid, err, mainPid)
	}
	if r, err := sdAsk(f.Sock, f.good(), 5*time.Second); err != nil || r != "OK" {
		t.Fatalf("request to the background daemon: %q, %v", r, err)
	}
	// LISTEN_* were the parent's: they must not reach the background daemon
	// (nor, through it, its PAM workers)
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", mainPid))
	for _, v := range []string{"LISTEN_FDS=", "LISTEN_PID="} {
		if strings.Contains("\x00"+string(env), "\x00"+v) {
			t.Errorf("the background daemon's environment still has %s", v)
		}
	}
	_ = syscall.Kill(mainPid, syscall.SIGTERM)
	if !lcWaitGone(mainPid, 10*time.Second) {
		t.Fatal("the background daemon did not stop")
	}
	sdCheckSocket(t, f.Sock)
}

// TestSystemdSocketActivate: systemd's own systemd-socket-activate makes
// the socket, starts saslgate on the first connection and hands it over:
// that first client is answered, and READY=1 follows.
func TestSystemdSocketActivate(t *testing.T) {
	tool := need(t, "systemd-socket-activate")[0]
	f := sdNewFixture(t)
	sock := filepath.Join(f.fx.Dir, "act", "mux")
	if err := os.Mkdir(filepath.Dir(sock), 0o710); err != nil {
		t.Fatal(err)
	}
	// its own run directory: the fixture's holds the test's socket
	daemonArgs := sdArgs(f)
	daemonArgs[slices.Index(daemonArgs, f.RunDir)] = filepath.Dir(sock)
	args := append([]string{"-l", sock, "--fdname=saslauthd", "-E", "NOTIFY_SOCKET=" + f.notify.Path,
		saslgateBin(t)}, daemonArgs...)
	cmd := exec.Command(tool, args...)
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = sdEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-socket-activate made no socket:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// this connection is what starts the daemon
	if r, err := sdAsk(sock, f.good(), 20*time.Second); err != nil || r != "OK" {
		t.Fatalf("first request: %q, %v", r, err)
	}
	ready := f.notify.next(t, "READY=1", 10*time.Second)
	if !strings.Contains(ready, sock+" (socket activation)") {
		t.Errorf("READY message %q", ready)
	}
	t.Logf("started by systemd-socket-activate: %q", ready)
}

// TestSystemdWorkersInheritNothing: the PAM worker processes the daemon
// starts inherit neither the activated socket nor LISTEN_* and WATCHDOG_*
// (a worker holding the socket would keep it listening with nobody
// accepting after the daemon died).
func TestSystemdWorkersInheritNothing(t *testing.T) {
	f := sdNewFixture(t)
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.file.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	sockLink := fmt.Sprintf("socket:[%d]", st.Ino)
	args := []string{"serve", "-f", "-a", "pam", "-n", "2", "-m", f.RunDir, "--config="}
	p := sdStart(t, f, []*os.File{f.file}, []string{"WATCHDOG_USEC=60000000"}, args...)
	f.notify.next(t, "READY=1", 15*time.Second)
	daemonPid := p.Cmd.Process.Pid
	var workers []int
	deadline := time.Now().Add(10 * time.Second)
	for len(workers) == 0 && time.Now().Before(deadline) {
		workers = workers[:0]
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			i := strings.LastIndexByte(string(b), ')')
			if fs := strings.Fields(string(b[i+2:])); len(fs) > 1 && fs[1] == strconv.Itoa(daemonPid) {
				workers = append(workers, pid)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(workers) == 0 {
		t.Fatalf("found no PAM worker of daemon %d", daemonPid)
	}
	for _, w := range workers {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", w))
		for _, v := range []string{"LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=", "WATCHDOG_USEC=", "WATCHDOG_PID="} {
			if strings.Contains("\x00"+string(env), "\x00"+v) {
				t.Errorf("worker %d inherited %s", w, v)
			}
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", w))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", w, fd.Name())); l == sockLink {
				t.Errorf("worker %d holds the activated socket as descriptor %s", w, fd.Name())
			}
		}
	}
	t.Logf("%d PAM workers of daemon %d: no activation descriptor, no LISTEN_*/WATCHDOG_*", len(workers), daemonPid)
}
