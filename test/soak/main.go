// Command soak runs the real daemon (bin/saslgate) for a bounded time under
// hostile traffic and back-end faults while good clients loop on requests,
// samples its memory, goroutines and descriptors every second, and writes
// the report (SOAK.md) and a plot of those samples (SOAK.svg). It exits 1
// when a goal is missed. `make soak` runs it; SOAKTIME (default 5m) sets
// the length, 30s makes a smoke test.
//
// The daemon serves smtp through the chain sasldb,pam (PAM is pam_unix for
// a throw-away system user, behind a test module that crashes or hangs for
// its fault users) and imap through rimap against a private Dovecot. It
// faces 2,000 concurrent connections, most of them idle or slowloris,
// half-written frames, clients that vanish mid-reply, and garbage; Dovecot
// stalled, slowed, stopped and killed; SIGHUPs during load; and at the end
// SIGTERM during load. Traffic goes only to loopback and UNIX sockets. It
// needs root.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/saslgate/saslgate/protocol"
	"github.com/saslgate/saslgate/test/load"
)

// plan is the run's schedule and the daemon's bounds. The daemon's
// timeouts are its defaults for a full run and shrink with shorter ones,
// so that a smoke test still sees idle clients cut, hung PAM workers
// killed and old configurations closed after SIGHUP before it settles.
type plan struct {
	total, quiet, main, settle, final time.Duration
	rest                              time.Duration // before each baseline
	procs, conns                      int
	readTimeout, drainTimeout         time.Duration
	requestTimeout                    time.Duration
	rimapConnect, rimapCommand        time.Duration
	// goodTimeout is a good client's bound on one request: longer than
	// any answer can legitimately take, so reaching it is a hang.
	goodTimeout time.Duration
	// holdBound is how long the daemon may take to cut a held connection.
	holdBound time.Duration
	// grace after a back end is back before its requests count again.
	grace time.Duration
}

// trickle is the pause between the requests of the one good client that
// runs while the daemon settles: about 100 requests a second.
const trickle = 10 * time.Millisecond

// overhead is the time outside the main, settle and final phases and the
// rest before the baseline: start-up sample, warm-up, quiet reference,
// opening the connections.
const overhead = 12 * time.Second

// The quiet after which the daemon counts as idle, before each baseline:
// it ends idle connection goroutines after 5 s and hands its heap back
// after a full idle interval of 10 s. A smoke test, whose memory is not
// judged, rests only for the goroutines.
const (
	idleRest      = 25 * time.Second
	idleRestSmoke = 6 * time.Second
)

func newPlan(total time.Duration, conns int) (plan, error) {
	scale := min(1, total.Seconds()/(5*time.Minute).Seconds())
	sc := func(d, floor time.Duration) time.Duration {
		return max(floor, time.Duration(float64(d)*scale).Round(100*time.Millisecond))
	}
	rest := idleRestSmoke
	if total >= fullRun {
		rest = idleRest
	}
	p := plan{
		total: total, procs: 5, conns: conns, rest: rest,
		readTimeout: sc(30*time.Second, 2*time.Second), drainTimeout: sc(30*time.Second, 2*time.Second),
		requestTimeout: sc(60*time.Second, 4*time.Second),
		rimapConnect:   sc(5*time.Second, time.Second), rimapCommand: sc(10*time.Second, 2*time.Second),
		quiet:  min(5*time.Second, max(time.Second, total/50)),
		settle: max(rest+8*time.Second, total/4).Round(time.Second),
		final:  max(3*time.Second, total/25).Round(time.Second),
		grace:  time.Second,
	}
	p.main = total - overhead - p.rest - p.settle - p.final
	if p.main < 5*time.Second {
		return p, fmt.Errorf("soak: %s is too short: at least %s", total, overhead+p.rest+p.settle+p.final+5*time.Second)
	}
	// a NO waits failure_delay (2 s, up to +25 %) plus a penalty (2 s)
	p.goodTimeout = p.requestTimeout + 15*time.Second
	p.holdBound = p.readTimeout + 5*time.Second
	return p, nil
}

