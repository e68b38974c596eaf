package test

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// TestSecretsNeverLogged runs saslgate in four logging modes (-d, -f -V,
// -d -c, and a detached -V), sends a varied table of requests, a SIGHUP,
// the table again and a SIGTERM, and checks that nothing it wrote, to
// stderr or to syslog, contains any password used: not as is, not in hex
// or base64, not Go-quoted, not as an MD5/SHA digest, and for the long ones
// no 6-byte piece either.
//
// Syslog is captured from a private /dev/log: the daemon runs in its own
// mount namespace (unshare -m, root only) with a tmpfs on /dev whose "log"
// leads to a datagram socket the test reads. The host's /dev/log, if any,
// is never touched. Without root or unshare only stderr is checked, and the
// detached mode (which logs to syslog only) is skipped.
//
// Cyrus saslauthd -d gets the same table for comparison only: whether it
// leaks is logged, never a failure.
func TestSecretsNeverLogged(t *testing.T) {
	tools := need(t, "saslpasswd2")
	saslpasswd2 := tools[0]
	bin := saslgateBin(t)

	base, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}

	tb := newSecretTable()
	db := filepath.Join(base, "sasldb2")
	for _, u := range tb.stored {
		pfSaslpasswd(t, saslpasswd2, db, secretRealm, u.user, u.pw)
	}

	// the search must find what it looks for
	for _, s := range tb.secrets {
		forms := []string{s, hex.EncodeToString([]byte(s)), base64.StdEncoding.EncodeToString([]byte(s))}
		if len(s) >= 12 {
			forms = append(forms, s[len(s)-7:len(s)-1])
		}
		for _, form := range forms {
			if len(tb.leaks("x "+form+" y")) == 0 {
				t.Fatalf("the leak check misses %q", form)
			}
		}
	}

	// the cache does not trust a sasldb changed in the last 2 seconds (a
	// write in the same clock tick would not show): let the file settle so
	// that the -c mode's second pass is answered from the cache
	time.Sleep(2100 * time.Millisecond)

	ns := secPrivateSyslogOK(t)
	t.Logf("host /dev/log served: %v; private /dev/log in a mount namespace: %v", secHostSyslogServed(), ns)

	modes := []struct {
		name     string
		args     []string
		detached bool
		expect   string // a line the mode must log, besides the common ones
	}{
		{"saslgate-d", []string{"-d"}, false, "auth success: [user=weird]"},
		{"saslgate-f-V", []string{"-f", "-V"}, false, "auth success: [user=longuser]"},
		// -c: the second pass is answered from the cache
		{"saslgate-d-cache", []string{"-d", "-c"}, false, "auth success (cached): [user=longuser]"},
		{"saslgate-V-detached", []string{"-V"}, true, "auth success: [user=alice]"},
	}
	for i, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			if m.detached && !ns {
				missing(t, "a detached daemon logs to syslog only: needs root and unshare(1) for a private /dev/log")
			}
			dir := filepath.Join(base, strconv.Itoa(i))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			runDir := filepath.Join(dir, "run")
			var sink *secSyslogSink
			if ns {
				sink = secNewSyslogSink(t, dir)
			}
			args := append([]string{"serve", "--failure-delay", "0", "--auth-penalty", "0", "-a", "sasldb", "--sasldb-path", db, "-m", runDir}, m.args...)
			prog := bin
			if sink != nil {
				prog, args = secInPrivateSyslog(sink.path, "", "", bin, args...)
			}

			var stderr func() string
			var hup, stop func()
			if m.detached {
				so, se, code := run(t, "", prog, args...)
				startOut := so + se
				if code != 0 {
					t.Fatalf("detached start: exit %d\n%s\n--- syslog:\n%s", code, startOut, sink.flush(t))
				}
				pid := secReadPid(t, filepath.Join(runDir, "saslauthd.pid"))
				t.Cleanup(func() { secKillIfAlive(pid) })
				stderr = func() string { return startOut }
				hup = func() { _ = syscall.Kill(pid, syscall.SIGHUP) }
				stop = func() {
					_ = syscall.Kill(pid, syscall.SIGTERM)
					if !secWaitGone(pid, 10*time.Second) {
						t.Errorf("detached saslgate %d ignored SIGTERM", pid)
					}
				}
			} else {
				d := startDaemon(t, m.name, prog, "", runDir, args...)
				stderr = d.Out.String
				hup = func() { _ = d.Cmd.Process.Signal(syscall.SIGHUP) }
				stop = func() { d.Stop(t) }
			}
			sock := filepath.Join(runDir, "mux")
			logs := func() string {
				s := stderr()
				if sink != nil {
					s += "\n" + sink.flush(t)
				}
				return s
			}

			for _, r := range tb.reqs {
				got := r.send(t, sock)
				if r.want != "-" && got != r.want {
					t.Errorf("%s: reply %q, want %q", r.name, got, r.want)
				}
			}
			hup()
			secWaitForLog(t, logs, "reloaded: authentication mechanisms")
			for _, r := range tb.reqs {
				if got := r.send(t, sock); r.want != "-" && got != r.want {
					t.Errorf("after SIGHUP: %s: reply %q, want %q", r.name, got, r.want)
				}
			}
			if m.name == "saslgate-d-cache" {
				// a rejection drops the user's cached logins and a reload
				// starts the cache afresh, so the passes above leave nothing
				// cached: the same good login twice in a row hits the cache
				for _, r := range tb.reqs {
					if r.name == "256-byte password good" {
						r.send(t, sock)
						r.send(t, sock)
					}
				}
			}
			stop()
			out := logs()

			// the check is worth something only if the failures were
			// logged where we looked
			for _, want := range []string{
				"auth failure: [user=alice] [service=smtp] [realm=" + secretRealm + "] [mech=sasldb] [reason=Unknown]",
				"master exited:",
				m.expect,
			} {
				if !strings.Contains(out, want) {
					t.Errorf("captured output lacks %q: the leak check looked in the wrong place?\n%s", want, out)
				}
			}
			if sink != nil && !strings.Contains(sink.flush(t), "auth failure:") {
				t.Errorf("nothing reached the private syslog:\n%s", sink.flush(t))
			}
			if hits := tb.leaks(out); len(hits) > 0 {
				t.Errorf("%d secret(s) in saslgate's logs:\n%s\n--- everything captured:\n%s",
					len(hits), strings.Join(hits, "\n"), out)
			}
		})
	}

	t.Run("cyrus-d-comparison", func(t *testing.T) {
		cyrus := need(t, "saslauthd")[0]
		dir := filepath.Join(base, "cyrus")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		runDir := filepath.Join(dir, "run")
		if err := os.Mkdir(runDir, 0o755); err != nil {
			t.Fatal(err)
		}
		args := []string{"-d", "-a", "sasldb", "-n", "1", "-m", runDir}
		prog := cyrus
		var sink *secSyslogSink
		if ns {
			// Cyrus reads /etc/sasldb2, compiled in: show it ours
			// there, inside its namespace only
			sink = secNewSyslogSink(t, dir)
			bindTo := ""
			if _, err := os.Stat("/etc/sasldb2"); err == nil {
				bindTo = "/etc/sasldb2"
			}
			prog, args = secInPrivateSyslog(sink.path, db, bindTo, cyrus, args...)
		}
		d := startDaemon(t, "cyrus saslauthd", prog, "", runDir, args...)
		for _, r := range tb.reqs {
			got := r.send(t, d.Socket())
			if r.want != "-" && got != r.want {
				t.Logf("cyrus differs: %s: reply %q (saslgate's expected %q)", r.name, got, r.want)
			}
		}
		_ = d.Cmd.Process.Signal(syscall.SIGHUP) // ignored by saslauthd
		for _, r := range tb.reqs {
			r.send(t, d.Socket())
		}
		d.Stop(t)
		out := d.Out.String()
		if sink != nil {
			out += "\n" + sink.flush(t)
		}
		if hits := tb.leaks(out); len(hits) > 0 {
			t.Logf("for comparison: Cyrus saslauthd -d leaked %d secret form(s):\n%s", len(hits), strings.Join(hits, "\n"))
		} else {
			t.Logf("for comparison: Cyrus saslauthd -d leaked nothing (%d bytes of logs checked)", len(out))
		}
	})
}

