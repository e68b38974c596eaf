package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
)

// Exit codes of a start, as saslauthd's parent reports them.
const (
	ExitOK       = 0
	ExitFailure  = 1
	ExitInstance = 2
)

// envDetached marks the re-executed background child and names the
// descriptor on which it reports its start-up status to the parent.
const envDetached = "SASLGATE_DETACHED_STATUS_FD"

// Config is everything Run needs.
type Config struct {
	RunDir     string
	Foreground bool // -d: do not detach, log to stderr too
	// Server carries the request settings (timeouts, -n, -r, cache).
	Server *Server
	// Build makes the policy (rules and mechanism chains); Run calls it at
	// start and on SIGHUP (a failed reload keeps the running one). It may
	// reread a config file.
	Build func(logger *slog.Logger) (*Policy, error)
	// Log is the handler behind Server.Logger; Run turns its stderr off
	// once detached.
	Log *LogHandler
	// Startup lines logged at debug level (-V), e.g. "num_procs  : 5".
	Settings []string
	// ShutdownGrace bounds how long SIGTERM waits for requests in flight.
	ShutdownGrace time.Duration
	// Start, when set, starts what lives beside the socket (the metrics
	// endpoint) in the serving process, once the run directory is locked
	// and the socket bound: a second instance is refused as such (exit 2)
	// before it can fail on a port the first one holds. An error stops the
	// start (exit 1); stop runs after shutdown.
	Start func(log *slog.Logger) (stop func(), err error)
}

// Run starts the daemon and returns the process exit code. Without
// Foreground the process re-executes itself in the background, and this
// (parent) call returns only once the child has bound the socket and written
// the pid file (0), failed (1), or found another instance (2), so Debian's
// init script and Type=forking units work unchanged.
func Run(cfg Config) int {
	if !cfg.Foreground && os.Getenv(envDetached) == "" {
		return detach()
	}
	status := func(int) {}
	if fdStr := os.Getenv(envDetached); fdStr != "" {
		os.Unsetenv(envDetached)
		fd, _ := strconv.Atoi(fdStr)
		// not inherited by what the daemon starts (PAM workers)
		syscall.CloseOnExec(fd)
		pipe := os.NewFile(uintptr(fd), "status")
		status = func(code int) {
			if pipe != nil {
				_, _ = pipe.Write([]byte{byte(code)})
				pipe.Close()
				pipe = nil
			}
		}
	}
	code := serve(cfg, status)
	status(code) // no-op when already reported
	return code
}

func serve(cfg Config, status func(int)) int {
	s := cfg.Server
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		s.Logger = log
	}
	if cfg.Log != nil {
		if !cfg.Foreground {
			cfg.Log.SetStderrLevel(slog.LevelError) // until detached: errors only
		}
		if err := cfg.Log.SyslogErr(); err != nil {
			log.Warn("syslog unavailable: " + err.Error())
		} else if cfg.Foreground && stderrIsJournal() {
			// under systemd syslog already reaches the journal: a second
			// copy from stderr would count every failure twice (fail2ban)
			cfg.Log.SetStderr(nil)
		}
	}
	// Sockets passed by systemd are taken first: the mechanisms start
	// worker processes (PAM), which must inherit neither the descriptors nor
	// LISTEN_FDS or WATCHDOG_USEC. Closing them closes our duplicates;
	// systemd keeps its own.
	files, err := activatedFiles()
	if err != nil {
		log.Error(err.Error())
		return ExitFailure
	}
	lns, err := activatedListeners(files)
	if err != nil {
		log.Error(err.Error())
		return ExitFailure
	}
	activated := len(lns) > 0
	// read (and removed from the environment) before the workers start
	watchdogEvery := watchdogInterval(log)
	defer func() {
		for _, ln := range lns {
			ln.Close() // Serve closes them too; a second Close is harmless
		}
	}()

	for _, line := range cfg.Settings {
		log.Debug(line)
	}
	p, err := cfg.Build(log)
	if err != nil {
		log.Error(err.Error())
		return ExitFailure
	}
	s.SetPolicy(p)
	defer func() { _ = s.Policy().Close() }()
	if p.LogLevel >= 2 {
		log.Warn(PasswordDebugWarning + " log_level 2 logs every password in clear; turn it off after debugging")
	}

	rd, err := LockRunDir(cfg.RunDir, socketPaths(lns)...)
	if errors.Is(err, ErrAnotherInstance) {
		log.Error("Cannot start saslauthd")
		log.Error("Another instance of saslauthd is currently running")
		return ExitInstance
	}
	if err != nil {
		log.Error(err.Error())
		return ExitFailure
	}
	defer rd.Close()
	if !activated {
		ln, err := rd.Listen()
		if err != nil {
			log.Error(err.Error())
			return ExitFailure
		}
		lns = append(lns, ln)
	}
	if cfg.Start != nil {
		stop, err := cfg.Start(log)
		if err != nil {
			log.Error(err.Error())
			return ExitFailure
		}
		defer stop()
	}
	// Under socket activation systemd keeps the socket across a restart: the
	// clients queued at SIGTERM are the next instance's, and the socket file
	// is never removed or changed.
	s.KeepBacklog = activated
	paths := socketPaths(lns)
	pid := os.Getpid()
	if cfg.Foreground {
		log.Info("master pid is: 0")
	} else {
		log.Info("master pid is: " + strconv.Itoa(pid))
	}
	for _, p := range paths {
		if activated {
			log.Info("listening on socket: " + p + " (socket activation)")
		} else {
			log.Info("listening on socket: " + p)
		}
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	signal.Ignore(syscall.SIGPIPE)

	served := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { served <- s.Serve(ln) }()
	}
	// READY=1 means served, not merely bound: each socket's accept loop
	// must have taken a connection and run it.
	if err := probeAll(paths, readyProbeTimeout); err != nil {
		log.Error(err.Error())
		shutdown(s, cfg, log)
		return ExitFailure
	}
	notify := newNotifier(log)
	ready := []string{"READY=1", statusLine(paths, s.Policy(), activated)}
	if !cfg.Foreground {
		// the parent, systemd's main process, is about to exit
		ready = append(ready, "MAINPID="+strconv.Itoa(pid))
	}
	notify.Notify(ready...)

	if !cfg.Foreground {
		status(ExitOK)
		quietStdio()
		if cfg.Log != nil {
			cfg.Log.SetStderr(nil)
		}
	}

	wdCtx, wdStop := context.WithCancel(context.Background())
	defer wdStop()
	if watchdogEvery > 0 && notify != nil {
		go watchdog(wdCtx, s, paths, watchdogEvery, func() { notify.Notify("WATCHDOG=1") }, log)
	}
	go releaseWhenIdle(wdCtx, s, idleCheck, freeOSMemory)

	for {
		select {
		case err := <-served:
			// a Serve loop ends on its own only on a permanent accept error
			wdStop()
			notify.Notify("STOPPING=1", "STATUS=Stopping: "+err.Error())
			log.Error(err.Error())
			shutdown(s, cfg, log)
			return ExitFailure
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				if s.Cache != nil {
					s.Cache.Flush()
				}
				log.Info("cache flushed (SIGUSR1)")
				continue
			case syscall.SIGHUP:
				notify.Notify("RELOADING=1", "STATUS=Reloading the configuration")
				np, err := cfg.Build(log)
				if err != nil {
					log.Error("reload failed, keeping the running configuration: " + err.Error())
					notify.Notify("READY=1", statusLine(paths, s.Policy(), activated)+
						"; the last reload failed: "+oneLine(err.Error()))
					continue
				}
				old := s.Policy()
				s.SetPolicy(np)
				// requests already running on the old chains finish first
				go func() { time.Sleep(orDefault(s.RequestTimeout, DefaultRequestTimeout)); _ = old.Close() }()
				log.Info("reloaded: authentication mechanisms " + np.Rules.Services.Default)
				if np.LogLevel >= 2 {
					log.Warn(PasswordDebugWarning + " log_level 2 logs every password in clear; turn it off after debugging")
				}
				notify.Notify("READY=1", statusLine(paths, np, activated))
				continue
			}
			wdStop()
			notify.Notify("STOPPING=1", "STATUS=Stopping: answering the requests in flight")
			if !activated {
				rd.RemoveSocket() // new clients fail at once; queued ones are served
			}
			shutdown(s, cfg, log)
			log.Info("master exited: " + strconv.Itoa(pid))
			return ExitOK
		}
	}
}

