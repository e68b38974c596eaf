package daemon

import (
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRawAccept4_Names: rawAccept4 names the client as package net does:
// nothing for an unbound one, its path, or "@" and its abstract name.
func TestRawAccept4_Names(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "l"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	abstract := "@saslgate-test-" + filepath.Base(dir)
	tests := []struct {
		name  string
		local *net.UnixAddr
		want  string
	}{
		{"unbound", nil, ""},
		{"path", &net.UnixAddr{Name: filepath.Join(dir, "client"), Net: "unix"}, filepath.Join(dir, "client")},
		{"abstract", &net.UnixAddr{Name: abstract, Net: "unix"}, abstract},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialUnix("unix", tt.local, ln.Addr().(*net.UnixAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var (
				fd   int
				name string
				aerr error
			)
			deadline := time.Now().Add(5 * time.Second)
			for {
				_ = rc.Control(func(l uintptr) { fd, name, aerr = rawAccept4(int(l)) })
				if !errors.Is(aerr, syscall.EAGAIN) || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			if aerr != nil {
				t.Fatal(aerr)
			}
			defer rawClose(fd)
			if name != tt.want {
				t.Errorf("name %q, want %q", name, tt.want)
			}
			fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
			if err != nil || fl&syscall.O_NONBLOCK == 0 {
				t.Errorf("accepted descriptor flags %#x (%v), want O_NONBLOCK", fl, err)
			}
		})
	}
}
