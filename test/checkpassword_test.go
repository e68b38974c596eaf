package test

// qmail checkpassword, both ways, end to end: `saslgate checkpassword`
// asking the real daemon (over a sasldb written by the real saslpasswd2),
// a real Dovecot whose checkpassword passdb runs it, and the daemon's
// checkpassword mechanism running a checkpassword program.

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// cpInput is what a checkpassword caller writes on fd 3.
func cpInput(login, pw string) []byte { return []byte(login + "\x00" + pw + "\x00\x00") }

// cpRun runs `saslgate checkpassword args...` with in on fd 3 (nil: fd 3
// is a pipe nobody writes to or closes, open until the command exits) and
// env added to a clean environment; it returns the exit code and stderr.
func cpRun(t *testing.T, in []byte, env []string, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(saslgateBin(t), append([]string{"checkpassword"}, args...)...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	cmd.ExtraFiles = []*os.File{r}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if in != nil {
		_, _ = w.Write(in)
		w.Close()
	} else {
		defer w.Close()
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("saslgate checkpassword %s: no exit within 30 s", strings.Join(args, " "))
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// cpProbe is a program for checkpassword to run: it writes what it sees
// (USER, AUTHORIZED, whether fd 3 is still open) to out.
func cpProbe(out string) []string {
	return []string{"/bin/sh", "-c", `fd3=closed; [ -e /proc/$$/fd/3 ] && fd3=open
printf '%s|%s|%s' "$USER" "${AUTHORIZED-unset}" "$fd3" > "$0"`, out}
}

// TestCheckpasswordFrontEnd: the exit codes against the real daemon, the
// environment the next program gets, and the fifth field from TCPREMOTEIP.
func TestCheckpasswordFrontEnd(t *testing.T) {
	fx := sdbNewFixture(t)
	runDir := filepath.Join(fx.Dir, "run")
	d := sdbStartSaslgate(t, fx, "saslgate", runDir)
	out := filepath.Join(fx.Dir, "probe")
	probe := cpProbe(out)
	m := []string{"-m", runDir}

	for i, tc := range []struct {
		name  string
		in    []byte
		env   []string
		args  []string
		code  int
		probe string // what the next program saw; "" when it must not run
	}{
		{"good password, /bin/true", cpInput("dave", sdbDavePw), nil, append(m, "/bin/true"), 0, ""},
		{"good password, the next program sees USER", cpInput("dave", sdbDavePw), nil, append(m, probe...), 0, "dave|unset|closed"},
		{"spaces and UTF-8 in the password", cpInput("spacey", sdbSpaceyPw), nil, append(m, probe...), 0, "spacey|unset|closed"},
		{"APOP-style timestamp is ignored", []byte("dave\x00" + sdbDavePw + "\x00<1.2@mx>\x00"), nil, append(m, "/bin/true"), 0, ""},
		{"the realm flag", cpInput("erin", sdbErinPw), nil, append(m, "-r", sdbErinRealm, "/bin/true"), 0, ""},
		{"wrong password", cpInput("dave", sdbDavePw+"x"), nil, append(m, probe...), 1, ""},
		{"password prefix", cpInput("dave", sdbDavePw[:4]), nil, append(m, "/bin/true"), 1, ""},
		{"unknown user", cpInput("nosuchuser", "x"), nil, append(m, "/bin/true"), 1, ""},
		{"empty password", cpInput("dave", ""), nil, append(m, "/bin/true"), 1, ""},
		{"the next program's exit is the answer", cpInput("dave", sdbDavePw), nil, append(m, "/bin/false"), 1, ""},
		{"513 bytes", append([]byte("dave\x00"), bytes.Repeat([]byte("p"), 508)...), nil, append(m, "/bin/true"), 2, ""},
		{"no password terminator", []byte("dave\x00" + sdbDavePw), nil, append(m, "/bin/true"), 2, ""},
		{"empty input", []byte{}, nil, append(m, "/bin/true"), 2, ""},
		{"no program", cpInput("dave", sdbDavePw), nil, m, 2, ""},
		{"daemon down: socket missing", cpInput("dave", sdbDavePw), nil, []string{"-m", filepath.Join(fx.Dir, "nothere"), "/bin/true"}, 111, ""},
		{"Dovecot lookup: AUTHORIZED=1 acknowledged", cpInput("dave", sdbDavePw), []string{"AUTHORIZED=1"}, append(m, probe...), 0, "dave|2|closed"},
		{"Dovecot lookup without a password is refused", cpInput("dave", ""), []string{"AUTHORIZED=1"}, append(m, probe...), 111, ""},
	} {
		_ = os.Remove(out)
		code, stderr := cpRun(t, tc.in, tc.env, tc.args...)
		if code != tc.code {
			t.Errorf("case %d %s: exit %d, want %d; stderr %q", i, tc.name, code, tc.code, stderr)
		}
		got, _ := os.ReadFile(out)
		if string(got) != tc.probe {
			t.Errorf("case %d %s: the next program saw %q, want %q", i, tc.name, got, tc.probe)
		}
		for _, pw := range []string{sdbDavePw, sdbSpaceyPw} {
			if strings.Contains(stderr, pw) {
				t.Errorf("case %d %s: the password is on stderr: %q", i, tc.name, stderr)
			}
		}
	}

	// the daemon must not be down: only a missing socket was
	if code, _ := cpRun(t, cpInput("dave", sdbDavePw), nil, "-f", d.Socket(), "/bin/true"); code != 0 {
		t.Errorf("-f socket: exit %d", code)
	}
	// TCPREMOTEIP (ucspi-tcp, Dovecot) reaches the daemon as the fifth field
	code, _ := cpRun(t, cpInput("dave", "wrong-"+sdbDavePw), []string{"TCPREMOTEIP=192.0.2.9", "TCPREMOTEPORT=4242"}, append(m, "/bin/true")...)
	if code != 1 || !sdbWaitOut(d, "[remote=192.0.2.9;4242]") {
		t.Errorf("client address: exit %d, daemon log:\n%s", code, d.Out.String())
	}
	if strings.Contains(d.Out.String(), sdbDavePw) {
		t.Errorf("the daemon logged a password:\n%s", d.Out.String())
	}
}

// TestCheckpasswordFrontEndBounds: a caller that never closes fd 3, a daemon
// that never answers and one that answers garbage are temporary failures
// within their timeouts, not hangs and not rejections.
func TestCheckpasswordFrontEndBounds(t *testing.T) {
	dir := sdbTempDir(t)
	start := time.Now()
	code, stderr := cpRun(t, nil, nil, "--read-timeout", "300ms", "-m", dir, "/bin/true")
	if code != 111 || !strings.Contains(stderr, "fd 3") {
		t.Errorf("fd 3 never closed: exit %d, stderr %q", code, stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("fd 3 never closed: took %v", d)
	}

	for i, tc := range []struct {
		name  string
		reply []byte // nil: read the request and say nothing
	}{
		{"silent daemon", nil},
		{"garbage reply", protocol.AppendReply(nil, "MAYBE")},
		{"short reply", []byte{0, 1, 'O'}},
	} {
		sock := filepath.Join(dir, "fake"+strconv.Itoa(i))
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(20 * time.Second))
					_, _ = protocol.NewReader(c).ReadRequest()
					if tc.reply == nil {
						time.Sleep(5 * time.Second)
						return
					}
					_, _ = c.Write(tc.reply)
				}()
			}
		}()
		start := time.Now()
		code, stderr := cpRun(t, cpInput("dave", "pw"), nil, "-f", sock, "-t", "500ms", "/bin/true")
		ln.Close()
		if code != 111 {
			t.Errorf("%s: exit %d, want 111; stderr %q", tc.name, code, stderr)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s: took %v", tc.name, d)
		}
	}

	// no fd 3 at all
	cmd := exec.Command(saslgateBin(t), "checkpassword", "/bin/true")
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Errorf("without fd 3: %v", err)
	}
}

