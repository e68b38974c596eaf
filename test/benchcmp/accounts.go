package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// The throw-away local accounts and PAM service of the shadow and pam
// scenarios: real entries in /etc/passwd and /etc/shadow (both daemons
// look users up through NSS) and a file in /etc/pam.d, all removed when
// the run ends.
const (
	userYescrypt = "sgbench_y"
	userSha512   = "sgbench_s"
	pamService   = "sgbench-pam"
	benchPass    = "bench-password"
)

// pamStack is pam_unix alone, without the delay it adds to a failure.
const pamStack = `# saslgate benchmark (test/benchcmp); removed when the run ends
auth	required	pam_unix.so nodelay
account	required	pam_unix.so
`

// userLockPath is the host-wide lock every saslgate test takes while it
// changes the user database (mechs/internal/unixpw/unixpwtest.Lock), so
// that no two useradd runs meet.
var userLockPath = filepath.Join(os.TempDir(), "saslgate-test-users.lock")

func withUserLock(f func() error) error {
	l, err := os.OpenFile(userLockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("benchcmp: open %s: %w", userLockPath, err)
	}
	defer l.Close()
	if err := syscall.Flock(int(l.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("benchcmp: lock %s: %w", userLockPath, err)
	}
	defer func() { _ = syscall.Flock(int(l.Fd()), syscall.LOCK_UN) }()
	return f()
}

func runCmd(stdin string, prog string, args ...string) error {
	c := exec.Command(prog, args...)
	if stdin != "" {
		c.Stdin = strings.NewReader(stdin)
	}
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("benchcmp: %s %s: %w: %s", prog, strings.Join(args, " "), err, out)
	}
	return nil
}

// addAccounts creates the users (one per hash scheme, chpasswd -c hashing
// the password itself) and the PAM service; the returned function removes
// them.
func addAccounts() (remove func(), err error) {
	users := map[string]string{userYescrypt: "YESCRYPT", userSha512: "SHA512"}
	prefix := map[string]string{userYescrypt: "$y$", userSha512: "$6$"}
	remove = func() {
		_ = withUserLock(func() error {
			for u := range users {
				_ = exec.Command("userdel", u).Run()
			}
			return nil
		})
		_ = os.Remove(filepath.Join("/etc/pam.d", pamService))
	}
	err = withUserLock(func() error {
		for u, scheme := range users {
			_ = exec.Command("userdel", u).Run() // left by a run that was killed
			if err := runCmd("", "useradd", "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin", "-c", "saslgate bench", u); err != nil {
				return err
			}
			// chpasswd reads the password on stdin: it never shows in ps
			if err := runCmd(u+":"+benchPass+"\n", "chpasswd", "-c", scheme); err != nil {
				return err
			}
			out, err := exec.Command("getent", "shadow", u).Output()
			if f := strings.Split(string(out), ":"); err != nil || len(f) < 2 || !strings.HasPrefix(f[1], prefix[u]) {
				return fmt.Errorf("benchcmp: %s has no %s hash after chpasswd -c %s (%v)", u, prefix[u], scheme, err)
			}
		}
		return nil
	})
	if err == nil {
		err = os.WriteFile(filepath.Join("/etc/pam.d", pamService), []byte(pamStack), 0o644)
	}
	if err != nil {
		remove()
		return nil, err
	}
	return remove, nil
}