// event is a moment of the run worth a line in the report and the plot.
type event struct {
	T    time.Duration
	What string
}

// window is a stretch of the run with a fault. A good request of a back
// end the window excludes, overlapping it (plus the plan's grace), does not
// count: its back end was deliberately down.
type window struct {
	Start, End time.Duration
	What       string
	Excludes   []backend
}

// run is one soak: what was set up, what happened, what was measured.
type run struct {
	p       plan
	bin     string
	fx      *fixture
	t0      time.Time
	smp     *sampler
	rec     *recorder
	hst     *hostileStats
	fst     *faultStats
	metrics bool

	mu      sync.Mutex
	events  []event
	windows []window
	hups    int

	mainFrom, mainTo                         time.Duration
	startup, baseline, at2000, endBase, peak sample
	atStop                                   sample // the last before the load stopped
	quiet                                    load.Result
	warm                                     []string
	sigterm                                  time.Duration
	exitAfter                                time.Duration
	exitCode                                 int
	exitedEarly                              bool
	aborted                                  string
}

func (r *run) now() time.Duration { return time.Since(r.t0) }

func (r *run) event(what string) {
	r.mu.Lock()
	r.events = append(r.events, event{r.now(), what})
	r.mu.Unlock()
	log.Printf("%6.1fs %s", r.now().Seconds(), what)
}

func main() {
	def := 5 * time.Minute
	if v := os.Getenv("SOAKTIME"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "soak: SOAKTIME=%q: %v\n", v, err)
			os.Exit(2)
		}
		def = d
	}
	bin := flag.String("bin", "bin/saslgate", "the daemon binary (make build)")
	dur := flag.Duration("d", def, "length of the run (default: $SOAKTIME or 5m)")
	conns := flag.Int("conns", 2000, "concurrent hostile connections")
	out := flag.String("out", "SOAK.md", "the report")
	svg := flag.String("svg", "SOAK.svg", "the plot (written next to the report when relative)")
	keep := flag.Bool("keep", false, "keep the temporary directory (daemon.log, dovecot/dovecot.log)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("soak: ")
	p, err := newPlan(*dur, *conns)
	if err != nil {
		log.Fatal(err)
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		log.Fatal(err)
	}
	if err := preflight(abs); err != nil {
		log.Fatal(err)
	}
	svgPath := *svg
	if !filepath.IsAbs(svgPath) {
		svgPath = filepath.Join(filepath.Dir(*out), svgPath)
	}
	os.Exit(soak(p, abs, *out, svgPath, *keep))
}

// raiseNofile lifts the soft descriptor limit to what 2,000 connections
// on each side need; the daemon and its workers inherit it. (Go programs
// raise their soft limit to the hard one at start anyway; this covers a
// hard limit that is too low.)
func raiseNofile(need uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("soak: getrlimit: %w", err)
	}
	if l.Max < need {
		l.Max = need
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("soak: setrlimit NOFILE %d: %w", need, err)
	}
	return nil
}

