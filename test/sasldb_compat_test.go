package test

// Differential tests: the real Cyrus saslauthd 2.1.28 (-a sasldb) and
// saslgate (-a sasldb) side by side on the same sasldb2 file, written by the
// real saslpasswd2, asked the same questions by the real testsaslauthd and
// by raw bytes on the socket (spec §13 cases 1-22 and 27). Every byte each
// daemon sends back must be the same, except where saslgate differs on
// purpose; those places say so.
//
// Cyrus saslauthd cannot be told where its sasldb is: auth_sasldb.c hands
// libsasl's sasldb code a "lame" utils whose getcallback answers only
// SASL_CB_VERIFYFILE, so no sasldb_path option (no saslauthd.conf in
// /etc/sasl2 or /usr/lib/x86_64-linux-gnu/sasl2) is ever consulted and the
// compiled-in /etc/sasldb2 is always read (strace on this machine: a
// request opens /etc/sasldb2 and no configuration file at all). The tests
// therefore run Cyrus in a private mount namespace in which the test's file
// is bind-mounted over /etc/sasldb2 (nothing outside the namespace sees
// it). Where mount namespaces are not allowed, they fall back to installing
// the file at /etc/sasldb2 for the test's duration, under a lock, and
// restore the original afterwards.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// The sasldb fixture's users (spec §13 fixtures, plus edge cases).
const (
	sdbDavePw    = "Pw0rd" // dave@<hostname>
	sdbErinPw    = "Pw1"   // erin@example.com
	sdbErinRealm = "example.com"
	sdbSpaceyPw  = "pa ss wörd ✓ x" // spacey@<hostname>: spaces and UTF-8
)

var (
	sdbBigPw  = strings.Repeat("k", 256) // big@<hostname>: the longest password a request can carry
	sdbHugePw = strings.Repeat("q", 300) // huge@<hostname>: stored, but no request can carry it
)

// sdbFixture is a sasldb2 file written by the real saslpasswd2.
type sdbFixture struct {
	Dir  string // short temporary directory: socket paths must stay under 108 bytes
	DB   string
	Host string // gethostname(2), the realm saslauthd uses for an empty realm
}

// sdbTempDir is a directory under $TMPDIR with a short name (t.TempDir
// paths can exceed the 107 bytes a unix socket path may have).
func sdbTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func sdbNewFixture(t *testing.T) *sdbFixture {
	t.Helper()
	needRoot(t)
	tools := need(t, "saslpasswd2", "sasldblistusers2")
	// os.Hostname reads the kernel's node name, which is what gethostname(2)
	// returns to saslauthd and saslpasswd2: the short name when the host
	// name is short.
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	fx := &sdbFixture{Dir: sdbTempDir(t), Host: host}
	fx.DB = filepath.Join(fx.Dir, "sasldb2")
	for _, u := range []struct{ user, realm, pw string }{
		{"dave", host, sdbDavePw},
		{"erin", sdbErinRealm, sdbErinPw},
		{"big", host, sdbBigPw},
		{"huge", host, sdbHugePw},
		{"spacey", host, sdbSpaceyPw},
	} {
		cmd := exec.Command(tools[0], "-p", "-c", "-f", fx.DB, "-u", u.realm, u.user)
		cmd.Stdin = strings.NewReader(u.pw) // -p: the password on stdin, no newline
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("saslpasswd2 %s@%s: %v\n%s", u.user, u.realm, err, out)
		}
	}
	out, err := exec.Command(tools[1], "-f", fx.DB).CombinedOutput()
	if err != nil || strings.Count(string(out), ": userPassword") != 5 {
		t.Fatalf("sasldblistusers2 -f %s: %v\n%s", fx.DB, err, out)
	}
	return fx
}

// sdbCyrus starts real Cyrus saslauthd -a sasldb processes that read a
// fixture's file.
type sdbCyrus struct {
	fx        *sdbFixture
	saslauthd string
	unshare   string // "": the file was installed at /etc/sasldb2 instead
}

// sdbEtcMu and the lock file serialize the /etc/sasldb2 fallback within
// this process and across processes.
var sdbEtcMu sync.Mutex

const sdbEtcPath = "/etc/sasldb2"

