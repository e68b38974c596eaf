package pam

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// startTimeout bounds fork, exec and the worker's hello.
	startTimeout = 10 * time.Second
	// exitWait is how long a worker that closed its pipe gets to exit
	// before it is killed: its exit status names the crash.
	exitWait = 2 * time.Second
	// stderrWait is how long the crash report waits for the worker's last
	// words on stderr after it exited.
	stderrWait = 500 * time.Millisecond
	// closeGrace is how long Close lets workers exit on their own once
	// their stdin is closed, before it kills them.
	closeGrace = time.Second
	// stderr lines a worker may put in the log, and their length: a module
	// that prints in a loop must not flood the log.
	stderrLogLines = 100
	stderrLineMax  = 512
)

// pool is a set of at most size worker processes. A request takes a slot
// from slots (a worker, or nil when none is running for that slot), uses the
// worker, and gives the slot back: the worker again if it is healthy, nil if
// it was killed. A nil slot starts a new worker on the next request, within
// the respawn limit.
type pool struct {
	path   string
	argv   []string
	size   int
	logger *slog.Logger

	slots   chan *worker
	spawnc  chan chan spawnResult // to the spawner goroutine
	limit   limiter
	closing chan struct{} // closed by close
	spawner sync.WaitGroup

	mu     sync.Mutex
	closed bool
	live   map[*worker]struct{} // started and not yet reaped
	// lastDenied is when a refused respawn was last logged: a crashing
	// stack under load is one log line a second, not one per request.
	lastDenied time.Time

	restarts [numRestartReasons]atomic.Uint64
	benched  bench // logins whose transaction killed a worker
}

// restartReason is why a worker was killed or found dead, its slot emptied
// for a new one.
type restartReason uint8

const (
	restartCrash    restartReason = iota // it died mid-transaction (a module crashed or exited)
	restartHang                          // the transaction outlived the request's deadline
	restartProtocol                      // it broke the pipe protocol
	restartIdleExit                      // it exited while idle
	numRestartReasons
)

// RestartReasons are the reasons WorkerRestarts reports, in order.
func RestartReasons() []string { return []string{"crash", "hang", "protocol", "idle_exit"} }

func (p *pool) restarted(r restartReason) { p.restarts[r].Add(1) }

type spawnResult struct {
	w   *worker
	err error
}

func newPool(path string, argv []string, size int, logger *slog.Logger) *pool {
	p := &pool{
		path:    path,
		argv:    argv,
		size:    size,
		logger:  logger,
		slots:   make(chan *worker, size),
		spawnc:  make(chan chan spawnResult),
		closing: make(chan struct{}),
		live:    make(map[*worker]struct{}),
		// A stack that crashes on every request restarts at most size
		// workers a second (after a burst of 2*size, which covers start-up):
		// requests beyond that fail at once instead of forking.
		limit: limiter{tokens: float64(2 * size), burst: float64(2 * size), rate: float64(size)},
	}
	for range size {
		p.slots <- nil
	}
	p.spawner.Add(1)
	go p.spawnLoop()
	return p
}

// spawnLoop starts every worker from one OS thread that lives as long as
// the pool. Linux sends the parent-death signal when the *thread* that
// forked a child exits, and Go may end an idle thread at any time; a worker
// started from a request's goroutine could be killed under a healthy
// daemon. The thread is locked for good, so it ends when this goroutine
// returns, in close.
func (p *pool) spawnLoop() {
	defer p.spawner.Done()
	runtime.LockOSThread()
	for {
		select {
		case reply := <-p.spawnc:
			w, err := p.start()
			reply <- spawnResult{w, err}
		case <-p.closing:
			return
		}
	}
}

// warm starts one worker at New, so that a broken worker command is a
// start-up error.
func (p *pool) warm() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	w, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	p.slots <- w
	return nil
}

// do runs one transaction on a worker.
func (p *pool) do(ctx context.Context, r *txnRequest) (txnResult, error) {
	payload, err := encodeRequest(r)
	if err != nil {
		return txnResult{}, err
	}
	defer clear(payload) // it holds the password
	key := r.Service + "\x00" + r.Login
	if left := p.benched.left(key, time.Now()); left > 0 {
		return txnResult{}, fmt.Errorf("not tried: a transaction for this user and service killed its pam worker a moment ago (again in %s)",
			left.Round(time.Millisecond))
	}
	for attempt := 0; ; attempt++ {
		w, err := p.acquire(ctx)
		if err != nil {
			return txnResult{}, err
		}
		res, unsent, err := p.roundTrip(ctx, w, payload, r)
		// A worker that died at idle after the check in acquire fails the
		// write: the request never reached it and may try a new one, once.
		if unsent && attempt == 0 && ctx.Err() == nil {
			continue
		}
		if errors.Is(err, errKilled) {
			p.benched.add(key, time.Now())
		}
		return res, err
	}
}

