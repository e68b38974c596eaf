// Package unixpwtest creates throw-away system users for the tests of the
// shadow and getpwent mechanisms. The mechanisms look users up through NSS,
// so a real test needs real entries in /etc/passwd and /etc/shadow; that
// needs root, and the users must be gone when the test ends, pass or fail.
//
// Test packages run in parallel processes, and useradd refuses to run while
// another useradd holds /etc/passwd's lock, so Lock serialises every test
// that changes the user database across processes.
package unixpwtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// NeedRoot skips the test unless it runs as root. Under CI=true a missing
// root is a failure: CI is where these tests are meant to run.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root, and CI=true")
	}
	t.Skip("needs root to create system users")
}

// lockPath is shared by every test binary on the host.
var lockPath = filepath.Join(os.TempDir(), "saslgate-test-users.lock")

// Lock takes the host-wide user-database lock until the test ends.
func Lock(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("open lock file: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", lockPath, err)
	}
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// User is a system user to create.
type User struct {
	Name string
	// Hash is written to /etc/shadow as is (chpasswd -e): a crypt hash,
	// "!..." for a locked account, "" for an empty password field.
	Hash string
	// Chage holds chage(1) arguments applied after the hash is set, e.g.
	// {"-E", "0"} or {"-d", "0", "-M", "30"}; setting a hash resets the
	// last-change day to today.
	Chage []string
	// Gecos is the comment field (empty: "saslgate test").
	Gecos string
}

// AddUser creates u with no home directory, no group of its own and no
// login shell, and removes it (userdel -r) when the test ends, even if it
// fails. A user of the same name left by a crashed run is removed first.
// Call Lock before.
func AddUser(t testing.TB, u User) {
	t.Helper()
	if !strings.HasPrefix(u.Name, "sgtest_") {
		t.Fatalf("test user %q must start with sgtest_", u.Name)
	}
	if exists(u.Name) {
		_, _ = run("userdel", "-r", u.Name)
	}
	gecos := u.Gecos
	if gecos == "" {
		gecos = "saslgate test"
	}
	must(t, "useradd", nil, "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin", "-c", gecos, u.Name)
	t.Cleanup(func() {
		if out, err := run("userdel", "-r", u.Name); err != nil && exists(u.Name) {
			t.Errorf("userdel -r %s: %v\n%s", u.Name, err, out)
		}
	})
	// chpasswd reads the hash from stdin: it never shows in ps
	must(t, "chpasswd", strings.NewReader(u.Name+":"+u.Hash+"\n"), "-e")
	if len(u.Chage) > 0 {
		must(t, "chage", nil, append(append([]string(nil), u.Chage...), u.Name)...)
	}
}

// exists asks NSS, as the mechanisms do.
func exists(name string) bool {
	return exec.Command("getent", "passwd", name).Run() == nil
}

func must(t testing.TB, prog string, stdin *strings.Reader, args ...string) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
}

func run(prog string, args ...string) (string, error) {
	out, err := exec.Command(prog, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", prog, err)
	}
	return string(out), nil
}