// hasMetrics reports whether the binary has --metrics, the cheap way to
// read its goroutine count.
func hasMetrics(bin string) bool {
	out, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
	return strings.Contains(string(out), "--metrics")
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("soak: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func soak(p plan, bin, out, svgPath string, keep bool) int {
	if err := raiseNofile(uint64(2*p.conns + 4096)); err != nil {
		log.Fatal(err)
	}
	log.Printf("plan: %s in all: main %s, settle %s, final %s; read timeout %s, request timeout %s",
		p.total, p.main, p.settle, p.final, p.readTimeout, p.requestTimeout)
	fx, err := newFixture(p)
	if keep {
		fx.keep()
	}
	defer func() {
		if err := fx.close(); err != nil {
			log.Printf("clean-up: %v", err)
		}
	}()
	if err != nil {
		log.Print(err)
		return 1
	}
	r := &run{p: p, bin: bin, fx: fx, hst: &hostileStats{}, fst: newFaultStats()}
	var extra []string
	var metricsAddr string
	if hasMetrics(bin) {
		if metricsAddr, err = freeAddr(); err != nil {
			log.Print(err)
			return 1
		}
		extra = []string{"--metrics", metricsAddr}
		r.metrics = true
	}
	if err := fx.startDaemon(bin, extra...); err != nil {
		log.Print(err)
		return 1
	}
	r.t0 = time.Now()
	r.rec = &recorder{t0: r.t0}
	r.smp = newSampler(fx.pid(), r.t0, metricsAddr)
	sctx, sstop := context.WithCancel(context.Background())
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() { defer sampling.Done(); r.smp.run(sctx) }()
	r.event("daemon up (pid " + fmt.Sprint(fx.pid()) + ", RLIMIT_NOFILE " + nofile(fx.pid()) + ")")

	r.phases()

	sstop()
	sampling.Wait()
	res := analyse(r)
	md := res.markdown(filepath.Base(svgPath))
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		log.Print(err)
		return 1
	}
	if err := os.WriteFile(svgPath, []byte(plotSVG(res)), 0o644); err != nil {
		log.Print(err)
		return 1
	}
	log.Printf("wrote %s and %s", out, svgPath)
	for _, g := range res.goals {
		mark := "ok  "
		if !g.ok {
			mark = "MISS"
		}
		log.Printf("%s %s: %s (goal %s)", mark, g.name, g.got, g.want)
	}
	if !res.passed() {
		return 1
	}
	return 0
}