// errKilled marks the errors of a transaction that cost its worker (a
// crash, a hang past the deadline, a broken protocol). It prints nothing.
var errKilled = quietError{}

type quietError struct{}

func (quietError) Error() string { return "" }

// A login whose transaction killed a worker is not tried again for
// benchTime: a module that crashes or hangs for one user name, with the
// client retrying at once, would otherwise spend the respawn limit and
// every worker, and lock all the other PAM users out. Its requests are
// answered TEMPFAIL at once meanwhile.
const (
	benchTime = 5 * time.Second
	benchMax  = 1024 // logins remembered; past it, the respawn limit alone
)

type bench struct {
	mu    sync.Mutex
	until map[string]time.Time
	off   bool // tests of the respawn limit alone
}

func (b *bench) left(key string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.until[key]
	if !ok {
		return 0
	}
	if !now.Before(u) {
		delete(b.until, key)
		return 0
	}
	return u.Sub(now)
}

func (b *bench) add(key string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.off {
		return
	}
	if b.until == nil {
		b.until = map[string]time.Time{}
	}
	if len(b.until) >= benchMax {
		for k, u := range b.until {
			if !now.Before(u) {
				delete(b.until, k)
			}
		}
		if len(b.until) >= benchMax {
			return
		}
	}
	b.until[key] = now.Add(benchTime)
}

// acquire takes a slot and returns a live worker for it, starting one if
// the slot is empty or its worker died while idle.
//
// When the respawn limit refuses a new worker while other workers still
// run, the request waits for one of them (or for the limit) instead of
// failing: otherwise one user whose login crashes a module, retrying at
// once, would spend every restart and lock every other PAM user out. Only
// when no worker runs at all (the stack is broken for everyone) does the
// request fail at once.
func (p *pool) acquire(ctx context.Context) (*worker, error) {
	for {
		if p.isClosed() {
			return nil, errClosed
		}
		var w *worker
		select {
		case w = <-p.slots:
		case <-ctx.Done():
			return nil, fmt.Errorf("all %d pam workers busy: %w", p.size, ctx.Err())
		case <-p.closing:
			return nil, errClosed
		}
		if p.isClosed() {
			p.slots <- w
			return nil, errClosed
		}
		if w != nil && w.exited() {
			p.logger.Warn("pam worker exited while idle; starting another", "pid", w.pid, "status", w.status())
			p.restarted(restartIdleExit)
			w = nil
		}
		if w != nil {
			return w, nil
		}
		w, err := p.spawn(ctx)
		if err == nil {
			return w, nil
		}
		p.slots <- nil
		var denied *restartDenied
		if !errors.As(err, &denied) || p.running() == 0 {
			return nil, err
		}
		// the slot just given back comes round again after the others:
		// a short pause, then look for a worker that is free by now
		t := time.NewTimer(min(denied.wait, respawnPoll))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (waited for a running worker: %w)", err, ctx.Err())
		case <-p.closing:
			t.Stop()
			return nil, errClosed
		}
	}
}

// respawnPoll is how often a request that the respawn limit turned away
// looks again for a free worker.
const respawnPoll = 20 * time.Millisecond

// restartDenied is spawn's error when the respawn limit refuses a worker.
type restartDenied struct {
	size int
	wait time.Duration // until the limit allows one
}

func (e *restartDenied) Error() string {
	return fmt.Sprintf("pam workers are restarting too often (at most %d a second); not starting one for %s",
		e.size, e.wait.Round(time.Millisecond))
}

// running counts the workers started and not yet reaped.
func (p *pool) running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.live)
}

