package pam_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/mechstest"
	"github.com/saslgate/saslgate/mechs/pam"
)

const (
	matrixSO  = "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so"
	wrapperSO = "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so"
)

// moduleSO is testdata/testmod.c, built once by TestMain.
var (
	moduleSO  string
	moduleErr error
)

// TestMain is also the pam worker: the pool re-executes this test binary
// with the argument "pam-worker" (its default command is "<self>
// pam-worker"), exactly as the daemon re-executes saslgate.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == pam.WorkerCommand {
		os.Exit(pam.WorkerMain(os.Stdin, os.Stdout))
	}
	if len(os.Args) > 1 && os.Args[1] == parentHelper {
		os.Exit(runParentHelper())
	}
	// Workers of a -race test binary would otherwise sleep a second at
	// exit (the race runtime's atexit_sleep_ms), slowing every Close.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	dir, err := os.MkdirTemp("", "saslgate-pam-test-")
	if err != nil {
		moduleErr = err
	} else {
		moduleSO, moduleErr = buildModule(dir)
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func buildModule(dir string) (string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "testmod.so")
	cmd := exec.Command(gcc, "-Wall", "-Wextra", "-shared", "-fPIC", "-o", out, "testdata/testmod.c", "-lpam")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc: %v\n%s", err, b)
	}
	return out, nil
}

// need skips a test whose prerequisite is missing; in CI (CI=true) it
// fails instead, so that a broken CI image cannot pass by skipping.
func need(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("prerequisite missing in CI: %s", what)
	}
	t.Skipf("skipped: %s", what)
}

func needPAM(t testing.TB) {
	t.Helper()
	need(t, pam.Supported, "a build with cgo on Linux")
	_, err := os.Stat(matrixSO)
	need(t, err == nil, "pam_matrix.so (apt-get install libpam-wrapper)")
	need(t, moduleErr == nil, fmt.Sprintf("the test PAM module (gcc, libpam0g-dev): %v", moduleErr))
}

type user struct{ login, password string }

// fixture is a PAM configuration directory for pam_start_confdir.
type fixture struct {
	dir      string
	passdb   string
	rhostOut string
	many     []user // 200 users of service "svc", each with its own password
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	needPAM(t)
	dir := t.TempDir()
	f := &fixture{dir: dir, passdb: filepath.Join(dir, "passdb"), rhostOut: filepath.Join(dir, "rhost.out")}
	var pdb strings.Builder
	// pam_matrix: user:password:service; its account phase refuses a user
	// whose service column is not the transaction's service.
	pdb.WriteString("alice:secret:svc\nbob:hunter2:svc\ncarol:pw-carol:elsewhere\ndave:pw-dave:crashy\n")
	for i := range 200 {
		u := user{fmt.Sprintf("user%03d", i), fmt.Sprintf("pw-%03d-%x", i, (i+1)*7919)}
		f.many = append(f.many, u)
		fmt.Fprintf(&pdb, "%s:%s:svc\n", u.login, u.password)
	}
	write(t, f.passdb, pdb.String())
	matrix := matrixSO + " passdb=" + f.passdb
	mod := moduleSO
	services := map[string]string{
		"svc":      "auth required " + matrix + "\naccount required " + matrix + "\n",
		"deny":     "auth requisite pam_deny.so\nauth required " + matrix + "\naccount required pam_permit.so\n",
		"nopassdb": "auth required " + matrixSO + " passdb=" + filepath.Join(dir, "missing") + "\naccount required pam_permit.so\n",
		"crashy":   "auth required " + mod + " mode=crash\nauth required " + matrix + "\naccount required " + matrix + "\n",
		"slow":     "auth required " + mod + " mode=crash hang=1\nauth required " + matrix + "\naccount required pam_permit.so\n",
		"rhost":    "auth required " + mod + " mode=rhost out=" + f.rhostOut + "\nauth required " + matrix + "\naccount required pam_permit.so\n",
		"conv":     "auth requisite " + mod + " mode=conv variant=normal pw=secret\nauth required " + matrix + "\naccount required pam_permit.so\n",
		"convunset": "auth requisite " + mod + " mode=conv variant=unsetprompt\nauth required " + matrix +
			"\naccount required pam_permit.so\n",
		"convbad":    "auth requisite " + mod + " mode=conv variant=badstyle\naccount required pam_permit.so\n",
		"convbinary": "auth requisite " + mod + " mode=conv variant=badstyle style=7\naccount required pam_permit.so\n",
	}
	for name, text := range services {
		write(t, filepath.Join(dir, name), text)
	}
	return f
}

