package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemon is one saslauthd-compatible daemon started for a scenario.
type daemon struct {
	name   string
	runDir string
	pid    int
}

func (d *daemon) socket() string { return filepath.Join(d.runDir, "mux") }

// start runs argv (a daemon that detaches) and waits for its pid file and
// for its socket to take a connection.
func start(name, runDir string, argv ...string) (*daemon, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("benchcmp: start %s: %w: %s", name, err, out.String())
	}
	d := &daemon{name: name, runDir: runDir}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if d.pid == 0 {
			d.pid = readPid(runDir)
		}
		if c, err := net.Dial("unix", d.socket()); err == nil && d.pid > 0 {
			c.Close()
			return d, nil
		}
	}
	d.stop()
	return nil, fmt.Errorf("benchcmp: %s did not come up within 10s: %s", name, out.String())
}

// readPid reads saslauthd.pid in runDir, 0 if it is not there (yet).
func readPid(runDir string) int {
	b, err := os.ReadFile(filepath.Join(runDir, "saslauthd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func (d *daemon) stop() {
	if d == nil || d.pid <= 0 {
		return
	}
	stopPid(d.pid, 5*time.Second)
	d.pid = 0
}

// stopPid sends SIGTERM, then SIGKILL after grace, until the process is
// gone.
func stopPid(pid int, grace time.Duration) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for {
		if gone(pid) {
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(grace)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone reaps pid if it is our child and has exited, and reports whether it
// no longer runs: exited, or a zombie that its parent (PID 1 for a daemon
// that detached) has not reaped yet, which kill(pid, 0) cannot tell.
func gone(pid int) bool {
	var ws syscall.WaitStatus
	wp, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	if wp == pid {
		return true
	}
	if err != nil && !errors.Is(err, syscall.ECHILD) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// the state follows the command name, which is in parentheses
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}