func sdbNewCyrus(t *testing.T, fx *sdbFixture) *sdbCyrus {
	t.Helper()
	c := &sdbCyrus{fx: fx, saslauthd: need(t, "saslauthd")[0]}
	if u, err := exec.LookPath("unshare"); err == nil {
		// Can we bind-mount the fixture over /etc/sasldb2 in a private mount
		// namespace? (Needs CAP_SYS_ADMIN and an existing /etc/sasldb2.)
		probe := exec.Command(u, "--mount", "--propagation", "private", "/bin/sh", "-c",
			`mount --bind "$0" /etc/sasldb2 && cmp -s "$0" /etc/sasldb2`, fx.DB)
		out, err := probe.CombinedOutput()
		if err == nil {
			c.unshare = u
			return c
		}
		t.Logf("no private mount namespace (%v: %s); installing the fixture at %s for this test", err, bytes.TrimSpace(out), sdbEtcPath)
	}
	c.installEtc(t)
	return c
}

// installEtc puts the fixture at /etc/sasldb2 until the test ends,
// under an exclusive lock, and restores the original file.
func (c *sdbCyrus) installEtc(t *testing.T) {
	t.Helper()
	sdbEtcMu.Lock()
	lock, err := os.OpenFile("/tmp/saslgate-test-etc-sasldb2.lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		sdbEtcMu.Unlock()
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		sdbEtcMu.Unlock()
		t.Fatal(err)
	}
	backup := sdbEtcPath + ".saslgate-test-backup"
	orig, statErr := os.Stat(sdbEtcPath)
	if statErr == nil {
		if err := os.Rename(sdbEtcPath, backup); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		os.Remove(sdbEtcPath)
		if statErr == nil {
			if err := os.Rename(backup, sdbEtcPath); err != nil {
				t.Errorf("restore %s: %v", sdbEtcPath, err)
			}
			_ = os.Chmod(sdbEtcPath, orig.Mode().Perm())
		}
		lock.Close() // releases the flock
		sdbEtcMu.Unlock()
	})
	data, err := os.ReadFile(c.fx.DB)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sdbEtcPath, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

// start runs Cyrus saslauthd -d -a sasldb -m runDir -n 5 plus extra, in
// the foreground. Its SIGTERM handler can deadlock (it logs from a signal
// handler, not async-signal-safe; seen once here as a master stuck in
// futex_wait with SIGTERM pending), so the test SIGKILLs its process group.
func (c *sdbCyrus) start(t *testing.T, name, runDir string, extra ...string) *Daemon {
	t.Helper()
	args := append([]string{"-d", "-a", "sasldb", "-m", runDir, "-n", "5"}, extra...)
	var d *Daemon
	if c.unshare != "" {
		wrap := append([]string{"--mount", "--propagation", "private", "/bin/sh", "-c",
			`mount --bind "$0" /etc/sasldb2 && exec "$@"`, c.fx.DB, c.saslauthd}, args...)
		d = startDaemon(t, name, c.unshare, "", runDir, wrap...)
	} else {
		d = startDaemon(t, name, c.saslauthd, "", runDir, args...)
	}
	t.Cleanup(func() { sdbKillGroup(d) })
	return d
}

// sdbKillGroup SIGKILLs a daemon started by startDaemon (its own process
// group) and waits for it.
func sdbKillGroup(d *Daemon) {
	select {
	case <-d.done:
		return
	default:
	}
	_ = syscall.Kill(-d.Cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
	}
}

// sdbStartSaslgate runs saslgate serve -d -a sasldb on the fixture.
func sdbStartSaslgate(t *testing.T, fx *sdbFixture, name, runDir string, extra ...string) *Daemon {
	t.Helper()
	args := append([]string{"serve", "--failure-delay", "0", "--auth-penalty", "0", "-d", "-a", "sasldb", "--sasldb-path", fx.DB, "-m", runDir}, extra...)
	return startDaemon(t, name, saslgateBin(t), "", runDir, args...)
}

// sdbWaitOut waits (up to 3 s) for a daemon's output to contain substr:
// it arrives through a pipe and a copying goroutine.
func sdbWaitOut(d *Daemon, substr string) bool {
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(d.Out.String(), substr); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// sdbWire is the reply bytes for text ("" means no reply at all).
func sdbWire(text string) []byte {
	if text == "" {
		return nil
	}
	return protocol.AppendReply(nil, text)
}

// sdbFields frames counted strings as a request does (any number of them, NULs
// and all).
func sdbFields(fs ...string) []byte {
	var b []byte
	for _, f := range fs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// sdbHdr is a bare 2-byte length header.
func sdbHdr(n int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(n)) }

func sdbCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// sdbOutcome describes everything a raw exchange saw: the bytes, then how the
// connection ended.
func sdbOutcome(b []byte, err error) string {
	s := fmt.Sprintf("%q", b)
	var op *net.OpError
	switch {
	case err == nil:
		return s + " then EOF"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return s + " then nothing (still open)"
	case errors.Is(err, syscall.ECONNRESET):
		return s + " then reset"
	case errors.Is(err, syscall.EPIPE):
		return s + " then EPIPE on write"
	case errors.As(err, &op):
		return s + " then " + op.Op + ": " + op.Err.Error()
	}
	return s + " then " + err.Error()
}

// sdbRow is one line of the compatibility table the tests log.
type sdbRow struct{ test, cyrus, saslgate, verdict string }

func sdbLogTable(t *testing.T, rows []sdbRow) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "\n| case | Cyrus 2.1.28 | saslgate | verdict |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.test, r.cyrus, r.saslgate, r.verdict)
	}
	t.Log(b.String())
}

