package daemon

import (
	"syscall"
	"unsafe"
)

// The acceptors' system calls on non-blocking descriptors are made with
// RawSyscall: each returns at once, so the goroutine keeps its P instead of
// passing through entersyscall and exitsyscall. With those, a P caught in
// a system call by two sysmon ticks (a thread preempted on its way out of
// the kernel is enough) is retaken and handed to another thread, and sysmon
// keeps waking every 20 µs: on the bench's two cores that churn cost more
// CPU per cache hit than the hit itself. Nothing here may wait in the
// kernel; waits go through the netpoller or poll(2) with a real Syscall.
// Under the race detector rawRead and rawWrite are syscall's (rawsys_race.go):
// it learns from those that a reply written happens before it is read.

// rawClose closes a socket without SO_LINGER, which never waits.
func rawClose(fd int) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0); e != 0 {
		return e
	}
	return nil
}

// rawAccept4 accepts from a non-blocking listener a non-blocking,
// close-on-exec connection, and returns the client's bound name ("" for an
// unbound client, "@..." for an abstract one, as package net names them).
func rawAccept4(fd int) (int, string, error) {
	var rsa syscall.RawSockaddrUnix
	l := uint32(unsafe.Sizeof(rsa))
	r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&l)), syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0, 0)
	if e != 0 {
		return -1, "", e
	}
	const off = unsafe.Offsetof(rsa.Path)
	if rsa.Family != syscall.AF_UNIX || uintptr(l) <= off {
		return int(r), "", nil
	}
	path := rsa.Path[:min(uintptr(l)-off, uintptr(len(rsa.Path)))]
	b := make([]byte, 0, len(path))
	for i, c := range path {
		switch {
		case i == 0 && c == 0:
			b = append(b, '@')
			continue
		case c == 0 && i > 0 && b[0] != '@':
			return int(r), string(b), nil // a path ends at its NUL
		}
		b = append(b, byte(c))
	}
	return int(r), string(b), nil
}