// spawn starts a worker, within the respawn limit, and waits for its hello.
func (p *pool) spawn(ctx context.Context) (*worker, error) {
	if ok, wait := p.limit.take(time.Now()); !ok {
		err := &restartDenied{size: p.size, wait: wait}
		p.mu.Lock()
		logIt := time.Since(p.lastDenied) >= time.Second
		if logIt {
			p.lastDenied = time.Now()
		}
		p.mu.Unlock()
		if logIt {
			p.logger.Error("pam worker not restarted: too many restarts; is a PAM module crashing?", "err", err)
		}
		return nil, err
	}
	reply := make(chan spawnResult, 1)
	select {
	case p.spawnc <- reply:
	case <-p.closing:
		return nil, errClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("starting a pam worker: %w", ctx.Err())
	}
	r := <-reply // the spawner always answers a request it took
	if r.err != nil {
		p.logger.Error("cannot start a pam worker", "err", r.err)
		return nil, r.err
	}
	w := r.w
	if err := w.hello(ctx); err != nil {
		p.kill(w)
		w.await(exitWait)
		if ctx.Err() != nil {
			// the request ran out of time, not the worker
			return nil, fmt.Errorf("starting pam worker %d: %w", w.pid, ctx.Err())
		}
		err = fmt.Errorf("pam worker %d did not start (is %q wired to pam.WorkerMain?): %v; it ended with %s%s",
			w.pid, strings.Join(p.argv, " "), err, w.status(), w.stderrSummary())
		p.logger.Error("cannot start a pam worker", "err", err)
		return nil, err
	}
	return w, nil
}

// start forks and execs one worker (on the spawner's thread).
func (p *pool) start() (*worker, error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err == nil {
			files = append(files, r, w)
		}
		return
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("starting a pam worker: %w", err)
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("starting a pam worker: %w", err)
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("starting a pam worker: %w", err)
	}
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envWorker+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, envWorker+"=1")
	cmd := &exec.Cmd{
		Path:        p.path,
		Args:        p.argv,
		Env:         env,
		Stdin:       inR,
		Stdout:      outW,
		Stderr:      errW,
		SysProcAttr: workerSysProcAttr(),
	}
	err = cmd.Start()
	// the child's ends: ours to close now, whatever happened
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("starting pam worker %s: %w", p.path, err)
	}
	w := &worker{
		pid:        cmd.Process.Pid,
		cmd:        cmd,
		in:         inW,
		out:        outR,
		done:       make(chan struct{}),
		stderrDone: make(chan struct{}),
	}
	go w.readStderr(errR, p.logger)
	go func() {
		// Wait reaps the worker however it ends: no zombies.
		_ = cmd.Wait()
		w.state = cmd.ProcessState
		close(w.done)
		w.out.Close() // unblocks a reader if a grandchild kept the pipe open
		w.in.Close()
		p.mu.Lock()
		delete(p.live, w)
		p.mu.Unlock()
	}()
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.live[w] = struct{}{}
	}
	p.mu.Unlock()
	if closed {
		p.kill(w)
		return nil, errClosed
	}
	return w, nil
}

// roundTrip sends one request and reads the result. On any failure the
// worker is killed (its state is unknown) and its slot returned empty.
// unsent reports that the worker was found dead before it could have read
// the request.
func (p *pool) roundTrip(ctx context.Context, w *worker, payload []byte, r *txnRequest) (res txnResult, unsent bool, err error) {
	if err := ctx.Err(); err != nil {
		// The request ended while it waited for a worker: the worker has
		// seen nothing and goes back as it is.
		p.slots <- w
		return txnResult{}, false, err
	}
	start := time.Now()
	dl, _ := ctx.Deadline() // zero: no deadline
	_ = w.in.SetWriteDeadline(dl)
	_ = w.out.SetReadDeadline(dl)
	// Cancellation without a deadline: move the deadlines to now.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		past := time.Unix(1, 0)
		_ = w.in.SetWriteDeadline(past)
		_ = w.out.SetReadDeadline(past)
	})
	var frame []byte
	werr := writeFrame(w.in, payload)
	if werr == nil {
		frame, err = readFrame(w.out)
	}
	// If the callback has started, wait for it before the worker goes back
	// to the pool, so that it cannot land on the worker's next request.
	if !stop() {
		<-fired
	}

	if werr != nil {
		if p.isClosed() {
			p.kill(w)
			p.slots <- nil
			return txnResult{}, false, fmt.Errorf("pam worker %d stopped: %w", w.pid, errClosed)
		}
		if errors.Is(werr, syscall.EPIPE) || w.exited() {
			p.kill(w)
			w.await(exitWait)
			p.logger.Warn("pam worker exited while idle; starting another", "pid", w.pid, "status", w.status())
			p.restarted(restartIdleExit)
			p.slots <- nil
			return txnResult{}, true, fmt.Errorf("pam worker %d exited before it got the request: %s", w.pid, w.status())
		}
		return txnResult{}, false, p.fail(ctx, w, r, start, werr)
	}
	if err == nil {
		if res, err = decodeResult(frame); err == nil {
			p.slots <- w
			return res, false, nil
		}
		err = fmt.Errorf("malformed result: %w", err)
	}
	return txnResult{}, false, p.fail(ctx, w, r, start, err)
}