func write(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

var modes = []string{pam.ModeWorkers, pam.ModeInProcess}

// newMech builds the mechanism on the fixture; extra is key, value pairs.
func newMech(t testing.TB, f *fixture, mode string, logger *slog.Logger, extra ...string) *pam.PAM {
	t.Helper()
	vals := map[string]string{pam.OptMode: mode, pam.OptConfDir: f.dir}
	for i := 0; i+1 < len(extra); i += 2 {
		vals[extra[i]] = extra[i+1]
	}
	m, err := pam.New(mechs.Options{Values: vals}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func bufLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func authn(t testing.TB, m mechs.Mechanism, req mechs.Request, timeout time.Duration) mechs.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := m.Authenticate(ctx, req)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if pw := req.Password.Reveal(); pw != "" && (strings.Contains(res.Reason, pw) || strings.Contains(res.Reply, pw)) {
		t.Fatalf("result carries the password: %+v", res)
	}
	return res
}

func req(login, password, service string) mechs.Request {
	return mechs.Request{Login: login, Password: mechs.Password(password), Service: service}
}

// TestReplies is spec §13 case 31 and saslauthd's conversation rules, in
// both modes.
func TestReplies(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name    string
		req     mechs.Request
		verdict mechs.Verdict
		reply   string
		reason  string // substring of Reason
	}{
		{"good", req("alice", "secret", "svc"), mechs.Accept, "OK", ""},
		{"bad password", req("alice", "Secret", "svc"), mechs.Reject, "NO PAM auth error", "pam_authenticate: "},
		{"unknown user", req("mallory", "secret", "svc"), mechs.Reject, "NO PAM auth error", "pam_authenticate: "},
		{"user of another service", req("carol", "pw-carol", "svc"), mechs.Reject, "NO PAM acct error", "pam_acct_mgmt: Permission denied"},
		{"stack that denies", req("alice", "secret", "deny"), mechs.Reject, "NO PAM auth error", "pam_authenticate: "},
		{"back end unavailable", req("alice", "secret", "nopassdb"), mechs.TempFail, "NO PAM auth error", "pam_authenticate: Authentication service cannot retrieve"},
		{"no such service and no other", req("alice", "secret", "nosuch"), mechs.TempFail, "NO PAM start error", "pam_start: "},
		// Linux-PAM folds the service to lower case and keeps what follows
		// the last "/": the service field is passed verbatim, as saslauthd
		// does, and the library does the rest.
		{"service in upper case", req("alice", "secret", "SVC"), mechs.Accept, "OK", ""},
		{"service with a path", req("alice", "secret", "../../svc"), mechs.Accept, "OK", ""},
		// C strings end at the first NUL, as in saslauthd 2.1.28 (§13 case 11).
		{"password with a NUL", req("alice", "secret\x00junk", "svc"), mechs.Accept, "OK", ""},
		{"conversation", req("alice", "secret", "conv"), mechs.Accept, "OK", ""},
		{"conversation, wrong password", req("alice", "wrong", "conv"), mechs.Reject, "NO PAM auth error", ""},
		{"conversation, PAM_USER_PROMPT unset", req("alice", "secret", "convunset"), mechs.Accept, "OK", ""},
		{"conversation, unknown style", req("alice", "secret", "convbad"), mechs.TempFail, "NO PAM auth error", "Conversation error"},
		{"conversation, binary prompt", req("alice", "secret", "convbinary"), mechs.TempFail, "NO PAM auth error", "Conversation error"},
		// §13 case 12: an empty service must not crash. With no "other"
		// file Linux-PAM runs an empty stack, which denies.
		{"empty service", req("alice", "secret", ""), mechs.Reject, "NO PAM auth error", ""},
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			m := newMech(t, f, mode, nil)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					res := authn(t, m, c.req, 30*time.Second)
					if res.Verdict != c.verdict || res.Reply != c.reply || !strings.Contains(res.Reason, c.reason) {
						t.Fatalf("got %v %q (%q), want %v %q (reason with %q)", res.Verdict, res.Reply, res.Reason, c.verdict, c.reply, c.reason)
					}
				})
			}
		})
	}
}

