// Package checkpassword is a mechanism that asks an external qmail
// checkpassword program (vpopmail's vchkpw, vmailmgr's checkvpw, djb's
// checkpassword, a site's own script) whether a password is good.
//
// The interface is qmail's (cr.yp.to/checkpwd/interface.html): the program
// is started as `PROG NEXT...`, reads "login\0password\0timestamp\0" (at
// most 512 bytes) from fd 3, and exits 0 after running NEXT when the
// password is good, 1 when it is not, 2 on misuse, 111 on a temporary
// problem. The timestamp is written empty, as Dovecot does: it is the APOP
// banner, and a non-empty one makes vchkpw try APOP and CRAM-MD5 first.
//
// Every run has a timeout that kills the program's whole process group, the
// number of programs running at once is bounded, and what the program
// prints is captured up to a bound; its stderr lines are logged with the
// password masked. The password travels only through the fd 3 pipe, never
// in the arguments or the environment.
package checkpassword

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/protocol"
)

const name = "checkpassword"

func init() {
	// after rimap and shadow: saslauthd's -v order ends with the
	// mechanisms Cyrus has, and this is not one of them
	mechs.Register(name, 70, mechs.Constructor(New))
}

// The replies. saslauthd has no checkpassword mechanism; these follow its
// sasldb's bare "OK"/"NO" and rimap's [ALERT] for a back end that could not
// answer.
const (
	ReplyOK       = "OK"
	ReplyRejected = "NO"
	ReplyTempFail = "NO [ALERT] Temporary failure of the checkpassword program"
)

// Option keys read from mechs.Options.Values. Unset or empty means the
// default.
const (
	// KeyPath is the checkpassword program; unset means -O.
	KeyPath = "checkpassword_path"
	// KeyArgs is the program it runs on success, with its arguments,
	// separated by spaces (the interface's NEXT...).
	KeyArgs = "checkpassword_args"
	// KeyTimeout bounds one run, as a Go duration or whole seconds.
	KeyTimeout = "checkpassword_timeout"
	// KeyProcs caps the programs running at once (the daemon passes -n).
	KeyProcs = "checkpassword_procs"
)

// Defaults.
const (
	DefaultArgs    = "/bin/true"
	DefaultTimeout = 10 * time.Second
	DefaultProcs   = 5
	// maxOutput bounds what is kept of the program's stdout and of its
	// stderr; the rest is read and dropped so the program never blocks.
	maxOutput = 4096
	// maxLogLines and maxLogLine bound what of stderr reaches the log.
	maxLogLines = 10
	maxLogLine  = 200
	// childPath is the PATH the program runs with: the daemon's own
	// environment is not passed on.
	childPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// waitDelay: how long after the program exits its stdout and stderr
	// may stay open (held by a child it left behind) before they are
	// closed on it.
	waitDelay = time.Second
)

// Config is the mechanism's parsed configuration.
type Config struct {
	Path    string   // the checkpassword program, resolved
	Args    []string // what it runs on success
	Timeout time.Duration
	Procs   int
}

// Mech is the checkpassword mechanism. It is safe for concurrent use.
type Mech struct {
	cfg    Config
	logger *slog.Logger
	sem    chan struct{}

	limMu  sync.Mutex
	logged map[string]time.Time // rate limit of repeated configuration errors
}

// New checks the configuration: the program and the first word of
// checkpassword_args must be executable now, or the daemon does not start.
func New(opts mechs.Options, logger *slog.Logger) (*Mech, error) {
	cfg, err := ParseConfig(opts)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger.Debug("checkpassword program", "path", cfg.Path, "args", strings.Join(cfg.Args, " "),
		"timeout", cfg.Timeout, "procs", cfg.Procs)
	return &Mech{cfg: cfg, logger: logger, sem: make(chan struct{}, cfg.Procs), logged: map[string]time.Time{}}, nil
}

