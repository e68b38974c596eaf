package main

import (
	"cmp"
	"fmt"
	"maps"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/saslgate/saslgate/test/internal/runreport"
)

// Goals the report checks.
const (
	goalIdleRSS  = 15 << 20
	goalConnsRSS = 64 << 20
	// goalExit bounds the daemon's exit after SIGTERM: the shutdown read
	// grace (1 s) plus the requests in flight, which take milliseconds.
	goalExit = 10 * time.Second
)

// beStats is what one back end's good requests got.
type beStats struct {
	Counted, OK, Failed  int
	Excluded, ExclOK     int
	P50, P99, Max        time.Duration
	lat                  []time.Duration
	failSamples          []string
	slowest              []rec // the three slowest counted answers
	ExclReplies          map[string]int
	RefusedAfterShutdown int
}

// shutdownStats is about the requests around SIGTERM.
type shutdownStats struct {
	// sent before SIGTERM, finished after it: answered at all, and as
	// wanted (a wrong answer is also a failed good request)
	InFlight, InFlightAnswered, InFlightOK int
	Refused                                int // could not connect after SIGTERM: the socket was gone
}

// excluded reports whether a request of b over [start, end] overlaps a
// window that excludes b, widened by grace after the window.
func excluded(b backend, start, end time.Duration, windows []window, grace time.Duration) (string, bool) {
	for _, w := range windows {
		if !slices.Contains(w.Excludes, b) {
			continue
		}
		if start <= w.End+grace && end >= w.Start {
			return w.What, true
		}
	}
	return "", false
}

// classify sorts the good requests: counted (their back end was up) or
// excluded (overlapping a deliberate outage of their own back end),
// answered as wanted or failed, and the ones around SIGTERM (sigterm 0:
// none was sent). A request that could not connect after SIGTERM is not a
// failure: the daemon had removed its socket, as it must.
func classify(recs []rec, details []string, windows []window, grace, sigterm time.Duration) ([nBackends]beStats, shutdownStats) {
	var st [nBackends]beStats
	var sd shutdownStats
	for i := range st {
		st[i].ExclReplies = map[string]int{}
	}
	detail := func(x rec) string {
		if x.detail >= 0 && int(x.detail) < len(details) {
			return details[x.detail]
		}
		return ""
	}
	for _, x := range recs {
		s := &st[x.be]
		if sigterm > 0 && x.out == outConnect && x.end >= sigterm {
			sd.Refused++
			s.RefusedAfterShutdown++
			continue
		}
		if sigterm > 0 && x.start < sigterm && x.end >= sigterm {
			sd.InFlight++
			if x.out == outOK || x.out == outWrongReply {
				sd.InFlightAnswered++
			}
			if x.out == outOK {
				sd.InFlightOK++
			}
		}
		if _, ex := excluded(x.be, x.start, x.end, windows, grace); ex {
			s.Excluded++
			if x.out == outOK {
				s.ExclOK++
				s.ExclReplies[x.be.want()]++
			} else {
				s.ExclReplies[shortDetail(detail(x))]++
			}
			continue
		}
		s.Counted++
		if x.out == outOK {
			s.OK++
			s.lat = append(s.lat, x.end-x.start)
			s.slowest = keepSlowest(s.slowest, x, 3)
			continue
		}
		s.Failed++
		if len(s.failSamples) < 10 {
			s.failSamples = append(s.failSamples, fmt.Sprintf("t=%.1fs after %s: %s", x.start.Seconds(),
				(x.end-x.start).Round(time.Millisecond), detail(x)))
		}
	}
	for i := range st {
		st[i].P50, st[i].P99, st[i].Max = percentiles(st[i].lat)
	}
	return st, sd
}

// keepSlowest adds x to the n slowest requests in top, slowest first.
func keepSlowest(top []rec, x rec, n int) []rec {
	i, _ := slices.BinarySearchFunc(top, x, func(a, b rec) int { return cmp.Compare(b.end-b.start, a.end-a.start) })
	if i >= n {
		return top
	}
	top = slices.Insert(top, i, x)
	return top[:min(len(top), n)]
}

var digits = regexp.MustCompile(`[0-9]+`)

// shortDetail folds numbers so that equal failures count together.
func shortDetail(s string) string {
	s = digits.ReplaceAllString(s, "N")
	if len(s) > 90 {
		s = s[:90] + "…"
	}
	return s
}

