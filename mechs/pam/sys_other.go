//go:build !linux

package pam

import (
	"io"
	"syscall"
)

func isolateStdio(stdin io.Reader, stdout io.Writer) (io.Reader, io.Writer) { return stdin, stdout }

func harden() {}

func closeOnExecInherited() {}

func workerSysProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(int) {}
