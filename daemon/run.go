package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
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
		}
	}
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

	rd, err := LockRunDir(cfg.RunDir)
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
	ln, err := rd.Listen()
	if err != nil {
		log.Error(err.Error())
		return ExitFailure
	}
	pid := os.Getpid()
	if cfg.Foreground {
		log.Info("master pid is: 0")
	} else {
		log.Info("master pid is: " + strconv.Itoa(pid))
	}
	log.Info("listening on socket: " + rd.SocketPath())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	signal.Ignore(syscall.SIGPIPE)

	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()

	if !cfg.Foreground {
		status(ExitOK)
		quietStdio()
		if cfg.Log != nil {
			cfg.Log.SetStderr(nil)
		}
	}

	for {
		select {
		case err := <-served:
			if !errors.Is(err, ErrServerClosed) {
				log.Error(err.Error())
				return ExitFailure
			}
			return ExitOK
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				if s.Cache != nil {
					s.Cache.Flush()
				}
				log.Info("cache flushed (SIGUSR1)")
				continue
			case syscall.SIGHUP:
				np, err := cfg.Build(log)
				if err != nil {
					log.Error("reload failed, keeping the running configuration: " + err.Error())
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
				continue
			}
			rd.RemoveSocket() // new clients fail at once; queued ones are served
			grace := orDefault(cfg.ShutdownGrace, orDefault(s.RequestTimeout, DefaultRequestTimeout))
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			err := s.Shutdown(ctx)
			cancel()
			<-served
			if err != nil {
				log.Error("shutdown: requests still running were cut off: " + err.Error())
			}
			log.Info("master exited: " + strconv.Itoa(pid))
			return ExitOK
		}
	}
}

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
	attr := &os.ProcAttr{
		Files: []*os.File{null, null, os.Stderr, w},
		Env:   append(os.Environ(), envDetached+"=3"),
		Sys:   &syscall.SysProcAttr{Setsid: true},
	}
	// argv[0] is kept so that a child started as "saslauthd" still is one.
	p, err := os.StartProcess(exe, os.Args, attr)
	w.Close()
	null.Close()
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