// sdbPair is one Cyrus and one saslgate daemon on the same fixture.
type sdbPair struct {
	fx            *sdbFixture
	cyrus, sgate  *Daemon
	cyrusSock, sg string
}

func sdbStartPair(t *testing.T, extra ...string) *sdbPair {
	t.Helper()
	fx := sdbNewFixture(t)
	cy := sdbNewCyrus(t, fx)
	p := &sdbPair{fx: fx}
	p.cyrus = cy.start(t, "cyrus", filepath.Join(fx.Dir, "cy"), extra...)
	p.sgate = sdbStartSaslgate(t, fx, "saslgate", filepath.Join(fx.Dir, "sg"), extra...)
	p.cyrusSock, p.sg = p.cyrus.Socket(), p.sgate.Socket()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("saslgate output:\n%s", p.sgate.Out.String())
		}
	})
	return p
}

// TestSasldbCompatTestsaslauthd asks both daemons the same questions with
// the real testsaslauthd and compares its stdout, stderr and exit code.
func TestSasldbCompatTestsaslauthd(t *testing.T) {
	tsa := need(t, "testsaslauthd")[0]
	p := sdbStartPair(t)
	a256, a257 := strings.Repeat("a", 256), strings.Repeat("a", 257)
	cases := []struct {
		name string
		args []string
		want string // expected stdout, per spec
	}{
		{"1 good [dave,Pw0rd,smtp,'']", []string{"-u", "dave", "-p", sdbDavePw, "-s", "smtp"}, "0: OK \"Success.\"\n"},
		{"2 wrong password", []string{"-u", "dave", "-p", "wrong", "-s", "smtp"}, "0: NO \"authentication failed\"\n"},
		{"3 login of 256 bytes (unknown user)", []string{"-u", a256, "-p", "x"}, "0: NO \"authentication failed\"\n"},
		{"3 password of 256 bytes", []string{"-u", "big", "-p", sdbBigPw}, "0: OK \"Success.\"\n"},
		{"3 service of 256 bytes", []string{"-u", "dave", "-p", sdbDavePw, "-s", a256}, "0: OK \"Success.\"\n"},
		{"4 login of 257 bytes", []string{"-u", a257, "-p", "x"}, "0: NO \"authentication failed\"\n"},
		{"5 password of 257 bytes", []string{"-u", "dave", "-p", a257}, "0: NO \"authentication failed\"\n"},
		{"5 password of 300 bytes (stored as such)", []string{"-u", "huge", "-p", sdbHugePw}, "0: NO \"authentication failed\"\n"},
		{"5 service of 257 bytes", []string{"-u", "dave", "-p", sdbDavePw, "-s", a257}, "0: NO \"authentication failed\"\n"},
		{"5 realm of 257 bytes", []string{"-u", "dave", "-p", sdbDavePw, "-r", a257}, "0: NO \"authentication failed\"\n"},
		{"7 empty login", []string{"-u", "", "-p", "x"}, "0: NO \"authentication failed\"\n"},
		{"8 empty password", []string{"-u", "dave", "-p", ""}, "0: NO \"authentication failed\"\n"},
		{"9 empty login+password, realm 257", []string{"-u", "", "-p", "", "-r", a257}, "0: NO \"authentication failed\"\n"},
		{"12 empty service", []string{"-u", "dave", "-p", sdbDavePw, "-s", ""}, "0: OK \"Success.\"\n"},
		{"27 erin, no realm", []string{"-u", "erin", "-p", sdbErinPw, "-s", "smtp"}, "0: NO \"authentication failed\"\n"},
		{"27 erin, realm example.com", []string{"-u", "erin", "-p", sdbErinPw, "-s", "smtp", "-r", sdbErinRealm}, "0: OK \"Success.\"\n"},
		{"27 erin@example.com, no realm", []string{"-u", "erin@" + sdbErinRealm, "-p", sdbErinPw, "-s", "smtp"}, "0: NO \"authentication failed\"\n"},
		{"27 dave, realm = hostname", []string{"-u", "dave", "-p", sdbDavePw, "-r", p.fx.Host}, "0: OK \"Success.\"\n"},
		{"27 dave, realm EXAMPLE.COM (realm is case-sensitive)", []string{"-u", "erin", "-p", sdbErinPw, "-r", "EXAMPLE.COM"}, "0: NO \"authentication failed\"\n"},
		{"login is case-sensitive (DAVE)", []string{"-u", "DAVE", "-p", sdbDavePw}, "0: NO \"authentication failed\"\n"},
		{"password prefix (Pw0r)", []string{"-u", "dave", "-p", "Pw0r"}, "0: NO \"authentication failed\"\n"},
		{"password extension (Pw0rdX)", []string{"-u", "dave", "-p", "Pw0rdX"}, "0: NO \"authentication failed\"\n"},
		{"spaces and UTF-8 in the password", []string{"-u", "spacey", "-p", sdbSpaceyPw}, "0: OK \"Success.\"\n"},
		{"login with a trailing space", []string{"-u", "dave ", "-p", sdbDavePw}, "0: NO \"authentication failed\"\n"},
		{"53 -R 3 good", []string{"-u", "dave", "-p", sdbDavePw, "-R", "3"}, "0: OK \"Success.\"\n1: OK \"Success.\"\n2: OK \"Success.\"\n"},
		{"53 -R 3 bad", []string{"-u", "dave", "-p", "bad", "-R", "3"}, "0: NO \"authentication failed\"\n1: NO \"authentication failed\"\n2: NO \"authentication failed\"\n"},
	}
	var rows []sdbRow
	for _, c := range cases {
		cyOut, cyErr, cyCode := run(t, "", tsa, append([]string{"-f", p.cyrusSock}, c.args...)...)
		sgOut, sgErr, sgCode := run(t, "", tsa, append([]string{"-f", p.sg}, c.args...)...)
		cy := fmt.Sprintf("stdout %q stderr %q exit %d", cyOut, cyErr, cyCode)
		sg := fmt.Sprintf("stdout %q stderr %q exit %d", sgOut, sgErr, sgCode)
		verdict := "identical"
		if cy != sg {
			verdict = "DIFFERENT"
			t.Errorf("%s: testsaslauthd against Cyrus: %s; against saslgate: %s", c.name, cy, sg)
		}
		if cyOut != c.want {
			t.Logf("NOTE %s: Cyrus differs from the spec: stdout %q, spec says %q", c.name, cyOut, c.want)
		}
		rows = append(rows, sdbRow{"testsaslauthd " + c.name, cy, sg, verdict})
	}
	sdbLogTable(t, rows)
	// The log lines a fail2ban filter or an admin reads, in request order.
	sdbCompareRequestLogs(t, p)
}