func percentiles(lat []time.Duration) (p50, p99, mx time.Duration) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	pct := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return pct(0.50), pct(0.99), s[len(s)-1]
}

// winLat is the latency of the counted, answered good requests of each
// back end that overlap one stretch of the main phase.
type winLat struct {
	what string
	n    [nBackends]int
	p99  [nBackends]time.Duration
	max  [nBackends]time.Duration
}

// windowLatency gives one row per fault window and one for the rest of the
// main phase [from, to): what a fault costs the requests that still count.
func windowLatency(recs []rec, windows []window, grace, from, to time.Duration) []winLat {
	rows := make([]winLat, len(windows)+1)
	lats := make([][nBackends][]time.Duration, len(windows)+1)
	for i, w := range windows {
		rows[i].what = w.What
	}
	rows[len(windows)].what = "the rest of the main phase"
	for _, x := range recs {
		if x.out != outOK || x.end < from || x.start >= to {
			continue
		}
		if _, ex := excluded(x.be, x.start, x.end, windows, grace); ex {
			continue
		}
		in := false
		for i, w := range windows {
			if x.start <= w.End && x.end >= w.Start {
				lats[i][x.be] = append(lats[i][x.be], x.end-x.start)
				in = true
			}
		}
		if !in {
			lats[len(windows)][x.be] = append(lats[len(windows)][x.be], x.end-x.start)
		}
	}
	for i := range rows {
		for b := range nBackends {
			rows[i].n[b] = len(lats[i][b])
			_, rows[i].p99[b], rows[i].max[b] = percentiles(lats[i][b])
		}
	}
	return rows
}

// goal is one line of the verdict.
type goal struct {
	name, want, got string
	ok              bool
}

// result is everything the report shows.
type result struct {
	r       *run
	be      [nBackends]beStats
	all     beStats // every back end that wants OK
	winLat  []winLat
	sd      shutdownStats
	series  []sample
	logTop  []logCount
	logN    int
	panics  []string
	reloads int
	reloadF int
	goals   []goal
	version string
	machine string
	when    time.Time
}

func (res *result) passed() bool {
	return !slices.ContainsFunc(res.goals, func(g goal) bool { return !g.ok })
}

type logCount struct {
	line string
	n    int
}

var logPrefix = regexp.MustCompile(`^\S+\[\d+\] :`)

// summariseLog counts the daemon's log lines with numbers folded.
func summariseLog(lines []string) (top []logCount, panics []string, reloads, reloadFails int) {
	counts := map[string]int{}
	for _, l := range lines {
		body := logPrefix.ReplaceAllString(l, "")
		switch {
		case strings.Contains(body, "panic") || strings.HasPrefix(body, "fatal error") || strings.HasPrefix(body, "goroutine "):
			if len(panics) < 10 {
				panics = append(panics, l)
			}
		case strings.HasPrefix(body, "reloaded:"):
			reloads++
		case strings.HasPrefix(body, "reload failed"):
			reloadFails++
		}
		counts[shortDetail(body)]++
	}
	for l, n := range counts {
		top = append(top, logCount{l, n})
	}
	slices.SortFunc(top, func(a, b logCount) int { return cmp.Or(b.n-a.n, strings.Compare(a.line, b.line)) })
	return top, panics, reloads, reloadFails
}