const secretRealm = "sgrealm.test"

// secretReq is one exchange of the table: a Request sent with the protocol
// client, or raw bytes (half-closed) when raw is set. want is the reply
// saslgate must give, "-" for no check.
type secretReq struct {
	name string
	req  protocol.Request
	raw  []byte
	want string
}

func (r secretReq) send(t *testing.T, sock string) string {
	t.Helper()
	if r.raw == nil {
		return ask(sock, r.req)
	}
	b, err := rawExchange(sock, r.raw, true, 10*time.Second)
	if err != nil {
		return "ERR: " + err.Error()
	}
	if len(b) < 2 {
		return string(b)
	}
	return string(b[2:])
}

type secretTable struct {
	stored  []struct{ user, pw string }
	reqs    []secretReq
	secrets []string // every password sent or stored, and raw fragments
}

// secPseudoRandom is a fixed printable string (no space), the same on every
// run, so that a failure can be reproduced.
func secPseudoRandom(seed uint64, n int) string {
	rng := rand.New(rand.NewPCG(seed, 0x5a5167a7e))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(0x21 + rng.IntN(0x7e-0x21+1))
	}
	return string(b)
}

func newSecretTable() *secretTable {
	var (
		pwAlice = "Gq7-vXk2!mZt"
		pwWeird = `Zx "qu0t" 'ap0s' \bk ü密🔑 tail`
		pwLong  = secPseudoRandom(1, 256) // the longest a field may be
		pwHuge  = secPseudoRandom(2, 300) // over the limit
	)
	pwLongBad := pwLong[:255] + string(pwLong[255]^1)
	big := func(c string) string { return strings.Repeat(c, 300) }
	tb := &secretTable{}
	tb.stored = []struct{ user, pw string }{{"alice", pwAlice}, {"weird", pwWeird}, {"longuser", pwLong}}
	R := func(login, pw, svc, realm string) protocol.Request {
		return protocol.Request{Login: login, Password: pw, Service: svc, Realm: realm}
	}
	five := func(r protocol.Request, addr string) protocol.Request {
		r.ClientAddr, r.HasClientAddr = addr, true
		return r
	}
	tb.reqs = []secretReq{
		{name: "good", req: R("alice", pwAlice, "smtp", secretRealm), want: "OK"},
		{name: "bad password", req: R("alice", "Wr0ng~Pz8kQv", "smtp", secretRealm), want: "NO"},
		{name: "unknown user", req: R("ghost", "Gh0st#Unk9wJ", "smtp", secretRealm), want: "NO"},
		{name: "5th field good", req: five(R("alice", pwAlice, "smtp", secretRealm), "192.0.2.7;4242"), want: "OK"},
		{name: "5th field bad", req: five(R("alice", "F1fth=Rq4hNs", "smtp", secretRealm), "192.0.2.8;4343"), want: "NO"},
		{name: "5th field empty", req: five(R("alice", "F1fthEmpty-Kp3", "smtp", secretRealm), ""), want: "NO"},
		{name: "empty login", req: R("", "EmptyL0gin-Pw3x", "smtp", secretRealm), want: "NO NULL login received"},
		{name: "empty password", req: R("alice", "", "smtp", secretRealm), want: "NO NULL password received"},
		{name: "empty service and realm", req: R("alice", "NoSvc&Realm7t", "", ""), want: "NO"},
		{name: "only a password", req: R("", "0nlyPw_Fi3ldG", "", ""), want: "NO NULL login received"},
		{name: "oversize login", req: R(big("x"), "AfterBigL0gin!", "smtp", secretRealm), want: "NO "},
		{name: "oversize password", req: R("alice", pwHuge, "smtp", secretRealm), want: "NO "},
		{name: "257-byte password", req: R("longuser", pwLong+"Q", "smtp", secretRealm), want: "NO "},
		{name: "oversize service", req: R("alice", "BigSvc-Pw5tKw", big("y"), secretRealm), want: "NO "},
		{name: "oversize realm", req: R("alice", "BigRlm-Pw6uLx", "smtp", big("z")), want: "NO "},
		{name: "NUL in password", req: R("alice", "NulHead9\x00NulTail7q", "smtp", secretRealm), want: "NO"},
		{name: "NUL after the good password", req: R("alice", pwAlice+"\x00JunkTail8rW", "smtp", secretRealm), want: "OK"},
		{name: "NUL in login", req: R("ali\x00ce", "LoginNul-Pw4rT", "smtp", secretRealm), want: "NO"},
		{name: "CR LF in password", req: R("alice", "CrLf\r\nInj3ct-Zq9", "smtp", secretRealm), want: "NO"},
		{name: "quotes spaces UTF-8 good", req: R("weird", pwWeird, "smtp", secretRealm), want: "OK"},
		{name: "quotes spaces UTF-8 bad", req: R("weird", `"Wr 'qu" ö-bäd9 x`, "smtp", secretRealm), want: "NO"},
		{name: "256-byte password good", req: R("longuser", pwLong, "smtp", secretRealm), want: "OK"},
		{name: "256-byte password bad", req: R("longuser", pwLongBad, "smtp", secretRealm), want: "NO"},
	}
	// raw: a request cut inside the password, and one followed by a second
	// request on the same connection (drained, never answered)
	cut := secWire("alice", "Trunc4tedPw-Xq9z", "smtp", secretRealm)
	cut = cut[:2+5+2+9] // login, password header and 9 of its 16 bytes
	pipelined := append(secWire("alice", "Tr4ilGarb-Pw1", "smtp", secretRealm),
		secWire("alice", "SecondReq-Pw7zV", "smtp", secretRealm)...)
	tb.reqs = append(tb.reqs,
		secretReq{name: "cut inside the password", raw: cut, want: ""},
		secretReq{name: "second request on the connection", raw: pipelined, want: "NO"},
	)

	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			tb.secrets = append(tb.secrets, s)
		}
	}
	for _, u := range tb.stored {
		add(u.pw)
	}
	for _, r := range tb.reqs {
		if r.raw == nil {
			add(r.req.Password)
		}
	}
	add("Trunc4tedPw-Xq9z"[:9]) // what reached the daemon
	add("Trunc4tedPw-Xq9z")
	add("Tr4ilGarb-Pw1")
	add("SecondReq-Pw7zV")
	return tb
}