// sdbCompareRequestLogs compares the log lines a fail2ban filter or an admin
// reads, in request order (both daemons run with -d, so they go to stderr).
func sdbCompareRequestLogs(t *testing.T, p *sdbPair) {
	t.Helper()
	// The daemons log before they reply, but their output reaches Out
	// through a pipe and a copying goroutine: give the last lines a moment.
	var cyLog, sgLog []string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		cyLog, sgLog = sdbRequestLog(p.cyrus.Out.String()), sdbRequestLog(p.sgate.Out.String())
		if slices.Equal(cyLog, sgLog) || time.Now().After(deadline) {
			break
		}
	}
	if len(cyLog) == 0 {
		t.Errorf("no request log lines from Cyrus:\n%s", p.cyrus.Out.String())
	}
	if !slices.Equal(cyLog, sgLog) {
		i := 0
		for i < len(cyLog) && i < len(sgLog) && cyLog[i] == sgLog[i] {
			i++
		}
		window := func(l []string) string { return strings.Join(l[i:min(len(l), i+4)], "\n  ") }
		t.Errorf("request log lines differ from line %d (Cyrus %d lines, saslgate %d):\nCyrus:\n  %s\nsaslgate:\n  %s",
			i+1, len(cyLog), len(sgLog), window(cyLog), window(sgLog))
	} else {
		t.Logf("%d request log lines (auth failure/success, NULL ..., exceeded MAX_REQ_LEN) identical", len(cyLog))
	}
}

// sdbRequestLogRe matches saslauthd's per-request log lines (-d output).
var sdbRequestLogRe = regexp.MustCompile(`(?m)^saslauthd\[\d+\] :((?:auth failure|auth success|auth success \(cached\)): .*|NULL (?:login|password) received|\w+ exceeded MAX_REQ_LEN: 256)$`)