// ParseConfig reads -O and the checkpassword_* values. Unknown keys are
// left alone: Values is shared with the other mechanisms.
func ParseConfig(opts mechs.Options) (Config, error) {
	fail := func(format string, a ...any) (Config, error) {
		return Config{}, mechs.Error(name, fmt.Errorf(format, a...))
	}
	get := func(key string) string { return strings.TrimSpace(opts.Get(key, "")) }
	cfg := Config{Timeout: DefaultTimeout, Procs: DefaultProcs}

	prog := get(KeyPath)
	if prog == "" {
		prog = strings.TrimSpace(opts.Option)
	}
	if prog == "" {
		return fail("no checkpassword program (-O PROGRAM or %s)", KeyPath)
	}
	path, err := exec.LookPath(prog)
	if err != nil {
		return fail("%s: %w", KeyPath, err)
	}
	cfg.Path = path

	cfg.Args = strings.Fields(get(KeyArgs))
	if len(cfg.Args) == 0 {
		cfg.Args = []string{DefaultArgs}
	}
	// the program resolves it with the PATH it is given, not ours
	if _, err := lookPathIn(cfg.Args[0], childPath); err != nil {
		return fail("%s: %w", KeyArgs, err)
	}

	if v := get(KeyTimeout); v != "" {
		d, err := duration(v)
		if err != nil {
			return fail("%s: %v", KeyTimeout, err)
		}
		cfg.Timeout = d
	}
	if v := get(KeyProcs); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 4096 {
			return fail("%s: %q is not a number from 1 to 4096", KeyProcs, v)
		}
		cfg.Procs = n
	}
	return cfg, nil
}

// duration reads a Go duration ("10s") or whole seconds ("10").
func duration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.Atoi(s)
		if nerr != nil {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q is not positive", s)
	}
	return d, nil
}

