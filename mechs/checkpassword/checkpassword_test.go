package checkpassword

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/mechstest"
)

// The test binary doubles as the fake checkpassword program: a symlink to
// it named fakeName runs fakeMain instead of the tests.
const fakeName = "fake-checkpassword"

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == fakeName {
		os.Exit(fakeMain())
	}
	os.Exit(m.Run())
}

// fakeUsers are the logins the fake knows, with their passwords: byte
// strings a split at the wrong place would break (spaces, tabs, CR LF,
// UTF-8, 8-bit bytes, '@').
var fakeUsers = map[string]string{
	"alice":                 "good pass wörd ✓",
	"jörg müller@ex.org":    " pa ss\twörd\r\n✓ ",
	"\xff\xfe raw\x01bytes": "\x80\x81 \x7f\xc3",
}

// fakeMain is the checkpassword program. It writes what it read on fd 3 to
// in-<hex login> next to itself, checks it byte for byte against
// "login\0password\0\0", and behaves as the login asks.
func fakeMain() int {
	dir := filepath.Dir(os.Args[0])
	var st syscall.Stat_t
	if syscall.Fstat(3, &st) != nil {
		return 2 // no fd 3: misuse
	}
	fd3 := os.NewFile(3, "fd3")
	in, err := io.ReadAll(io.LimitReader(fd3, 1024))
	fd3.Close()
	if err != nil {
		return 111
	}
	login, _, _ := bytes.Cut(in, []byte{0})
	_ = os.WriteFile(filepath.Join(dir, "in-"+hex.EncodeToString(login)), in, 0o600)
	if len(os.Args) < 2 {
		return 2
	}
	next := func() int {
		// run NEXT as the interface says: exec, so its exit is ours
		path, err := exec.LookPath(os.Args[1])
		if err != nil {
			return 111
		}
		_ = syscall.Exec(path, os.Args[1:], os.Environ())
		return 111
	}
	switch string(login) {
	case "misuse":
		return 2
	case "tempfail":
		return 111
	case "vchkpw":
		return 3
	case "weird":
		return 42
	case "crash":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	case "hang":
		// a grandchild in the same process group, holding stdout: the
		// timeout must take both
		gc := exec.Command("sleep", "60")
		gc.Stdout, gc.Stderr = os.Stdout, os.Stderr
		if gc.Start() == nil {
			_ = os.WriteFile(filepath.Join(dir, "grandchild"), []byte(strconv.Itoa(gc.Process.Pid)), 0o600)
		}
		time.Sleep(time.Hour)
	case "escape":
		// a grandchild in its own session keeps stdout open after the
		// program exits
		gc := exec.Command("sleep", "60")
		gc.Stdout = os.Stdout
		gc.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if gc.Start() == nil {
			_ = os.WriteFile(filepath.Join(dir, "escaped"), []byte(strconv.Itoa(gc.Process.Pid)), 0o600)
		}
		return 1
	case "noisy":
		// the password echoed, control characters, and more than is kept
		_, pw, _ := bytes.Cut(in, []byte{0})
		pw, _, _ = bytes.Cut(pw, []byte{0})
		fmt.Fprintf(os.Stderr, "noisy: bad password %s for you\n", pw)
		fmt.Fprintf(os.Stderr, "esc\x1b[31mred\n")
		fmt.Fprint(os.Stderr, strings.Repeat("x", 300)+"\n")
		fmt.Fprint(os.Stdout, strings.Repeat("y", 3*maxOutput))
		for i := range 20 {
			fmt.Fprintf(os.Stderr, "line %d\n", i)
		}
		return 1
	case "env":
		_ = os.WriteFile(filepath.Join(dir, "env"), []byte(strings.Join(os.Environ(), "\n")), 0o600)
		args := strings.Join(os.Args[1:], " ")
		_ = os.WriteFile(filepath.Join(dir, "args"), []byte(args), 0o600)
		cwd, _ := os.Getwd()
		_ = os.WriteFile(filepath.Join(dir, "cwd"), []byte(cwd), 0o600)
		return next()
	case "block":
		// running until the test releases it: the test counts these
		_ = os.WriteFile(filepath.Join(dir, "block-"+strconv.Itoa(os.Getpid())), nil, 0o600)
		for range 3000 {
			if _, err := os.Stat(filepath.Join(dir, "release")); err == nil {
				return 1
			}
			time.Sleep(10 * time.Millisecond)
		}
		return 111
	}
	pw, ok := fakeUsers[string(login)]
	switch {
	case !ok:
		return 1
	case string(in) == string(login)+"\x00"+pw+"\x00\x00":
		return next()
	case bytes.HasPrefix(in, append(login, 0)) && bytes.HasSuffix(in, []byte("\x00\x00")):
		return 1 // a wrong password, well formed
	}
	return 99 // not the interface's bytes
}

