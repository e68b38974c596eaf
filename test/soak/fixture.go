package main

import (
	"bufio"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/saslgate/saslgate/protocol"
	"github.com/saslgate/saslgate/test/internal/dovecot"
)

// The accounts of the run. The system user follows the tests' convention
// (the sgtest_ prefix, created under the host-wide user lock); the PAM
// fault users are the names testmod.c acts on and need no account.
const (
	realm       = "soak.test"
	sysUser     = "sgtest_soak"
	sysPass     = "Soak-pam-Pw-7"
	imapUser    = "soakimap"
	imapPass    = "Soak-imap-Pw-3"
	wrongPass   = "not-the-password"
	sasldbPass  = "Soak-sasldb-Pw-1"
	userLockTag = "saslgate-test-users.lock"
)

var sasldbUsers = []string{"soak1", "soak2", "soak3"}

// fixture is everything the run set up on the host, undone by close.
type fixture struct {
	dir      string // short, world-traversable temporary directory
	sasldb   string
	module   string // testmod.so
	pamSvc   string // /etc/pam.d/<pamSvc>
	conf     string
	runDir   string
	dv       *dovecot.Server
	userMade bool

	mu      sync.Mutex
	undo    []func() error
	dlog    *os.File
	daemon  *exec.Cmd
	exited  chan struct{}
	exitErr error
}

// keep leaves the temporary directory in place at close.
func (f *fixture) keep() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.undo) > 0 {
		dir := f.dir
		f.undo[0] = func() error { log.Printf("kept %s", dir); return nil }
	}
}

func (f *fixture) atClose(fn func() error) { f.mu.Lock(); f.undo = append(f.undo, fn); f.mu.Unlock() }

// close undoes the set-up in reverse order and reports what failed.
func (f *fixture) close() error {
	f.mu.Lock()
	undo := f.undo
	f.undo = nil
	f.mu.Unlock()
	var errs []error
	for i := len(undo) - 1; i >= 0; i-- {
		errs = append(errs, undo[i]())
	}
	return errors.Join(errs...)
}

// preflight names what the host lacks.
func preflight(bin string) error {
	if os.Geteuid() != 0 {
		return errors.New("soak: needs root (a throw-away system user, a PAM service file, a private Dovecot)")
	}
	var missing []string
	for _, p := range []string{"dovecot", "saslpasswd2", "gcc", "useradd", "userdel", "chpasswd"} {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if _, err := os.Stat(bin); err != nil {
		missing = append(missing, bin+" (make build)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("soak: missing %s (make deps installs the packages)", strings.Join(missing, ", "))
	}
	return nil
}

// repoFile finds rel below the working directory or one of its parents
// (make runs the soak from the repository root).
func repoFile(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("soak: %w", err)
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("soak: %s not found from the working directory up", rel)
		}
		dir = parent
	}
}

func newFixture(p plan) (*fixture, error) {
	dir, err := os.MkdirTemp("", "sgsoak")
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	f := &fixture{dir: dir, runDir: filepath.Join(dir, "run")}
	f.atClose(func() error { return os.RemoveAll(dir) })
	// Dovecot's unprivileged auth process reads its passwd file below it
	if err := os.Chmod(dir, 0o755); err != nil {
		return f, fmt.Errorf("soak: %w", err)
	}
	steps := []func(plan) error{f.makeSasldb, f.makeUser, f.makePAM, f.startDovecot, f.writeConfig}
	for _, step := range steps {
		if err := step(p); err != nil {
			return f, err
		}
	}
	return f, nil
}

func (f *fixture) makeSasldb(plan) error {
	f.sasldb = filepath.Join(f.dir, "sasldb2")
	for _, u := range sasldbUsers {
		c := exec.Command("saslpasswd2", "-p", "-c", "-f", f.sasldb, "-u", realm, u)
		c.Stdin = strings.NewReader(sasldbPass)
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("soak: saslpasswd2 %s: %w: %s", u, err, out)
		}
	}
	return nil
}

// withUserLock holds the host-wide lock every test that changes the user
// database takes (mechs/internal/unixpw/unixpwtest), so that no two run
// useradd at once.
func withUserLock(fn func() error) error {
	l, err := os.OpenFile(filepath.Join(os.TempDir(), userLockTag), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("soak: user lock: %w", err)
	}
	defer l.Close()
	if err := syscall.Flock(int(l.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("soak: user lock: %w", err)
	}
	defer func() { _ = syscall.Flock(int(l.Fd()), syscall.LOCK_UN) }()
	return fn()
}

func userExists(name string) bool { return exec.Command("getent", "passwd", name).Run() == nil }

// makeUser creates the PAM user with a sha512-crypt hash of 5,000 rounds:
// a login then costs a few milliseconds, not yescrypt's tens, so the two
// shared cores serve the load rather than the hash.
func (f *fixture) makeUser(plan) error {
	err := withUserLock(func() error {
		if userExists(sysUser) { // left by a run that was killed
			_ = exec.Command("userdel", sysUser).Run()
		}
		if out, err := exec.Command("useradd", "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin",
			"-c", "saslgate soak (test/soak)", sysUser).CombinedOutput(); err != nil {
			return fmt.Errorf("soak: useradd: %w: %s", err, out)
		}
		f.userMade = true
		c := exec.Command("chpasswd", "-c", "SHA512", "-s", "5000")
		c.Stdin = strings.NewReader(sysUser + ":" + sysPass + "\n") // stdin: never in ps
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("soak: chpasswd: %w: %s", err, out)
		}
		return nil
	})
	if f.userMade {
		f.atClose(func() error {
			return withUserLock(func() error {
				if out, err := exec.Command("userdel", sysUser).CombinedOutput(); err != nil && userExists(sysUser) {
					return fmt.Errorf("soak: userdel %s: %w: %s", sysUser, err, out)
				}
				return nil
			})
		})
	}
	return err
}