// secWire is a request's bytes as a 2.1.28 client sends them.
func secWire(fields ...string) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// needles returns, for each secret, the forms to look for, named.
func (tb *secretTable) needles() map[string]string {
	n := map[string]string{}
	set := func(needle, what string) { // the first, plainest name wins
		if _, ok := n[needle]; !ok {
			n[needle] = what
		}
	}
	for i, s := range tb.secrets {
		if len(s) < 8 {
			panic(fmt.Sprintf("secret %q is too short to search for without false hits", s))
		}
		id := fmt.Sprintf("secret #%d (%.20q...)", i, s)
		set(s, id+" verbatim")
		set(hex.EncodeToString([]byte(s)), id+" hex")
		set(strings.ToUpper(hex.EncodeToString([]byte(s))), id+" HEX")
		md5sum, sha1sum, sha256sum := md5.Sum([]byte(s)), sha1.Sum([]byte(s)), sha256.Sum256([]byte(s))
		set(hex.EncodeToString(md5sum[:]), id+" MD5")
		set(hex.EncodeToString(sha1sum[:]), id+" SHA-1")
		set(hex.EncodeToString(sha256sum[:]), id+" SHA-256")
		set(base64.StdEncoding.EncodeToString([]byte(s)), id+" base64")
		set(base64.RawStdEncoding.EncodeToString([]byte(s)), id+" base64 (raw)")
		set(base64.URLEncoding.EncodeToString([]byte(s)), id+" base64url")
		set(base64.RawURLEncoding.EncodeToString([]byte(s)), id+" base64url (raw)")
		q := strconv.Quote(s)
		set(q[1:len(q)-1], id+" Go-quoted")
		q = strconv.QuoteToASCII(s)
		set(q[1:len(q)-1], id+" Go-quoted ASCII")
		set(strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return '?'
			}
			return r
		}, s), id+" control chars as ?")
		// every piece of 6 bytes of the long ones (and each part a NUL
		// cut leaves): a truncated or partly escaped copy is a leak too
		if len(s) >= 12 {
			for j := 0; j+6 <= len(s); j++ {
				w := s[j : j+6]
				set(w, fmt.Sprintf("%s bytes %d..%d", id, j, j+6))
			}
		}
		for _, part := range strings.Split(s, "\x00") {
			if len(part) >= 6 {
				set(part, id+" NUL-separated part")
			}
		}
	}
	return n
}

