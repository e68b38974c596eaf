// Package pam is saslauthd's "pam" mechanism: it hands the login and
// password to the system's PAM stack for the request's service.
//
// A transaction is the one saslauthd 2.1.28 runs (saslauthd/auth_pam.c):
// pam_start(service, login) with the service field used verbatim (an empty
// or odd service is left to Linux-PAM, which falls back to "other"),
// pam_authenticate(PAM_SILENT), pam_acct_mgmt(PAM_SILENT), pam_end. The
// conversation gives the password to every hidden prompt, the login to a
// visible prompt equal to PAM_USER_PROMPT, nothing to other visible prompts
// and to messages, and fails on any other message style. Unlike 2.1.28 (and
// like its unreleased master branch) PAM_RHOST is set to the client's
// address when the request carries one. The replies are saslauthd's: "OK",
// "NO PAM start error", "NO PAM auth error" and "NO PAM acct error";
// pam_strerror's text goes to the log only.
//
// PAM modules run inside the calling process, and many are neither
// thread-safe nor crash-free (pam_mysql, pam_ldap, pam_radius, ...). So by
// default (mode "workers") each transaction runs in a worker process: the
// same binary started again with the hidden subcommand "pam-worker", which
// must call WorkerMain. A worker runs one transaction at a time; a crash or
// a hang costs the one request that caused it (TempFail, "NO PAM auth
// error") and the worker is killed, reaped and replaced. Mode "inprocess"
// calls libpam from the daemon itself, with at most N transactions at once,
// for stacks known to be thread-safe.
package pam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"github.com/saslgate/saslgate/mechs"
)

const name = "pam"

func init() {
	mechs.Register(name, 40, mechs.Constructor(New))
}

// Keys of mechs.Options.Values the mechanism reads.
const (
	// OptMode is ModeWorkers (the default) or ModeInProcess.
	OptMode = "pam_mode"
	// OptWorkers is N: the number of worker processes, or of concurrent
	// transactions in ModeInProcess. Default DefaultWorkers, at most
	// MaxWorkers; 0 means 1 (saslauthd -n 0 runs one process).
	OptWorkers = "pam_workers"
	// OptWorkerCmd is the worker's command line, split at white space;
	// the first word is a path or a name looked up in PATH. Default: this
	// executable with the argument WorkerCommand.
	OptWorkerCmd = "pam_worker_cmd"
	// OptConfDir (hidden, for tests) makes every transaction read its
	// service files from this directory with pam_start_confdir instead of
	// /etc/pam.d.
	OptConfDir = "pam_confdir"
)

// Values of OptMode.
const (
	ModeWorkers   = "workers"
	ModeInProcess = "inprocess"
)

const (
	// DefaultWorkers is saslauthd's default -n.
	DefaultWorkers = 5
	// MaxWorkers bounds OptWorkers: each worker is a process.
	MaxWorkers = 256
)

// WorkerCommand is the hidden subcommand that must run WorkerMain.
const WorkerCommand = "pam-worker"

// The replies of saslauthd 2.1.28's auth_pam.c.
const (
	replyOK    = "OK"
	replyStart = "NO PAM start error"
	replyAuth  = "NO PAM auth error"
	replyAcct  = "NO PAM acct error"
)

var errClosed = errors.New("the pam mechanism is closed")

// PAM is the pam mechanism. It is safe for concurrent use. Close stops its
// workers.
type PAM struct {
	mode    string
	confDir string
	logger  *slog.Logger

	pool *pool         // ModeWorkers
	sem  chan struct{} // ModeInProcess: one token per running transaction

	closeOnce sync.Once
	closeErr  error
}

type settings struct {
	mode    string
	workers int
	path    string   // worker executable
	argv    []string // worker argv, argv[0] included
	confDir string
}