// sdbRemoteRe is the " [remote=<client address>]" that master, and saslgate,
// append to auth lines when the client sent a fifth field; 2.1.28 never
// does. A deliberate extension, removed before comparing (but see
// TestSasldbCompatPipelinedRequestIsNotClientAddr).
var sdbRemoteRe = regexp.MustCompile(` \[remote=[^\]]*\]$`)

func sdbRequestLog(out string) []string {
	var lines []string
	for _, m := range sdbRequestLogRe.FindAllStringSubmatch(out, -1) {
		lines = append(lines, sdbRemoteRe.ReplaceAllString(m[1], ""))
	}
	return lines
}

// TestSasldbCompatPipelinedRequestIsNotClientAddr: two requests written
// back to back (case 17). Cyrus 2.1.28 answers the first and drains the
// second. saslgate answers the first too, but takes the second request's
// first field (its login, "dave") for the optional fifth field: the auth
// failure line ends in "[remote=dave]", and the mechanisms get
// ClientAddr "dave" (pam would set PAM_RHOST from it). A client address
// is "ip;port" and is the last field a master client writes; a counted
// string followed by more bytes, or one that is not an address, is not one.
// BUG (minor; see the report).
func TestSasldbCompatPipelinedRequestIsNotClientAddr(t *testing.T) {
	fx := sdbNewFixture(t)
	sg := sdbStartSaslgate(t, fx, "saslgate", filepath.Join(fx.Dir, "sg"))
	data := sdbCat(sdbFields("dave", "bad", "smtp", ""), sdbFields("dave", sdbDavePw, "smtp", ""))
	if got := sdbOutcome(rawExchange(sg.Socket(), data, false, 5*time.Second)); got != sdbOutcome(sdbWire("NO"), nil) {
		t.Fatalf("reply: %s", got)
	}
	if strings.Contains(sg.Out.String(), "[remote=") {
		t.Errorf("saslgate took the pipelined second request for a client address:\n%s", sg.Out.String())
	}
}