// TestEmptyServiceFallsBackToOther: with an "other" file the empty service
// authenticates through it (spec §5.1); pam_matrix's account phase then
// refuses, since PAM_SERVICE is "" and alice's service is "svc".
func TestEmptyServiceFallsBackToOther(t *testing.T) {
	f := newFixture(t)
	b, err := os.ReadFile(filepath.Join(f.dir, "svc"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.dir, "other"), string(b))
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			m := newMech(t, f, mode, nil)
			if res := authn(t, m, req("alice", "secret", ""), 30*time.Second); res.Reply != "NO PAM acct error" || res.Verdict != mechs.Reject {
				t.Fatalf("got %+v, want a Reject with NO PAM acct error", res)
			}
			if res := authn(t, m, req("alice", "wrong", ""), 30*time.Second); res.Reply != "NO PAM auth error" {
				t.Fatalf("got %+v, want NO PAM auth error", res)
			}
		})
	}
}

// TestRhost: PAM_RHOST is the client address without the port, and unset
// without one.
func TestRhost(t *testing.T) {
	f := newFixture(t)
	cases := []struct{ addr, want string }{
		{"192.0.2.7;41234", "192.0.2.7"},
		{"2001:db8::1;443", "2001:db8::1"},
		{"198.51.100.1", "198.51.100.1"},
		{"", "(unset)"},
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			m := newMech(t, f, mode, nil)
			for _, c := range cases {
				os.Remove(f.rhostOut)
				r := req("alice", "secret", "rhost")
				r.ClientAddr = c.addr
				if res := authn(t, m, r, 30*time.Second); res.Verdict != mechs.Accept {
					t.Fatalf("%q: %+v", c.addr, res)
				}
				got, err := os.ReadFile(f.rhostOut)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != c.want {
					t.Errorf("client address %q: PAM_RHOST = %q, want %q", c.addr, got, c.want)
				}
			}
		})
	}
}

func TestConformance(t *testing.T) {
	f := newFixture(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			mechstest.Run(t, mechstest.Fixture{
				New: func(t *testing.T, logger *slog.Logger) mechs.Mechanism {
					return newMech(t, f, mode, logger)
				},
				Good:         req("alice", "secret", "svc"),
				UnknownLogin: "mallory",
			})
		})
	}
}

// TestConcurrentUsers: 200 logins at once for 200 users with different
// passwords; half right, half with a neighbour's password. Any cross-talk
// between transactions (a password or a result delivered to the wrong
// one) shows as a wrong verdict.
func TestConcurrentUsers(t *testing.T) {
	f := newFixture(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			m := newMech(t, f, mode, nil)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i, u := range f.many {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, want := req(u.login, u.password, "svc"), mechs.Accept
					if i%2 == 1 {
						r.Password = mechs.Password(f.many[(i+1)%len(f.many)].password)
						want = mechs.Reject
					}
					<-start
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					res, err := m.Authenticate(ctx, r)
					if err != nil || res.Verdict != want {
						t.Errorf("%s (%d): got %v %q (%q), err %v; want %v", u.login, i, res.Verdict, res.Reply, res.Reason, err, want)
					}
				}()
			}
			close(start)
			wg.Wait()
		})
	}
}

var workerPID = regexp.MustCompile(`pam worker (\d+) `)