// lookPathIn is exec.LookPath with the given PATH instead of the process's.
func lookPathIn(file, path string) (string, error) {
	if strings.Contains(file, "/") {
		return exec.LookPath(file)
	}
	for _, dir := range strings.Split(path, ":") {
		if p, err := exec.LookPath(dir + "/" + file); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w in %s", file, exec.ErrNotFound, path)
}

// vpopmailRejects are the exit codes vchkpw uses for a bad login, which
// Dovecot's checkpassword driver also counts as failed logins
// (src/auth/db-checkpassword.c): vchkpw exits 3 for a wrong password.
var vpopmailRejects = map[int]string{
	3:  "wrong password or unknown user (vchkpw)",
	12: "empty user name (vchkpw)",
	13: "empty password (vchkpw)",
	15: "user has no password (vchkpw)",
	20: "invalid user or domain characters (vchkpw)",
	21: "system user not found (vchkpw)",
	22: "system user has no shadow entry (vchkpw)",
	23: "system password wrong (vchkpw)",
}

// servicePorts gives TCPLOCALPORT for a service: vchkpw chooses its POP,
// SMTP or IMAP rules (and whether to setuid into the user) by the local
// port, which a request to the daemon does not carry.
var servicePorts = map[string]string{
	"smtp": "25", "submission": "25", "smtps": "465", "submissions": "465",
	"pop": "110", "pop3": "110", "pop3s": "995", "imap": "143", "imaps": "993",
}

// Name implements mechs.Mechanism.
func (m *Mech) Name() string { return name }

// Authenticate runs the program once.
func (m *Mech) Authenticate(ctx context.Context, req mechs.Request) (mechs.Result, error) {
	pw := req.Password.Reveal()
	if req.Login == "" || pw == "" {
		return mechs.Rejected(ReplyRejected, "empty login or password"), nil
	}
	input, err := protocol.AppendCheckpassword(make([]byte, 0, protocol.CheckpasswordMax),
		protocol.Checkpassword{Login: req.Login, Password: pw})
	if err != nil {
		// the interface cannot carry it; Dovecot fails such logins too
		return mechs.Rejected(ReplyRejected, strings.TrimPrefix(err.Error(), "protocol: ")), nil
	}
	defer clear(input)

	select {
	case m.sem <- struct{}{}:
		defer func() { <-m.sem }()
	case <-ctx.Done():
		return mechs.Cancelled(name, ctx.Err()), nil
	}
	if err := ctx.Err(); err != nil {
		return mechs.Cancelled(name, err), nil
	}
	return m.run(ctx, req, input), nil
}

// run starts the program, feeds fd 3 and classifies how it ended.
func (m *Mech) run(ctx context.Context, req mechs.Request, input []byte) mechs.Result {
	start := time.Now()
	r, w, err := os.Pipe()
	if err != nil {
		return mechs.TempFailed(ReplyTempFail, "checkpassword: pipe: "+err.Error())
	}
	stdout, stderr := &capped{}, &capped{}
	cmd := &exec.Cmd{
		Path:        m.cfg.Path,
		Args:        append([]string{m.cfg.Path}, m.cfg.Args...),
		Env:         m.env(req),
		Dir:         "/",
		ExtraFiles:  []*os.File{r}, // fd 3
		Stdout:      stdout,
		Stderr:      stderr,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		WaitDelay:   waitDelay,
	}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		m.configError("start", "checkpassword program cannot be started", "path", m.cfg.Path, "err", err)
		return mechs.TempFailed(ReplyTempFail, "checkpassword: start "+m.cfg.Path+": "+err.Error())
	}
	// 512 bytes fit in any pipe buffer: the write does not wait for the
	// program. It fails with EPIPE when the program closed fd 3 unread,
	// which its exit status explains.
	_, _ = w.Write(input)
	w.Close()

	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	timer := time.NewTimer(m.cfg.Timeout)
	defer timer.Stop()
	var stopped error // why the process group was killed
	select {
	case <-done:
	case <-timer.C:
		stopped = fmt.Errorf("no answer within %v", m.cfg.Timeout)
	case <-ctx.Done():
		stopped = ctx.Err()
	}
	if stopped != nil {
		// the group id is still reserved: the leader is not reaped until
		// Wait returns, and Wait is still waiting
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	elapsed := time.Since(start)
	m.logOutput(req, stdout, stderr)
	st := cmd.ProcessState

	switch {
	case stopped != nil && mechs.IsContextErr(stopped):
		return mechs.Cancelled(name, stopped)
	case stopped != nil:
		m.logger.Warn("checkpassword program killed", "login", req.Login, "reason", stopped.Error())
		return mechs.TempFailed(ReplyTempFail, "checkpassword: "+stopped.Error()+"; its process group was killed")
	case st == nil:
		return mechs.TempFailed(ReplyTempFail, "checkpassword: no exit status")
	}
	ws, _ := st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return mechs.TempFailed(ReplyTempFail, "checkpassword: program killed by signal "+ws.Signal().String())
	}
	code := st.ExitCode()
	m.logger.Debug("checkpassword program exited", "login", req.Login, "code", code, "duration", elapsed)
	switch code {
	case 0:
		return mechs.Accepted(ReplyOK)
	case 1:
		return mechs.Rejected(ReplyRejected, "checkpassword: exit 1 (unacceptable)")
	case 111:
		return mechs.TempFailed(ReplyTempFail, "checkpassword: exit 111 (temporary problem)")
	case 2:
		m.configError("misuse", "checkpassword program exited 2 (misuse): does it take the interface's "+
			"arguments? "+KeyArgs+" names the program it runs on success", "path", m.cfg.Path)
		return mechs.TempFailed(ReplyTempFail, "checkpassword: exit 2 (misuse)")
	}
	if why, ok := vpopmailRejects[code]; ok {
		return mechs.Rejected(ReplyRejected, fmt.Sprintf("checkpassword: exit %d: %s", code, why))
	}
	return mechs.TempFailed(ReplyTempFail, fmt.Sprintf("checkpassword: exit %d (not in the interface)", code))
}

