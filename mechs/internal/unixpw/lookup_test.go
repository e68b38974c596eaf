//go:build linux && cgo

package unixpw

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStrerror: the reply text is the C library's, as in saslauthd's
// "NO Username lookup failure: Permission denied", not Go's lower-case one.
func TestStrerror(t *testing.T) {
	for _, c := range []struct {
		errno syscall.Errno
		want  string
	}{
		{syscall.EACCES, "Permission denied"},
		{syscall.ENOENT, "No such file or directory"},
		{syscall.ERANGE, "Numerical result out of range"},
		{syscall.EIO, "Input/output error"},
		{syscall.ECONNREFUSED, "Connection refused"},
		{syscall.Errno(9999), "Unknown error 9999"},
	} {
		if got := Strerror(c.errno); got != c.want {
			t.Errorf("Strerror(%d) = %q, want %q", int(c.errno), got, c.want)
		}
	}
}

func TestLookupErrorText(t *testing.T) {
	err := error(&LookupError{Op: "getspnam", Name: "bob", Errno: syscall.EACCES})
	if got, want := err.Error(), `unixpw: getspnam("bob"): Permission denied`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, syscall.EACCES) {
		t.Error("errors.Is(err, EACCES) = false")
	}
}

func TestLookupUser(t *testing.T) {
	pw, err := LookupUser("root")
	if err != nil || pw == nil {
		t.Fatalf("LookupUser(root) = %+v, %v", pw, err)
	}
	if pw.Name != "root" || pw.UID != 0 || pw.GID != 0 || pw.Dir == "" || pw.Shell == "" {
		t.Errorf("root entry = %+v", pw)
	}
	// the lookup is case-sensitive and exact, as getpwnam
	for _, name := range []string{"sgtest_no_such_user", "ROOT", "Root", "root ", " root", "", "root\x00", "ro\x00ot"} {
		pw, err := LookupUser(name)
		if pw != nil || err != nil {
			t.Errorf("LookupUser(%q) = %+v, %v; want nil, nil", name, pw, err)
		}
	}
}

func TestLookupShadow(t *testing.T) {
	for _, name := range []string{"sgtest_no_such_user", "ROOT", "", "root\x00"} {
		sp, err := LookupShadow(name)
		if sp != nil || err != nil {
			t.Errorf("LookupShadow(%q) = %+v, %v; want nil, nil", name, sp, err)
		}
	}
	sp, err := LookupShadow("root")
	if os.Geteuid() != 0 {
		// Debian: files fails with EACCES, nss-systemd then answers (with a
		// synthesised "!*" entry for root) or says "not found"; either way
		// no error comes back
		t.Logf("unprivileged LookupShadow(root) = %+v, %v", sp, err)
		if err != nil {
			t.Errorf("unprivileged lookup: %v", err)
		}
		return
	}
	if err != nil || sp == nil {
		t.Fatalf("LookupShadow(root) = %+v, %v", sp, err)
	}
	if sp.Name != "root" || sp.Password == "" && sp.LastChange == 0 {
		t.Errorf("root shadow entry = %+v", sp)
	}
	if strings.ContainsRune(sp.Password, ':') {
		t.Errorf("hash %q holds a colon", sp.Password)
	}
}

func TestLookupContext(t *testing.T) {
	pw, err := LookupUserContext(t.Context(), "root")
	if err != nil || pw == nil || pw.UID != 0 {
		t.Fatalf("LookupUserContext(root) = %+v, %v", pw, err)
	}
	if sp, err := LookupShadowContext(t.Context(), "sgtest_no_such_user"); sp != nil || err != nil {
		t.Fatalf("LookupShadowContext(unknown) = %+v, %v", sp, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := LookupUserContext(ctx, "root"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled LookupUserContext: %v", err)
	}
	if _, err := LookupShadowContext(ctx, "root"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled LookupShadowContext: %v", err)
	}
}

// TestAwait: a call that outlives ctx is abandoned, not waited for, and
// finishing later does not block or leak into the next call.
func TestAwait(t *testing.T) {
	release := make(chan struct{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := await(ctx, func() (int, error) { <-release; return 1, nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("await = %v", err)
	}
	close(release)
	if v, err := await(t.Context(), func() (int, error) { return 2, nil }); v != 2 || err != nil {
		t.Fatalf("await = %d, %v", v, err)
	}
}