// TestWorkerCrashIsolation: a module that segfaults, aborts, exits or
// hangs costs one request (TempFail, NO PAM auth error, a log line); 100
// good requests issued around it all succeed, and the pool recovers.
func TestWorkerCrashIsolation(t *testing.T) {
	f := newFixture(t)
	logger, logs := bufLogger()
	m := newMech(t, f, pam.ModeWorkers, logger)
	good := req("dave", "pw-dave", "crashy")
	cases := []struct {
		user    string
		timeout time.Duration
		reason  string
		log     string
	}{
		{"crash", 30 * time.Second, "crashed: signal: segmentation fault", "pam worker crashed"},
		{"abort", 30 * time.Second, "crashed: signal: aborted", "pam worker crashed"},
		{"exit", 30 * time.Second, "crashed: exit status 3", "pam worker crashed"},
		{"hang", 2 * time.Second, "context deadline exceeded", "pam worker killed"},
	}
	for _, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			var wg sync.WaitGroup
			var bad mechs.Result
			var took time.Duration
			for i := range 100 {
				if i == 30 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						start := time.Now()
						bad = authn(t, m, req(c.user, "pw-crashing", "crashy"), c.timeout)
						took = time.Since(start)
					}()
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if res := authn(t, m, good, 30*time.Second); res.Verdict != mechs.Accept {
						t.Errorf("good request %d: %+v", i, res)
					}
				}()
			}
			wg.Wait()
			if os.Getenv("PAMTEST_DEBUG") != "" {
				t.Log(logs.String())
			}
			if bad.Verdict != mechs.TempFail || bad.Reply != "NO PAM auth error" || !strings.Contains(bad.Reason, c.reason) {
				t.Fatalf("%s: got %v %q (%q), want TempFail NO PAM auth error (reason with %q)", c.user, bad.Verdict, bad.Reply, bad.Reason, c.reason)
			}
			if took > c.timeout+3*time.Second {
				t.Errorf("%s: the failing request took %v", c.user, took)
			}
			mm := workerPID.FindStringSubmatch(bad.Reason)
			if mm == nil {
				t.Fatalf("reason names no worker: %q", bad.Reason)
			}
			pid, _ := strconv.Atoi(mm[1])
			if !strings.Contains(logs.String(), c.log) || !strings.Contains(logs.String(), "pid="+mm[1]) {
				t.Errorf("no %q log line for worker %d:\n%s", c.log, pid, logs.String())
			}
			waitReaped(t, pid)
			for range 10 {
				if res := authn(t, m, good, 30*time.Second); res.Verdict != mechs.Accept {
					t.Fatalf("after the %s: %+v", c.user, res)
				}
			}
		})
	}
	if strings.Contains(logs.String(), "pw-dave") || strings.Contains(logs.String(), "pw-crashing") {
		t.Fatalf("a password reached the log:\n%s", logs.String())
	}
}