// env is the program's whole environment: a fixed PATH, Dovecot's SERVICE,
// ucspi-tcp's names for the client address when the request carries one,
// and TCPLOCALPORT for vchkpw.
func (m *Mech) env(req mechs.Request) []string {
	env := []string{"PATH=" + childPath}
	if req.Service != "" && !strings.ContainsAny(req.Service, "\n\r") {
		env = append(env, "SERVICE="+req.Service)
	}
	if p, ok := servicePorts[strings.ToLower(req.Service)]; ok {
		env = append(env, "TCPLOCALPORT="+p)
	}
	if ip, port, ok := clientAddr(req.ClientAddr); ok {
		env = append(env, "PROTO=TCP", "TCPREMOTEIP="+ip)
		if port != "" {
			env = append(env, "TCPREMOTEPORT="+port)
		}
	}
	return env
}

// clientAddr splits the request's "ip;port"; anything that is not an
// address is not passed on.
func clientAddr(s string) (ip, port string, ok bool) {
	host, port, _ := strings.Cut(s, ";")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", "", false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		port = ""
	}
	return a.Unmap().String(), port, true
}

// logOutput logs the first lines of the program's stderr (and of its
// stdout at debug level), with the password masked, control characters
// replaced and long lines cut.
func (m *Mech) logOutput(req mechs.Request, stdout, stderr *capped) {
	pw := req.Password.Reveal()
	for _, o := range []struct {
		c     *capped
		level slog.Level
		what  string
	}{{stderr, slog.LevelWarn, "checkpassword program stderr"}, {stdout, slog.LevelDebug, "checkpassword program stdout"}} {
		if !m.logger.Enabled(context.Background(), o.level) {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(o.c.b), "\n"), "\n")
		for i, line := range lines {
			if line == "" {
				continue
			}
			if i == maxLogLines {
				m.logger.Log(context.Background(), o.level, o.what, "login", req.Login,
					"line", fmt.Sprintf("(%d more lines)", len(lines)-i))
				break
			}
			m.logger.Log(context.Background(), o.level, o.what, "login", req.Login, "line", logSafe(line, pw))
		}
		if o.c.dropped > 0 {
			m.logger.Log(context.Background(), o.level, o.what, "login", req.Login,
				"line", fmt.Sprintf("(%d more bytes dropped)", o.c.dropped))
		}
	}
	clear(stdout.b)
	clear(stderr.b)
}

// logSafe masks the password, replaces control characters and cuts the
// line at maxLogLine bytes.
func logSafe(line, pw string) string {
	if pw != "" {
		line = strings.ReplaceAll(line, pw, mechs.Redacted)
	}
	line = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, line)
	if len(line) > maxLogLine {
		line = line[:maxLogLine] + "…"
	}
	return line
}

// configError logs a problem that repeats on every request (a program that
// cannot start, a misuse exit) at error level, at most once a minute each.
func (m *Mech) configError(key, msg string, args ...any) {
	m.limMu.Lock()
	last, seen := m.logged[key]
	now := time.Now()
	if !seen || now.Sub(last) >= time.Minute {
		m.logged[key] = now
	} else {
		m.limMu.Unlock()
		return
	}
	m.limMu.Unlock()
	m.logger.Error(msg, args...)
}

// capped keeps the first maxOutput bytes written to it and counts the
// rest, accepting everything so the program never blocks on a full pipe.
type capped struct {
	b       []byte
	dropped int
}

func (c *capped) Write(p []byte) (int, error) {
	keep := min(len(p), maxOutput-len(c.b))
	c.b = append(c.b, p[:keep]...)
	c.dropped += len(p) - keep
	return len(p), nil
}

var _ mechs.Mechanism = (*Mech)(nil)