// New builds the mechanism from opts (see the Opt* keys). In ModeWorkers it
// starts one worker at once, so that a worker command that does not work
// (the subcommand not wired to WorkerMain, a binary that cannot run) is a
// start-up error rather than a NO for every login; the others start on
// demand.
func New(opts mechs.Options, logger *slog.Logger) (*PAM, error) {
	if !supported {
		return nil, errors.New("mechs/pam: this build cannot call PAM (it needs cgo on Linux)")
	}
	s, err := parse(opts)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &PAM{mode: s.mode, confDir: s.confDir, logger: logger}
	if s.mode == ModeInProcess {
		m.sem = make(chan struct{}, s.workers)
		logger.Debug("pam transactions run in the daemon", "max_concurrent", s.workers)
		return m, nil
	}
	if os.Getenv(envWorker) != "" {
		// We are a worker whose command line did not reach WorkerMain and
		// is running the whole program instead: starting workers from
		// here would multiply processes.
		return nil, fmt.Errorf("mechs/pam: started inside a pam worker; the %q subcommand must call pam.WorkerMain", WorkerCommand)
	}
	m.pool = newPool(s.path, s.argv, s.workers, logger)
	if err := m.pool.warm(); err != nil {
		_ = m.pool.close()
		return nil, fmt.Errorf("mechs/pam: %w", err)
	}
	logger.Debug("pam transactions run in worker processes", "workers", s.workers, "command", strings.Join(s.argv, " "))
	return m, nil
}

// parse reads the mechanism's settings. Unknown keys are left alone: Values
// is shared with the other mechanisms.
func parse(opts mechs.Options) (settings, error) {
	s := settings{mode: opts.Get(OptMode, ModeWorkers), workers: DefaultWorkers}
	switch s.mode {
	case ModeWorkers, ModeInProcess:
	default:
		return s, fmt.Errorf("mechs/pam: unknown %s %q (want %q or %q)", OptMode, s.mode, ModeWorkers, ModeInProcess)
	}
	if v, ok := opts.Values[OptWorkers]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		switch {
		case err != nil:
			return s, fmt.Errorf("mechs/pam: %s %q is not a number", OptWorkers, v)
		case n < 0 || n > MaxWorkers:
			return s, fmt.Errorf("mechs/pam: %s %d is out of range (0 to %d)", OptWorkers, n, MaxWorkers)
		}
		s.workers = max(n, 1)
	}
	if dir := opts.Get(OptConfDir, ""); dir != "" {
		fi, err := os.Stat(dir)
		if err != nil {
			return s, fmt.Errorf("mechs/pam: %s: %w", OptConfDir, err)
		}
		if !fi.IsDir() {
			return s, fmt.Errorf("mechs/pam: %s %s is not a directory", OptConfDir, dir)
		}
		if !confDirSupported() {
			return s, fmt.Errorf("mechs/pam: %s needs pam_start_confdir (Linux-PAM 1.4 or later)", OptConfDir)
		}
		s.confDir = dir
	}
	if s.mode == ModeWorkers {
		var err error
		if s.path, s.argv, err = workerCommand(opts.Get(OptWorkerCmd, "")); err != nil {
			return s, err
		}
	}
	return s, nil
}

// workerCommand resolves the worker's command line.
func workerCommand(spec string) (string, []string, error) {
	if argv := strings.Fields(spec); len(argv) > 0 {
		path, err := exec.LookPath(argv[0])
		if err != nil {
			return "", nil, fmt.Errorf("mechs/pam: %s: %w", OptWorkerCmd, err)
		}
		return path, argv, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("mechs/pam: cannot find this program's executable to start pam workers: %w", err)
	}
	// /proc/self/exe is the binary this process runs even after a package
	// upgrade has replaced the file, so workers always match the daemon;
	// argv[0] keeps the real path for ps.
	path := exe
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		path = "/proc/self/exe"
	}
	return path, []string{exe, WorkerCommand}, nil
}

// Name implements mechs.Mechanism.
func (m *PAM) Name() string { return name }