// waitReaped waits until pid is no longer a child of this process (gone,
// not a zombie).
func waitReaped(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return // gone
		}
		// "pid (comm) state ppid ...": a reused pid has another parent
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) > 1 && fields[1] != strconv.Itoa(os.Getpid()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %d not reaped (state %s)", pid, fields[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWorkerCancelled: a cancelled request (no deadline) kills its worker
// too.
func TestWorkerCancelled(t *testing.T) {
	f := newFixture(t)
	m := newMech(t, f, pam.ModeWorkers, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	res, err := m.Authenticate(ctx, req("hang", "pw-hanging", "crashy"))
	if err != nil || res.Verdict != mechs.TempFail || !strings.Contains(res.Reason, "context canceled") {
		t.Fatalf("got %+v, %v", res, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("cancellation took %v", d)
	}
	if res := authn(t, m, req("alice", "secret", "svc"), 30*time.Second); res.Verdict != mechs.Accept {
		t.Fatalf("after the cancellation: %+v", res)
	}
}

// TestWorkerIdleDeath: workers killed while idle are replaced on the next
// request.
func TestWorkerIdleDeath(t *testing.T) {
	f := newFixture(t)
	logger, logs := bufLogger()
	m := newMech(t, f, pam.ModeWorkers, logger, pam.OptWorkers, "2")
	pids := pam.WorkerPIDs(m)
	if len(pids) == 0 {
		t.Fatal("no worker started at New")
	}
	for _, pid := range pids {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
		waitReaped(t, pid)
	}
	for range 5 {
		if res := authn(t, m, req("alice", "secret", "svc"), 30*time.Second); res.Verdict != mechs.Accept {
			t.Fatalf("after killing idle workers: %+v", res)
		}
	}
	if !strings.Contains(logs.String(), "exited while idle") {
		t.Errorf("no log line for the idle death:\n%s", logs.String())
	}
}

// TestRespawnLimit: a stack that crashes on every request cannot make the
// pool fork without bound: past the limit, requests fail at once.
func TestRespawnLimit(t *testing.T) {
	f := newFixture(t)
	logger, logs := bufLogger()
	m := newMech(t, f, pam.ModeWorkers, logger, pam.OptWorkers, "1")
	pam.NoBench(m) // as if every request came from another crashing user
	var crashed, limited int
	start := time.Now()
	for range 20 {
		t0 := time.Now()
		res := authn(t, m, req("crash", "pw-crashing", "crashy"), 30*time.Second)
		if res.Verdict != mechs.TempFail || res.Reply != "NO PAM auth error" {
			t.Fatalf("got %+v", res)
		}
		switch {
		case strings.Contains(res.Reason, "crashed"):
			crashed++
		case strings.Contains(res.Reason, "restarting too often"):
			limited++
			if d := time.Since(t0); d > 100*time.Millisecond {
				t.Errorf("a refused respawn took %v", d)
			}
		default:
			t.Fatalf("unexpected reason %q", res.Reason)
		}
	}
	elapsed := time.Since(start)
	// burst 2*N (one used at New), then N a second
	if most := 2 + int(elapsed.Seconds()+1); crashed > most || limited == 0 {
		t.Fatalf("%d crashes and %d refusals in %v: want at most %d crashes", crashed, limited, elapsed, most)
	}
	if n := strings.Count(logs.String(), "too many restarts"); n > int(elapsed.Seconds())+1 {
		t.Errorf("%d log lines for refused restarts in %v", n, elapsed)
	}
	time.Sleep(1100 * time.Millisecond)
	if res := authn(t, m, req("alice", "secret", "svc"), 30*time.Second); res.Verdict != mechs.Accept {
		t.Fatalf("after the limit: %+v", res)
	}
}

// TestCrashBenchesTheLogin: after a crash, the same login is answered
// TEMPFAIL at once without a worker; other logins are not affected.
func TestCrashBenchesTheLogin(t *testing.T) {
	f := newFixture(t)
	m := newMech(t, f, pam.ModeWorkers, nil, pam.OptWorkers, "2")
	if res := authn(t, m, req("crash", "pw-crashing", "crashy"), 30*time.Second); !strings.Contains(res.Reason, "crashed") {
		t.Fatalf("first: %+v", res)
	}
	pids := pam.WorkerPIDs(m)
	res := authn(t, m, req("crash", "pw-crashing", "crashy"), 30*time.Second)
	if res.Verdict != mechs.TempFail || res.Reply != "NO PAM auth error" || !strings.Contains(res.Reason, "not tried") {
		t.Fatalf("second: %+v", res)
	}
	if got := pam.WorkerPIDs(m); len(got) != len(pids) {
		t.Fatalf("workers %v, then %v: the benched login reached one", pids, got)
	}
	if res := authn(t, m, req("dave", "pw-dave", "crashy"), 30*time.Second); res.Verdict != mechs.Accept {
		t.Fatalf("another user of the same service: %+v", res)
	}
}

// TestCrashingUserDoesNotLockOthersOut: one user whose login crashes the
// stack, retrying at once, spends the respawn limit; the other users'
// requests wait for a running worker instead of failing.
func TestCrashingUserDoesNotLockOthersOut(t *testing.T) {
	f := newFixture(t)
	m := newMech(t, f, pam.ModeWorkers, nil, pam.OptWorkers, "3")
	stop := make(chan struct{})
	var crasher sync.WaitGroup
	var crashes atomic.Int64
	for range 2 {
		crasher.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				res := authn(t, m, req("crash", "pw-crashing", "crashy"), 30*time.Second)
				if res.Verdict != mechs.TempFail {
					t.Errorf("crashing user: %+v", res)
					return
				}
				crashes.Add(1)
			}
		})
	}
	var good sync.WaitGroup
	var failed atomic.Int64
	for range 8 {
		good.Go(func() {
			for range 12 {
				if res := authn(t, m, req("alice", "secret", "svc"), 30*time.Second); res.Verdict != mechs.Accept {
					if failed.Add(1) == 1 {
						t.Errorf("good login: %+v", res)
					}
				}
			}
		})
	}
	good.Wait()
	close(stop)
	crasher.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of 96 good logins failed while another user crashed the stack %d times", n, crashes.Load())
	}
	if crashes.Load() == 0 {
		t.Fatal("the crashing user never ran")
	}
}

// TestWorkerCommandBroken: a worker command that does not speak the
// protocol is an error at New, not a NO per request.
func TestWorkerCommandBroken(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct{ cmd, want string }{
		{"/bin/false", "did not start"},
		{"/bin/echo hello-there", "did not start"},
		{"/nonexistent/saslgate pam-worker", "pam_worker_cmd"},
	} {
		_, err := pam.New(mechs.Options{Values: map[string]string{pam.OptConfDir: f.dir, pam.OptWorkerCmd: c.cmd}}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "mechs/pam: ") {
			t.Errorf("%s: err = %v, want one with %q", c.cmd, err, c.want)
		}
	}
}