func analyse(r *run) *result {
	res := &result{r: r, series: r.smp.all(), when: time.Now().UTC(), machine: machine()}
	if out, err := exec.Command(r.bin, "--version").CombinedOutput(); err == nil {
		res.version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	r.rec.mu.Lock()
	res.be, res.sd = classify(r.rec.recs, r.rec.details, r.windows, r.p.grace, r.sigterm)
	res.winLat = windowLatency(r.rec.recs, r.windows, r.p.grace, r.mainFrom, r.mainTo)
	r.rec.mu.Unlock()
	for b := range nBackends {
		if b.want() != "OK" {
			continue
		}
		s := res.be[b]
		res.all.Counted += s.Counted
		res.all.OK += s.OK
		res.all.Failed += s.Failed
		res.all.Excluded += s.Excluded
		res.all.lat = append(res.all.lat, s.lat...)
	}
	res.all.P50, res.all.P99, res.all.Max = percentiles(res.all.lat)
	lines := r.fx.logLines()
	res.logN = len(lines)
	res.logTop, res.panics, res.reloads, res.reloadF = summariseLog(lines)
	r.peak = peakDuring(res.series, r.baseline.T, r.sigterm)
	r.atStop = lastBefore(res.series, r.mainTo)
	res.goals = res.judge()
	return res
}

// peakDuring is the sample with the largest RSS in [from, to), with the
// largest descriptor and goroutine counts of the stretch folded in.
func peakDuring(series []sample, from, to time.Duration) sample {
	var p sample
	for _, x := range series {
		if x.T < from || (to > 0 && x.T >= to) {
			continue
		}
		if x.RSS > p.RSS {
			fds, g := p.FDs, p.Goroutines
			p = x
			p.FDs, p.Goroutines = max(fds, x.FDs), max(g, x.Goroutines)
		} else {
			p.FDs, p.Goroutines = max(p.FDs, x.FDs), max(p.Goroutines, x.Goroutines)
		}
	}
	return p
}

// lastBefore is the last sample taken before t.
func lastBefore(series []sample, t time.Duration) sample {
	var x sample
	for _, s := range series {
		if s.T < t {
			x = s
		}
	}
	return x
}

func (res *result) judge() []goal {
	r := res.r
	var gs []goal
	add := func(name, want, got string, ok bool) { gs = append(gs, goal{name, want, got, ok}) }
	if r.aborted != "" {
		add("run completed", "every phase", r.aborted, false)
	}
	failed := 0
	for b := range nBackends {
		failed += res.be[b].Failed
	}
	add("failed good requests", "0", fmt.Sprint(failed), failed == 0)
	var empty []string
	for b := range nBackends {
		if res.be[b].OK == 0 {
			empty = append(empty, b.String())
		}
	}
	got := "all"
	if len(empty) > 0 {
		got = strings.Join(empty, ", ") + ": none"
	}
	add("every back end answered good requests", "> 0 each", got, len(empty) == 0)
	add("requests in flight at SIGTERM answered", "all",
		fmt.Sprintf("%d of %d (%d as wanted)", res.sd.InFlightAnswered, res.sd.InFlight, res.sd.InFlightOK),
		r.sigterm > 0 && res.sd.InFlightAnswered == res.sd.InFlight)
	add("exit after SIGTERM under load", "status 0 within "+goalExit.String(),
		fmt.Sprintf("status %d after %s", r.exitCode, r.exitAfter.Round(time.Millisecond)),
		r.sigterm > 0 && r.exitCode == 0 && r.exitAfter >= 0 && r.exitAfter <= goalExit)
	var over int64
	for k := range nKinds {
		over += r.hst.overBound[k].Load()
	}
	add("no hang: held connections cut by the read timeout", "all within "+r.p.holdBound.String(),
		fmt.Sprintf("%d over", over), over == 0)
	add("hostile input answered correctly", "0 anomalies", fmt.Sprint(r.hst.anomalies.Load()), r.hst.anomalies.Load() == 0)
	r.fst.mu.Lock()
	add("PAM fault users: every request answered NO within the request timeout", "0 bad",
		fmt.Sprintf("%d bad of %d", len(r.fst.bad), r.fst.total), len(r.fst.bad) == 0 && r.fst.total > 0)
	r.fst.mu.Unlock()
	add("SIGHUP reloads under load", fmt.Sprintf("%d reloaded", r.hups),
		fmt.Sprintf("%d reloaded, %d failed", res.reloads, res.reloadF), res.reloads == r.hups && res.reloadF == 0)
	add("no panic or runtime crash in the log", "0", fmt.Sprint(len(res.panics)), len(res.panics) == 0)
	idle := max(r.startup.RSS, r.baseline.RSS)
	add("idle RSS", "< 15 MiB", mib(idle), idle > 0 && idle < goalIdleRSS)
	add("RSS with 2,000 connections open", "< 64 MiB", fmt.Sprintf("%s (%d descriptors over the baseline)",
		mib(r.at2000.RSS), r.at2000.FDs-r.baseline.FDs), r.at2000.RSS > 0 && r.at2000.RSS < goalConnsRSS &&
		r.at2000.FDs-r.baseline.FDs >= r.p.conns*97/100)
	b, e := r.baseline, r.endBase
	add("descriptors back to baseline", fmt.Sprintf("≤ %d (baseline + PAM workers' pipes)", fdLimit(b, e)),
		fmt.Sprintf("%d (baseline %d, peak %d)", e.FDs, b.FDs, r.peak.FDs), e.FDs > 0 && e.FDs <= fdLimit(b, e))
	if b.Goroutines >= 0 && e.Goroutines >= 0 {
		add("goroutines back to baseline", fmt.Sprintf("≤ %d", goroutineLimit(b, e)),
			fmt.Sprintf("%d (baseline %d, peak %d)", e.Goroutines, b.Goroutines, r.peak.Goroutines),
			e.Goroutines <= goroutineLimit(b, e))
	} else {
		add("threads back to baseline (no --metrics: no goroutine count)", fmt.Sprintf("≤ %d", b.Threads+4),
			fmt.Sprintf("%d (baseline %d)", e.Threads, b.Threads), e.Threads <= b.Threads+4)
	}
	// A smoke test settles for seconds: the runtime has not collected yet,
	// so its memory says nothing.
	judged := r.p.total >= fullRun
	notJudged := func(ok bool) bool { return ok || !judged }
	suffix := ""
	if !judged {
		suffix = " (not judged: a run under " + fullRun.String() + " settles too briefly)"
	}
	add("no growth after the load stops", "RSS at the end ≤ RSS when it stopped (+1 MiB of noise)",
		fmt.Sprintf("%s, from %s%s", mib(e.RSS), mib(r.atStop.RSS), suffix),
		notJudged(r.atStop.RSS > 0 && e.RSS > 0 && e.RSS <= r.atStop.RSS+1<<20))
	add("memory back to baseline", "RSS ≤ "+mib(rssLimit(b, r.peak)),
		fmt.Sprintf("%s (baseline %s, peak %s)%s", mib(e.RSS), mib(b.RSS), mib(r.peak.RSS), suffix),
		notJudged(e.RSS > 0 && e.RSS <= rssLimit(b, r.peak)))
	return gs
}

// fullRun is the shortest run whose memory goals are judged.
const fullRun = 5 * time.Minute

// The tolerances of "back to baseline". A PAM worker that crashed is
// replaced on the next request, not at once, so the end may have fewer
// workers than the baseline (never more: there are at most -n); each
// worker holds three pipes and two goroutines in the daemon. Beyond that
// only a few descriptors and goroutines may differ: the metrics scrape's
// connection, rimap's pool being refilled.
func fdLimit(b, e sample) int { return b.FDs + 3*max(0, e.Children-b.Children) + 2 }

func goroutineLimit(b, e sample) int { return b.Goroutines + 2*max(0, e.Children-b.Children) + 4 }

// rssLimit: the end may exceed the baseline by a quarter or 4 MiB, plus
// what Go's runtime keeps for good after a peak of goroutines, whatever
// it returns: the g of every goroutine (it reuses them, never frees them),
// the poll descriptor of every connection open at once, the span and stack
// metadata of the peak. That is about 2.6 KiB per goroutine at the peak
// (5.4 MiB after 2,079 connection goroutines, measured with the heap handed
// back); the allowance is 3 KiB. A leak grows with time, not with the
// peak: "no growth after the load stops" and the absolute RSS judge that.
func rssLimit(b, peak sample) int64 {
	return b.RSS + max(b.RSS/4, 4<<20) + 3<<10*int64(max(0, peak.Goroutines-b.Goroutines))
}

func machine() string {
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s", runtime.NumCPU(), runreport.CPUModel(), runreport.KernelRelease(), runtime.Version())
}

func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func (res *result) markdown(svgName string) string {
	r, p := res.r, res.r.p
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	verdict := "**every goal met**"
	if n := len(slices.DeleteFunc(slices.Clone(res.goals), func(g goal) bool { return g.ok })); n > 0 {
		verdict = fmt.Sprintf("**%d goal(s) missed**", n)
	}
	w("# Soak and faults\n\n")
	w("Written by `make soak` (`go run ./test/soak -d %s`; `SOAKTIME` sets the length) on %s.  \n", p.total, res.when.Format("2006-01-02 15:04 MST"))
	w("Machine: %s, shared with other work. Binary: `%s` (%s). Verdict: %s.\n\n", res.machine, r.bin, cmp.Or(res.version, "version unknown"), verdict)
	w("![RSS, goroutines and open descriptors of the daemon, sampled every second](%s)\n\n", svgName)

	w("## Goals\n\n| Goal | Target | Measured | |\n|---|---|---|---|\n")
	for _, g := range res.goals {
		mark := "met"
		if !g.ok {
			mark = "**MISSED**"
		}
		w("| %s | %s | %s | %s |\n", g.name, g.want, g.got, mark)
	}

	w("\n## What ran\n\n")
	w("The daemon: `saslgate serve -f -m RUNDIR --config saslgate.conf")
	if r.metrics {
		w(" --metrics 127.0.0.1:PORT")
	}
	w("`, as root, with this configuration:\n\n```\n%s```\n\n", r.fx.configText(p))
	w("Its timeouts are the defaults for a run of 5 minutes or more and shrink in proportion for shorter runs (a smoke test), so that idle clients are cut, hung PAM workers killed and old configurations closed after SIGHUP before the run settles. ")
	w("smtp goes through `sasldb,pam`: sasldb (a file written by `saslpasswd2`) accepts its users; for anyone else it rejects and PAM runs the service file the soak writes to `/etc/pam.d`: `mechs/pam/testdata/testmod.c` (built with gcc) first, which segfaults for user `crash`, calls `abort()` for `abort`, `_exit(3)` for `exit`, sleeps an hour for `hang` and ignores everyone else, then `pam_unix.so nodelay` for a throw-away system user `%s` (sha512-crypt, 5,000 rounds). imap goes to rimap against a private Dovecot 2.3 on 127.0.0.1 (`test/internal/dovecot`; its pool of warm connections is on, the default).\n\n", sysUser)
	w("Phases: start-up; warm-up (%d requests per back end, %d at a time, so every PAM worker starts); a quiet reference (%s of good load alone); the baseline; %d held hostile connections opened alone (the RSS at 2,000 connections); the main phase (%s) with good clients, hostile clients and faults; the load stopped and %s of settling under a trickle of good requests (one sasldb client, a request every %s), which stops %s before the end baseline, as the baseline is taken %s after the quiet reference (the daemon counts as idle after that much quiet: its idle connection goroutines end after 5 s, and it hands its heap back after a full idle interval of 10 s); the final phase (%s): load again and SIGTERM in the middle of it.\n\n",
		4*p.procs, p.procs, p.quiet, p.conns, p.main, p.settle, trickle, p.rest, p.rest, p.final)
	w("Good clients (each a loop, one connection per request as libsasl does, bounded at %s a request): 3 on a sasldb user, 1 on a sasldb user sending the fifth field (client address), 2 on the PAM user, 2 on the Dovecot user, 1 with a wrong sasldb password (it wants `NO`, after the 2 s failure delay).\n\n", p.goodTimeout)
	w("Hostile clients: %d idle, %d slowloris (a valid 118-byte request, one byte a second, never finished within the read timeout), %d half-written frames (then hold, half-close or close), reconnecting whenever the daemon cuts them, so about %d connections are open at any time; plus 20 that send a full request and vanish before or during the reply, and 20 that send garbage (random bytes, a 300-byte field, an empty login, a 65,535-byte length, a request followed by 128 KiB).\n\n",
		p.conns*65/100, p.conns*30/100, p.conns-p.conns*65/100-p.conns*30/100, p.conns)
	w("Fault users: three clients looping on `crash`/`abort`, `exit`/`crash` and `hang` through PAM for most of the main phase.\n\n")

	w("## Good requests\n\n")
	w("A request counts when its own back end was up. A rimap request overlapping a window in which Dovecot was deliberately down (stalled, stopped, killed) or within %s after it came back is not counted: there its `NO` (TEMPFAIL) is the right answer. Those are listed apart. Requests during the PAM faults, the SIGHUPs and Dovecot's slowed window count.\n\n", p.grace)
	w("| Back end | Counted | Answered as wanted | Failed | p50 | p99 | Max | Not counted (own back end down): replies |\n|---|---|---|---|---|---|---|---|\n")
	for be := range nBackends {
		s := res.be[be]
		w("| %s (wants `%s`) | %d | %d | %d | %s | %s | %s | %s |\n", be, be.want(), s.Counted, s.OK, s.Failed, ms(s.P50), ms(s.P99), ms(s.Max), exclText(s))
	}
	w("| **all that want OK** | %d | %d | %d | %s | %s | %s | %d |\n\n", res.all.Counted, res.all.OK, res.all.Failed, ms(res.all.P50), ms(res.all.P99), ms(res.all.Max), res.all.Excluded)
	w("Quiet reference (good load alone, 3 clients, before the hostile traffic): %s.\n\n", r.quiet)
	w("Latency of the counted good requests during each fault (p99 / max, requests):\n\n| During | sasldb | pam | rimap |\n|---|---|---|---|\n")
	for _, row := range res.winLat {
		w("| %s |", row.what)
		for _, be := range []backend{beSasldb, bePAM, beRimap} {
			if row.n[be] == 0 {
				w(" – |")
				continue
			}
			w(" %s / %s (%d) |", ms(row.p99[be]), ms(row.max[be]), row.n[be])
		}
		w("\n")
	}
	w("\n")
	w("The slowest counted answers (start, duration): ")
	for be := range nBackends {
		var xs []string
		for _, x := range res.be[be].slowest {
			xs = append(xs, fmt.Sprintf("%s %s", secs(x.start), (x.end-x.start).Round(time.Millisecond)))
		}
		w("%s: %s; ", be, strings.Join(xs, ", "))
	}
	w("\n\n")
	for be := range nBackends {
		if s := res.be[be]; s.Failed > 0 {
			w("Failures of %s (first %d):\n\n", be, len(s.failSamples))
			for _, f := range s.failSamples {
				w("- %s\n", f)
			}
			w("\n")
		}
	}

	w("## SIGTERM under load\n\n")
	if r.sigterm > 0 {
		w("SIGTERM at %s, with %d held hostile connections, slowloris and good clients running. Requests sent before it and finished after it: %d; answered: %d, as wanted: %d. Connections refused after it (the daemon removes `mux` first, as it must): %d. The daemon exited with status %d after %s.\n\n",
			secs(r.sigterm), p.conns/4, res.sd.InFlight, res.sd.InFlightAnswered, res.sd.InFlightOK, res.sd.Refused, r.exitCode, r.exitAfter.Round(time.Millisecond))
	} else {
		w("Not reached.\n\n")
	}

	w("## Hostile clients\n\n| Kind | Connections | Cut by the daemon | Longest before the cut | Over %s | Dial errors |\n|---|---|---|---|---|---|\n", p.holdBound)
	for k := range nKinds {
		h := r.hst
		life := "–"
		if k.holds() {
			life = secs(time.Duration(h.maxLife[k].Load()))
		}
		w("| %s | %d | %d | %s | %d | %d |\n", k, h.opened[k].Load(), h.cut[k].Load(), life, h.overBound[k].Load(), h.dialErrs[k].Load())
	}
	var rl []logCount
	r.hst.replies.Range(func(key, v any) bool {
		rl = append(rl, logCount{key.(string), int(v.(interface{ Load() int64 }).Load())})
		return true
	})
	slices.SortFunc(rl, func(a, b logCount) int { return strings.Compare(a.line, b.line) })
	w("\nReplies the hostile clients got:\n\n")
	for _, x := range rl {
		w("- %s: %d\n", strings.ReplaceAll(x.line, "|", "\\|"), x.n)
	}
	w("\nAnomalies (an OK to garbage, a reply to a truncated request, a wrong reply to an oversized field or empty login): %d.\n", r.hst.anomalies.Load())
	for _, a := range r.hst.anomFirst {
		w("- %s\n", a)
	}

	r.fst.mu.Lock()
	w("\n## PAM fault users\n\n%d requests. Replies:\n\n", r.fst.total)
	for _, k := range slices.Sorted(maps.Keys(r.fst.n)) {
		w("- %s: %d\n", k, r.fst.n[k])
	}
	w("\nLongest answer: ")
	for _, u := range slices.Sorted(maps.Keys(r.fst.maxLat)) {
		w("%s %s; ", u, r.fst.maxLat[u].Round(time.Millisecond))
	}
	w("(a hang is killed at the request timeout, %s, then waits the failure delay). Problems: %d.\n", p.requestTimeout, len(r.fst.bad))
	for i, x := range r.fst.bad {
		if i == 10 {
			break
		}
		w("- %s\n", x)
	}
	r.fst.mu.Unlock()

	w("\n## Memory, goroutines, descriptors\n\n")
	w("Sampled every second from `/proc/PID/status` (VmRSS, RssAnon, RssFile, Threads), `/proc/PID/fd`, `/proc/PID/task/*/children` (PAM workers)")
	if r.metrics {
		w(" and the daemon's `--metrics` endpoint (`go_goroutines`, `saslgate_open_connections`)")
	}
	w(". Baselines are the median of three samples a second apart.\n\n")
	w("| Moment | t | RSS | anon / file | Go heap / stacks in use, next GC at | Goroutines | Threads | Descriptors | PAM workers | Open connections |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range []struct {
		name string
		x    sample
	}{{"start-up", r.startup}, {"baseline (after warm-up)", r.baseline}, {"2,000 connections open", r.at2000},
		{"peak under load (largest RSS; largest counts)", r.peak}, {"end of settling", r.endBase}} {
		x := m.x
		w("| %s | %s | %s | %s / %s | %s / %s, %s | %s | %d | %d | %d | %s |\n", m.name, secs(x.T), mib(x.RSS), mib(x.RssAnon), mib(x.RssFile),
			mibOr(x.HeapInuse), mibOr(x.StackInuse), mibOr(x.NextGC), unknown(x.Goroutines), x.Threads, x.FDs, x.Children, unknown(x.OpenConns))
	}
	if b, e := r.baseline, r.endBase; e.RSS > 0 && b.RSS > 0 {
		d := func(a, b int64) string { return fmt.Sprintf("%+.1f MiB", float64(a-b)/(1<<20)) }
		w("\nThe end of settling against the baseline: RSS %s = RssAnon %s", d(e.RSS, b.RSS), d(e.RssAnon, b.RssAnon))
		if e.HeapInuse >= 0 && b.HeapInuse >= 0 {
			w(" (Go heap in use %s, of which the heap that survived the last collection ≈ %s, judging by next GC; stacks %s; the rest is memory the runtime keeps for reuse)",
				d(e.HeapInuse, b.HeapInuse), d(e.NextGC/2, b.NextGC/2), d(e.StackInuse, b.StackInuse))
		}
		w(" + RssFile %s; OS threads %+d (the Go runtime keeps the threads it started).\n", d(e.RssFile, b.RssFile), e.Threads-b.Threads)
	}
	w("\nRSS includes the pages of the binary and its libraries the process has touched (RssFile), shared with every other process mapping them; RssAnon is the daemon's own memory. ")
	if r.metrics {
		w("The Go heap in use holds live objects and garbage not yet collected; \"next GC at\" is twice the heap that survived the last collection (never under 4 MiB), so it falls back when nothing is kept. The rest of RssAnon is memory the runtime keeps for reuse and returns to the system gradually. ")
	}
	w("RLIMIT_NOFILE: the Go runtime raises the daemon's soft limit to its hard limit at start; the soak raises its own and the hard limit when they are below %d.\n\n", 2*p.conns+4096)

	w("## Timeline\n\n| t | Event |\n|---|---|\n")
	for _, e := range r.events {
		w("| %s | %s |\n", secs(e.T), strings.ReplaceAll(e.What, "|", "\\|"))
	}
	w("\nFault windows: ")
	for _, win := range r.windows {
		w("%s %s–%s; ", win.What, secs(win.Start), secs(win.End))
	}
	w("\n\n## Daemon log\n\n%d lines; the most frequent, numbers folded to N:\n\n| Count | Line |\n|---|---|\n", res.logN)
	for i, l := range res.logTop {
		if i == 15 {
			break
		}
		w("| %d | `%s` |\n", l.n, strings.ReplaceAll(l.line, "|", "\\|"))
	}
	if len(res.panics) > 0 {
		w("\nPanics and crashes:\n\n")
		for _, l := range res.panics {
			w("- `%s`\n", l)
		}
	}
	w("\nWarm-up: %s.\n", strings.Join(r.warm, "; "))
	return b.String()
}

func exclText(s beStats) string {
	if s.Excluded == 0 {
		return "–"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.ExclReplies)) {
		parts = append(parts, fmt.Sprintf("%d × %s", s.ExclReplies[k], strings.ReplaceAll(k, "|", "\\|")))
	}
	return fmt.Sprintf("%d: %s", s.Excluded, strings.Join(parts, "; "))
}

func mibOr(b int64) string {
	if b < 0 {
		return "–"
	}
	return mib(b)
}

func unknown(n int) string {
	if n < 0 {
		return "–"
	}
	return fmt.Sprint(n)
}