// Authenticate implements mechs.Mechanism. A technical failure (a worker
// that crashed or timed out, no worker free before the deadline) is
// TempFail with saslauthd's "NO PAM auth error"; the Reason says what
// happened.
func (m *PAM) Authenticate(ctx context.Context, req mechs.Request) (mechs.Result, error) {
	if err := ctx.Err(); err != nil {
		return mechs.TempFailed(replyAuth, err.Error()), nil
	}
	r := &txnRequest{
		Service:  req.Service,
		Login:    req.Login,
		Password: req.Password.Reveal(),
		RHost:    rhost(req.ClientAddr),
		ConfDir:  m.confDir,
	}
	var (
		res txnResult
		err error
	)
	if m.pool != nil {
		res, err = m.pool.do(ctx, r)
	} else {
		res, err = m.inProcess(ctx, r)
	}
	if err != nil {
		return mechs.TempFailed(replyAuth, err.Error()), nil
	}
	return result(res), nil
}

// rhost is PAM_RHOST for the client address "ip;port": the address alone.
func rhost(clientAddr string) string {
	if i := strings.IndexByte(clientAddr, ';'); i >= 0 {
		return clientAddr[:i]
	}
	return clientAddr
}

func result(r txnResult) mechs.Result {
	switch r.Stage {
	case stageOK:
		return mechs.Result{Verdict: mechs.Accept, Reply: replyOK}
	case stageStart:
		return mechs.TempFailed(replyStart, "pam_start: "+r.Msg)
	case stageItem:
		return mechs.TempFailed(replyStart, "pam_set_item(PAM_RHOST): "+r.Msg)
	case stageAuth:
		return mechs.Result{Verdict: verdict(r), Reply: replyAuth, Reason: "pam_authenticate: " + r.Msg}
	case stageAcct:
		return mechs.Result{Verdict: verdict(r), Reply: replyAcct, Reason: "pam_acct_mgmt: " + r.Msg}
	}
	return mechs.TempFailed(replyAuth, fmt.Sprintf("unknown transaction stage %d", r.Stage))
}

// inProcess runs the transaction in this process, at most cap(m.sem) at a
// time. A transaction cannot be interrupted: when ctx ends first the
// request gives up, but the transaction goes on in the background and keeps
// its slot until the stack returns, so a hung module eats slots (the
// reason the default is ModeWorkers).
func (m *PAM) inProcess(ctx context.Context, r *txnRequest) (txnResult, error) {
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return txnResult{}, fmt.Errorf("all %d PAM slots busy: %w", cap(m.sem), ctx.Err())
	}
	if err := ctx.Err(); err != nil {
		<-m.sem
		return txnResult{}, err
	}
	done := make(chan txnResult, 1)
	go func() {
		defer func() { <-m.sem }()
		done <- runTxn(r)
	}()
	select {
	case res := <-done:
		return res, nil
	case <-ctx.Done():
		m.logger.Warn("a PAM transaction outlived its request; it keeps a slot until the PAM stack returns",
			"service", r.Service, "user", r.Login, "err", ctx.Err())
		return txnResult{}, fmt.Errorf("PAM transaction still running when the request ended (%w); its slot stays busy until it returns", ctx.Err())
	}
}

// Close stops the workers (ModeWorkers); requests still running get
// TempFail. In ModeInProcess there is nothing to stop.
func (m *PAM) Close() error {
	m.closeOnce.Do(func() {
		if m.pool != nil {
			m.closeErr = m.pool.close()
		}
	})
	return m.closeErr
}

// WorkerRestarts reports how many workers this mechanism killed or found
// dead and replaced, by reason (RestartReasons), for metrics read at scrape
// time; the request path only bumps an atomic counter. final reports that
// the mechanism is closed, or runs PAM in-process, so the counts will not
// change again. In ModeInProcess counts is nil.
func (m *PAM) WorkerRestarts() (counts map[string]uint64, final bool) {
	if m.pool == nil {
		return nil, true
	}
	final = m.pool.isClosed() // first: counts read after it are the last ones
	counts = make(map[string]uint64, numRestartReasons)
	for r, name := range RestartReasons() {
		counts[name] = m.pool.restarts[r].Load()
	}
	return counts, final
}

// Interface guards
var _ mechs.Mechanism = (*PAM)(nil)