// TestWorkerCommandCustom: pam_worker_cmd names the program and arguments.
func TestWorkerCommandCustom(t *testing.T) {
	f := newFixture(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := newMech(t, f, pam.ModeWorkers, nil, pam.OptWorkerCmd, exe+" "+pam.WorkerCommand)
	if res := authn(t, m, req("alice", "secret", "svc"), 30*time.Second); res.Verdict != mechs.Accept {
		t.Fatalf("%+v", res)
	}
}

// TestWorkerArgvEnv: the password travels over the pipe only.
func TestWorkerArgvEnv(t *testing.T) {
	f := newFixture(t)
	m := newMech(t, f, pam.ModeWorkers, nil)
	const pw = "pw-argv-env-check"
	authn(t, m, req("alice", pw, "svc"), 30*time.Second)
	exe, _ := os.Executable()
	for _, pid := range pam.WorkerPIDs(m) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatal(err)
		}
		if want := exe + "\x00" + pam.WorkerCommand + "\x00"; string(cmdline) != want {
			t.Errorf("worker %d argv %q, want %q", pid, cmdline, want)
		}
		// Workers are not dumpable: only root may read their environment.
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			if os.Geteuid() == 0 {
				t.Errorf("root cannot read worker %d's environment: %v", pid, err)
			}
			continue
		}
		if strings.Contains(string(env), pw) {
			t.Errorf("worker %d's environment holds the password", pid)
		}
		if !strings.Contains(string(env), pam.EnvWorker+"=1") {
			t.Errorf("worker %d's environment lacks %s", pid, pam.EnvWorker)
		}
	}
}

// TestWorkerMainExitCodes drives a worker by hand: hello first, exit 0 on
// EOF, exit 2 on a malformed request.
func TestWorkerMainExitCodes(t *testing.T) {
	needPAM(t)
	for _, c := range []struct {
		name  string
		stdin []byte
		code  int
	}{
		{"eof", nil, 0},
		{"oversized frame", []byte{0xff, 0xff, 0xff, 0xff}, 2},
		{"truncated frame", []byte{0, 0, 0, 10, 1}, 2},
		{"bad request", []byte{0, 0, 0, 1, 9}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], pam.WorkerCommand)
			cmd.Stdin = bytes.NewReader(c.stdin)
			var out bytes.Buffer
			cmd.Stdout = &out
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code {
				t.Errorf("exit %d, want %d", code, c.code)
			}
			if !bytes.Contains(out.Bytes(), []byte("saslgate-pam-worker/")) {
				t.Errorf("no hello on stdout: %q", out.Bytes())
			}
		})
	}
}