// leaks returns one line per secret form found in out.
func (tb *secretTable) leaks(out string) []string {
	var hits []string
	lines := strings.Split(out, "\n")
	for needle, what := range tb.needles() {
		for _, l := range lines {
			if strings.Contains(l, needle) {
				hits = append(hits, fmt.Sprintf("%s in line %q", what, l))
				break
			}
		}
	}
	sort.Strings(hits)
	return hits
}

// secSyslogSink is a datagram socket standing in for /dev/log.
type secSyslogSink struct {
	path string
	conn *net.UnixConn
	buf  syncBuf
	done chan struct{}
	n    int
}

func secNewSyslogSink(t *testing.T, dir string) *secSyslogSink {
	t.Helper()
	s := &secSyslogSink{path: filepath.Join(dir, "log"), done: make(chan struct{})}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s.conn = conn
	_ = os.Chmod(s.path, 0o666)
	go func() {
		defer close(s.done)
		b := make([]byte, 64<<10)
		for {
			n, err := conn.Read(b)
			if err != nil {
				return
			}
			s.buf.Write(bytes.TrimRight(b[:n], "\n"))
			s.buf.Write([]byte("\n"))
		}
	}()
	t.Cleanup(func() { conn.Close(); <-s.done })
	return s
}

// flush returns everything received so far: it sends a marker and waits
// for it, so that datagrams queued before it have been read.
func (s *secSyslogSink) flush(t *testing.T) string {
	t.Helper()
	s.n++
	marker := fmt.Sprintf("--sink-marker-%d--", s.n)
	c, err := net.Dial("unixgram", s.path)
	if err != nil {
		t.Fatalf("syslog sink: %v", err)
	}
	_, err = c.Write([]byte(marker))
	c.Close()
	if err != nil {
		t.Fatalf("syslog sink: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.buf.String(), marker) {
		if time.Now().After(deadline) {
			t.Fatalf("syslog sink: marker never came back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var keep []string
	for _, l := range strings.Split(s.buf.String(), "\n") {
		if !strings.HasPrefix(l, "--sink-marker-") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// secNSScript runs its arguments in a private mount namespace where /dev is a
// fresh tmpfs with the usual character devices and a /dev/log symlink to
// $1, and $2 (if set) is bind-mounted on $3.
const secNSScript = `set -e
log=$1 src=$2 dst=$3
shift 3
mount -t tmpfs -o mode=0755,size=64k sgdev /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
ln -s "$log" /dev/log
if [ -n "$src" ] && [ -n "$dst" ]; then mount --bind "$src" "$dst"; fi
exec "$@"
`

// secInPrivateSyslog returns the command line running prog args in a private
// mount namespace (see secNSScript); the pid stays prog's (unshare and sh exec).
func secInPrivateSyslog(logSock, bindSrc, bindDst, prog string, args ...string) (string, []string) {
	unshare, _ := exec.LookPath("unshare")
	a := []string{"--mount", "--propagation", "private", "sh", "-c", secNSScript, "sh", logSock, bindSrc, bindDst, prog}
	return unshare, append(a, args...)
}

// secPrivateSyslogOK reports whether secInPrivateSyslog works here.
func secPrivateSyslogOK(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return false
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return false
	}
	dir, err := os.MkdirTemp("", "sgns")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	sink := filepath.Join(dir, "log")
	prog, args := secInPrivateSyslog(sink, "", "", "/bin/sh", "-c", `[ -c /dev/null ] && [ -L /dev/log ]`)
	out, err := exec.Command(prog, args...).CombinedOutput()
	if err != nil {
		t.Logf("no private /dev/log: %v: %s", err, out)
		return false
	}
	return true
}

// secHostSyslogServed reports whether something listens on the host's /dev/log.
func secHostSyslogServed() bool {
	for _, netw := range []string{"unixgram", "unix"} {
		if c, err := net.Dial(netw, "/dev/log"); err == nil {
			c.Close()
			return true
		}
	}
	return false
}

func secWaitForLog(t *testing.T, logs func() string, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %q:\n%s", want, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func secReadPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("pid file %s: %q", path, b)
	}
	return pid
}

// secAlive reports whether pid runs (a zombie does not).
func secAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return !(i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z')
}

func secWaitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for secAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func secKillIfAlive(pid int) {
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if secAlive(pid) && bytes.Contains(cmdline, []byte("saslgate")) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		secWaitGone(pid, 5*time.Second)
	}
}