// fail disposes of a worker whose transaction went wrong, logs why, and
// returns the reason for the request.
func (p *pool) fail(ctx context.Context, w *worker, r *txnRequest, start time.Time, ioErr error) error {
	defer func() { p.slots <- nil }()
	switch {
	case p.isClosed():
		p.kill(w)
		return fmt.Errorf("pam worker %d stopped: %w", w.pid, errClosed)
	case errors.Is(ioErr, os.ErrDeadlineExceeded):
		p.kill(w)
		cause := ctx.Err()
		if cause == nil {
			cause = context.DeadlineExceeded
		}
		err := fmt.Errorf("pam worker %d killed after %s: %w%w", w.pid, time.Since(start).Round(10*time.Millisecond), cause, errKilled)
		p.logger.Error("pam worker killed: the PAM stack did not answer in time",
			"pid", w.pid, "service", r.Service, "user", r.Login, "err", err)
		p.restarted(restartHang)
		return err
	case errors.Is(ioErr, io.EOF), errors.Is(ioErr, io.ErrUnexpectedEOF), errors.Is(ioErr, os.ErrClosed), errors.Is(ioErr, syscall.EPIPE):
		// The worker went away mid-transaction: a module crashed it (or
		// called exit). Give it a moment to be reaped for its status.
		if !w.await(exitWait) {
			p.kill(w)
			w.await(exitWait)
		}
		w.awaitStderr(stderrWait)
		err := fmt.Errorf("pam worker %d crashed: %s%w", w.pid, w.status(), errKilled)
		p.logger.Error("pam worker crashed during a PAM transaction; starting another",
			"pid", w.pid, "service", r.Service, "user", r.Login, "err", err)
		p.restarted(restartCrash)
		return err
	default:
		p.kill(w)
		err := fmt.Errorf("pam worker %d killed: %w%w", w.pid, ioErr, errKilled)
		p.logger.Error("pam worker killed: broken pipe protocol",
			"pid", w.pid, "service", r.Service, "user", r.Login, "err", err)
		p.restarted(restartProtocol)
		return err
	}
}

// kill sends SIGKILL to a worker and its process group. The reaping is
// done by the worker's wait goroutine.
func (p *pool) kill(w *worker) {
	if !w.exited() {
		// Only while the worker is unreaped: its pid, which is the group's
		// id, cannot have been reused yet.
		killGroup(w.pid)
	}
	_ = w.cmd.Process.Kill()
	w.in.Close()
}

func (p *pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// close stops every worker: stdin closed (an idle worker exits at once),
// then SIGKILL for those still running after closeGrace, and waits until
// they are reaped.
func (p *pool) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.closing)
	ws := make([]*worker, 0, len(p.live))
	for w := range p.live {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	p.spawner.Wait()
	for _, w := range ws {
		w.in.Close()
	}
	grace := time.Now().Add(closeGrace)
	var stuck []int
	for _, w := range ws {
		if !w.await(time.Until(grace)) {
			p.kill(w)
			if !w.await(exitWait) {
				stuck = append(stuck, w.pid)
			}
		}
	}
	if len(stuck) > 0 {
		return fmt.Errorf("mechs/pam: pam workers %v did not exit after SIGKILL", stuck)
	}
	return nil
}

// worker is one worker process.
type worker struct {
	pid int
	cmd *exec.Cmd
	in  *os.File // the worker's stdin
	out *os.File // the worker's stdout

	done  chan struct{}    // closed once the process is reaped
	state *os.ProcessState // set before done is closed

	stderrDone chan struct{} // closed at EOF on the worker's stderr
	tailMu     sync.Mutex
	signal     string // "SIGSEGV: segmentation violation", from Go's crash report
	fatal      string // the first "fatal error: ..." or "panic: ..." line
	last       string // the last line, for a worker that did not start
}

