package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// The IMAP floor (-imap) is the same for rimap: it answers each request
// with one bare IMAP LOGIN on a connection dialled and greeted in
// advance, and logs a connection out after a good login, as any rimap
// daemon must; nothing else. Its throughput is what the IMAP server allows
// a daemon that costs next to nothing.

// Arguments that make benchcmp the floor server instead.
const (
	floorArg      = "-floor-server" // [-imap HOST:PORT] -m DIR: start the floor detached, as a daemon does
	floorChildArg = "-floor-child"  // DIR [HOST:PORT]: be the floor
)

// floorExtra is the floor as a scenario's extra, answering with a LOGIN
// to imap when set; none if this executable cannot be found again.
func floorExtra(imap string) []extra {
	self, err := os.Executable()
	if err != nil {
		return nil
	}
	argv := []string{self, floorArg}
	if imap != "" {
		argv = append(argv, "-imap", imap)
	}
	return []extra{{extraFloor, argv}}
}

// floorMain runs the floor modes; ok is false for any other arguments.
func floorMain(args []string) (code int, ok bool) {
	switch {
	case len(args) == 3 && args[0] == floorArg && args[1] == "-m":
		return floorStart(args[2], ""), true
	case len(args) == 5 && args[0] == floorArg && args[1] == "-imap" && args[3] == "-m":
		return floorStart(args[4], args[2]), true
	case (len(args) == 2 || len(args) == 3) && args[0] == floorChildArg:
	default:
		return 0, false
	}
	dir, imap := args[1], ""
	if len(args) == 3 {
		imap = args[2]
	}
	if err := floorServe(dir, imap); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1, true
	}
	return 0, true
}

// floorStart starts the floor in a session of its own and returns once it
// has written its pid, as saslauthd's parent does.
func floorStart(dir, imap string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	argv := []string{floorChildArg, dir}
	if imap != "" {
		argv = append(argv, imap)
	}
	cmd := exec.Command(self, argv...)
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

func floorServe(dir, imap string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sock := filepath.Join(dir, "mux")
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	var pool *imapPool
	if imap != "" {
		pool = newIMAPPool(imap)
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
			req, err := protocol.NewReader(c).ReadRequest()
			if err != nil {
				return
			}
			reply := "OK"
			if pool != nil {
				reply = pool.login(req.Login, req.Password)
			}
			_ = protocol.WriteReply(c, reply)
		}()
	}
}

// imapPool keeps connections to the IMAP server dialled and greeted.
type imapPool struct {
	addr  string
	ready chan *imapConn
}

type imapConn struct {
	c  net.Conn
	br *bufio.Reader
}

const imapPoolSize = 8

func newIMAPPool(addr string) *imapPool {
	p := &imapPool{addr: addr, ready: make(chan *imapConn, imapPoolSize)}
	for range imapPoolSize {
		go p.fill()
	}
	return p
}

// fill dials one connection at a time and waits until it is taken.
func (p *imapPool) fill() {
	for {
		c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ic := &imapConn{c: c, br: bufio.NewReader(c)}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if line, err := ic.br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
			c.Close()
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.ready <- ic
	}
}

// login is one LOGIN; a rejected connection goes back to the pool, an
// accepted one is logged out and closed without waiting, as Cyrus does.
func (p *imapPool) login(user, pass string) string {
	ic := <-p.ready
	_ = ic.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(ic.c, "a LOGIN %s %s\r\n", imapQuote(user), imapQuote(pass)); err != nil {
		ic.c.Close()
		return "NO [ALERT] Couldn't contact remote authentication server"
	}
	for {
		line, err := ic.br.ReadString('\n')
		if err != nil {
			ic.c.Close()
			return "NO [ALERT] Unexpected response from remote authentication server"
		}
		switch {
		case strings.HasPrefix(line, "a OK"):
			_, _ = ic.c.Write([]byte("b LOGOUT\r\n"))
			ic.c.Close()
			return "OK"
		case strings.HasPrefix(line, "a "):
			select {
			case p.ready <- ic:
			default:
				ic.c.Close()
			}
			return "NO remote server rejected your credentials"
		}
	}
}

func imapQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
