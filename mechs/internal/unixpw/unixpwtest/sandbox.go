package unixpwtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/protocol"
)

// Sandbox runs a program with a changed view of /etc: a private mount
// namespace in which files are bind-mounted over system files (a
// nsswitch.conf with only "files", an unreadable passwd, a passwd with a
// hash in it), optionally as user nobody. Nothing outside the namespace
// sees the change. The zero Sandbox runs programs as they are.
type Sandbox struct {
	// Files maps a system path to the content to show there.
	Files map[string]File
	// Nobody drops to uid and gid 65534 before the program starts.
	Nobody bool
	dir    string
}

// File is one file to bind-mount.
type File struct {
	Content string
	Mode    os.FileMode
}

// NsswitchFilesOnly is /etc/nsswitch.conf with "files" as the only source
// for passwd and shadow, so a source that cannot be read answers with its
// errno instead of handing over to nss-systemd.
func NsswitchFilesOnly(t testing.TB) File {
	t.Helper()
	b, err := os.ReadFile("/etc/nsswitch.conf")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "passwd:"):
			line = "passwd: files"
		case strings.HasPrefix(line, "shadow:"):
			line = "shadow: files"
		}
		out = append(out, line)
	}
	return File{Content: strings.Join(out, "\n"), Mode: 0o644}
}

// Usable reports whether this host lets the test build sandboxes (root,
// unshare, setpriv, mount namespaces); if not it skips t, or fails it
// under CI=true.
func (s *Sandbox) Usable(t testing.TB) {
	t.Helper()
	NeedRoot(t)
	for _, prog := range []string{"unshare", "setpriv", "mount"} {
		if _, err := exec.LookPath(prog); err != nil {
			skipOrFail(t, prog+" not found")
		}
	}
	if out, err := exec.Command("unshare", "-m", "--propagation", "private", "true").CombinedOutput(); err != nil {
		skipOrFail(t, "mount namespaces not allowed: "+strings.TrimSpace(string(out)))
	}
}