// TestSasldbCompatRaw sends the same raw bytes to both daemons and compares
// every byte each sends back, and how the connection ends.
func TestSasldbCompatRaw(t *testing.T) {
	p := sdbStartPair(t)
	host := p.fx.Host
	r4 := func(l, pw, s, r string) []byte { return sdbFields(l, pw, s, r) }
	a256, a257 := strings.Repeat("a", 256), strings.Repeat("a", 257)
	good := r4("dave", sdbDavePw, "smtp", "")
	both := []bool{true, false}
	closeOnly := []bool{true} // no reply is due: without a close Cyrus waits forever (case 15)
	cases := []struct {
		name  string
		data  []byte
		modes []bool // half-close after writing?
		want  string // reply text per spec; "" = none
	}{
		{"1 [dave,Pw0rd,smtp,'']", good, both, "OK"},
		{"2 [dave,wrong,smtp,'']", r4("dave", "wrong", "smtp", ""), both, "NO"},
		{"3 login 256 bytes (no such user)", r4(a256, "x", "imap", ""), both, "NO"},
		{"3 password 256 bytes (big)", r4("big", sdbBigPw, "imap", ""), both, "OK"},
		{"3 service 256 bytes", r4("dave", sdbDavePw, a256, ""), both, "OK"},
		{"3 realm 256 bytes", r4("dave", sdbDavePw, "imap", a256), both, "NO"},
		{"3 every field 256 bytes", r4(a256, a256, a256, a256), both, "NO"},
		{"4 login 257 bytes, rest follows", r4(a257, "x", "imap", ""), both, "NO "},
		{"4 login length 257, nothing else", sdbHdr(257), both, "NO "},
		{"5 password 257 bytes", r4("dave", a257, "imap", ""), both, "NO "},
		{"5 password 300 bytes (huge)", r4("huge", sdbHugePw, "imap", ""), both, "NO "},
		{"5 service 257 bytes", r4("dave", sdbDavePw, a257, ""), both, "NO "},
		{"5 realm 257 bytes", r4("dave", sdbDavePw, "imap", a257), both, "NO "},
		{"5 password length 257 right after the login", sdbCat(sdbFields("dave"), sdbHdr(257)), both, "NO "},
		{"5 realm length 257, no realm bytes", sdbCat(sdbFields("dave", sdbDavePw, "imap"), sdbHdr(257)), both, "NO "},
		{"6 length 0xFFFF + 10 bytes", sdbCat(sdbHdr(0xFFFF), []byte("0123456789")), both, "NO "},
		{"6 login length 0xFFFF only", sdbHdr(0xFFFF), both, "NO "},
		{"7 empty login", r4("", "x", "smtp", ""), both, "NO NULL login received"},
		{"8 empty password", r4("dave", "", "smtp", ""), both, "NO NULL password received"},
		{"8 empty login and password", r4("", "", "smtp", ""), both, "NO NULL login received"},
		{"9 ['','',smtp,r*257]", r4("", "", "smtp", strings.Repeat("r", 257)), both, "NO "},
		{"10 login \\0dave", r4("\x00dave", sdbDavePw, "smtp", ""), both, "NO NULL login received"},
		{"10 login dave\\0junk (cut at the NUL)", r4("dave\x00junk", sdbDavePw, "smtp", ""), both, "OK"},
		{"10 password \\0Pw0rd", r4("dave", "\x00"+sdbDavePw, "smtp", ""), both, "NO NULL password received"},
		{"11 password Pw0rd\\0junk (cut at the NUL)", r4("dave", sdbDavePw+"\x00junk", "smtp", ""), both, "OK"},
		{"11 realm with a NUL (host\\0x)", r4("dave", sdbDavePw, "smtp", host+"\x00x"), both, "OK"},
		{"12 empty service", r4("dave", sdbDavePw, "", ""), both, "OK"},
		{"13 1 byte then close", []byte{0}, closeOnly, ""},
		{"13 length header only then close", sdbHdr(4), closeOnly, ""},
		{"13 login cut short then close", sdbCat(sdbHdr(5), []byte("dav")), closeOnly, ""},
		{"14 3 fields then close", sdbFields("dave", sdbDavePw, "smtp"), closeOnly, ""},
		{"14 realm cut short then close", sdbCat(sdbFields("dave", sdbDavePw, "smtp"), sdbHdr(10), []byte("exa")), closeOnly, ""},
		{"16/19 full request, no half-close", good, []bool{false}, "OK"},
		{"17 two requests back-to-back", sdbCat(good, good), both, "OK"},
		{"17 good then bad request", sdbCat(good, r4("dave", "bad", "smtp", "")), both, "OK"},
		{"17 bad then good request", sdbCat(r4("dave", "bad", "smtp", ""), good), both, "NO"},
		{"18 5 fields (client address)", sdbFields("dave", sdbDavePw, "smtp", "", "192.0.2.7;41234"), both, "OK"},
		{"18 5 fields, empty 5th", sdbFields("dave", sdbDavePw, "smtp", "", ""), both, "OK"},
		{"18 5 fields, 5th of 257 bytes", sdbFields("dave", sdbDavePw, "smtp", "", a257), both, "OK"},
		{"18 5th field cut short", sdbCat(good, sdbHdr(20), []byte("192.0")), both, "OK"},
		{"18 6 fields", sdbFields("dave", sdbDavePw, "smtp", "", "192.0.2.7;1", "extra"), both, "OK"},
		{"18 trailing garbage byte", sdbCat(good, []byte{0xff}), both, "OK"},
		{"21 empty connection", nil, closeOnly, ""},
		{"27 [erin,Pw1,smtp,'']", r4("erin", sdbErinPw, "smtp", ""), both, "NO"},
		{"27 [erin,Pw1,smtp,example.com]", r4("erin", sdbErinPw, "smtp", sdbErinRealm), both, "OK"},
		{"27 [erin@example.com,Pw1,smtp,'']", r4("erin@"+sdbErinRealm, sdbErinPw, "smtp", ""), both, "NO"},
		{"27 [dave,Pw0rd,smtp,<hostname>]", r4("dave", sdbDavePw, "smtp", host), both, "OK"},
		{"27 [dave@<hostname>,Pw0rd,smtp,'']", r4("dave@"+host, sdbDavePw, "smtp", ""), both, "NO"},
		{"27 [erin,Pw1,smtp,EXAMPLE.COM]", r4("erin", sdbErinPw, "smtp", "EXAMPLE.COM"), both, "NO"},
		{"unknown user", r4("nobody", "x", "smtp", ""), both, "NO"},
		{"login case (DAVE)", r4("DAVE", sdbDavePw, "smtp", ""), both, "NO"},
		{"password prefix Pw0r", r4("dave", "Pw0r", "smtp", ""), both, "NO"},
		{"password Pw0rdX", r4("dave", "Pw0rdX", "smtp", ""), both, "NO"},
		{"spaces and UTF-8 in the password", r4("spacey", sdbSpaceyPw, "imap", ""), both, "OK"},
		{"password with a trailing space", r4("dave", sdbDavePw+" ", "smtp", ""), both, "NO"},
	}
	var rows []sdbRow
	for _, c := range cases {
		for _, hc := range c.modes {
			name := c.name
			if hc {
				name += " [half-close]"
			} else {
				name += " [no half-close]"
			}
			cy := sdbOutcome(rawExchange(p.cyrusSock, c.data, hc, 5*time.Second))
			sg := sdbOutcome(rawExchange(p.sg, c.data, hc, 5*time.Second))
			verdict := "identical"
			if cy != sg {
				verdict = "DIFFERENT"
				t.Errorf("%s:\n  Cyrus:    %s\n  saslgate: %s", name, cy, sg)
			}
			if want := sdbOutcome(sdbWire(c.want), nil); cy != want {
				t.Logf("NOTE %s: Cyrus differs from the spec: %s, spec: %s", name, cy, want)
			}
			rows = append(rows, sdbRow{name, cy, sg, verdict})
		}
	}
	// Case 21 continued, and 13 with a full close: neither daemon is hurt by
	// clients that connect and go away.
	for _, sock := range []string{p.cyrusSock, p.sg} {
		for range 3 {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write([]byte{0})
			c.Close()
		}
		if got := ask(sock, protocol.Request{Login: "dave", Password: sdbDavePw, Service: "smtp"}); got != "OK" {
			t.Errorf("%s after abandoned connections: %q, want OK", sock, got)
		}
	}
	sdbLogTable(t, rows)
	sdbCompareRequestLogs(t, p)
}

