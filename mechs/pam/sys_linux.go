//go:build linux

package pam

import (
	"io"
	"os"
	"strconv"
	"syscall"
)

// isolateStdio moves the protocol off descriptors 0 and 1 when the caller
// passed os.Stdin and os.Stdout (see WorkerMain). The new descriptors are
// close-on-exec, so helpers that modules run (pam_exec) never inherit them.
// Anything else is returned unchanged.
func isolateStdio(stdin io.Reader, stdout io.Writer) (io.Reader, io.Writer) {
	if f, ok := stdin.(*os.File); ok && f == os.Stdin {
		if fd, err := moveFD(0, "/dev/null"); err == nil {
			stdin = os.NewFile(uintptr(fd), "pam-worker-in")
		}
	}
	if f, ok := stdout.(*os.File); ok && f == os.Stdout {
		if fd, err := moveFD(1, ""); err == nil {
			stdout = os.NewFile(uintptr(fd), "pam-worker-out")
		}
	}
	return stdin, stdout
}

// moveFD duplicates fd to a new close-on-exec descriptor and points fd at
// the file named by replacement, or at stderr when it is "". No other
// goroutine starts processes yet, so the dup-then-mark window is safe.
func moveFD(fd int, replacement string) (int, error) {
	nfd, err := syscall.Dup(fd)
	if err != nil {
		return -1, err
	}
	syscall.CloseOnExec(nfd)
	src := 2
	if replacement != "" {
		f, err := os.OpenFile(replacement, os.O_RDWR, 0)
		if err != nil {
			syscall.Close(nfd)
			return -1, err
		}
		defer f.Close()
		src = int(f.Fd())
	}
	if err := syscall.Dup3(src, fd, 0); err != nil {
		syscall.Close(nfd)
		return -1, err
	}
	return nfd, nil
}

// closeOnExecInherited marks every descriptor the worker inherited beyond
// stdio close-on-exec, so that helpers its modules start (pam_exec) do not
// inherit what the daemon leaked to it. They stay open in the worker: some
// may be the runtime's own, which are close-on-exec already.
func closeOnExecInherited() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// harden keeps the passwords a worker handles out of core dumps and away
// from other processes of the same user (ptrace, /proc/PID/mem): the process
// is made non-dumpable and its core size limit 0.
func harden() {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0)
	_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
}

// workerSysProcAttr puts a worker in its own process group, so that killing
// it also kills helpers its modules started, and keeps a terminal's ^C for
// the daemon; the parent-death signal kills it if the daemon dies without
// closing its pipe (the thread that started it must live as long as the
// worker: see pool.spawner).
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends SIGKILL to the worker's process group.
func killGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}