// makePAM builds mechs/pam/testdata/testmod.c and writes the PAM service
// the smtp requests are mapped to: testmod first (it crashes, aborts,
// exits or hangs for its fault users and ignores everyone else), then
// pam_unix with nodelay (a failure would otherwise hold its worker for
// about two seconds).
func (f *fixture) makePAM(p plan) error {
	src, err := repoFile("mechs/pam/testdata/testmod.c")
	if err != nil {
		return err
	}
	f.module = filepath.Join(f.dir, "testmod.so")
	if out, err := exec.Command("gcc", "-Wall", "-Wextra", "-shared", "-fPIC", "-o", f.module, src, "-lpam").CombinedOutput(); err != nil {
		return fmt.Errorf("soak: gcc testmod.c: %w: %s", err, out)
	}
	f.pamSvc = "sgsoak-" + strconv.Itoa(os.Getpid())
	path := filepath.Join("/etc/pam.d", f.pamSvc)
	// the hang outlasts any request deadline: the daemon must kill it
	content := fmt.Sprintf(`# saslgate soak (test/soak), removed when the run ends
auth	required	%s mode=crash hang=3600
auth	required	pam_unix.so nodelay
account	required	pam_unix.so
`, f.module)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	f.atClose(func() error { return os.Remove(path) })
	return nil
}

func (f *fixture) startDovecot(plan) error {
	dv, err := dovecot.Start(filepath.Join(f.dir, "dovecot"), map[string]string{imapUser: imapPass})
	if err != nil {
		return err
	}
	f.dv = dv
	f.atClose(func() error { dv.Kill(); return nil })
	return nil
}

// writeConfig routes the services: smtp goes through sasldb then PAM (a
// sasldb REJECT falls through to PAM), with PAM's service mapped to the
// run's file; imap goes to rimap against the private Dovecot.
func (f *fixture) writeConfig(p plan) error {
	f.conf = filepath.Join(f.dir, "saslgate.conf")
	text := f.configText(p)
	if err := os.WriteFile(f.conf, []byte(text), 0o644); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	return nil
}

func (f *fixture) configText(p plan) string {
	return fmt.Sprintf(`# saslgate soak: written by test/soak for one run
mech: sasldb,pam
sasldb_path: %s
service_mech: imap=rimap
service_map: smtp=%s
mech_option: %s
procs: %d
read_timeout: %s
drain_timeout: %s
request_timeout: %s
rimap_connect_timeout: %s
rimap_command_timeout: %s
`, f.sasldb, f.pamSvc, f.dv.Option(), p.procs, p.readTimeout, p.drainTimeout, p.requestTimeout,
		p.rimapConnect, p.rimapCommand)
}

// socket is the daemon's mux.
func (f *fixture) socket() string { return filepath.Join(f.runDir, "mux") }

// startDaemon runs bin in the foreground (-f: no verbose logging) on the
// run's config, its output to daemon.log, and waits until mux answers.
func (f *fixture) startDaemon(bin string, extra ...string) error {
	if err := os.MkdirAll(f.runDir, 0o755); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	lf, err := os.Create(filepath.Join(f.dir, "daemon.log"))
	if err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	f.dlog = lf
	args := append([]string{"serve", "-f", "-m", f.runDir, "--config", f.conf}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("soak: start %s: %w", bin, err)
	}
	f.daemon, f.exited = cmd, make(chan struct{})
	go func() { f.exitErr = cmd.Wait(); close(f.exited) }()
	f.atClose(func() error {
		select {
		case <-f.exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-f.exited
		}
		return lf.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("unix", f.socket())
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-f.exited:
			return fmt.Errorf("soak: the daemon exited at start-up (%v): %s", f.exitErr, f.logTail(2000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("soak: %s never answered: %s", f.socket(), f.logTail(2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fixture) pid() int { return f.daemon.Process.Pid }

func (f *fixture) alive() bool {
	select {
	case <-f.exited:
		return false
	default:
		return true
	}
}

func (f *fixture) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(f.dir, "daemon.log"))
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// logLines returns the daemon's log.
func (f *fixture) logLines() []string {
	fh, err := os.Open(filepath.Join(f.dir, "daemon.log"))
	if err != nil {
		return nil
	}
	defer fh.Close()
	var lines []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// goodRequests are the requests of the good clients, one kind per back
// end, as real clients send them.
func goodRequest(b backend) protocol.Request {
	switch b {
	case beSasldb:
		return protocol.Request{Login: sasldbUsers[0], Password: sasldbPass, Service: "smtp", Realm: realm}
	case beSasldbAddr:
		return protocol.Request{Login: sasldbUsers[1], Password: sasldbPass, Service: "smtp", Realm: realm,
			ClientAddr: "127.0.0.1;48213", HasClientAddr: true}
	case bePAM:
		return protocol.Request{Login: sysUser, Password: sysPass, Service: "smtp"}
	case beRimap:
		return protocol.Request{Login: imapUser, Password: imapPass, Service: "imap"}
	case beWrong:
		return protocol.Request{Login: sasldbUsers[2], Password: wrongPass, Service: "smtp", Realm: realm}
	}
	panic("soak: no request for back end " + b.String())
}
