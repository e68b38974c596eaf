package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// TestPostfixSMTPAuthViaSaslgate runs a real Postfix smtpd (a private
// instance: its own config, queue and data directories under a temporary
// directory, listening on a free 127.0.0.1 port, no chroot) whose libsasl2
// asks saslgate (-a sasldb, a sasldb written by the real saslpasswd2) over
// the mux socket, and logs in with swaks: AUTH PLAIN and AUTH LOGIN, good
// and bad passwords, a login without a realm (libsasl sends an empty realm,
// sasldb uses the host name) and one typed as user@example.org (libsasl
// splits at the last "@").
func TestPostfixSMTPAuthViaSaslgate(t *testing.T) {
	needRoot(t)
	tools := need(t, "postfix", "swaks", "saslpasswd2")
	postfix, swaks, saslpasswd2 := tools[0], tools[1], tools[2]
	bin := saslgateBin(t)

	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Fatalf("hostname: %q %v", host, err)
	}
	// /tmp/sgpfNNN is 0755: smtpd runs as user postfix and must get through
	// it to saslgate's socket, and to smtpd.conf
	base, err := os.MkdirTemp("", "sgpf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}

	const (
		alicePW = "Al1ce-Smtp.pw"
		bobPW   = "B0b smtp pw!"
		carolPW = `Çårøl "q" 'x' \ pw`
	)
	db := filepath.Join(base, "sasldb2")
	// Postfix passes no realm for "alice": sasldb then uses the host name,
	// which is also saslpasswd2's default realm; -u makes it explicit.
	pfSaslpasswd(t, saslpasswd2, db, host, "alice", alicePW)
	pfSaslpasswd(t, saslpasswd2, db, "example.org", "bob", bobPW)
	pfSaslpasswd(t, saslpasswd2, db, host, "carol", carolPW)

	runDir := filepath.Join(base, "run")
	if err := os.Mkdir(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sg := startDaemon(t, "saslgate", bin, "", runDir,
		"serve", "-d", "-a", "sasldb", "--sasldb-path", db, "-m", runDir)

	pf := pfStart(t, postfix, base, sg.Socket())

	cases := []struct {
		name       string
		mech, user string
		pass       string
		want       int    // SMTP reply to the AUTH
		failLine   string // the saslgate log line a failure must produce
	}{
		{"plain-good", "PLAIN", "alice", alicePW, 235, ""},
		{"login-good", "LOGIN", "alice", alicePW, 235, ""},
		{"plain-bad", "PLAIN", "alice", "wrong-pw-1", 535,
			"auth failure: [user=alice] [service=smtp] [realm=] [mech=sasldb] [reason=Unknown]"},
		{"login-bad", "LOGIN", "alice", "wrong-pw-2", 535,
			"auth failure: [user=alice] [service=smtp] [realm=] [mech=sasldb] [reason=Unknown]"},
		// UTF-8, quotes, a backslash and spaces pass through untouched
		{"plain-utf8-good", "PLAIN", "carol", carolPW, 235, ""},
		{"login-utf8-good", "LOGIN", "carol", carolPW, 235, ""},
		{"plain-realm-good", "PLAIN", "bob@example.org", bobPW, 235, ""},
		{"login-realm-good", "LOGIN", "bob@example.org", bobPW, 235, ""},
		{"plain-realm-bad", "PLAIN", "bob@example.org", "wrong-pw-3", 535,
			"auth failure: [user=bob] [service=smtp] [realm=example.org] [mech=sasldb] [reason=Unknown]"},
		// the user exists in realm example.org only: without a realm the
		// lookup is bob@<hostname>, which must fail
		{"plain-realm-missing", "PLAIN", "bob", bobPW, 535,
			"auth failure: [user=bob] [service=smtp] [realm=] [mech=sasldb] [reason=Unknown]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(sg.Out.String())
			code, transcript, exit := swaksAuth(t, swaks, pf.addr, c.mech, c.user, c.pass)
			if code != c.want {
				t.Errorf("AUTH %s as %q: reply %d, want %d (swaks exit %d)\n%s\n--- saslgate:\n%s\n--- maillog tail:\n%s",
					c.mech, c.user, code, c.want, exit, transcript, sg.Out.String(), pf.maillogTail(40))
				return
			}
			// swaks: 0 on success, 28 when authentication failed
			if wantExit := map[int]int{235: 0, 535: 28}[c.want]; exit != wantExit {
				t.Errorf("swaks exit %d, want %d\n%s", exit, wantExit, transcript)
			}
			if c.failLine == "" {
				return
			}
			// saslgate logs the line before it replies; still, do not
			// depend on that order
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(sg.Out.String()[before:], c.failLine) {
				if time.Now().After(deadline) {
					t.Errorf("saslgate log lacks %q:\n%s", c.failLine, sg.Out.String()[before:])
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// pfSaslpasswd stores user@realm's password with the real saslpasswd2.
func pfSaslpasswd(t *testing.T, saslpasswd2, db, realm, user, pw string) {
	t.Helper()
	cmd := exec.Command(saslpasswd2, "-p", "-c", "-f", db, "-u", realm, user)
	cmd.Stdin = strings.NewReader(pw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("saslpasswd2 %s@%s: %v\n%s", user, realm, err, out)
	}
}

// pfInstance is a Postfix instance started by pfStart.
type pfInstance struct {
	configDir string
	maillog   string
	pidFile   string
	addr      string // 127.0.0.1:port of its smtpd
}

func (p *pfInstance) maillogTail(n int) string {
	b, err := os.ReadFile(p.maillog)
	if err != nil {
		return "(no maillog: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pfStart writes a private configuration under base (from
// testdata/postfix/*.tmpl), starts it with `postfix -c DIR start`, and
// stops it at cleanup: `postfix -c DIR stop`, then, should the master still
// be alive, SIGKILL to its process group (the master is a session leader,
// its children share its group).
func pfStart(t *testing.T, postfix, base, socket string) *pfInstance {
	t.Helper()
	port := pfFreePort(t)
	p := &pfInstance{
		configDir: filepath.Join(base, "etc"),
		maillog:   filepath.Join(base, "maillog"),
		pidFile:   filepath.Join(base, "spool", "pid", "master.pid"),
		addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
	}
	saslDir := filepath.Join(p.configDir, "sasl")
	for _, d := range []string{p.configDir, saslDir, filepath.Join(base, "spool")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	vars := map[string]string{
		"Base":    base,
		"Spool":   filepath.Join(base, "spool"),
		"Data":    filepath.Join(base, "data"),
		"Maillog": p.maillog,
		"SASLDir": saslDir,
		"Listen":  p.addr,
		"Socket":  socket,
	}
	pfExpand(t, "main.cf.tmpl", filepath.Join(p.configDir, "main.cf"), vars)
	pfExpand(t, "master.cf.tmpl", filepath.Join(p.configDir, "master.cf"), vars)
	pfExpand(t, "smtpd.conf.tmpl", filepath.Join(saslDir, "smtpd.conf"), vars)

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Postfix maillog (%s):\n%s", p.maillog, p.maillogTail(200))
		}
		pid := pfMasterPid(p.pidFile)
		if out, code := pfCmd(postfix, p.configDir, "stop"); code != 0 && pid > 0 {
			t.Logf("postfix stop: exit %d: %s", code, out)
		}
		if pid > 0 && pfIsMaster(pid) {
			t.Logf("postfix master %d survived `postfix stop`: SIGKILL to its group", pid)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		deadline := time.Now().Add(10 * time.Second)
		for pid > 0 && pfIsMaster(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if pid > 0 && pfIsMaster(pid) {
			t.Errorf("postfix master %d still running after cleanup", pid)
		}
	})

	if out, code := pfCmd(postfix, p.configDir, "start"); code != 0 {
		t.Fatalf("postfix -c %s start: exit %d\n%s\n--- maillog:\n%s", p.configDir, code, out, p.maillogTail(100))
	}
	// `postfix start` returns once the master has initialized (master -w),
	// so the port should answer already; allow for a slow machine
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix smtpd on %s never answered: %v\n--- maillog:\n%s", p.addr, err, p.maillogTail(100))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func pfExpand(t *testing.T, tmpl, dst string, vars map[string]string) {
	t.Helper()
	tp, err := template.New(tmpl).Option("missingkey=error").ParseFiles(filepath.Join("testdata", "postfix", tmpl))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tp.Execute(&b, vars); err != nil {
		t.Fatalf("%s: %v", tmpl, err)
	}
	if err := os.WriteFile(dst, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pfCmd runs `postfix -c dir verb`. The output goes to a file, not a
// pipe: the daemonized master must not keep a pipe of ours open.
func pfCmd(postfix, dir, verb string) (string, int) {
	f, err := os.CreateTemp("", "sgpfout")
	if err != nil {
		return err.Error(), -1
	}
	defer os.Remove(f.Name())
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, postfix, "-c", dir, verb)
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+dir)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile(f.Name())
	code := 0
	if err != nil {
		code = -1
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
		}
		out = append(out, []byte("\n"+err.Error())...)
	}
	return string(out), code
}

// pfMasterPid reads Postfix's pid/master.pid ("%10d\n"), 0 if none.
func pfMasterPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	return pid
}

// pfIsMaster reports whether pid is a live (not zombie) Postfix master.
func pfIsMaster(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return bytes.Contains(cmdline, []byte("master"))
}

func pfFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// swaksReplyLine matches a server reply line in swaks's transcript: "<-  235 …"
// (plain), "<** 535 …" (error), "<~  …" / "<~* …" (inside TLS).
var swaksReplyLine = regexp.MustCompile(`^<(?:-|\*\*|~|~\*)\s+(\d{3})[ -]`)

// swaksAuth logs in with swaks and returns the final reply code to AUTH
// (0 if none), the transcript and swaks's exit code. stdout and stderr
// share one pipe so that the transcript keeps its order (swaks writes error
// replies, "<** 535 ...", to stderr).
func swaksAuth(t *testing.T, swaks, addr, mech, user, pass string) (int, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, swaks,
		"--server", addr, "--ehlo", "client.example.test", "--timeout", "15",
		"--auth", mech, "--auth-user", user, "--auth-password", pass,
		"--quit-after", "AUTH")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("swaks timed out:\n%s", out.String())
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("swaks: %v", err)
	}
	return swaksAuthReply(out.String()), out.String(), cmd.ProcessState.ExitCode()
}

// swaksAuthReply is the first non-334 reply after swaks's AUTH command in out.
func swaksAuthReply(out string) int {
	sc := bufio.NewScanner(strings.NewReader(out))
	seen := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, " -> AUTH") || strings.HasPrefix(line, " ~> AUTH") {
			seen = true
			continue
		}
		if !seen {
			continue
		}
		if m := swaksReplyLine.FindStringSubmatch(line); m != nil {
			c, _ := strconv.Atoi(m[1])
			if c != 334 {
				return c
			}
		}
	}
	return 0
}