// fake is a directory holding the fake program.
type fake struct {
	dir  string
	prog string
}

func newFake(t *testing.T) *fake {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	prog := filepath.Join(dir, fakeName)
	if err := os.Symlink(self, prog); err != nil {
		t.Fatal(err)
	}
	return &fake{dir: dir, prog: prog}
}

// input is what the fake read on fd 3 for login, or nil.
func (f *fake) input(login string) []byte {
	b, err := os.ReadFile(filepath.Join(f.dir, "in-"+hex.EncodeToString([]byte(login))))
	if err != nil {
		return nil
	}
	return b
}

func (f *fake) mech(t *testing.T, logger *slog.Logger, kv ...string) *Mech {
	t.Helper()
	opts := mechs.Options{Option: f.prog, Values: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		opts.Values[kv[i]] = kv[i+1]
	}
	m, err := New(opts, logger)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func auth(t *testing.T, m *Mech, login, pw string) mechs.Result {
	t.Helper()
	res, err := m.Authenticate(context.Background(), mechs.Request{Login: login, Password: mechs.Password(pw), Service: "smtp"})
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return res
}

func TestConformance(t *testing.T) {
	f := newFake(t)
	mechstest.Run(t, mechstest.Fixture{
		New: func(t *testing.T, logger *slog.Logger) mechs.Mechanism {
			return f.mech(t, logger)
		},
		Good:         mechs.Request{Login: "alice", Password: mechs.Password(fakeUsers["alice"]), Service: "smtp"},
		UnknownLogin: "mallory",
	})
}

// TestExitCodes: every way the program can end, and the verdict it maps to.
func TestExitCodes(t *testing.T) {
	f := newFake(t)
	var logBuf syncBuf
	m := f.mech(t, slog.New(slog.NewTextHandler(&logBuf, nil)), KeyTimeout, "2s")
	for i, tc := range []struct {
		login, pw string
		verdict   mechs.Verdict
		reply     string
		reason    string // a substring of Reason
	}{
		{"alice", fakeUsers["alice"], mechs.Accept, ReplyOK, ""},
		{"alice", "good pass wörd", mechs.Reject, ReplyRejected, "exit 1"},
		{"mallory", "x", mechs.Reject, ReplyRejected, "exit 1"},
		{"misuse", "x", mechs.TempFail, ReplyTempFail, "exit 2 (misuse)"},
		{"tempfail", "x", mechs.TempFail, ReplyTempFail, "exit 111"},
		{"vchkpw", "x", mechs.Reject, ReplyRejected, "exit 3: wrong password or unknown user (vchkpw)"},
		{"weird", "x", mechs.TempFail, ReplyTempFail, "exit 42 (not in the interface)"},
		{"crash", "x", mechs.TempFail, ReplyTempFail, "killed by signal killed"},
	} {
		res := auth(t, m, tc.login, tc.pw)
		if res.Verdict != tc.verdict || res.Reply != tc.reply || !strings.Contains(res.Reason, tc.reason) {
			t.Errorf("case %d %s: got %v %q (%s), want %v %q (%s)", i, tc.login, res.Verdict, res.Reply, res.Reason,
				tc.verdict, tc.reply, tc.reason)
		}
	}
	if !strings.Contains(logBuf.String(), "level=ERROR") || !strings.Contains(logBuf.String(), "misuse") {
		t.Errorf("no error line for the misuse exit:\n%s", logBuf.String())
	}
}

// TestNextProgramDecides: exit 0 comes from the program the checkpassword
// program runs on success, so checkpassword_args reaches it.
func TestNextProgramDecides(t *testing.T) {
	f := newFake(t)
	for i, tc := range []struct {
		args string
		want mechs.Verdict
	}{
		{"", mechs.Accept}, // /bin/true
		{"/bin/true", mechs.Accept},
		{"false", mechs.Reject}, // found through the program's PATH
		{"/bin/sh -c false", mechs.Reject},
	} {
		m := f.mech(t, nil, KeyArgs, tc.args)
		if res := auth(t, m, "alice", fakeUsers["alice"]); res.Verdict != tc.want {
			t.Errorf("case %d: args %q: %v (%s), want %v", i, tc.args, res.Verdict, res.Reason, tc.want)
		}
	}
}

// TestInputBytes: fd 3 carries login\0password\0\0 exactly, whatever bytes
// the login and the password hold; what the interface cannot carry is
// rejected without running the program.
func TestInputBytes(t *testing.T) {
	f := newFake(t)
	m := f.mech(t, nil)
	for login, pw := range fakeUsers {
		if res := auth(t, m, login, pw); res.Verdict != mechs.Accept {
			t.Errorf("%q: %v (%s)", login, res.Verdict, res.Reason)
		}
		if got, want := f.input(login), login+"\x00"+pw+"\x00\x00"; string(got) != want {
			t.Errorf("%q: fd 3 carried %q, want %q", login, got, want)
		}
	}
	for i, tc := range []struct{ login, pw string }{
		{"al\x00ice", "x"},        // a NUL would move the split
		{"alice", "good\x00pass"}, // same
		{"", "x"},                 // nothing to ask
		{"bob", ""},               // same
		{"bob", strings.Repeat("p", 512-len("bob")-3+1)},     // 513 bytes
		{strings.Repeat("l", 256), strings.Repeat("p", 256)}, // what the mux protocol allows, too long here
	} {
		login, _, _ := strings.Cut(tc.login, "\x00")
		_ = os.Remove(filepath.Join(f.dir, "in-"+hex.EncodeToString([]byte(login))))
		res := auth(t, m, tc.login, tc.pw)
		if res.Verdict != mechs.Reject || res.Reply != ReplyRejected {
			t.Errorf("case %d: %v %q", i, res.Verdict, res.Reply)
		}
		if f.input(login) != nil {
			t.Errorf("case %d: the program ran", i)
		}
	}
	// 512 bytes exactly is still asked
	long := strings.Repeat("p", 512-len("bob")-3)
	if res := auth(t, m, "bob", long); res.Verdict != mechs.Reject || len(f.input("bob")) != 512 {
		t.Errorf("512 bytes: %v, fd 3 carried %d bytes", res.Verdict, len(f.input("bob")))
	}
}

// TestEnvironment: the program gets a fixed environment (nothing of the
// daemon's), the service, ucspi-tcp's client address and vchkpw's port, and
// never the password.
func TestEnvironment(t *testing.T) {
	t.Setenv("SASLGATE_TEST_LEAK", "daemon-secret")
	f := newFake(t)
	m := f.mech(t, nil, KeyArgs, "/bin/true extra arg")
	for i, tc := range []struct {
		service, addr string
		want          []string
	}{
		{"smtp", "192.0.2.7;41234", []string{"PATH=" + childPath, "SERVICE=smtp", "TCPLOCALPORT=25", "PROTO=TCP",
			"TCPREMOTEIP=192.0.2.7", "TCPREMOTEPORT=41234"}},
		{"IMAP", "2001:db8::1;993", []string{"PATH=" + childPath, "SERVICE=IMAP", "TCPLOCALPORT=143", "PROTO=TCP",
			"TCPREMOTEIP=2001:db8::1", "TCPREMOTEPORT=993"}},
		{"ldap", "::ffff:10.0.0.1;x", []string{"PATH=" + childPath, "SERVICE=ldap", "PROTO=TCP", "TCPREMOTEIP=10.0.0.1"}},
		{"pop3", "not an address;1", []string{"PATH=" + childPath, "SERVICE=pop3", "TCPLOCALPORT=110"}},
		{"", "", []string{"PATH=" + childPath}},
	} {
		res, err := m.Authenticate(context.Background(), mechs.Request{Login: "env", Password: "env-password",
			Service: tc.service, ClientAddr: tc.addr})
		if err != nil || res.Verdict != mechs.Accept {
			t.Fatalf("case %d: %v %v (%s)", i, err, res.Verdict, res.Reason)
		}
		b, _ := os.ReadFile(filepath.Join(f.dir, "env"))
		got := strings.Split(string(b), "\n")
		if !slices.Equal(got, tc.want) {
			t.Errorf("case %d: environment %q, want %q", i, got, tc.want)
		}
		if strings.Contains(string(b), "env-password") {
			t.Errorf("case %d: the password is in the environment", i)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(f.dir, "args")); string(b) != "/bin/true extra arg" {
		t.Errorf("NEXT arguments %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(f.dir, "cwd")); string(b) != "/" {
		t.Errorf("working directory %q", b)
	}
}

// TestTimeoutKillsGroup: a program that never answers is killed at the
// timeout with everything it started in its process group.
func TestTimeoutKillsGroup(t *testing.T) {
	f := newFake(t)
	// long enough for the fake (a re-executed test binary, slow under
	// -race on a loaded machine) to start its grandchild before the kill
	m := f.mech(t, nil, KeyTimeout, "3s")
	start := time.Now()
	res := auth(t, m, "hang", "x")
	if res.Verdict != mechs.TempFail || !strings.Contains(res.Reason, "no answer within 3s") {
		t.Fatalf("got %v %q (%s)", res.Verdict, res.Reply, res.Reason)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	assertGone(t, f, "grandchild")
}

// TestCancelKillsGroup: the request's context ending does the same.
func TestCancelKillsGroup(t *testing.T) {
	f := newFake(t)
	m := f.mech(t, nil, KeyTimeout, "1m")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// wait until the grandchild exists, so the kill has something to take
		for range 500 {
			if _, err := os.Stat(filepath.Join(f.dir, "grandchild")); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	res, err := m.Authenticate(ctx, mechs.Request{Login: "hang", Password: "x"})
	if err != nil || res.Verdict != mechs.TempFail || res.Reply != mechs.ReplyInternal {
		t.Fatalf("got %v %v %q (%s)", err, res.Verdict, res.Reply, res.Reason)
	}
	assertGone(t, f, "grandchild")
}

// assertGone waits for the process whose pid the fake wrote in file to be
// gone (or a zombie nobody reaps yet).
func assertGone(t *testing.T, f *fake, file string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, file))
	if err != nil {
		t.Fatalf("the fake wrote no %s: %v", file, err)
	}
	pid, _ := strconv.Atoi(string(b))
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if _, after, ok := strings.Cut(string(stat), ") "); ok && strings.HasPrefix(after, "Z") {
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("pid %d outlived the kill", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEscapedChildDoesNotHold: a program that exits while a child in
// another session keeps its stdout open is answered within waitDelay, not
// when the child ends.
func TestEscapedChildDoesNotHold(t *testing.T) {
	f := newFake(t)
	m := f.mech(t, nil, KeyTimeout, "30s")
	start := time.Now()
	res := auth(t, m, "escape", "x")
	if b, err := os.ReadFile(filepath.Join(f.dir, "escaped")); err == nil {
		pid, _ := strconv.Atoi(string(b))
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	} else {
		t.Fatal("the fake started no escaping child")
	}
	if res.Verdict != mechs.Reject {
		t.Errorf("got %v (%s)", res.Verdict, res.Reason)
	}
	if d := time.Since(start); d > waitDelay+5*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestOutputBoundedAndMasked: stderr lines reach the log with the password
// masked, control characters replaced, long lines cut and at most
// maxLogLines of them; stdout is kept to maxOutput bytes.
func TestOutputBoundedAndMasked(t *testing.T) {
	f := newFake(t)
	var logBuf syncBuf
	m := f.mech(t, slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	const pw = "Sekr3t pass"
	if res := auth(t, m, "noisy", pw); res.Verdict != mechs.Reject {
		t.Fatalf("got %v (%s)", res.Verdict, res.Reason)
	}
	out := logBuf.String()
	if strings.Contains(out, "Sekr3t") {
		t.Fatalf("the password reached the log:\n%s", out)
	}
	for _, want := range []string{"bad password REDACTED for you", "esc?[31mred", strings.Repeat("x", maxLogLine) + "…",
		"line 6", "(13 more lines)", fmt.Sprintf("(%d more bytes dropped)", 2*maxOutput)} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "line 7") || strings.Contains(out, strings.Repeat("x", maxLogLine+1)) {
		t.Errorf("log not bounded:\n%s", out)
	}
	if n := strings.Count(out, "checkpassword program stderr"); n != maxLogLines+1 {
		t.Errorf("%d stderr log lines, want %d", n, maxLogLines+1)
	}
}

func TestCapped(t *testing.T) {
	var c capped
	for _, n := range []int{10, maxOutput - 15, 10, 100} {
		if got, err := c.Write(bytes.Repeat([]byte("z"), n)); got != n || err != nil {
			t.Fatalf("Write(%d) = %d, %v", n, got, err)
		}
	}
	if total := 10 + maxOutput - 15 + 10 + 100; len(c.b) != maxOutput || c.dropped != total-maxOutput {
		t.Errorf("kept %d, dropped %d", len(c.b), c.dropped)
	}
}

// TestProcsBound: no more than checkpassword_procs programs run at once;
// the others wait and all are answered.
func TestProcsBound(t *testing.T) {
	f := newFake(t)
	m := f.mech(t, nil, KeyProcs, "2", KeyTimeout, "30s")
	running := func() int {
		ms, _ := filepath.Glob(filepath.Join(f.dir, "block-*"))
		return len(ms)
	}
	var wg sync.WaitGroup
	results := make(chan mechs.Verdict, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, _ := m.Authenticate(context.Background(), mechs.Request{Login: "block", Password: "x"})
			results <- res.Verdict
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for running() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d programs started", running())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// without the bound all five would be running by now
	time.Sleep(500 * time.Millisecond)
	if n := running(); n != 2 {
		t.Errorf("%d programs running at once, want 2", n)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	for v := range results {
		if v != mechs.Reject {
			t.Errorf("a blocked request got %v", v)
		}
	}
	if n := running(); n != 5 {
		t.Errorf("%d programs ran, want 5", n)
	}
}

// TestWaitingForSlotHonoursContext: a request waiting for a free slot
// gives up when its context ends.
func TestWaitingForSlotHonoursContext(t *testing.T) {
	f := newFake(t)
	m := f.mech(t, nil, KeyProcs, "1")
	m.sem <- struct{}{} // the one slot is taken
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res, err := m.Authenticate(ctx, mechs.Request{Login: "alice", Password: mechs.Password(fakeUsers["alice"])})
	if err != nil || res.Verdict != mechs.TempFail || !strings.Contains(res.Reason, "deadline") {
		t.Fatalf("got %v %v (%s)", err, res.Verdict, res.Reason)
	}
	if f.input("alice") != nil {
		t.Error("the program ran without a slot")
	}
}

func TestParseConfig(t *testing.T) {
	f := newFake(t)
	noexec := filepath.Join(f.dir, "noexec")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		option string
		kv     map[string]string
		want   Config
		err    string
	}{
		{f.prog, nil, Config{Path: f.prog, Args: []string{"/bin/true"}, Timeout: 10 * time.Second, Procs: 5}, ""},
		{"/nonexistent", map[string]string{KeyPath: f.prog}, Config{Path: f.prog, Args: []string{"/bin/true"}, Timeout: 10 * time.Second, Procs: 5}, ""},
		{"", map[string]string{KeyPath: "sh", KeyArgs: " /bin/echo  a\tb ", KeyTimeout: "5", KeyProcs: "64"},
			Config{Path: "/usr/bin/sh", Args: []string{"/bin/echo", "a", "b"}, Timeout: 5 * time.Second, Procs: 64}, ""},
		{f.prog, map[string]string{KeyTimeout: "1.5s"}, Config{Path: f.prog, Args: []string{"/bin/true"}, Timeout: 1500 * time.Millisecond, Procs: 5}, ""},
		{"", nil, Config{}, "no checkpassword program"},
		{"/nonexistent/vchkpw", nil, Config{}, "no such file"},
		{noexec, nil, Config{}, "permission denied"},
		{f.prog, map[string]string{KeyArgs: "/nonexistent/next"}, Config{}, KeyArgs},
		{f.prog, map[string]string{KeyArgs: "no-such-program-anywhere"}, Config{}, "not found"},
		{f.prog, map[string]string{KeyTimeout: "0"}, Config{}, KeyTimeout},
		{f.prog, map[string]string{KeyTimeout: "soon"}, Config{}, KeyTimeout},
		{f.prog, map[string]string{KeyProcs: "0"}, Config{}, KeyProcs},
		{f.prog, map[string]string{KeyProcs: "5000"}, Config{}, KeyProcs},
	} {
		got, err := ParseConfig(mechs.Options{Option: tc.option, Values: tc.kv})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "mechs/checkpassword: ") {
				t.Errorf("case %d: err = %v, want %q", i, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		if got.Path != tc.want.Path && !(tc.want.Path == "/usr/bin/sh" && got.Path == "/bin/sh") ||
			!slices.Equal(got.Args, tc.want.Args) || got.Timeout != tc.want.Timeout || got.Procs != tc.want.Procs {
			t.Errorf("case %d: got %+v, want %+v", i, got, tc.want)
		}
	}
}

func TestRegistered(t *testing.T) {
	f := newFake(t)
	m, err := mechs.New("CheckPassword", mechs.Options{Option: f.prog}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*Mech); !ok || m.Name() != "checkpassword" {
		t.Errorf("mechs.New gave %T %q", m, m.Name())
	}
	if _, err := mechs.New("checkpassword", mechs.Options{}, nil); err == nil ||
		!strings.Contains(err.Error(), "failed to initialize mechanism checkpassword") {
		t.Errorf("no program: %v", err)
	}
}

func TestConfigErrorRateLimited(t *testing.T) {
	var logBuf syncBuf
	f := newFake(t)
	m := f.mech(t, slog.New(slog.NewTextHandler(&logBuf, nil)))
	for range 3 {
		if res := auth(t, m, "misuse", "x"); res.Verdict != mechs.TempFail {
			t.Fatalf("got %v", res.Verdict)
		}
	}
	if n := strings.Count(logBuf.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines for three misuse exits, want 1", n)
	}
	// a program that cannot start any more
	if err := os.Remove(f.prog); err != nil {
		t.Fatal(err)
	}
	res := auth(t, m, "alice", "x")
	if res.Verdict != mechs.TempFail || !strings.Contains(res.Reason, "start") {
		t.Errorf("missing program: %v (%s)", res.Verdict, res.Reason)
	}
	if !strings.Contains(logBuf.String(), "cannot be started") {
		t.Errorf("no log line for the missing program:\n%s", logBuf.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