func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// Command builds a command that runs argv inside the sandbox. The process
// exec'd last is argv[0] itself, so its pid is the command's.
func (s *Sandbox) Command(t testing.TB, argv ...string) *exec.Cmd {
	t.Helper()
	if len(s.Files) == 0 && !s.Nobody {
		return exec.Command(argv[0], argv[1:]...)
	}
	if s.dir == "" {
		s.dir = WorldDir(t)
		for target, f := range s.Files {
			src := filepath.Join(s.dir, strings.ReplaceAll(strings.TrimPrefix(target, "/"), "/", "_"))
			if err := os.WriteFile(src, []byte(f.Content), f.Mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(src, f.Mode); err != nil { // past the umask
				t.Fatal(err)
			}
		}
	}
	script := ""
	for target := range s.Files {
		src := filepath.Join(s.dir, strings.ReplaceAll(strings.TrimPrefix(target, "/"), "/", "_"))
		script += "mount --bind '" + src + "' '" + target + "' && "
	}
	if s.Nobody {
		script += "exec setpriv --reuid=65534 --regid=65534 --clear-groups -- \"$@\""
	} else {
		script += "exec \"$@\""
	}
	args := append([]string{"-m", "--propagation", "private", "sh", "-c", script, "sh"}, argv...)
	return exec.Command("unshare", args...)
}

// WorldDir is a fresh directory that user nobody can enter and write (for
// a socket or a copy of the test binary), removed when the test ends. Its
// path is short: unix socket paths must stay under 108 bytes.
func WorldDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

// CyrusPath is Debian's sasl2-bin saslauthd, the reference.
const CyrusPath = "/usr/sbin/saslauthd"

// StartCyrus runs the real Cyrus saslauthd -a mech in the foreground inside
// sb and returns its socket. It skips the test when sasl2-bin is not
// installed (fails under CI=true). The daemon is stopped when the test ends.
func StartCyrus(t testing.TB, sb *Sandbox, mech string) string {
	t.Helper()
	if _, err := os.Stat(CyrusPath); err != nil {
		skipOrFail(t, "Cyrus saslauthd not installed (Debian package sasl2-bin)")
	}
	dir := WorldDir(t)
	cmd := sb.Command(t, CyrusPath, "-a", mech, "-d", "-m", dir, "-n", "1")
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// its own process group: with -d, Cyrus's SIGTERM handler signals its group
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start saslauthd: %v", err)
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
	})
	sock := filepath.Join(dir, "mux")
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		select {
		case <-done:
			t.Fatalf("saslauthd exited at start:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("saslauthd socket never answered:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ask sends one request to a saslauthd socket and returns the reply.
func Ask(t testing.TB, sock string, req mechs.Request) string {
	t.Helper()
	c := &protocol.Client{Path: sock, Timeout: 10 * time.Second}
	reply, err := c.Do(context.Background(), protocol.Request{
		Login: req.Login, Password: req.Password.Reveal(), Service: req.Service, Realm: req.Realm})
	if err != nil {
		t.Fatalf("ask %s: %v", sock, err)
	}
	return reply
}

// Result is what a mechanism answered in a helper process.
type Result struct {
	Verdict string
	Reply   string
}

// helperEnv marks a test binary started by RunInSandbox.
const helperEnv = "SASLGATE_UNIXPW_HELPER"

const resultPrefix = "SGRESULT "

type helperReq struct {
	Login, Password, Service, Realm string
}

// RunInSandbox runs the test named test of the current test binary inside
// sb, with stdin as its input, and returns what it printed. The test must
// call SandboxOnly first. A failure of that test fails t. The binary is
// copied to a directory user nobody can reach first: go test builds in a
// directory only its owner can enter.
func RunInSandbox(t testing.TB, sb *Sandbox, test string, stdin []byte) []byte {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := WorldDir(t)
	bin := filepath.Join(dir, "sandboxed.test")
	if err := copyFile(self, bin); err != nil {
		t.Fatal(err)
	}
	cmd := sb.Command(t, bin, "-test.run=^"+test+"$", "-test.count=1", "-test.v")
	cmd.Dir = dir // nobody may not be able to enter the package directory
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s in the sandbox: %v\n%s%s", test, err, out, stderr.String())
	}
	return out
}

// SandboxOnly skips the calling test unless RunInSandbox started it.
func SandboxOnly(t *testing.T) {
	t.Helper()
	if os.Getenv(helperEnv) != "1" {
		t.Skip("runs only inside a sandbox, started by another test")
	}
}

// RunHelper runs the test named helper inside sb, which must call Serve,
// passes it reqs, and returns the mechanism's answers.
func RunHelper(t testing.TB, sb *Sandbox, helper string, reqs []mechs.Request) []Result {
	t.Helper()
	hr := make([]helperReq, len(reqs))
	for i, r := range reqs {
		hr[i] = helperReq{r.Login, r.Password.Reveal(), r.Service, r.Realm}
	}
	in, err := json.Marshal(hr)
	if err != nil {
		t.Fatal(err)
	}
	out := RunInSandbox(t, sb, helper, in)
	var res []Result
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), resultPrefix); ok {
			var r Result
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			res = append(res, r)
		}
	}
	if len(res) != len(reqs) {
		t.Fatalf("helper answered %d of %d requests:\n%s", len(res), len(reqs), out)
	}
	return res
}

// Serve is the helper side of RunHelper: inside a sandbox it runs each
// request through the mechanism newMech builds and prints the answers;
// elsewhere it skips the test.
func Serve(t *testing.T, newMech func() (mechs.Mechanism, error)) {
	t.Helper()
	SandboxOnly(t)
	var reqs []helperReq
	if err := json.NewDecoder(os.Stdin).Decode(&reqs); err != nil {
		t.Fatal(err)
	}
	m, err := newMech()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		res, err := m.Authenticate(context.Background(), mechs.Request{
			Login: r.Login, Password: mechs.Password(r.Password), Service: r.Service, Realm: r.Realm})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(Result{Verdict: res.Verdict.String(), Reply: res.Reply})
		os.Stdout.WriteString(resultPrefix + string(b) + "\n")
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
