//go:build race

package daemon

import "syscall"

func rawRead(fd int, b []byte) (int, error) { return syscall.Read(fd, b) }

func rawWrite(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }
