package test

// End-to-end tests of saslgate's policy layer: the config file's realm and
// service rules, the credential cache against a password change, brute-force
// throttling, config errors and SIGHUP, login debugging and SIGUSR1. Each
// runs the real bin/saslgate (serve -d) and, where the issue asks for it,
// queries it through the real Cyrus testsaslauthd; sasldb files are written
// by the real saslpasswd2 and local users by useradd and chpasswd.

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// polRandom is n random hex digits.
func polRandom(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)[:n]
}

// polLocalUser creates a throw-away local account (useradd, then chpasswd
// with the clear password on stdin, which hashes it with the system's
// default scheme) under the user-database lock, and removes it when the
// test ends. It returns the login and the password.
func polLocalUser(t *testing.T, tag string) (string, string) {
	t.Helper()
	needRoot(t)
	need(t, "useradd", "userdel", "chpasswd", "getent")
	name := fmt.Sprintf("sgpol%s%d", tag, os.Getpid()%100000)
	pw := "Pol-" + polRandom(t, 16)
	t.Cleanup(func() {
		lcWithUserLock(t, func() {
			if lcUserExists(name) {
				if out, err := exec.Command("userdel", "-r", name).CombinedOutput(); err != nil && lcUserExists(name) {
					t.Errorf("userdel -r %s: %v\n%s", name, err, out)
				}
			}
		})
	})
	lcWithUserLock(t, func() {
		if lcUserExists(name) {
			_ = exec.Command("userdel", "-r", name).Run()
		}
		if out, err := exec.Command("useradd", "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin",
			"-c", "saslgate policy test", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v\n%s", name, err, out)
		}
		cmd := exec.Command("chpasswd")
		cmd.Stdin = strings.NewReader(name + ":" + pw + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("chpasswd %s: %v\n%s", name, err, out)
		}
	})
	return name, pw
}

// polStart runs bin/saslgate serve -d -m <fresh short dir>/r args... and
// logs its output if the test fails.
func polStart(t *testing.T, name string, args ...string) *Daemon {
	t.Helper()
	runDir := filepath.Join(sdbTempDir(t), "r")
	argv := append([]string{"serve", "-d", "-m", runDir}, args...)
	d := startDaemon(t, name, saslgateBin(t), "", runDir, argv...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s output:\n%s", name, d.Out.String())
		}
	})
	return d
}