// phases runs the schedule; a daemon that dies early ends it.
func (r *run) phases() {
	p, fx := r.p, r.fx
	time.Sleep(time.Second)
	r.startup, _ = r.smp.take()

	// warm-up: every back end answers, every PAM worker has started
	for _, b := range []backend{beSasldb, bePAM, beRimap} {
		res := load.Run(context.Background(), load.Spec{Socket: fx.socket(), Concurrency: p.procs,
			Requests: 4 * p.procs, Reqs: []protocol.Request{goodRequest(b)}, Want: []string{"OK"},
			Timeout: p.goodTimeout})
		r.warm = append(r.warm, b.String()+": "+res.String())
		if res.Errors+res.Mismatches > 0 || res.Requests != 4*p.procs {
			r.aborted = "warm-up: " + b.String() + " does not answer OK: " + res.String()
			r.event(r.aborted)
			r.shutdown(nil)
			return
		}
	}
	r.quiet = load.Run(context.Background(), load.Spec{Socket: fx.socket(), Concurrency: 3, Duration: p.quiet,
		Reqs: []protocol.Request{goodRequest(beSasldb), goodRequest(bePAM), goodRequest(beRimap)},
		Want: []string{"OK", "OK", "OK"}, Timeout: p.goodTimeout})
	r.event("quiet reference: " + r.quiet.String())
	time.Sleep(p.rest)
	r.baseline = r.smp.median3()
	r.event("baseline taken")

	// the held connections first, alone, for the RSS at 2,000 connections
	h := &hostile{sock: fx.socket(), bound: p.holdBound, st: r.hst}
	hctx, hstop := context.WithCancel(context.Background())
	var hwg sync.WaitGroup
	spawn := func(ctx context.Context, wg *sync.WaitGroup, n int, k kind) {
		for range n {
			wg.Add(1)
			go func() { defer wg.Done(); h.run(ctx, k) }()
			if k.holds() {
				time.Sleep(time.Millisecond) // a ramp, not one burst into the backlog
			}
		}
	}
	nIdle, nSlow := p.conns*65/100, p.conns*30/100
	nHalf := p.conns - nIdle - nSlow
	spawn(hctx, &hwg, nIdle, kIdle)
	spawn(hctx, &hwg, nSlow, kSlowloris)
	spawn(hctx, &hwg, nHalf, kHalf)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		x, ok := r.smp.take()
		if !ok || x.FDs-r.baseline.FDs >= p.conns*97/100 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.at2000 = r.smp.median3()
	r.event(fmt.Sprintf("%d held connections open (daemon: %d descriptors over the baseline)",
		r.hst.openNow(), r.at2000.FDs-r.baseline.FDs))
	if !fx.alive() {
		r.dead()
		hstop()
		hwg.Wait()
		return
	}

	// main: good clients, short-lived hostile clients, faults
	mainStart := r.now()
	r.mainFrom = mainStart
	gctx, gstop := context.WithCancel(context.Background())
	var gwg sync.WaitGroup
	goodMix := map[backend]int{beSasldb: 3, beSasldbAddr: 1, bePAM: 2, beRimap: 2, beWrong: 1}
	startGood := func(ctx context.Context, wg *sync.WaitGroup, stopOnRefusal bool) {
		for b, n := range goodMix {
			for range n {
				wg.Add(1)
				go func() { defer wg.Done(); goodLoop(ctx, fx.socket(), b, p.goodTimeout, 0, r.rec, stopOnRefusal) }()
			}
		}
	}
	startGood(gctx, &gwg, false)
	spawn(hctx, &hwg, 20, kVanish)
	spawn(hctx, &hwg, 20, kGarbage)
	r.event("main phase: good clients, hostile clients and faults")
	r.faults(mainStart)
	gstop()
	hstop()
	gwg.Wait()
	hwg.Wait()
	r.mainTo = r.now()
	r.event("load stopped; settling under a trickle of good requests")
	if !fx.alive() {
		r.dead()
		return
	}

	// Settle under a trickle: an idle Go process collects garbage only every
	// two minutes, and the runtime returns the memory a collection freed
	// only after the next one, so a daemon left entirely alone would show
	// the load's memory for minutes; a quiet server is never entirely alone.
	tctx, tstop := context.WithCancel(context.Background())
	var twg sync.WaitGroup
	twg.Add(1)
	go func() {
		defer twg.Done()
		goodLoop(tctx, fx.socket(), beSasldb, p.goodTimeout, trickle, r.rec, false)
	}()
	time.Sleep(time.Until(r.t0.Add(r.mainTo + p.settle - p.rest - 3*time.Second)))
	tstop()
	twg.Wait()
	r.event("trickle stopped")
	time.Sleep(p.rest)
	r.endBase = r.smp.median3()
	r.event("end baseline taken")
	if !fx.alive() {
		r.dead()
		return
	}

	// final: load again, then SIGTERM in the middle of it
	fctx, fstop := context.WithCancel(context.Background())
	var fwg sync.WaitGroup
	spawn(fctx, &fwg, p.conns/8, kIdle)
	spawn(fctx, &fwg, p.conns/8, kSlowloris)
	spawn(fctx, &fwg, 10, kVanish)
	startGood(fctx, &fwg, true)
	time.Sleep(p.final)
	r.shutdown(fstop)
	fwg.Wait()
}

func (r *run) dead() {
	r.exitedEarly = true
	r.aborted = fmt.Sprintf("the daemon died during the run (%v)", r.fx.exitErr)
	r.event(r.aborted)
}

// shutdown sends SIGTERM and waits for the daemon to exit; stop ends the
// clients once it has.
func (r *run) shutdown(stop context.CancelFunc) {
	fx := r.fx
	r.sigterm = r.now()
	r.event("SIGTERM")
	_ = syscall.Kill(fx.pid(), syscall.SIGTERM)
	bound := r.p.requestTimeout + 15*time.Second
	select {
	case <-fx.exited:
		r.exitAfter = r.now() - r.sigterm
		r.exitCode = fx.daemon.ProcessState.ExitCode()
		r.event(fmt.Sprintf("daemon exited with status %d", r.exitCode))
	case <-time.After(bound):
		r.exitAfter = -1
		r.exitCode = -1
		r.event(fmt.Sprintf("daemon still running %s after SIGTERM; killed", bound))
		_ = syscall.Kill(-fx.pid(), syscall.SIGKILL)
		<-fx.exited
	}
	if stop != nil {
		stop()
	}
}

