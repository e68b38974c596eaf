package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// doctorReport is `saslgate doctor --json`'s output.
type doctorReport struct {
	OK       bool `json:"ok"`
	Findings []struct {
		ID       string `json:"id"`
		Severity string `json:"severity"`
		Summary  string `json:"summary"`
		Detail   string `json:"detail"`
		Fix      string `json:"fix"`
	} `json:"findings"`
}

func (r doctorReport) problems() []string {
	var ids []string
	for _, f := range r.Findings {
		if f.Severity != "info" {
			ids = append(ids, f.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// TestDoctorChrootedPostfix builds the classic broken set-up with a real
// Postfix and saslgate: smtpd runs chrooted in its queue directory,
// smtpd.conf's saslauthd_path names a directory (Debian's README example),
// and saslgate's socket sits outside the chroot in a run directory
// root:GROUP 0710 whose group the postfix user is not in. swaks's AUTH
// fails; `saslgate doctor --json` names the three mistakes; the test then
// applies the fixes exactly as printed (shell commands run as they are,
// "FILE: LINE" edits made as documented) and AUTH succeeds (235), with
// doctor then finding nothing.
//
// The machine's own Postfix is not touched: the instance has its own
// config, queue (= chroot) and data directories under a temporary
// directory, its own port, and a group made for the test (deleted at the
// end, which also takes postfix out of it).
func TestDoctorChrootedPostfix(t *testing.T) {
	needRoot(t)
	tools := need(t, "postfix", "swaks", "saslpasswd2", "groupadd", "groupdel")
	postfix, swaks, saslpasswd2, groupadd, groupdel := tools[0], tools[1], tools[2], tools[3], tools[4]
	bin := saslgateBin(t)
	if _, err := user.Lookup("postfix"); err != nil {
		missing(t, "no postfix user: "+err.Error())
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Fatalf("hostname: %q %v", host, err)
	}

	// a group of our own plays Debian's "sasl"
	group := fmt.Sprintf("sgdoc%d", os.Getpid()%100000)
	if out, err := exec.Command(groupadd, group).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v\n%s", group, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(groupdel, group).CombinedOutput(); err != nil {
			t.Errorf("groupdel %s: %v\n%s", group, err, out)
		}
	})
	gr, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(gr.Gid)

	base, err := os.MkdirTemp("", "sgdoc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	// daemons the fixes start detach: stop them by their pid files
	t.Cleanup(func() { stopDetached(t, base, bin) })

	const alicePW = "Chr00ted-alice.pw"
	db := filepath.Join(base, "sasldb2")
	pfSaslpasswd(t, saslpasswd2, db, host, "alice", alicePW)
	conf := filepath.Join(base, "saslgate.conf") // empty: keeps /etc/saslgate.conf out
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	runDir := filepath.Join(base, "run")
	if err := os.Mkdir(runDir, 0o710); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(runDir, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(runDir, 0o710); err != nil {
		t.Fatal(err)
	}
	daemonArgs := []string{"-a", "sasldb", "--sasldb-path", db, "--config", conf, "-m", runDir}
	startDaemon(t, "saslgate", bin, "", runDir, append([]string{"serve", "-d"}, daemonArgs...)...)

	pf := dcStart(t, postfix, base,
		"pwcheck_method: saslauthd\nmech_list: PLAIN LOGIN\nsaslauthd_path: /var/run/saslauthd\n")

	// 1. broken: AUTH fails, libsasl cannot connect
	code, transcript, _ := swaksAuth(t, swaks, pf.addr, "PLAIN", "alice", alicePW)
	if code == 235 {
		t.Fatalf("AUTH succeeded on the broken set-up:\n%s", transcript)
	}
	waitFor(t, "maillog: cannot connect to saslauthd server", func() bool {
		return strings.Contains(pf.maillogTail(200), "cannot connect to saslauthd server")
	}, pf.maillogTail)

	doctor := func() (doctorReport, int, string) {
		out, errOut, code := run(t, "", bin, append([]string{"doctor", "--json", "--postfix-config", pf.configDir, "--"}, daemonArgs...)...)
		var rep doctorReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("doctor: not JSON (%v), exit %d:\n%s\n%s", err, code, out, errOut)
		}
		return rep, code, out
	}
	rep, code, out := doctor()
	want := []string{"chroot-socket-unreachable", "postfix-not-in-socket-group", "saslauthd-path-directory"}
	if code != 1 || rep.OK || !slices.Equal(rep.problems(), want) {
		t.Fatalf("doctor on the broken set-up: exit %d, problems %q, want 1 and %q:\n%s", code, rep.problems(), want, out)
	}
	t.Logf("doctor's findings:\n%s", out)

	// 2. follow the advice, line by line
	for _, f := range rep.Findings {
		for _, line := range strings.Split(f.Fix, "\n") {
			applyFixLine(t, f.ID, line)
		}
	}

	// 3. fixed: doctor is content, AUTH works
	rep, code, out = doctor()
	if code != 0 || !rep.OK || len(rep.problems()) != 0 {
		t.Fatalf("doctor after its fixes: exit %d, problems %q:\n%s\n--- maillog:\n%s", code, rep.problems(), out, pf.maillogTail(60))
	}
	// `postfix reload` lets busy smtpd processes finish; a new one has the
	// new smtpd.conf and group
	var last string
	waitFor(t, "AUTH PLAIN 235 after the fixes", func() bool {
		code, last, _ = swaksAuth(t, swaks, pf.addr, "PLAIN", "alice", alicePW)
		return code == 235
	}, func(int) string { return last + "\n--- maillog:\n" + pf.maillogTail(60) })
	if code, tr, _ := swaksAuth(t, swaks, pf.addr, "LOGIN", "alice", "wrong-password"); code != 535 {
		t.Fatalf("a wrong password after the fixes: reply %d, want 535\n%s", code, tr)
	}
}

// fixEdit is doctor's "FILE: LINE" form.
var fixEdit = regexp.MustCompile(`^(/\S+): (.+)$`)

// applyFixLine does what one line of a finding's fix says: a comment is
// skipped, "FILE: LINE" replaces the line that sets the same key (or adds
// it), anything else runs as a shell command.
func applyFixLine(t *testing.T, id, line string) {
	t.Helper()
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return
	}
	if m := fixEdit.FindStringSubmatch(line); m != nil {
		t.Logf("%s: edit %s: %s", id, m[1], m[2])
		setConfLine(t, m[1], m[2])
		return
	}
	t.Logf("%s: run %s", id, line)
	// output to a file: a daemon the command starts must not hold a pipe
	f, err := os.CreateTemp("", "sgdocfix")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", line)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile(f.Name())
	if err != nil {
		t.Fatalf("%s: fix %q: %v\n%s", id, line, err, out)
	}
}

// setConfLine puts line in file in place of the line setting the same key
// ("key: value" or "KEY=value"), or appends it.
func setConfLine(t *testing.T, file, line string) {
	t.Helper()
	key := func(l string) string {
		l = strings.TrimSpace(l)
		if i := strings.IndexAny(l, ":="); i > 0 {
			return strings.TrimSpace(l[:i])
		}
		return l
	}
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(b) == 0 {
		lines = nil
	}
	done := false
	for i, l := range lines {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") && key(l) == key(line) {
			lines[i], done = line, true
		}
	}
	if !done {
		lines = append(lines, line)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// stopDetached stops every saslgate daemon whose pid file lies under base.
func stopDetached(t *testing.T, base, bin string) {
	_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "saslauthd.pid" {
			return nil
		}
		b, _ := os.ReadFile(p)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid <= 1 {
			return nil
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || exe != bin {
			return nil
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			t.Logf("saslgate %d ignored SIGTERM: SIGKILL", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return nil
	})
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool, show func(int) string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, show(100))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dcStart is pfStart with smtpd chrooted in the instance's queue directory
// and the given smtpd.conf.
func dcStart(t *testing.T, postfix, base, smtpdConf string) *pfInstance {
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
	pfExpand(t, "main.cf.tmpl", filepath.Join(p.configDir, "main.cf"), map[string]string{
		"Base": base, "Spool": filepath.Join(base, "spool"), "Data": filepath.Join(base, "data"),
		"Maillog": p.maillog, "SASLDir": saslDir, "Listen": p.addr, "Socket": "",
	})
	// chroot = y for smtpd: its "/" is the queue directory
	master := "# service type private unpriv chroot wakeup maxproc command\n" +
		p.addr + " inet n - y - - smtpd\n" +
		"proxymap unix - - n - - proxymap\n" +
		"anvil unix - - n - 1 anvil\n" +
		"cleanup unix n - n - 0 cleanup\n" +
		"rewrite unix - - n - - trivial-rewrite\n" +
		"postlog unix-dgram n - n - 1 postlogd\n"
	if err := os.WriteFile(filepath.Join(p.configDir, "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(saslDir, "smtpd.conf"), []byte(smtpdConf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Postfix maillog (%s):\n%s", p.maillog, p.maillogTail(200))
		}
		pid := pfMasterPid(p.pidFile)
		if out, code := pfCmd(postfix, p.configDir, "stop"); code != 0 && pid > 0 {
			t.Logf("postfix stop: exit %d: %s", code, out)
		}
		if pid > 0 && pfIsMaster(pid) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		deadline := time.Now().Add(10 * time.Second)
		for pid > 0 && pfIsMaster(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	})
	if out, code := pfCmd(postfix, p.configDir, "start"); code != 0 {
		t.Fatalf("postfix -c %s start: exit %d\n%s\n--- maillog:\n%s", p.configDir, code, out, p.maillogTail(100))
	}
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
