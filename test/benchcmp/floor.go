package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// The floor is a calibration for the cache scenarios: a Go server that
// reads a request with saslgate's protocol package, answers OK and closes,
// one goroutine per connection on the netpoller, and does nothing else (no
// policy, no cache, no mechanism, no deadlines, no drain). Measured with
// the same load generator beside the two daemons, it shows what the
// connection handling alone allows on this machine; the gap between it and
// saslgate is saslgate's own work.

// Arguments that make benchcmp the floor server instead.
const (
	floorArg      = "-floor-server" // -m DIR: start the floor detached, as a daemon does
	floorChildArg = "-floor-child"  // DIR: be the floor
)

// floorExtra is the floor as a scenario's extra; none if this executable
// cannot be found again.
func floorExtra() []extra {
	self, err := os.Executable()
	if err != nil {
		return nil
	}
	return []extra{{extraFloor, []string{self, floorArg}}}
}

// floorMain runs the floor modes; ok is false for any other arguments.
func floorMain(args []string) (code int, ok bool) {
	switch {
	case len(args) == 3 && args[0] == floorArg && args[1] == "-m":
		return floorStart(args[2]), true
	case len(args) == 2 && args[0] == floorChildArg:
	default:
		return 0, false
	}
	dir := args[1]
	if err := floorServe(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1, true
	}
	return 0, true
}

// floorStart starts the floor in a session of its own and returns once it
// has written its pid, as saslauthd's parent does.
func floorStart(dir string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cmd := exec.Command(self, floorChildArg, dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if readPid(dir) == cmd.Process.Pid {
			return 0
		}
	}
	_ = cmd.Process.Kill()
	fmt.Fprintln(os.Stderr, "benchcmp: the floor server did not start")
	return 1
}

func floorServe(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sock := filepath.Join(dir, "mux")
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "saslauthd.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			if _, err := protocol.NewReader(c).ReadRequest(); err == nil {
				_ = protocol.WriteReply(c, "OK")
			}
		}()
	}
}