// hello reads the worker's greeting. A command that is not a pam worker
// usually prints something else (usage, an error): the error quotes it.
func (w *worker) hello(ctx context.Context) error {
	dl := time.Now().Add(startTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = w.out.SetReadDeadline(dl)
	defer func() { _ = w.out.SetReadDeadline(time.Time{}) }()
	var hdr [4]byte
	n, err := io.ReadFull(w.out, hdr[:])
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("it exited without a greeting")
	case err != nil && n == 0:
		return err
	case err == nil && binary.BigEndian.Uint32(hdr[:]) == uint32(len(helloMagic)):
		b := make([]byte, len(helloMagic))
		if _, err := io.ReadFull(w.out, b); err != nil {
			return err
		}
		if string(b) != helloMagic {
			return fmt.Errorf("greeting %q, want %q (another saslgate version?)", b, helloMagic)
		}
		return nil
	}
	more := make([]byte, 60)
	_ = w.out.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	m, _ := w.out.Read(more)
	return fmt.Errorf("unexpected output %q instead of a greeting", append(hdr[:n], more[:m]...))
}

func (w *worker) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// await waits up to d for the worker to be reaped.
func (w *worker) await(d time.Duration) bool {
	if w.exited() {
		return true
	}
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		return false
	}
}

func (w *worker) awaitStderr(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.stderrDone:
	case <-t.C:
	}
}

// status describes how the worker ended: "signal: segmentation fault",
// "exit status 2 (SIGSEGV: segmentation violation)" for a Go crash report,
// "exit status 3", or "still running".
func (w *worker) status() string {
	if !w.exited() {
		return "still running"
	}
	s := w.state.String()
	if w.state.ExitCode() == -1 {
		return s // "signal: segmentation fault" says it all
	}
	w.tailMu.Lock()
	defer w.tailMu.Unlock()
	switch {
	case w.signal != "":
		s += " (" + w.signal + ")"
	case w.fatal != "":
		s += " (" + w.fatal + ")"
	}
	return s
}

// stderrSummary is what the worker printed that explains a failed start.
func (w *worker) stderrSummary() string {
	w.awaitStderr(stderrWait)
	w.tailMu.Lock()
	defer w.tailMu.Unlock()
	switch {
	case w.fatal != "":
		return "; stderr: " + w.fatal
	case w.last != "":
		return "; stderr: " + w.last
	}
	return ""
}

// goSignal matches the line the Go runtime prints when a signal kills the
// program: "SIGSEGV: segmentation violation" for a signal in C code (a
// module's crash), "[signal SIGSEGV: segmentation violation ...]" in Go
// code.
var goSignal = regexp.MustCompile(`^\[?signal (SIG[A-Z0-9]+: [a-z ]+)|^(SIG[A-Z0-9]+: [a-z ]+)$`)

// readStderr logs what the worker prints (modules' messages, Go's crash
// report), bounded, and keeps what explains a crash.
func (w *worker) readStderr(r *os.File, logger *slog.Logger) {
	defer close(w.stderrDone)
	defer r.Close()
	br := bufio.NewReaderSize(r, stderrLineMax)
	logged := 0
	for {
		chunk, err := br.ReadSlice('\n')
		if line := strings.TrimRight(string(chunk), "\r\n"); line != "" {
			w.note(line)
			switch {
			case logged < stderrLogLines:
				logger.Warn("pam worker stderr", "pid", w.pid, "line", line)
			case logged == stderrLogLines:
				logger.Warn("pam worker stderr: further output not logged", "pid", w.pid)
			}
			logged++
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (w *worker) note(line string) {
	w.tailMu.Lock()
	defer w.tailMu.Unlock()
	if m := goSignal.FindStringSubmatch(line); m != nil && w.signal == "" {
		w.signal = m[1] + m[2]
	}
	if len(line) > 200 {
		line = line[:200]
	}
	w.last = line
	if w.fatal == "" && (strings.HasPrefix(line, "fatal error: ") || strings.HasPrefix(line, "panic: ") ||
		strings.HasPrefix(line, "saslgate pam-worker: ")) {
		w.fatal = line
	}
}

// limiter is a token bucket for worker starts.
type limiter struct {
	mu          sync.Mutex
	tokens      float64
	burst, rate float64 // tokens; tokens per second
	last        time.Time
}

// take spends a token if there is one; otherwise it says how long until the
// next.
func (l *limiter) take(now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.After(l.last) {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true, 0
	}
	return false, time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
}