// TestSasldbCompatTrailingFlood: a client that sends more than 64 KiB
// after its request. Cyrus drains everything until the client closes;
// saslgate stops draining after 64 KiB (a deliberate bound, daemon.drainLimit)
// and closes, so the client's last reads may end in a reset rather than
// EOF. The reply bytes themselves are identical.
func TestSasldbCompatTrailingFlood(t *testing.T) {
	p := sdbStartPair(t)
	data := sdbCat(sdbFields("dave", sdbDavePw, "smtp", ""), bytes.Repeat([]byte{'x'}, 100<<10))
	cyB, cyErr := rawExchange(p.cyrusSock, data, true, 5*time.Second)
	sgB, sgErr := rawExchange(p.sg, data, true, 5*time.Second)
	t.Logf("Cyrus: %s; saslgate: %s", sdbOutcome(cyB, cyErr), sdbOutcome(sgB, sgErr))
	if cyErr != nil || !bytes.Equal(cyB, sdbWire("OK")) {
		t.Errorf("Cyrus: %s, want the reply then EOF", sdbOutcome(cyB, cyErr))
	}
	if !bytes.Equal(sgB, sdbWire("OK")) {
		t.Errorf("saslgate: %s, want the reply %q", sdbOutcome(sgB, sgErr), sdbWire("OK"))
	}
	if sgErr != nil && !errors.Is(sgErr, syscall.ECONNRESET) {
		t.Errorf("saslgate: the connection ended with %v, want EOF or a reset after the reply", sgErr)
	}
}

// TestSasldbCompatJoinRealm is case 27 with -r on both daemons: the login
// becomes login@realm, which sasldb then looks up in the realm.
func TestSasldbCompatJoinRealm(t *testing.T) {
	p := sdbStartPair(t, "-r")
	cases := []struct {
		name string
		req  protocol.Request
		want string
	}{
		{"-r [dave,Pw0rd,smtp,''] (nothing appended)", protocol.Request{Login: "dave", Password: sdbDavePw, Service: "smtp"}, "OK"},
		{"-r [erin,Pw1,smtp,example.com]", protocol.Request{Login: "erin", Password: sdbErinPw, Service: "smtp", Realm: sdbErinRealm}, "NO"},
		{"-r [erin@example.com,Pw1,smtp,'']", protocol.Request{Login: "erin@" + sdbErinRealm, Password: sdbErinPw, Service: "smtp"}, "NO"},
		{"-r [dave,Pw0rd,smtp,<hostname>]", protocol.Request{Login: "dave", Password: sdbDavePw, Service: "smtp", Realm: p.fx.Host}, "NO"},
		{"-r [a*256,x,smtp,r*256] (513-byte buffer)", protocol.Request{Login: strings.Repeat("a", 256), Password: "x", Service: "smtp", Realm: strings.Repeat("r", 256)}, "NO"},
	}
	var rows []sdbRow
	for _, c := range cases {
		b, err := protocol.AppendRequest(nil, c.req)
		if err != nil {
			t.Fatal(err)
		}
		cy := sdbOutcome(rawExchange(p.cyrusSock, b, false, 5*time.Second))
		sg := sdbOutcome(rawExchange(p.sg, b, false, 5*time.Second))
		verdict := "identical"
		if cy != sg {
			verdict = "DIFFERENT"
			t.Errorf("%s:\n  Cyrus:    %s\n  saslgate: %s", c.name, cy, sg)
		}
		if want := sdbOutcome(sdbWire(c.want), nil); cy != want {
			t.Logf("NOTE %s: Cyrus differs from the spec: %s, spec: %s", c.name, cy, want)
		}
		rows = append(rows, sdbRow{c.name, cy, sg, verdict})
	}
	sdbLogTable(t, rows)
}