// faults runs the main phase's schedule of faults, as fractions of its
// length, and returns at its end.
func (r *run) faults(mainStart time.Duration) {
	p, fx := r.p, r.fx
	at := func(f float64) { time.Sleep(time.Until(r.t0.Add(mainStart + time.Duration(f*float64(p.main))))) }
	rimap := []backend{beRimap}
	addWindow := func(start time.Duration, what string, ex []backend) {
		r.mu.Lock()
		r.windows = append(r.windows, window{Start: start, End: r.now(), What: what, Excludes: ex})
		r.mu.Unlock()
	}
	hup := func() {
		r.hups++
		_ = syscall.Kill(fx.pid(), syscall.SIGHUP)
		r.event(fmt.Sprintf("SIGHUP #%d", r.hups))
	}

	// PAM fault users through most of the phase; they end early enough
	// for their last hang to be killed before the load stops
	pamEnd := max(0.3, min(0.85, 1-(p.requestTimeout+5*time.Second).Seconds()/p.main.Seconds()))
	at(0.05)
	pctx, pstop := context.WithCancel(context.Background())
	var pwg sync.WaitGroup
	pamStart := r.now()
	for _, users := range [][]string{{"crash", "abort"}, {"exit", "crash"}, {"hang"}} {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			faultLoop(pctx, fx.socket(), users, p.requestTimeout+10*time.Second, r.fst)
		}()
	}
	r.event("PAM fault users start: crash, abort, exit, hang")

	at(0.15)
	hup()

	at(0.20)
	start := r.now()
	_ = fx.dv.Signal(syscall.SIGSTOP)
	r.event("Dovecot stalled (SIGSTOP)")
	at(0.28)
	_ = fx.dv.Signal(syscall.SIGCONT)
	r.event("Dovecot continued (SIGCONT)")
	addWindow(start, "Dovecot stalled", rimap)

	// slowed: stopped and continued every 100 ms; rimap's requests still
	// count, only slower
	at(0.32)
	start = r.now()
	r.event("Dovecot slowed (SIGSTOP/SIGCONT every 100 ms)")
	slowEnd := r.t0.Add(mainStart + time.Duration(0.38*float64(p.main)))
	for time.Now().Before(slowEnd) {
		_ = fx.dv.Signal(syscall.SIGSTOP)
		time.Sleep(100 * time.Millisecond)
		_ = fx.dv.Signal(syscall.SIGCONT)
		time.Sleep(100 * time.Millisecond)
	}
	r.event("Dovecot at full speed")
	addWindow(start, "Dovecot slowed (requests count)", nil)

	at(0.40)
	hup()

	at(0.45)
	start = r.now()
	r.event("Dovecot stopping (SIGTERM)")
	fx.dv.Stop()
	r.event("Dovecot stopped")
	at(0.52)
	if err := fx.dv.Restart(); err != nil {
		r.event("Dovecot restart failed: " + err.Error())
	} else {
		r.event("Dovecot restarted")
	}
	addWindow(start, "Dovecot stopped", rimap)

	at(0.55)
	hup()

	at(0.62)
	start = r.now()
	fx.dv.Kill()
	r.event("Dovecot killed (SIGKILL, every process)")
	at(0.68)
	if err := fx.dv.Restart(); err != nil {
		r.event("Dovecot restart failed: " + err.Error())
	} else {
		r.event("Dovecot restarted")
	}
	addWindow(start, "Dovecot killed", rimap)

	at(pamEnd)
	pstop()
	pwg.Wait() // the hang in flight ends at the request timeout
	addWindow(pamStart, "PAM fault users (good PAM requests count)", nil)
	r.event("PAM fault users stopped")
	at(1)
}
