package stats

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// ExporterName is the exporter's executable: next to saslgate's, or in
// ExporterDir.
const ExporterName = "saslgate-metrics"

// ExporterDir is where the packages install the exporter.
const ExporterDir = "/usr/lib/saslgate"

// Bounds on the exporter process.
const (
	exporterStopGrace = 3 * time.Second
	restartMin        = time.Second
	restartMax        = time.Minute
)

// ExporterPath finds the exporter: beside the running executable (a build
// tree, a tarball), else in ExporterDir (the packages).
func ExporterPath() (string, error) {
	var tried []string
	if exe, err := os.Executable(); err == nil {
		if exe, err := filepath.EvalSymlinks(exe); err == nil {
			tried = append(tried, filepath.Join(filepath.Dir(exe), ExporterName))
		}
	}
	tried = append(tried, filepath.Join(ExporterDir, ExporterName))
	for _, p := range tried {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("stats: no %s executable in %v", ExporterName, tried)
}

// Exporter runs the saslgate-metrics process that serves the endpoint on
// a listener the daemon bound, with st's snapshots, and starts it again
// (after a growing pause) when it exits. Logins never wait for it.
type Exporter struct {
	path   string
	lnFile *os.File
	st     *Stats
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// StartExporter starts path (see ExporterPath) serving on ln, which it
// takes over (Stop closes it).
func StartExporter(path string, ln *net.TCPListener, st *Stats, logger *slog.Logger) (*Exporter, error) {
	f, err := ln.File() // a descriptor to hand down; ln's own is closed below
	ln.Close()
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	e := &Exporter{path: path, lnFile: f, st: st, log: logger, done: make(chan struct{})}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	first := make(chan error, 1)
	go e.supervise(first)
	if err := <-first; err != nil {
		e.cancel()
		<-e.done
		return nil, err
	}
	return e, nil
}

// supervise runs the exporter until Stop, reporting the first start on
// first.
func (e *Exporter) supervise(first chan<- error) {
	defer close(e.done)
	defer e.lnFile.Close()
	pause := restartMin
	for {
		began := time.Now()
		err := e.runOnce(first)
		first = nil
		if e.ctx.Err() != nil {
			return
		}
		if time.Since(began) > restartMax {
			pause = restartMin // it ran a good while: not a crash loop
		}
		e.log.Error(fmt.Sprintf("metrics: the exporter stopped: %v; starting it again in %s", err, pause))
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, restartMax)
	}
}

// runOnce starts one exporter process, answers its snapshot requests and
// waits for it to exit.
func (e *Exporter) runOnce(first chan<- error) error {
	fail := func(err error) error {
		if first != nil {
			first <- err
		}
		return err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(fmt.Errorf("stats: socketpair: %w", err))
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "snapshots"), os.NewFile(uintptr(fds[1]), "snapshots")
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return fail(fmt.Errorf("stats: %w", err))
	}
	logs, logw, err := os.Pipe()
	if err != nil {
		conn.Close()
		theirs.Close()
		return fail(fmt.Errorf("stats: %w", err))
	}
	cmd := exec.Command(e.path)
	cmd.ExtraFiles = []*os.File{e.lnFile, theirs} // descriptors 3 and 4
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.Env = []string{}
	// killed with the daemon even if the daemon is killed outright; the
	// exporter also checks its parent
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	theirs.Close()
	logw.Close()
	if err != nil {
		conn.Close()
		logs.Close()
		return fail(fmt.Errorf("stats: start %s: %w", e.path, err))
	}
	if first != nil {
		first <- nil
	}
	exited := make(chan struct{})
	go func() { // Stop: SIGTERM, then SIGKILL after a grace
		select {
		case <-exited:
		case <-e.ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(exporterStopGrace):
				_ = cmd.Process.Kill()
			}
		}
	}()
	go e.relay(logs)
	served := make(chan error, 1)
	go func() { served <- e.st.Serve(e.ctx, conn) }()
	werr := cmd.Wait()
	close(exited)
	conn.Close()
	serr := <-served
	return errors.Join(werr, serr)
}

// relay logs the exporter's lines, each as a warning: it only writes when
// something is wrong.
func (e *Exporter) relay(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		e.log.Warn("metrics exporter: " + sc.Text())
	}
}

// Stop ends the exporter (SIGTERM, then SIGKILL after a grace) and closes
// the listener. A second call does nothing.
func (e *Exporter) Stop() {
	e.cancel()
	<-e.done
}