// TestCheckpasswordMechanism: the daemon with -a checkpassword runs a
// checkpassword program (a shell script here) and maps its exits; the
// program reads exactly login\0password\0\0 on fd 3.
func TestCheckpasswordMechanism(t *testing.T) {
	need(t, "od")
	dir := sdbTempDir(t)
	// the script records fd 3 as octal bytes (sh cannot hold a NUL) and
	// decides by login; "alice" with "pa ss wörd" runs the next program
	script := filepath.Join(dir, "checkpw.sh")
	if err := os.WriteFile(script, []byte(`#!/bin/sh
in=$(od -An -v -tx1 <&3 | tr -d ' \n')
printf '%s' "$in" > "`+dir+`/input"
case "$in" in
  $(printf 'alice\0pa ss w\303\266rd\0\0' | od -An -v -tx1 | tr -d ' \n')) exec "$@" ;;
  $(printf 'temp\0' | od -An -v -tx1 | tr -d ' \n')*) exit 111 ;;
  $(printf 'vpop\0' | od -An -v -tx1 | tr -d ' \n')*) exit 3 ;;
  $(printf 'hang\0' | od -An -v -tx1 | tr -d ' \n')*) sleep 60 ;;
esac
exit 1
`), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "saslgate.conf")
	if err := os.WriteFile(conf, []byte("checkpassword_args: /bin/true\ncheckpassword_timeout: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	d := startDaemon(t, "saslgate -a checkpassword", saslgateBin(t), "", runDir, "serve", "-d", "--failure-delay", "0",
		"--auth-penalty", "0", "--config", conf, "-a", "checkpassword", "-O", script, "-m", runDir)
	for i, tc := range []struct {
		login, pw, want string
	}{
		{"alice", "pa ss wörd", "OK"},
		{"alice", "pa ss word", "NO"},
		{"alice", "pa ss wörd ", "NO"},
		{"bob", "pa ss wörd", "NO"},
		{"temp", "x", "NO [ALERT] Temporary failure of the checkpassword program"},
		{"vpop", "x", "NO"},
		{"hang", "x", "NO [ALERT] Temporary failure of the checkpassword program"},
	} {
		got := ask(d.Socket(), protocol.Request{Login: tc.login, Password: tc.pw, Service: "imap"})
		if got != tc.want {
			t.Errorf("case %d %s: %q, want %q", i, tc.login, got, tc.want)
		}
	}
	in, _ := os.ReadFile(filepath.Join(dir, "input"))
	if want := fmt.Sprintf("%x", "hang\x00x\x00\x00"); string(in) != want {
		t.Errorf("fd 3 carried %s, want %s", in, want)
	}
	if !sdbWaitOut(d, "no answer within 1s") {
		t.Errorf("no log line for the timeout:\n%s", d.Out.String())
	}
	if strings.Contains(d.Out.String(), "pa ss w") {
		t.Errorf("a password reached the log:\n%s", d.Out.String())
	}
}

// TestCheckpasswordDovecot: a real Dovecot whose checkpassword passdb runs
// `saslgate checkpassword` (and Dovecot's checkpassword-reply after it)
// lets dave log in over IMAP with his sasldb password, and not without it.
func TestCheckpasswordDovecot(t *testing.T) {
	fx := sdbNewFixture(t)
	need(t, "dovecot")
	reply := "/usr/lib/dovecot/checkpassword-reply"
	if _, err := os.Stat(reply); err != nil {
		missing(t, reply+" not found (dovecot-core)")
	}
	// the daemon's socket where Dovecot's unprivileged auth process reaches it
	dir := rmTempDir(t)
	runDir := filepath.Join(dir, "sg")
	d := sdbStartSaslgate(t, fx, "saslgate", runDir)

	dv := &rmDovecot{dir: dir, imapPort: rmFreePort(t), imapsPort: rmFreePort(t)}
	for _, sub := range []string{"run", "state", "home"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rmMakeCA(t, dir, "", "127.0.0.1")
	dv.configure(t, "checkpassword", fmt.Sprintf(`passdb {
  driver = checkpassword
  args = %s checkpassword -f %s
}
# the Go runtime reserves about 1.4 GiB of address space at start, more
# than the default 256M limit Dovecot sets on the auth process that runs
# checkpassword
service auth {
  vsz_limit = 2G
}
`, saslgateBin(t), d.Socket()), func() string { return "saslgate:\n" + d.Out.String() })

	for i, tc := range []struct {
		login, pw, want string
	}{
		{"dave", sdbDavePw, "a OK"},
		{"dave", "wrong", "a NO [AUTHENTICATIONFAILED]"},
		{"nosuchuser", sdbDavePw, "a NO [AUTHENTICATIONFAILED]"},
		{"spacey", sdbSpaceyPw, "a OK"},
	} {
		if got := cpIMAPLogin(t, dv.imapPort, tc.login, tc.pw); !strings.HasPrefix(got, tc.want) {
			t.Errorf("case %d: LOGIN %s: %q, want %q...", i, tc.login, got, tc.want)
		}
	}
	// Dovecot passed its client's address, as ucspi-tcp names it
	if !sdbWaitOut(d, "[remote=127.0.0.1;") {
		t.Errorf("no client address in the daemon's log:\n%s", d.Out.String())
	}
	// the daemon down is Dovecot's temporary failure (exit 111), not a
	// wrong password
	d.Stop(t)
	if got := cpIMAPLogin(t, dv.imapPort, "dave", sdbDavePw); !strings.HasPrefix(got, "a NO [UNAVAILABLE]") {
		t.Errorf("daemon down: LOGIN: %q, want a NO [UNAVAILABLE]...", got)
	}
}

// cpIMAPLogin logs in with a literal-free LOGIN (quoted strings, as the
// passwords hold no '"' or '\') and returns the tagged reply line.
func cpIMAPLogin(t *testing.T, port int, login, pw string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q: %v", l, err)
	}
	// UTF-8 goes as a literal (Dovecot takes 8-bit bytes only that way)
	if _, err := fmt.Fprintf(c, "a LOGIN %q {%d+}\r\n%s\r\n", login, len(pw), pw); err != nil {
		t.Fatal(err)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return "ERR: " + err.Error()
		}
		if strings.HasPrefix(l, "a ") {
			return strings.TrimRight(l, "\r\n")
		}
	}
}