// TestSasldbCompatStalledClient is case 15: a client sends 3 fields and
// keeps the connection open. Cyrus waits forever (spec §2.7: no timeouts);
// saslgate closes at its read deadline without a reply. Deliberate
// difference.
func TestSasldbCompatStalledClient(t *testing.T) {
	fx := sdbNewFixture(t)
	cy := sdbNewCyrus(t, fx).start(t, "cyrus", filepath.Join(fx.Dir, "cy"))
	sg := sdbStartSaslgate(t, fx, "saslgate", filepath.Join(fx.Dir, "sg"), "--read-timeout", "1s")
	parts := []struct {
		name string
		data []byte
	}{
		{"3 fields, kept open", sdbFields("dave", sdbDavePw, "smtp")},
		{"1 byte, kept open", []byte{0}},
		{"nothing, kept open", nil},
	}
	// All at once: each exchange waits for a while.
	var wg sync.WaitGroup
	cyGot, sgGot := make([]string, len(parts)), make([]string, len(parts))
	for i, part := range parts {
		wg.Add(2)
		go func() {
			// Cyrus: nothing arrives, the connection stays open (we give up
			// after 1.5 s).
			defer wg.Done()
			cyGot[i] = sdbOutcome(rawExchange(cy.Socket(), part.data, false, 1500*time.Millisecond))
		}()
		go func() {
			// saslgate: no reply either, but it closes at --read-timeout 1s
			// (we would wait 20 s).
			defer wg.Done()
			sgGot[i] = sdbOutcome(rawExchange(sg.Socket(), part.data, false, 20*time.Second))
		}()
	}
	wg.Wait()
	for i, part := range parts {
		if cyGot[i] != `"" then nothing (still open)` {
			t.Errorf("Cyrus, %s: %s; want no reply and an open connection", part.name, cyGot[i])
		}
		if sgGot[i] != `"" then EOF` {
			t.Errorf("saslgate, %s: %s; want no reply, then the daemon closes", part.name, sgGot[i])
		}
		t.Logf("15 %s: Cyrus %s; saslgate (--read-timeout 1s) %s: deliberate difference", part.name, cyGot[i], sgGot[i])
	}
	// Both still serve (Cyrus's worker was freed when we closed).
	for _, sock := range []string{cy.Socket(), sg.Socket()} {
		if got := ask(sock, protocol.Request{Login: "dave", Password: sdbDavePw, Service: "smtp"}); got != "OK" {
			t.Errorf("%s afterwards: %q, want OK", sock, got)
		}
	}
	if !sdbWaitOut(sg, "timed out waiting for the request") {
		t.Errorf("saslgate did not log the read timeout:\n%s", sg.Out.String())
	}
}

// TestSasldbCompatSlowClients is case 22: with -n 5, six clients that each
// send their request in two parts, with a pause, all get their replies;
// the sixth is queued, not refused. Also: a request dribbled a byte at a
// time is answered (case 19's counterpart: no read waits for more than the
// request).
func TestSasldbCompatSlowClients(t *testing.T) {
	p := sdbStartPair(t)
	for _, sock := range []string{p.cyrusSock, p.sg} {
		req := sdbFields("dave", sdbDavePw, "smtp", "")
		var wg sync.WaitGroup
		results := make([]string, 6)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("unix", sock)
				if err != nil {
					results[i] = err.Error()
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				_, _ = c.Write(req[:7])
				time.Sleep(300 * time.Millisecond)
				_, _ = c.Write(req[7:])
				b, err := io.ReadAll(c)
				results[i] = sdbOutcome(b, err)
			}()
		}
		wg.Wait()
		for i, r := range results {
			if want := sdbOutcome(sdbWire("OK"), nil); r != want {
				t.Errorf("%s: slow client %d: %s, want %s", sock, i, r, want)
			}
		}
		// one byte at a time
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		for i := range req {
			_, _ = c.Write(req[i : i+1])
			time.Sleep(5 * time.Millisecond)
		}
		b, err := io.ReadAll(c)
		c.Close()
		if got, want := sdbOutcome(b, err), sdbOutcome(sdbWire("OK"), nil); got != want {
			t.Errorf("%s: byte-at-a-time client: %s, want %s", sock, got, want)
		}
	}
}
