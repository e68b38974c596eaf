//go:build linux && !race

package mechs

import (
	"syscall"
	"unsafe"
)

// readNonblock reads the IN_NONBLOCK inotify descriptor with RawSyscall:
// it returns at once, and a generation is read per cache hit, on the
// daemon's acceptors, which keep the scheduler out of such calls (see
// daemon/rawsys.go). Under the race detector it is syscall.Read, whose
// I/O edge the detector needs.
func readNonblock(fd int, b []byte) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