// TestClose: Close reaps every worker, and the mechanism then fails
// requests; a request in flight at Close ends promptly.
func TestClose(t *testing.T) {
	f := newFixture(t)
	m, err := pam.New(mechs.Options{Values: map[string]string{pam.OptConfDir: f.dir}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	authn(t, m, req("alice", "secret", "svc"), 30*time.Second)
	done := make(chan mechs.Result)
	go func() { done <- authn(t, m, req("hang", "pw-hanging", "crashy"), time.Minute) }()
	time.Sleep(300 * time.Millisecond) // the hang is running
	pids := pam.WorkerPIDs(m)
	start := time.Now()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	select {
	case res := <-done:
		if res.Verdict != mechs.TempFail || !strings.Contains(res.Reason, "closed") {
			t.Errorf("request in flight at Close: %+v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request in flight did not end at Close")
	}
	for _, pid := range pids {
		waitReaped(t, pid)
	}
	if res := authn(t, m, req("alice", "secret", "svc"), time.Second); res.Verdict != mechs.TempFail || !strings.Contains(res.Reason, "closed") {
		t.Fatalf("after Close: %+v", res)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestWorkerQueue: with every worker busy, requests wait for one (spec
// §13 case 22) until their deadline, which ends only the waiting request.
func TestWorkerQueue(t *testing.T) {
	f := newFixture(t)
	m := newMech(t, f, pam.ModeWorkers, nil, pam.OptWorkers, "1")
	slow := req("hang", "pw-hanging", "slow") // one second in the module, then pam_matrix says no
	var wg sync.WaitGroup
	results := make([]mechs.Result, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = authn(t, m, slow, 10*time.Second)
		}()
	}
	time.Sleep(100 * time.Millisecond)
	// this one gives up while the three queue
	res := authn(t, m, req("alice", "secret", "svc"), 300*time.Millisecond)
	if res.Verdict != mechs.TempFail || !strings.Contains(res.Reason, "all 1 pam workers busy") {
		t.Errorf("request that timed out waiting: %+v", res)
	}
	wg.Wait()
	for i, res := range results {
		if res.Reply != "NO PAM auth error" || res.Verdict != mechs.Reject {
			t.Errorf("queued request %d: %+v", i, res)
		}
	}
	if res := authn(t, m, req("alice", "secret", "svc"), 10*time.Second); res.Verdict != mechs.Accept {
		t.Fatalf("after the queue: %+v", res)
	}
}

// TestInProcessTimeout: in-process, a hung stack cannot be stopped: the
// request gives up at its deadline and the slot stays busy until the stack
// returns.
func TestInProcessTimeout(t *testing.T) {
	f := newFixture(t)
	m := newMech(t, f, pam.ModeInProcess, nil, pam.OptWorkers, "1")
	start := time.Now()
	res := authn(t, m, req("hang", "pw-hanging", "slow"), 300*time.Millisecond)
	if res.Verdict != mechs.TempFail || res.Reply != "NO PAM auth error" || !strings.Contains(res.Reason, "still running") {
		t.Fatalf("got %+v", res)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
	res = authn(t, m, req("alice", "secret", "svc"), 300*time.Millisecond)
	if res.Verdict != mechs.TempFail || !strings.Contains(res.Reason, "slots busy") {
		t.Fatalf("with the only slot busy: %+v", res)
	}
	if res := authn(t, m, req("alice", "secret", "svc"), 10*time.Second); res.Verdict != mechs.Accept {
		t.Fatalf("once the stack returned: %+v", res)
	}
}

func TestOptions(t *testing.T) {
	f := newFixture(t)
	bad := []map[string]string{
		{pam.OptMode: "threads"},
		{pam.OptWorkers: "many"},
		{pam.OptWorkers: "-1"},
		{pam.OptWorkers: strconv.Itoa(pam.MaxWorkers + 1)},
		{pam.OptConfDir: filepath.Join(f.dir, "nonexistent")},
		{pam.OptConfDir: f.passdb},
	}
	for _, vals := range bad {
		_, err := pam.New(mechs.Options{Values: vals}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "mechs/pam: ") {
			t.Errorf("%v: err = %v", vals, err)
		}
	}
	// 0 is one worker, as saslauthd -n 0 is one process
	m := newMech(t, f, pam.ModeWorkers, nil, pam.OptWorkers, "0")
	if res := authn(t, m, req("alice", "secret", "svc"), 30*time.Second); res.Verdict != mechs.Accept {
		t.Fatalf("%+v", res)
	}
}

// TestRegistry: "pam" is registered, case-insensitively, after getpwent
// and before shadow, and the factory checks its options.
func TestRegistry(t *testing.T) {
	f := newFixture(t)
	if !mechs.Known("pam") {
		t.Fatal("pam is not registered")
	}
	m, err := mechs.New("PAM", mechs.Options{Values: map[string]string{pam.OptConfDir: f.dir, pam.OptMode: pam.ModeInProcess}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "pam" {
		t.Fatalf("Name() = %q", m.Name())
	}
	if _, ok := m.(io.Closer); !ok {
		t.Fatal("the pam mechanism is not an io.Closer")
	}
	_, err = mechs.New("pam", mechs.Options{Values: map[string]string{pam.OptMode: "bogus"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "mechs/pam: unknown pam_mode") {
		t.Fatalf("bad mode: %v", err)
	}
}

// TestPAMWrapper runs the production path, pam_start without a confdir,
// in workers started under pam_wrapper (LD_PRELOAD), which redirects
// /etc/pam.d to the fixture: no root needed.
func TestPAMWrapper(t *testing.T) {
	_, err := os.Stat(wrapperSO)
	need(t, err == nil, "libpam_wrapper.so (apt-get install libpam-wrapper)")
	f := newFixture(t)
	t.Setenv("LD_PRELOAD", wrapperSO)
	t.Setenv("PAM_WRAPPER", "1")
	t.Setenv("PAM_WRAPPER_SERVICE_DIR", f.dir)
	m, err := pam.New(mechs.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, c := range []struct {
		req   mechs.Request
		reply string
	}{
		{req("alice", "secret", "svc"), "OK"},
		{req("alice", "wrong", "svc"), "NO PAM auth error"},
		{req("carol", "pw-carol", "svc"), "NO PAM acct error"},
	} {
		if res := authn(t, m, c.req, 30*time.Second); res.Reply != c.reply {
			t.Errorf("%s/%s: got %+v, want %q", c.req.Login, c.req.Service, res, c.reply)
		}
	}
}

// TestSystemPAMDir uses /etc/pam.d itself (root only): a service file
// there, pam_start without a confdir, both modes.
func TestSystemPAMDir(t *testing.T) {
	need(t, os.Geteuid() == 0, "root (writes a service file in /etc/pam.d)")
	f := newFixture(t)
	svc := fmt.Sprintf("saslgate-test-%d", os.Getpid())
	passdb := filepath.Join(f.dir, "passdb-system")
	write(t, passdb, "alice:secret:"+svc+"\n")
	path := filepath.Join("/etc/pam.d", svc)
	write(t, path, "auth required "+matrixSO+" passdb="+passdb+"\naccount required "+matrixSO+" passdb="+passdb+"\n")
	t.Cleanup(func() { os.Remove(path) })
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			m, err := pam.New(mechs.Options{Values: map[string]string{pam.OptMode: mode}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if res := authn(t, m, req("alice", "secret", svc), 30*time.Second); res.Reply != "OK" {
				t.Errorf("good: %+v", res)
			}
			if res := authn(t, m, req("alice", "wrong", svc), 30*time.Second); res.Reply != "NO PAM auth error" {
				t.Errorf("wrong password: %+v", res)
			}
		})
	}
}

// benchmark measures logins on pam_matrix: "parallel" with GOMAXPROCS
// clients and the default 5 workers (throughput), "serial" with one
// client and one worker (the latency of one login).
func benchmark(b *testing.B, mode string) {
	f := newFixture(b)
	r := req("alice", "secret", "svc")
	b.Run("parallel", func(b *testing.B) {
		m := newMech(b, f, mode, nil)
		var fails atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				if res, err := m.Authenticate(ctx, r); err != nil || res.Verdict != mechs.Accept {
					fails.Add(1)
				}
			}
		})
		if n := fails.Load(); n > 0 {
			b.Fatalf("%d failed logins", n)
		}
	})
	b.Run("serial", func(b *testing.B) {
		m := newMech(b, f, mode, nil, pam.OptWorkers, "1")
		ctx := context.Background()
		for b.Loop() {
			if res, err := m.Authenticate(ctx, r); err != nil || res.Verdict != mechs.Accept {
				b.Fatalf("%+v, %v", res, err)
			}
		}
	})
}

func BenchmarkWorkers(b *testing.B)   { benchmark(b, pam.ModeWorkers) }
func BenchmarkInProcess(b *testing.B) { benchmark(b, pam.ModeInProcess) }

// parentHelper makes the test binary a stand-in daemon for
// TestWorkersDieWithDaemon: it starts a pool on the confdir in
// $PAMTEST_CONFDIR, leaves a worker hung in a module, prints the worker
// pids and waits to be killed.
const parentHelper = "pam-parent-helper"

func runParentHelper() int {
	m, err := pam.New(mechs.Options{Values: map[string]string{pam.OptConfDir: os.Getenv("PAMTEST_CONFDIR"), pam.OptWorkers: "2"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go m.Authenticate(context.Background(), req("hang", "pw-hanging", "crashy"))
	for range 100 {
		if len(pam.WorkerPIDs(m)) == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the hang is in the module
	fmt.Println(pam.WorkerPIDs(m))
	select {}
}

// TestWorkersDieWithDaemon: when the daemon is killed (no Close, no EOF
// for a worker stuck in a module), the parent-death signal takes its
// workers with it.
func TestWorkersDieWithDaemon(t *testing.T) {
	f := newFixture(t)
	cmd := exec.Command(os.Args[0], parentHelper)
	cmd.Env = append(os.Environ(), "PAMTEST_CONFDIR="+f.dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %v", err)
	}
	var pids []int
	for _, s := range strings.Fields(strings.Trim(line, "[]\n")) {
		pid, _ := strconv.Atoi(s)
		pids = append(pids, pid)
	}
	if len(pids) != 2 {
		t.Fatalf("helper printed %q", line)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d outlived its daemon", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// alive reports whether pid runs (a zombie has died).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}