// polWriteConfig writes a config file and returns its path.
func polWriteConfig(t *testing.T, dir, name string, lines ...string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// polTSA runs the real testsaslauthd against sock and returns its stdout,
// trimmed ("0: OK \"Success.\"" or "0: NO \"authentication failed\"").
func polTSA(t *testing.T, sock, user, pw string, extra ...string) string {
	t.Helper()
	tsa := need(t, "testsaslauthd")[0]
	so, se, _ := run(t, "", tsa, append([]string{"-f", sock, "-u", user, "-p", pw}, extra...)...)
	if se != "" {
		t.Logf("testsaslauthd stderr: %q", se)
	}
	return strings.TrimSpace(so)
}

const (
	polTSAOK = `0: OK "Success."`
	polTSANO = `0: NO "authentication failed"`
)

// polSettle waits until path's last change is older than the 2 s "racy"
// window (mechs.RacyWindow), so that the cache trusts its generation.
func polSettle(t *testing.T, path string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	last := time.Unix(0, max(st.Mtim.Nano(), st.Ctim.Nano()))
	if wait := time.Until(last.Add(2200 * time.Millisecond)); wait > 0 {
		time.Sleep(wait)
	}
}

// polWaitCount waits (up to timeout) until d's output holds substr n times.
func polWaitCount(d *Daemon, substr string, n int, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); strings.Count(d.Out.String(), substr) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// TestPolicyRealmStrip: realm_strip (with -r, which makes the realm reach
// shadow as login@realm) gives shadow the bare user for the listed realm
// only; realm_split splits a typed user@domain first.
func TestPolicyRealmStrip(t *testing.T) {
	user, pw := polLocalUser(t, "rs")
	need(t, "testsaslauthd")
	dir := sdbTempDir(t)
	plain := polWriteConfig(t, dir, "plain.conf", "realm_join: yes")
	strip := polWriteConfig(t, dir, "strip.conf", "realm_join: yes", "realm_strip: example.com")
	split := polWriteConfig(t, dir, "split.conf", "realm_join: yes", "realm_split: yes", "realm_strip: example.com")
	common := []string{"--failure-delay", "0", "--auth-penalty", "0", "-a", "shadow", "--config"}
	dPlain := polStart(t, "plain", append(common, plain)...)
	dStrip := polStart(t, "strip", append(common, strip)...)
	dSplit := polStart(t, "split", append(common, split)...)

	for _, c := range []struct {
		what string
		d    *Daemon
		user string
		args []string
		want string
	}{
		{"no realm (sanity)", dPlain, user, nil, polTSAOK},
		{"realm example.com, no realm_strip: shadow sees user@example.com", dPlain, user, []string{"-r", "example.com"}, polTSANO},
		{"realm_strip example.com, realm example.com", dStrip, user, []string{"-r", "example.com"}, polTSAOK},
		{"realm_strip example.com, realm EXAMPLE.COM (case-insensitive)", dStrip, user, []string{"-r", "EXAMPLE.COM"}, polTSAOK},
		{"realm_strip example.com, realm other.org", dStrip, user, []string{"-r", "other.org"}, polTSANO},
		{"realm_strip without realm_split: user@example.com typed", dStrip, user + "@example.com", nil, polTSANO},
		{"realm_split+realm_strip: user@example.com typed", dSplit, user + "@example.com", nil, polTSAOK},
		{"realm_split+realm_strip: user@other.org typed", dSplit, user + "@other.org", nil, polTSANO},
		{"realm_split+realm_strip, wrong password", dSplit, user + "@example.com", nil, polTSANO},
	} {
		p := pw
		if strings.Contains(c.what, "wrong password") {
			p = pw + "x"
		}
		if got := polTSA(t, c.d.Socket(), c.user, p, c.args...); got != c.want {
			t.Errorf("%s: testsaslauthd -u %s %v: got %q, want %q", c.what, c.user, c.args, got, c.want)
		}
	}
}

// TestPolicyServiceMap: service_mech routes imap to shadow while every
// other service uses the default chain (sasldb).
func TestPolicyServiceMap(t *testing.T) {
	fx := sdbNewFixture(t)
	user, pw := polLocalUser(t, "sm")
	need(t, "testsaslauthd")
	if lcUserExists("dave") {
		t.Fatalf("a local user dave exists; the test needs dave to be in sasldb only")
	}
	conf := polWriteConfig(t, fx.Dir, "sm.conf", "mech: sasldb", "sasldb_path: "+fx.DB, "service_mech: imap=shadow")
	d := polStart(t, "servicemap", "--failure-delay", "0", "--auth-penalty", "0", "--config", conf)
	for _, c := range []struct{ user, pw, svc, want string }{
		{"dave", sdbDavePw, "smtp", polTSAOK},
		{"dave", sdbDavePw, "imap", polTSANO},
		{user, pw, "imap", polTSAOK},
		{user, pw, "smtp", polTSANO},
		{user, pw + "x", "imap", polTSANO},
	} {
		if got := polTSA(t, d.Socket(), c.user, c.pw, "-s", c.svc); got != c.want {
			t.Errorf("testsaslauthd -u %s -s %s: got %q, want %q", c.user, c.svc, got, c.want)
		}
	}
	out := d.Out.String()
	for _, want := range []string{"[user=dave] [service=smtp] [realm=] [mech=sasldb]", "[service=imap] [realm=] [mech=shadow]"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// polLeakForms are a password and unkeyed digests of it, as they could
// appear in a file or a log: hex (either case) and base64 of MD5, SHA-1
// and SHA-256.
func polLeakForms(pw string) []string {
	forms := []string{pw}
	for _, sum := range [][]byte{
		func() []byte { s := md5.Sum([]byte(pw)); return s[:] }(),
		func() []byte { s := sha1.Sum([]byte(pw)); return s[:] }(),
		func() []byte { s := sha256.Sum256([]byte(pw)); return s[:] }(),
	} {
		h := hex.EncodeToString(sum)
		forms = append(forms, h, strings.ToUpper(h),
			base64.StdEncoding.EncodeToString(sum), base64.RawStdEncoding.EncodeToString(sum),
			base64.URLEncoding.EncodeToString(sum), base64.RawURLEncoding.EncodeToString(sum))
	}
	return forms
}

// TestPolicyCachePasswordChange: with -c, a password changed in sasldb by
// saslpasswd2 stops working on the very next request (the cache entry of
// the old password does not answer), and no password nor digest of one
// shows up in the run directory, the process's environment or command line,
// or the -d log.
func TestPolicyCachePasswordChange(t *testing.T) {
	fx := sdbNewFixture(t)
	saslpasswd2 := need(t, "saslpasswd2")[0]
	user := "polcarol"
	oldPw, newPw := "Old-"+polRandom(t, 20), "New-"+polRandom(t, 20)
	pfSaslpasswd(t, saslpasswd2, fx.DB, fx.Host, user, oldPw)
	d := polStart(t, "cache", "-a", "sasldb", "--sasldb-path", fx.DB, "-c", "-t", "28800",
		"--failure-delay", "0", "--auth-penalty", "0")
	sock := d.Socket()
	req := func(pw string) protocol.Request { return protocol.Request{Login: user, Password: pw, Service: "imap"} }

	polSettle(t, fx.DB) // a file changed within 2 s is never cached
	if got := ask(sock, req(oldPw)); got != "OK" {
		t.Fatalf("old password, first: %q", got)
	}
	if got := ask(sock, req(oldPw)); got != "OK" {
		t.Fatalf("old password, second: %q", got)
	}
	if !sdbWaitOut(d, "auth success (cached): [user="+user+"]") {
		t.Errorf("the second request was not a cache hit:\n%s", d.Out.String())
	}

	pfSaslpasswd(t, saslpasswd2, fx.DB, fx.Host, user, newPw)
	if got := ask(sock, req(oldPw)); !strings.HasPrefix(got, "NO") {
		t.Errorf("old password right after saslpasswd2: %q, want NO", got)
	}
	if got := ask(sock, req(newPw)); got != "OK" {
		t.Errorf("new password right after saslpasswd2: %q, want OK", got)
	}
	// once the file is out of the racy window the cache is consulted again:
	// the old password's entry must still not answer
	polSettle(t, fx.DB)
	if got := ask(sock, req(oldPw)); !strings.HasPrefix(got, "NO") {
		t.Errorf("old password after the racy window: %q, want NO", got)
	}
	for i := range 2 {
		if got := ask(sock, req(newPw)); got != "OK" {
			t.Errorf("new password after the racy window (%d): %q, want OK", i, got)
		}
	}

	// no secret anywhere we can look
	places := map[string]string{"-d log": d.Out.String()}
	entries, err := os.ReadDir(d.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			b, err := os.ReadFile(filepath.Join(d.RunDir, e.Name()))
			if err != nil {
				t.Errorf("read %s: %v", e.Name(), err)
				continue
			}
			places["run dir "+e.Name()] = string(b)
		}
	}
	if len(places) < 2 {
		t.Errorf("run dir %s holds no regular file (expected a pid file): %v", d.RunDir, entries)
	}
	pid := d.Cmd.Process.Pid
	for _, f := range []string{"environ", "cmdline", "status", "comm"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err != nil {
			t.Errorf("read /proc/%d/%s: %v", pid, f, err)
			continue
		}
		places["/proc/PID/"+f] = string(b)
	}
	for _, pw := range []string{oldPw, newPw} {
		for _, form := range polLeakForms(pw) {
			for where, text := range places {
				if strings.Contains(text, form) {
					t.Errorf("%s holds %q (a form of a password)", where, form)
				}
			}
		}
	}
}

// polTimedAsk sends req from addr and returns the reply and how long it
// took.
func polTimedAsk(sock string, req protocol.Request) (string, time.Duration) {
	c := &protocol.Client{Path: sock, Timeout: 60 * time.Second}
	start := time.Now()
	r, err := c.Do(context.Background(), req)
	el := time.Since(start)
	if err != nil {
		return "ERR: " + err.Error(), el
	}
	return r, el
}

// polMedian is the median of five or so durations.
func polMedian(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestPolicyThrottle: with the default failure delay and penalties, an
// address that has failed 50 times waits longer for its next NO than for
// its first, while good logins, from another address or from the
// attacker's own, are answered at once.
func TestPolicyThrottle(t *testing.T) {
	fx := sdbNewFixture(t)
	d := polStart(t, "throttle", "-a", "sasldb", "--sasldb-path", fx.DB) // default throttling
	sock := d.Socket()
	const attacker, good = "192.0.2.66;1234", "198.51.100.7;4321"
	from := func(addr, pw string) protocol.Request {
		return protocol.Request{Login: "dave", Password: pw, Service: "smtp", ClientAddr: addr, HasClientAddr: true}
	}
	failLine := "[remote=" + attacker + "]"

	r, first := polTimedAsk(sock, from(attacker, "wrong-0"))
	if !strings.HasPrefix(r, "NO") {
		t.Fatalf("first wrong password: %q", r)
	}
	t.Logf("first failure answered after %v", first)

	// 50 different wrong passwords at once (the same one repeated would
	// not be counted)
	const flood = 50
	var wg sync.WaitGroup
	floodReplies := make([]string, flood)
	for i := range flood {
		wg.Go(func() {
			floodReplies[i], _ = polTimedAsk(sock, from(attacker, fmt.Sprintf("wrong-%d", i+1)))
		})
	}
	// every failure is counted when it is logged, before its delay
	if !polWaitCount(d, failLine, flood+1, 15*time.Second) {
		t.Fatalf("only %d of %d failures logged", strings.Count(d.Out.String(), failLine), flood+1)
	}

	type timed struct {
		r string
		d time.Duration
	}
	next := make(chan timed, 1)
	go func() {
		r, el := polTimedAsk(sock, from(attacker, "wrong-next"))
		next <- timed{r, el}
	}()
	// meanwhile good logins: never delayed, from anywhere
	for _, addr := range []string{good, attacker} {
		var ds []time.Duration
		for range 5 {
			r, el := polTimedAsk(sock, from(addr, sdbDavePw))
			if r != "OK" {
				t.Errorf("good login from %s: %q", addr, r)
			}
			ds = append(ds, el)
		}
		if m := polMedian(ds); m >= 50*time.Millisecond {
			t.Errorf("good login from %s while %s is penalised: median %v of %v, want < 50ms", addr, attacker, m, ds)
		} else {
			t.Logf("good login from %s: median %v of %v", addr, m, ds)
		}
	}
	n := <-next
	if !strings.HasPrefix(n.r, "NO") {
		t.Errorf("failure after the flood: %q", n.r)
	}
	t.Logf("failure after %d failures answered after %v", flood+1, n.d)
	if n.d <= first || n.d <= 4*time.Second {
		t.Errorf("failure after the flood took %v; want more than the first failure's %v and more than 4s", n.d, first)
	}
	wg.Wait()
	for i, r := range floodReplies {
		if !strings.HasPrefix(r, "NO") {
			t.Errorf("flood request %d: %q", i, r)
		}
	}
}

// TestPolicyConfigErrors: --check refuses a bad file naming FILE:LINE and
// prints a good one; a SIGHUP with a bad file keeps the running rules, a
// SIGHUP with a fixed file applies the new ones.
func TestPolicyConfigErrors(t *testing.T) {
	fx := sdbNewFixture(t)
	bin := saslgateBin(t)
	base := []string{"mech: sasldb", "sasldb_path: " + fx.DB}
	for _, c := range []struct {
		name, bad string
	}{
		{"unknown.conf", "realm_strp: example.org"},
		{"badvalue.conf", "cache_ttl: soon"},
		{"badbool.conf", "realm_split: perhaps"},
	} {
		f := polWriteConfig(t, fx.Dir, c.name, append(slices.Clone(base), "# a comment", c.bad)...)
		so, se, code := run(t, "", bin, "serve", "--config", f, "--check")
		if code != 1 {
			t.Errorf("--check %s: exit %d, want 1\nstdout %q\nstderr %q", c.name, code, so, se)
		}
		if want := f + ":4"; !strings.Contains(se, want) {
			t.Errorf("--check %s: stderr %q does not name %s", c.name, se, want)
		}
	}
	good := polWriteConfig(t, fx.Dir, "good.conf", append(slices.Clone(base), "realm_strip: example.org")...)
	so, se, code := run(t, "", bin, "serve", "--config", good, "--check")
	if code != 0 {
		t.Errorf("--check good.conf: exit %d, want 0\nstdout %q\nstderr %q", code, so, se)
	}
	for _, want := range []string{"realm_strip: example.org", "sasldb_path: " + fx.DB} {
		if !strings.Contains(so+se, want) {
			t.Errorf("--check good.conf does not print %q:\nstdout %q\nstderr %q", want, so, se)
		}
	}

	// SIGHUP
	conf := filepath.Join(fx.Dir, "live.conf")
	write := func(lines ...string) {
		t.Helper()
		// a rename, as editors and config management do
		tmp := polWriteConfig(t, fx.Dir, "live.tmp", lines...)
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
	}
	write(append(slices.Clone(base), "realm_strip: example.org")...)
	d := polStart(t, "reload", "--failure-delay", "0", "--auth-penalty", "0", "--config", conf)
	sock := d.Socket()
	dave := func(realm string) string {
		return ask(sock, protocol.Request{Login: "dave", Password: sdbDavePw, Service: "imap", Realm: realm})
	}
	if got := dave("example.org"); got != "OK" {
		t.Fatalf("realm_strip example.org, realm example.org: %q", got)
	}
	if got := dave("example.net"); !strings.HasPrefix(got, "NO") {
		t.Fatalf("realm_strip example.org, realm example.net: %q", got)
	}

	write(append(slices.Clone(base), "realm_strp: example.net")...)
	if err := d.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !sdbWaitOut(d, "reload failed, keeping the running configuration") {
		t.Fatalf("no reload failure logged after SIGHUP with a bad file")
	}
	if out := d.Out.String(); !strings.Contains(out, conf+":3") {
		t.Errorf("the reload failure does not name %s:3", conf)
	}
	if got := dave("example.org"); got != "OK" {
		t.Errorf("after a failed reload, realm example.org: %q, want OK (old rules)", got)
	}
	if got := dave("example.net"); !strings.HasPrefix(got, "NO") {
		t.Errorf("after a failed reload, realm example.net: %q, want NO (old rules)", got)
	}

	write(append(slices.Clone(base), "realm_strip: example.net")...)
	if err := d.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !sdbWaitOut(d, "reloaded: authentication mechanisms") {
		t.Fatalf("no reload logged after SIGHUP with a fixed file")
	}
	if got := dave("example.net"); got != "OK" {
		t.Errorf("after the reload, realm example.net: %q, want OK (new rule)", got)
	}
	if got := dave("example.org"); !strings.HasPrefix(got, "NO") {
		t.Errorf("after the reload, realm example.org: %q, want NO (rule removed)", got)
	}
}

// TestPolicyLoginDebug: --log-level 1 logs each mechanism of the chain and
// its verdict without the password; --log-level 2 warns at start-up and
// logs the password.
func TestPolicyLoginDebug(t *testing.T) {
	fx := sdbNewFixture(t)
	user, pw := polLocalUser(t, "ld")
	for _, level := range []string{"1", "2"} {
		d := polStart(t, "logdebug"+level, "-a", "sasldb,shadow", "--sasldb-path", fx.DB,
			"--failure-delay", "0", "--auth-penalty", "0", "--log-level", level)
		if got := ask(d.Socket(), protocol.Request{Login: user, Password: pw, Service: "imap"}); got != "OK" {
			t.Errorf("level %s: %q, want OK", level, got)
			continue
		}
		if !sdbWaitOut(d, "login debug: [user="+user+"]") {
			t.Errorf("level %s: no login debug line", level)
			continue
		}
		var line string
		for l := range strings.SplitSeq(d.Out.String(), "\n") {
			if strings.Contains(l, "login debug: [user="+user+"]") {
				line = l
			}
		}
		t.Logf("level %s: %s", level, line)
		for _, want := range []string{"sasldb: REJECT - try next", "shadow: ACCEPT"} {
			if !strings.Contains(line, want) {
				t.Errorf("level %s: login debug line lacks %q", level, want)
			}
		}
		out := d.Out.String()
		switch level {
		case "1":
			if strings.Contains(out, pw) {
				t.Errorf("level 1 logged the password")
			}
			if strings.Contains(out, "PASSWORD DEBUG") {
				t.Errorf("level 1 warns of password debugging")
			}
		case "2":
			start, _, _ := strings.Cut(out, "listening on socket")
			if !strings.Contains(start, "PASSWORD DEBUG") {
				t.Errorf("level 2: no PASSWORD DEBUG warning at start-up")
			}
			if !strings.Contains(line, "PASSWORD DEBUG") || !strings.Contains(line, pw) {
				t.Errorf("level 2: the login debug line lacks the warning or the password")
			}
		}
	}
}

// TestPolicySIGUSR1: SIGUSR1 empties the cache: the next request goes to
// the back end again.
func TestPolicySIGUSR1(t *testing.T) {
	fx := sdbNewFixture(t)
	d := polStart(t, "usr1", "-a", "sasldb", "--sasldb-path", fx.DB, "-c",
		"--failure-delay", "0", "--auth-penalty", "0")
	sock := d.Socket()
	req := protocol.Request{Login: "dave", Password: sdbDavePw, Service: "imap"}
	backend := "auth success: [user=dave] [service=imap] [realm=] [mech=sasldb]"
	cached := "auth success (cached): [user=dave]"
	polSettle(t, fx.DB)
	for i := range 2 {
		if got := ask(sock, req); got != "OK" {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if !polWaitCount(d, cached, 1, 3*time.Second) || strings.Count(d.Out.String(), backend) != 1 {
		t.Fatalf("want one back-end success then one cache hit:\n%s", d.Out.String())
	}
	if err := d.Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if !sdbWaitOut(d, "cache flushed") {
		t.Fatalf("no cache flushed line after SIGUSR1")
	}
	if got := ask(sock, req); got != "OK" {
		t.Fatalf("after SIGUSR1: %q", got)
	}
	if !polWaitCount(d, backend, 2, 3*time.Second) {
		t.Errorf("after SIGUSR1 the request did not reach the back end")
	}
	if n := strings.Count(d.Out.String(), cached); n != 1 {
		t.Errorf("after SIGUSR1: %d cache hits logged, want 1", n)
	}
}

// TestPolicyReloadThrottle: failure_delay and the auth_penalty_* keys are
// not marked Restart in daemon/config/keys.go, so a SIGHUP must apply them
// (a key SIGHUP does not apply is marked Restart and the reload warns that
// it "takes effect at the next restart"). The login-debug line says
// "after a failure delay of ..." whenever a NO was delayed.
func TestPolicyReloadThrottle(t *testing.T) {
	fx := sdbNewFixture(t)
	conf := filepath.Join(fx.Dir, "throttle.conf")
	write := func(lines ...string) {
		t.Helper()
		tmp := polWriteConfig(t, fx.Dir, "throttle.tmp", lines...)
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
	}
	base := []string{"mech: sasldb", "sasldb_path: " + fx.DB, "log_level: 1", "auth_penalty_base: 0"}
	write(append(slices.Clone(base), "failure_delay: 1s")...)
	d := polStart(t, "reloadthrottle", "--config", conf)
	wrong := func(pw string) string {
		t.Helper()
		r, _ := polTimedAsk(d.Socket(), protocol.Request{Login: "dave", Password: pw, Service: "imap"})
		if !strings.HasPrefix(r, "NO") {
			t.Fatalf("wrong password %s: %q", pw, r)
		}
		var line string
		for l := range strings.SplitSeq(d.Out.String(), "\n") {
			if strings.Contains(l, "login debug: [user=dave]") {
				line = l
			}
		}
		return line
	}
	if line := wrong("wrong-1"); !strings.Contains(line, "after a failure delay of") {
		t.Fatalf("failure_delay 1s: the NO was not delayed: %s", line)
	}

	write(append(slices.Clone(base), "failure_delay: 0")...)
	if err := d.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !sdbWaitOut(d, "reloaded: authentication mechanisms") {
		t.Fatalf("no reload logged after SIGHUP")
	}
	if strings.Contains(d.Out.String(), "failure_delay changed; it takes effect at the next restart") {
		t.Log("failure_delay is restart-only and the reload said so: nothing more to check")
		return
	}
	if line := wrong("wrong-2"); strings.Contains(line, "after a failure delay of") {
		t.Errorf("SIGHUP reloaded failure_delay: 0 (a key SIGHUP applies; no restart warning was logged), "+
			"but the next NO was still delayed: %s", line)
	}
}
