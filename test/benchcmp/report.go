package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/saslgate/saslgate/test/internal/runreport"
	"github.com/saslgate/saslgate/test/load"
)

// The memory goals of issue 7, for saslgate's main process.
const (
	idleGoal  = 15 << 20
	connsGoal = 64 << 20
)

const (
	cyrusColor, sgateColor = "#d95f02", "#1b7fb3"
	causesFile             = "test/benchcmp/causes.go"
)

type report struct {
	cfg       *config
	scenarios []*scenario
	startups  map[string][]startup
	mem       map[string]memReport
	lookup    *lookupBench
	took      time.Duration
}

// write writes the plots and the Markdown report.
func (r *report) write() error {
	if err := os.MkdirAll(r.cfg.svgDir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.cfg.out), 0o755); err != nil {
		return err
	}
	for _, sc := range r.scenarios {
		if len(sc.points) == 0 {
			continue
		}
		for kind, c := range sc.charts() {
			if err := os.WriteFile(filepath.Join(r.cfg.svgDir, sc.name+"-"+kind+".svg"), c.svg(), 0o644); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(r.cfg.out, []byte(r.markdown()), 0o644)
}

// charts are the scenario's two plots, by file-name suffix.
func (sc *scenario) charts() map[string]chart {
	mk := func(name, color string, dashed, square bool, pick func(point) resultSet, val func(load.Result) float64) series {
		s := series{name: name, color: color, dashed: dashed, square: square}
		for _, p := range sc.points {
			rs := pick(p)
			s.xs = append(s.xs, float64(p.conc))
			s.ys = append(s.ys, val(rs.med))
			lo, hi := val(rs.rounds[0]), val(rs.rounds[0])
			for _, r := range rs.rounds {
				lo, hi = min(lo, val(r)), max(hi, val(r))
			}
			s.lo, s.hi = append(s.lo, lo), append(s.hi, hi)
		}
		return s
	}
	cy := func(p point) resultSet { return p.cyrus }
	sg := func(p point) resultSet { return p.sgate }
	rpsOf := func(r load.Result) float64 { return r.RPS() }
	p99Of := func(r load.Result) float64 { return float64(r.P99.Microseconds()) / 1000 }
	return map[string]chart{
		"rps": {title: sc.name + ": throughput", yLabel: "requests/s", series: []series{
			mk("Cyrus saslauthd", cyrusColor, true, true, cy, rpsOf), mk("saslgate", sgateColor, false, false, sg, rpsOf)}},
		"p99": {title: sc.name + ": p99 latency", yLabel: "p99 (ms, log scale)", logY: true, series: []series{
			mk("Cyrus saslauthd", cyrusColor, true, true, cy, p99Of), mk("saslgate", sgateColor, false, false, sg, p99Of)}},
	}
}

// svgLink is the path of a plot relative to the report.
func (r *report) svgLink(file string) string {
	outDir, _ := filepath.Abs(filepath.Dir(r.cfg.out))
	svgDir, _ := filepath.Abs(r.cfg.svgDir)
	rel, err := filepath.Rel(outDir, filepath.Join(svgDir, file))
	if err != nil {
		return filepath.Join(svgDir, file)
	}
	return filepath.ToSlash(rel)
}

func (r *report) peer(name string, conc int) (point, bool) {
	for _, sc := range r.scenarios {
		if sc.name != name {
			continue
		}
		for _, p := range sc.points {
			if p.conc == conc {
				return p, true
			}
		}
	}
	return point{}, false
}

func (r *report) markdown() string {
	var b strings.Builder
	cfg := r.cfg
	b.WriteString("# Benchmarks\n\n")
	if cfg.quick {
		b.WriteString("> **Quick mode (BENCH_QUICK=1): a smoke test with one short round per point. These numbers are not for reading.**\n\n")
	}
	fmt.Fprintf(&b, "Written by `make bench` on %s in %s. saslgate against the real Cyrus `saslauthd` "+
		"(Debian's sasl2-bin %s), side by side in one run.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), r.took.Round(time.Second), version("saslauthd", "-v"))

	b.WriteString("Contents: [goals](#goals) · [memory](#memory) · [start-up](#start-up) · [machine](#machine) · [method and commands](#method-and-commands)")
	for _, sc := range r.scenarios {
		fmt.Fprintf(&b, " · [%s](#%s)", sc.name, sc.name)
	}
	b.WriteString("\n\n")

	r.writeGoals(&b)
	r.writeMemory(&b)
	r.writeStartup(&b)
	r.writeMachine(&b)
	r.writeMethod(&b)
	for _, sc := range r.scenarios {
		r.writeScenario(&b, sc)
	}
	return b.String()
}

func mark(v verdict) string {
	switch {
	case !v.known:
		return "? " + v.detail
	case v.met:
		return "✅ " + v.detail
	}
	return "❌ " + v.detail
}

func (r *report) writeGoals(b *strings.Builder) {
	b.WriteString("## Goals\n\n")
	b.WriteString("The speed goals of the mechanism issues, at every measured point: ✅ met, ❌ missed (the gap is the number against the goal; " +
		"the cause is under the scenario), — no goal at that concurrency. Ratios are saslgate ÷ Cyrus.\n\n")
	b.WriteString("| issue | scenario | goal |")
	for _, c := range r.cfg.concs {
		fmt.Fprintf(b, " C=%d |", c)
	}
	b.WriteString("\n|---|---|---|")
	for range r.cfg.concs {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, sc := range r.scenarios {
		for _, g := range goals[sc.name] {
			fmt.Fprintf(b, "| #%d | [%s](#%s) | %s |", g.issue, sc.name, sc.name, g.text)
			for _, c := range r.cfg.concs {
				b.WriteString(" " + r.cell(sc, g, c) + " |")
			}
			b.WriteString("\n")
		}
	}
	if r.lookup != nil {
		fmt.Fprintf(b, "\nIssue #5, a cache hit against the sasldb lookup it saves, without the connection around them "+
			"(`BenchmarkCacheVsSasldb`, see [sasldb-cache](#sasldb-cache)): %s.\n", mark(r.lookup.verdict()))
	}
	if m, ok := r.mem["saslgate"]; ok {
		fmt.Fprintf(b, "\nIssue #7, saslgate's [memory](#memory) (VmRSS): idle under 15 MiB: %s; with %d open connections under 64 MiB: %s.\n",
			memVerdict(m.idle.rssMain, idleGoal), r.cfg.conns, memVerdict(m.conns.rssMain, connsGoal))
	}
	b.WriteString("\n")
}

func memVerdict(v, goal int64) string {
	if v < goal {
		return "✅ " + mib(v)
	}
	return "❌ " + mib(v)
}

func (r *report) cell(sc *scenario, g goal, conc int) string {
	if !g.set(conc) {
		return "—"
	}
	for _, p := range sc.points {
		if p.conc == conc {
			return mark(g.check(p, r.peer))
		}
	}
	return "not measured"
}

func (r *report) writeMemory(b *strings.Builder) {
	b.WriteString("## Memory\n\n")
	if len(r.mem) == 0 {
		b.WriteString("Not measured in this run.\n\n")
		return
	}
	fmt.Fprintf(b, "Each daemon as in the sasldb scenario (`-a sasldb -n 5`), started afresh: idle after start-up and one answered request; "+
		"then with %d connections opened that send nothing (as stalled clients); then after they are closed. Each state is left for 1 s "+
		"before it is read from /proc; the last one is read again %s later (saslgate hands the heap a burst left back to the system "+
		"after an idle interval). VmRSS is the main process's; Σ PSS sums the proportional set size over the process and its "+
		"children (Cyrus's `-n` workers share pages with their parent, which Σ PSS counts once).\n\n", r.cfg.conns, memRest)
	fmt.Fprintf(b, "| daemon | processes | VmRSS idle (anon) | Σ PSS idle | connections taken | VmRSS with them (anon) | Σ PSS with them | descriptors with them | VmRSS after (anon) | Σ PSS after | VmRSS %s later (anon) |\n", memRest)
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range []string{"cyrus", "saslgate"} {
		m, ok := r.mem[name]
		if !ok {
			continue
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s | %d of %d | %s | %s | %d | %s | %s | %s |\n", daemonTitle(name), m.idle.procs,
			rssAnon(m.idle), mib(m.idle.pssTree), m.held, r.cfg.conns, rssAnon(m.conns), mib(m.conns.pssTree),
			m.conns.fds, rssAnon(m.after), mib(m.after.pssTree), rssAnon(m.rested))
	}
	if m, ok := r.mem["cyrus"]; ok && m.held < r.cfg.conns {
		fmt.Fprintf(b, "\nCyrus took %d connections: one per worker, then its listen backlog; the next connect failed (%s), "+
			"as a client's connect blocks on a real host. saslgate accepts every connection (up to `--max-conns`, 4096) and "+
			"closes one that stays silent past the read timeout (30 s).\n", m.held, r.scrub(m.refused))
	}
	if m, ok := r.mem["saslgate"]; ok {
		fmt.Fprintf(b, "\nGoals (issue 7), saslgate's VmRSS: idle under 15 MiB: %s; with %d open connections under 64 MiB: %s.\n\n",
			memVerdict(m.idle.rssMain, idleGoal), r.cfg.conns, memVerdict(m.conns.rssMain, connsGoal))
		r.writeCause(b, "memory", m.idle.rssMain >= idleGoal || m.conns.rssMain >= connsGoal)
	} else {
		b.WriteString("\n")
	}
}

// rssAnon is the main process's VmRSS with its anonymous part.
func rssAnon(m memSample) string {
	return fmt.Sprintf("%s (%s)", mib(m.rssMain), mib(m.anonMain))
}

func daemonTitle(name string) string {
	if name == "cyrus" {
		return "Cyrus saslauthd"
	}
	return name
}

func (r *report) writeStartup(b *strings.Builder) {
	b.WriteString("## Start-up\n\n")
	if len(r.startups) == 0 {
		b.WriteString("Not measured in this run.\n\n")
		return
	}
	n := len(r.startups["saslgate"])
	argv := startupArgv(r.cfg.bin, "DIR")
	fmt.Fprintf(b, "From the exec of the command until its socket answers a request (any answer), polled every 0.2 ms from the moment of exec, "+
		"%d start-ups each, alternating. The command detaches as an init script runs it: %s and %s, both on the system's /etc/sasldb2, "+
		"where the request's user is not, so the answer is a NO (hence saslgate's failure delay off). NOTIFY_SOCKET points at a datagram "+
		"socket of the benchmark's, and the time READY=1 arrived there is shown where the daemon sent one.\n\n",
		n, r.cmdline(argv["cyrus"]), r.cmdline(argv["saslgate"]))
	b.WriteString("| daemon | socket answers: median | min | max | READY=1: median | min | max |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range []string{"cyrus", "saslgate"} {
		ss := r.startups[name]
		if len(ss) == 0 {
			continue
		}
		var ans, rdy []time.Duration
		for _, s := range ss {
			ans = append(ans, s.answer)
			if s.ready > 0 {
				rdy = append(rdy, s.ready)
			}
		}
		fmt.Fprintf(b, "| %s | %s |", daemonTitle(name), durStats(ans))
		if len(rdy) == 0 {
			b.WriteString(" not sent | | |\n")
		} else {
			fmt.Fprintf(b, " %s |", durStats(rdy))
			if len(rdy) < len(ss) {
				fmt.Fprintf(b, " (%d of %d)", len(rdy), len(ss))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
}

// durStats is "median | min | max" in milliseconds.
func durStats(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%s | %s | %s", ms(s[len(s)/2]), ms(s[0]), ms(s[len(s)-1]))
}

func version(argv ...string) string {
	out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	for _, f := range strings.Fields(string(out)) {
		if len(f) > 0 && f[0] >= '0' && f[0] <= '9' && strings.Contains(f, ".") {
			return f
		}
	}
	return "unknown"
}

func machine() string {
	mem := "unknown"
	if v, err := procKB("/proc/meminfo", "MemTotal"); err == nil {
		mem = fmt.Sprintf("%.1f GiB", float64(v)/(1<<30))
	}
	deb, _ := os.ReadFile("/etc/debian_version")
	return fmt.Sprintf("%d CPUs (%s), %s RAM, Linux %s, Debian %s, %s",
		runtime.NumCPU(), runreport.CPUModel(), mem, runreport.KernelRelease(), strings.TrimSpace(string(deb)), runtime.Version())
}

func (r *report) writeMachine(b *strings.Builder) {
	b.WriteString("## Machine\n\n")
	fmt.Fprintf(b, "%s. Cyrus SASL saslauthd %s, Dovecot %s. Load average (1, 5, 15 min) at the start: %s; at the end: %s.\n\n",
		machine(), version("saslauthd", "-v"), version("dovecot", "--version"), r.cfg.loadStart, r.cfg.loadFinish)
	b.WriteString("The load generator runs on the same cores as both daemons (and Dovecot), and the machine may be shared: " +
		"absolute numbers move between runs, so read the ratios, which compare the two daemons measured in alternation in the same run.\n\n")
}

func (r *report) writeMethod(b *strings.Builder) {
	cfg := r.cfg
	b.WriteString("## Method and commands\n\n")
	args := strings.Join(cfg.args, " ")
	if args != "" {
		args = " " + args
	}
	fmt.Fprintf(b, "`make bench` (as root) builds `bin/saslgate`, runs the Go benchmarks, then `go run ./test/benchcmp%s`, "+
		"which writes this file and the plots in `docs/bench/`. `BENCH_QUICK=1 make bench` is a smoke test of two or three minutes that writes "+
		"below the temporary directory instead; `go run ./test/benchcmp -h` lists the flags (`-only`, `-c`, `-d`, `-rounds`, ...).\n\n", args)
	fmt.Fprintf(b, "Each measurement: C concurrent clients of the load generator (`test/load`, the code behind "+
		"`saslgate bench -f SOCKET -u USER -p PASSWORD -s SERVICE -c C -d DURATION`): C threads of C code, each doing per "+
		"request what libsasl's saslauthd client does (a new socket, a blocking connect, the request in one write, blocking "+
		"reads of the reply, close), every reply checked to be `OK`. It costs each request about what a real client costs; "+
		"the Go client it replaced spent more CPU per request than the daemons it measured, on the same cores, and capped "+
		"both near the same rate. A point is %d rounds, each measuring Cyrus then saslgate for %s; "+
		"the round with the median throughput is reported, with its latencies; the plots' whiskers span the slowest to the fastest round.\n\n",
		cfg.rounds, cfg.dur)
	fmt.Fprintf(b, "Crypt-bound scenarios (shadow-yescrypt) measure for %s but go on until at least max(%d, %d×C) requests have started, "+
		"so that a p99 rests on at least %d samples and every client makes %d or more requests. "+
		"Latencies include the queue: at C=256 against a back end that serves 75 requests/s, a request waits about 3.4 s.\n\n",
		cfg.slowDur, cfg.slowMin, cfg.slowPer, cfg.slowMin, cfg.slowPer)
	b.WriteString("Cyrus takes a connection per worker (`-n 5`) plus its listen backlog (about 30); past that a client's connect " +
		"waits in the kernel until a worker accepts, as a libsasl client's does (a blocked connect is not served in order). " +
		"saslgate accepts every connection and queues the requests on its mechanism slots.\n\n")
	b.WriteString("Each scenario starts both daemons as an init script would (they detach), with `-m` pointing at a run directory of its own; " +
		"the commands are under each scenario, `$TMP` standing for the run's temporary directory. The throw-away users (`" +
		userYescrypt + "`, `" + userSha512 + "`), the PAM service and Dovecot exist only for the run.\n\n")
}

// scrub replaces the run's temporary directory with $TMP.
func (r *report) scrub(s string) string {
	if r.cfg.tmp == "" {
		return s
	}
	return strings.ReplaceAll(s, r.cfg.tmp, "$TMP")
}

// cmdline is argv as a shell command, quoted where needed, with $TMP for
// the temporary directory and the -bin path as given.
func (r *report) cmdline(argv []string) string {
	abs, _ := filepath.Abs(r.cfg.bin)
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == abs {
			a = r.cfg.bin
		}
		a = r.scrub(a)
		if strings.ContainsAny(a, " \t\"'&;|<>()*?!") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return "`" + strings.Join(q, " ") + "`"
}

func (r *report) writeScenario(b *strings.Builder, sc *scenario) {
	fmt.Fprintf(b, "## %s\n\n%s\n\n", sc.name, sc.about)
	fmt.Fprintf(b, "- Cyrus: %s\n- saslgate: %s\n- request: user `%s`, service `%s`\n\n",
		r.cmdline(sc.cyrusCmd(filepath.Join(r.cfg.tmp, "cyrus-"+sc.name))),
		r.cmdline(append(slices.Clone(sc.sgateArgv), "-m", filepath.Join(r.cfg.tmp, "saslgate-"+sc.name))),
		sc.req.Login, sc.req.Service)
	if sc.err != nil {
		fmt.Fprintf(b, "**Not (fully) measured:** %s\n\n", r.scrub(sc.err.Error()))
	}
	if len(sc.points) > 0 {
		b.WriteString("| C | Cyrus req/s | saslgate req/s | ratio | Cyrus p50 | saslgate p50 | Cyrus p99 | saslgate p99 | p99 ratio | requests (Cyrus, saslgate) |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		var errs []string
		for _, p := range sc.points {
			c, s := p.cyrus.med, p.sgate.med
			fmt.Fprintf(b, "| %d | %.0f | %.0f | %.2f× | %s | %s | %s | %s | %.2f | %d, %d |\n", p.conc,
				c.RPS(), s.RPS(), ratio(p), ms(c.P50), ms(s.P50), ms(c.P99), ms(s.P99), p99Ratio(p), c.Requests, s.Requests)
			for _, rs := range []struct {
				name string
				set  resultSet
			}{{"Cyrus", p.cyrus}, {"saslgate", p.sgate}} {
				for i, x := range rs.set.rounds {
					if x.Errors+x.Mismatches > 0 {
						errs = append(errs, fmt.Sprintf("C=%d %s round %d: %d errors, %d wrong replies (%s)",
							p.conc, rs.name, i+1, x.Errors, x.Mismatches, x.FirstError))
					}
				}
			}
		}
		if len(errs) > 0 {
			b.WriteString("\nFailed requests: " + strings.Join(errs, "; ") + ".\n")
		} else {
			b.WriteString("\nNo request failed and every reply was `OK`, in every round.\n")
		}
		fmt.Fprintf(b, "\n![%s: requests/s against concurrency](%s) ![%s: p99 against concurrency](%s)\n\n",
			sc.name, r.svgLink(sc.name+"-rps.svg"), sc.name, r.svgLink(sc.name+"-p99.svg"))
		if sc.extraArgv(extraFloor) != nil {
			r.writeFloor(b, sc)
		}
		if sc.extraArgv(extraNocache) != nil {
			r.writeNocache(b, sc)
		}
	}
	gs := goals[sc.name]
	missed := false
	if len(gs) == 0 {
		b.WriteString("Goals: no mechanism issue sets a speed goal for this scenario.\n\n")
	} else {
		b.WriteString("Goals:\n\n")
		for _, g := range gs {
			var cells []string
			for _, c := range g.at {
				cell := r.cell(sc, g, c)
				missed = missed || !strings.HasPrefix(cell, "✅")
				cells = append(cells, fmt.Sprintf("C=%d %s", c, cell))
			}
			fmt.Fprintf(b, "- issue #%d, %s: %s\n", g.issue, g.text, strings.Join(cells, "; "))
		}
		b.WriteString("\n")
	}
	if sc.name == "sasldb-cache" && r.lookup != nil {
		v := r.lookup.verdict()
		missed = missed || !v.met
		fmt.Fprintf(b, "- issue #5, the same without the connection around it: `%s` times a cache hit (the chain's file generation, "+
			"then the cache) against the sasldb lookup it saves, median of %d runs: %s\n\n", r.lookup.cmd, r.lookup.runs, mark(v))
	}
	r.writeCause(b, sc.name, missed)
}

// writeCause prints the text of causes[key], as the cause when a goal is
// missed and as a note otherwise, or "not yet known" when a goal is
// missed and there is no text.
func (r *report) writeCause(b *strings.Builder, key string, missed bool) {
	cause, ok := causes[key]
	switch {
	case ok && missed:
		fmt.Fprintf(b, "> **Cause** (edit `causes[%q]` in `%s`): %s\n\n", key, causesFile, cause)
	case ok:
		fmt.Fprintf(b, "> **Note** (edit `causes[%q]` in `%s`): %s\n\n", key, causesFile, cause)
	case missed:
		fmt.Fprintf(b, "> **Cause** (edit `causes[%q]` in `%s`): not yet known.\n\n", key, causesFile)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// writeFloor is the floor server's table (floor.go): how far above Cyrus
// a Go daemon that does nothing but read and answer gets, in the same
// rounds.
func (r *report) writeFloor(b *strings.Builder, sc *scenario) {
	if slices.Contains(sc.extraArgv(extraFloor), "-imap") {
		b.WriteString("The floor, measured in the same rounds: a Go server that reads each request with saslgate's protocol " +
			"package and answers it with one bare IMAP `LOGIN` on a connection to the same Dovecot dialled and greeted in advance " +
			"(8 kept ready), then sends `LOGOUT` and closes after a good login as any rimap daemon must, and does nothing else " +
			"(no go-imap, no policy, no deadlines, no log). It is about the most any rimap daemon can get from this Dovecot on " +
			"the same two cores.\n\n")
	} else {
		b.WriteString("The floor, measured in the same rounds: a Go server that reads each request with saslgate's protocol " +
			"package, answers `OK` and closes, a goroutine per connection on Go's netpoller, and does nothing else (no policy, cache, " +
			"mechanism, deadline, drain or log). It shows what the connection handling alone allows here, with this load generator " +
			"on the same two cores; the gap between it and saslgate is saslgate's own work.\n\n")
	}
	b.WriteString("| C | floor req/s | floor ÷ Cyrus | saslgate ÷ floor |\n|---:|---:|---:|---:|\n")
	for _, p := range sc.points {
		f := p.extra[extraFloor].med.RPS()
		if f == 0 {
			continue
		}
		fmt.Fprintf(b, "| %d | %.0f | %.2f× | %.2f |\n", p.conc, f, f/max(p.cyrus.med.RPS(), 1), p.sgate.med.RPS()/f)
	}
	b.WriteString("\n")
}

// writeNocache is saslgate without -c, measured in the same rounds, which
// the cache's goal compares with.
func (r *report) writeNocache(b *strings.Builder, sc *scenario) {
	fmt.Fprintf(b, "saslgate without `-c`, measured in the same rounds (%s), against saslgate with it:\n\n",
		r.cmdline(append(slices.Clone(sc.extraArgv(extraNocache)), "-m", filepath.Join(r.cfg.tmp, extraNocache+"-"+sc.name))))
	b.WriteString("| C | without -c req/s | with -c req/s | with ÷ without |\n|---:|---:|---:|---:|\n")
	for _, p := range sc.points {
		n := p.extra[extraNocache].med.RPS()
		if n == 0 {
			continue
		}
		fmt.Fprintf(b, "| %d | %.0f | %.0f | %.2f× |\n", p.conc, n, p.sgate.med.RPS(), p.sgate.med.RPS()/n)
	}
	b.WriteString("\n")
}
