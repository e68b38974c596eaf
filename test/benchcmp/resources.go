package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// memSample is the memory of a daemon's process tree at one moment.
type memSample struct {
	procs    int   // the daemon and its descendants (Cyrus's -n workers)
	rssMain  int64 // VmRSS of the main process, bytes
	anonMain int64 // its RssAnon: heap and stacks, the rest being mapped files (the binary, libraries)
	rssTree  int64 // the sum of VmRSS over the tree (shared pages counted in each)
	pssTree  int64 // the sum of Pss over the tree (shared pages divided among the sharers)
	fds      int   // open descriptors over the tree
}

// descendants lists pid and every process below it.
func descendants(pid int) []int {
	parent := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state, ppid, ...
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[pp] = append(parent[pp], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, parent[out[i]]...)
	}
	return out
}

// procKB reads a "Key:   123 kB" line from a /proc file, in bytes.
func procKB(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("benchcmp: no %s in %s", key, path)
}

func measureMem(pid int) (memSample, error) {
	var m memSample
	for i, p := range descendants(pid) {
		dir := "/proc/" + strconv.Itoa(p)
		rss, err := procKB(dir+"/status", "VmRSS")
		if err != nil {
			if i == 0 {
				return m, err
			}
			continue // a worker that just ended
		}
		pss, _ := procKB(dir+"/smaps_rollup", "Pss")
		fds, _ := os.ReadDir(dir + "/fd")
		if i == 0 {
			m.rssMain = rss
			m.anonMain, _ = procKB(dir+"/status", "RssAnon")
		}
		m.procs++
		m.rssTree += rss
		m.pssTree += pss
		m.fds += len(fds)
	}
	return m, nil
}

// memReport is what the memory measurement of one daemon found.
type memReport struct {
	// rested: after the connections closed and the daemon stayed idle
	// for rest (saslgate hands its heap back after an idle interval)
	idle, conns, after, rested memSample
	held                       int // idle connections the daemon's socket took
	refused                    string
}

// openIdle opens up to n connections to sock that send nothing, as
// Postfix processes that connected and stalled would; it stops at the
// first refusal (a full listen backlog answers a non-blocking connect with
// EAGAIN at once). The connections are returned for the caller to close.
func openIdle(sock string, n int) (conns []net.Conn, refused string) {
	d := net.Dialer{Timeout: time.Second}
	for len(conns) < n {
		c, err := d.Dial("unix", sock)
		if err != nil {
			return conns, err.Error()
		}
		conns = append(conns, c)
	}
	return conns, ""
}

// measureMemory takes the daemon's memory idle after start-up (one
// request answered), then with n idle connections open, then after they
// are closed. settle is how long each state is left before it is read.
func measureMemory(d *daemon, req protocol.Request, n int, settle, rest time.Duration) (memReport, error) {
	var r memReport
	c := &protocol.Client{Path: d.socket(), Timeout: 10 * time.Second}
	if _, err := c.Do(context.Background(), req); err != nil {
		return r, fmt.Errorf("benchcmp: %s: %w", d.name, err)
	}
	time.Sleep(settle)
	var err error
	if r.idle, err = measureMem(d.pid); err != nil {
		return r, err
	}
	conns, refused := openIdle(d.socket(), n)
	r.held, r.refused = len(conns), refused
	time.Sleep(settle)
	r.conns, err = measureMem(d.pid)
	for _, c := range conns {
		c.Close()
	}
	if err != nil {
		return r, err
	}
	time.Sleep(settle)
	if r.after, err = measureMem(d.pid); err != nil {
		return r, err
	}
	time.Sleep(rest)
	r.rested, err = measureMem(d.pid)
	return r, err
}

// startupWait bounds the wait for a daemon's first answer.
var startupWait = 10 * time.Second

// startup is the time from exec until the socket answers a request, and
// until READY=1 arrives on NOTIFY_SOCKET (zero when none did).
type startup struct {
	answer, ready time.Duration
}

// measureStartup execs argv (a daemon that detaches, with -m runDir
// among its arguments), asks its socket req in a tight loop from the
// moment of exec, and listens on a NOTIFY_SOCKET of its own for READY=1.
// The daemon is stopped before it returns.
func measureStartup(argv []string, runDir, notifyPath string, req protocol.Request) (startup, error) {
	var s startup
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return s, err
	}
	defer os.RemoveAll(runDir)
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		return s, fmt.Errorf("benchcmp: notify socket: %w", err)
	}
	defer os.Remove(notifyPath)
	defer ln.Close()
	readyAt := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := ln.ReadFromUnix(buf)
			if err != nil {
				return
			}
			if slices.Contains(strings.Split(string(buf[:n]), "\n"), "READY=1") {
				readyAt <- time.Now()
				return
			}
		}
	}()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	sock := filepath.Join(runDir, "mux")
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return s, fmt.Errorf("benchcmp: %s: %w", argv[0], err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }() // the parent exits once it has detached
	defer func() {
		select { // a daemon that stayed in the foreground is stopped too
		case <-waited:
		case <-time.After(50 * time.Millisecond):
			stopPid(cmd.Process.Pid, 5*time.Second)
			<-waited
		}
		if pid := readPid(runDir); pid > 0 {
			stopPid(pid, 5*time.Second)
		}
	}()
	deadline := t0.Add(startupWait)
	for {
		if conn, err := net.Dial("unix", sock); err == nil {
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = protocol.Exchange(conn, req)
			conn.Close()
			if err == nil {
				s.answer = time.Since(t0)
				break
			}
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("benchcmp: %s did not answer within %s: %s", argv[0], startupWait, out.String())
		}
		time.Sleep(200 * time.Microsecond)
	}
	select {
	case t := <-readyAt:
		s.ready = t.Sub(t0)
	case <-time.After(time.Second): // READY=1 comes before the socket answers, or never
	}
	return s, nil
}