// readyProbeTimeout bounds the start-up check that every socket is served.
const readyProbeTimeout = 5 * time.Second

// shutdown stops the server, letting the requests in flight finish within
// the shutdown grace.
func shutdown(s *Server, cfg Config, log *slog.Logger) {
	grace := orDefault(cfg.ShutdownGrace, orDefault(s.RequestTimeout, DefaultRequestTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		log.Error("shutdown: requests still running were cut off: " + err.Error())
	}
}

// oneLine keeps a STATUS= value on its line.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// quietStdio points stdin, stdout and stderr at /dev/null, as a daemon's
// must be once the parent has gone.
func quietStdio() {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return
	}
	for fd := 0; fd <= 2; fd++ {
		_ = syscall.Dup3(int(null.Fd()), fd, 0)
	}
	null.Close()
}

// detach re-executes this program in a new session with the same arguments
// and waits for the child's start-up status.
func detach() int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "saslgate: cannot find own executable:", err)
		return ExitFailure
	}
	// Sockets systemd passed to us go to the child at descriptors 3
	// onwards; LISTEN_PID could not name it, so a variable of ours says how
	// many there are. The watchdog is the child's, as MAINPID will say.
	inherited := activation.Files(true)
	if os.Getenv("WATCHDOG_PID") == strconv.Itoa(os.Getpid()) {
		os.Unsetenv("WATCHDOG_PID")
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "saslgate: pipe:", err)
		return ExitFailure
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintln(os.Stderr, "saslgate:", err)
		return ExitFailure
	}
	// The child keeps our stderr until it is ready, so that its start-up
	// errors reach the terminal as saslauthd's do.
	files := append([]*os.File{null, null, os.Stderr}, inherited...)
	env := append(os.Environ(), envDetached+"="+strconv.Itoa(len(files)))
	if len(inherited) > 0 {
		env = append(env, envInheritedFds+"="+strconv.Itoa(len(inherited)))
	}
	attr := &os.ProcAttr{
		Files: append(files, w),
		Env:   env,
		Sys:   &syscall.SysProcAttr{Setsid: true},
	}
	// argv[0] is kept so that a child started as "saslauthd" still is one.
	p, err := os.StartProcess(exe, os.Args, attr)
	w.Close()
	null.Close()
	for _, f := range inherited {
		f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "saslgate: cannot start the daemon:", err)
		return ExitFailure
	}
	var b [1]byte
	n, _ := r.Read(b[:])
	r.Close()
	if n == 1 {
		if b[0] != ExitOK {
			_, _ = p.Wait()
		} else {
			_ = p.Release()
		}
		return int(b[0])
	}
	// the child died before reporting
	st, _ := p.Wait()
	if st != nil && st.ExitCode() > 0 {
		return st.ExitCode()
	}
	return ExitFailure
}
