//go:build unix

package rimap

import (
	"net"
	"syscall"
)

// peek looks at an idle TCP connection without reading from it.
func peek(nc net.Conn) peekState {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return peekUnknown
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return peekError
	}
	var (
		n    int
		perr error
		b    [1]byte
	)
	err = rc.Read(func(fd uintptr) bool {
		n, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait
	})
	switch {
	case err != nil:
		return peekError
	case perr == syscall.EAGAIN || perr == syscall.EWOULDBLOCK || perr == syscall.EINTR:
		return peekIdle
	case perr != nil:
		return peekError
	case n > 0:
		return peekData
	}
	return peekEOF
}
