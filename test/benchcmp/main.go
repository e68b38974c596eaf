// Command benchcmp runs saslgate and the real Cyrus saslauthd side by side
// under the same load, in the same run, and writes the comparison to
// BENCHMARKS.md with SVG plots under docs/bench. The machine is shared and
// noisy, so the two daemons are measured in alternation, several rounds
// per point, and the report compares them by ratios.
//
// Besides throughput and latency per scenario it measures each daemon's
// memory idle and with 2,000 open idle connections, and its start-up time.
//
// It needs root: Cyrus saslauthd reads its sasldb from /etc/sasldb2 only
// (so it runs in a private mount namespace with the benchmark's file
// bind-mounted there), and the shadow and pam scenarios need throw-away
// local users and a PAM service file. It needs Debian's sasl2-bin and, for
// rimap, dovecot-imapd. BENCH_QUICK=1 (or -quick) is a smoke test of a
// minute or two that writes below the temporary directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/saslgate/saslgate/protocol"
	"github.com/saslgate/saslgate/test/internal/dovecot"
	"github.com/saslgate/saslgate/test/load"
)

// resultSet is one daemon at one point: the round with the median
// throughput (its latencies go with it) and every round.
type resultSet struct {
	med    load.Result
	rounds []load.Result
}

type point struct {
	conc         int
	cyrus, sgate resultSet
	extra        map[string]resultSet // the scenario's extras, by name
}

// extra is a daemon measured beside Cyrus and saslgate, in the same
// rounds, for a comparison on equal terms.
type extra struct {
	name string   // extraFloor or extraNocache
	argv []string // a daemon that detaches; -m DIR is appended
}

const (
	extraFloor   = "floor"   // the floor server (floor.go)
	extraNocache = "nocache" // saslgate without -c, for the cache's goal
)

// extraArgv is the argv of sc's extra called name, nil if it has none.
func (sc *scenario) extraArgv(name string) []string {
	for _, e := range sc.extras {
		if e.name == name {
			return e.argv
		}
	}
	return nil
}

// scenario is one mechanism set-up measured on both daemons.
type scenario struct {
	name, about string
	cyrusArgv   []string // -m DIR is appended (or DIR, for the unshare wrapper)
	sgateArgv   []string // -m DIR is appended
	req         protocol.Request
	slow        bool // crypt-bound: the slow duration and a minimum of requests per measurement
	// extras are more daemons measured in the same rounds as the two
	extras []extra
	points []point
	err    error // why it was not (fully) measured
}

type config struct {
	bin, out, svgDir      string
	dur, slowDur          time.Duration
	slowMin, slowPer      int
	rounds                int
	conns, startups       int
	benchtime             string // of the Go benchmark BenchmarkCacheVsSasldb
	benchcount            int
	concs                 []int
	only                  []string
	quick                 bool
	tmp                   string
	args                  []string // as given, for the report
	loadStart, loadFinish string   // load averages around the run
}

func (c *config) want(name string) bool {
	if len(c.only) == 0 {
		return true
	}
	for _, o := range c.only {
		if o == name || (strings.HasSuffix(o, "*") && strings.HasPrefix(name, strings.TrimSuffix(o, "*"))) {
			return true
		}
	}
	return false
}

func main() {
	if code, ok := floorMain(os.Args[1:]); ok {
		os.Exit(code)
	}
	log.SetFlags(0)
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		log.Fatal(err)
	}
	if err := run(cfg); err != nil {
		log.Fatal(err)
	}
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("benchcmp", flag.ContinueOnError)
	cfg := &config{args: args}
	fs.StringVar(&cfg.bin, "bin", "bin/saslgate", "saslgate binary")
	fs.StringVar(&cfg.out, "out", "BENCHMARKS.md", "report to write")
	fs.StringVar(&cfg.svgDir, "svg-dir", "docs/bench", "directory for the plots")
	fs.DurationVar(&cfg.dur, "d", 3*time.Second, "duration of one measurement")
	fs.DurationVar(&cfg.slowDur, "slow-d", 2*time.Second, "duration of one measurement of a crypt-bound scenario")
	fs.IntVar(&cfg.slowMin, "slow-min", 200, "at least this many requests per measurement of a crypt-bound scenario")
	fs.IntVar(&cfg.slowPer, "slow-per-client", 2, "and at least this many per client")
	fs.IntVar(&cfg.rounds, "rounds", 5, "alternating rounds per point (the median is reported)")
	concs := fs.String("c", "1,8,64,256", "concurrency levels")
	only := fs.String("only", "", "comma-separated scenarios (and startup, memory, gobench) to run; a trailing * matches a prefix (default: all)")
	fs.IntVar(&cfg.conns, "conns", 2000, "idle connections opened for the memory measurement")
	fs.IntVar(&cfg.startups, "startups", 10, "start-ups measured per daemon")
	fs.StringVar(&cfg.benchtime, "benchtime", "1s", "-benchtime of BenchmarkCacheVsSasldb")
	fs.IntVar(&cfg.benchcount, "benchcount", 5, "runs of BenchmarkCacheVsSasldb (the median is reported)")
	fs.BoolVar(&cfg.quick, "quick", os.Getenv("BENCH_QUICK") == "1",
		"smoke test (default from BENCH_QUICK=1): short measurements, one round, written below the temporary directory")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.quick {
		quick := map[string]func(){
			"d": func() { cfg.dur = 300 * time.Millisecond }, "slow-d": func() { cfg.slowDur = 300 * time.Millisecond },
			"slow-min": func() { cfg.slowMin = 20 }, "slow-per-client": func() { cfg.slowPer = 1 },
			"rounds": func() { cfg.rounds = 1 }, "startups": func() { cfg.startups = 2 },
			"benchtime": func() { cfg.benchtime = "100ms" }, "benchcount": func() { cfg.benchcount = 1 },
			"out":     func() { cfg.out = filepath.Join(os.TempDir(), "saslgate-bench-quick", "BENCHMARKS.md") },
			"svg-dir": func() { cfg.svgDir = filepath.Join(os.TempDir(), "saslgate-bench-quick", "docs", "bench") },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}
	for _, s := range strings.Split(*concs, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			return nil, fmt.Errorf("benchcmp: bad concurrency %q in -c", s)
		}
		cfg.concs = append(cfg.concs, c)
	}
	if *only != "" {
		cfg.only = strings.Split(*only, ",")
	}
	if cfg.rounds < 1 || cfg.dur <= 0 || cfg.slowDur <= 0 {
		return nil, errors.New("benchcmp: -rounds, -d and -slow-d must be positive")
	}
	return cfg, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func run(cfg *config) error {
	if os.Geteuid() != 0 {
		return errors.New("benchcmp: needs root (Cyrus saslauthd reads /etc/sasldb2 only; shadow and pam need throw-away users)")
	}
	for _, prog := range []string{"saslauthd", "saslpasswd2", "unshare", "useradd", "chpasswd"} {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Errorf("benchcmp: %s not found (make deps installs it): %w", prog, err)
		}
	}
	saslgate, err := filepath.Abs(cfg.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(saslgate); err != nil {
		return fmt.Errorf("benchcmp: %w (make build)", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// a short path: unix socket paths must stay under 108 bytes
	cfg.tmp, err = os.MkdirTemp("", "sgbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cfg.tmp)
	// Dovecot's auth process (user dovecot) reads its passwd file below it
	if err := os.Chmod(cfg.tmp, 0o755); err != nil {
		return err
	}
	cfg.loadStart = loadAvg()
	started := time.Now()

	host, _ := os.Hostname()
	db := filepath.Join(cfg.tmp, "sasldb2")
	for _, u := range []string{"bench", "other1", "other2"} {
		if err := runCmd(benchPass, "saslpasswd2", "-p", "-c", "-f", db, "-u", host, u); err != nil {
			return err
		}
	}
	scs := scenarios(cfg, saslgate, db, "127.0.0.1/PORT", "CA")
	needAccounts, needDovecot := false, false
	for _, sc := range scs {
		needAccounts = needAccounts || strings.HasPrefix(sc.name, "shadow") || sc.name == "pam"
		needDovecot = needDovecot || strings.HasPrefix(sc.name, "rimap")
	}
	if needAccounts {
		remove, err := addAccounts()
		if err != nil {
			return err
		}
		defer remove()
	}
	if needDovecot {
		dv, err := dovecot.Start(filepath.Join(cfg.tmp, "dovecot"), map[string]string{"bench": benchPass})
		if err != nil {
			return err
		}
		defer dv.Stop()
		scs = scenarios(cfg, saslgate, db, dv.Option(), dv.CAFile)
	}
	log.Printf("benchcmp: %d scenarios × %v × %d rounds × 2 daemons at %s a measurement (crypt-bound: %s, at least max(%d, %d×C) requests); writing %s",
		len(scs), cfg.concs, cfg.rounds, cfg.dur, cfg.slowDur, cfg.slowMin, cfg.slowPer, cfg.out)

	var starts map[string][]startup
	if cfg.want("startup") {
		if starts, err = measureStartups(ctx, cfg, saslgate); err != nil {
			return err
		}
	}
	var lookup *lookupBench
	if cfg.want("gobench") && ctx.Err() == nil {
		lb := runLookupBench(ctx, cfg.benchtime, cfg.benchcount)
		if lb.err != nil {
			log.Print(lb.err)
		}
		log.Printf("BenchmarkCacheVsSasldb: %s", lb.verdict().detail)
		lookup = &lb
	}
	var mem map[string]memReport
	if cfg.want("memory") && ctx.Err() == nil {
		if mem, err = measureMemories(cfg, saslgate, db); err != nil {
			return err
		}
	}
	for _, sc := range scs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if sc.err = sc.run(ctx, cfg); sc.err != nil {
			log.Printf("benchcmp: %s: %v", sc.name, sc.err)
			if b, rerr := os.ReadFile(filepath.Join(cfg.tmp, "dovecot", "dovecot.log")); rerr == nil && strings.HasPrefix(sc.name, "rimap") {
				log.Printf("dovecot.log:\n%s", b)
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	cfg.loadFinish = loadAvg()
	rep := &report{cfg: cfg, scenarios: scs, startups: starts, mem: mem, lookup: lookup, took: time.Since(started)}
	if err := rep.write(); err != nil {
		return err
	}
	log.Printf("benchcmp: wrote %s and the plots in %s in %s", cfg.out, cfg.svgDir, time.Since(started).Round(time.Second))
	return nil
}

// scenarios lists what is measured, in the report's order.
func scenarios(cfg *config, saslgate, db, rimapHost, caFile string) []*scenario {
	cyrusSasldb := func(extra string) []string {
		return []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
			fmt.Sprintf("mount --bind %s /etc/sasldb2 && exec saslauthd -a sasldb%s -n 5 -m \"$0\"", db, extra)}
	}
	local := func(u string) protocol.Request {
		return protocol.Request{Login: u, Password: benchPass, Service: "smtp"}
	}
	all := []*scenario{
		{
			name:      "sasldb",
			about:     "A sasldb written by `saslpasswd2` (three users). Cyrus reads it bind-mounted on /etc/sasldb2 in a private mount namespace (it has no flag for the path).",
			cyrusArgv: cyrusSasldb(""),
			sgateArgv: []string{saslgate, "serve", "-a", "sasldb", "-n", "5", "--sasldb-path", db},
			req:       protocol.Request{Login: "bench", Password: benchPass, Service: "smtp"},
		},
		{
			name:      "sasldb-cache",
			about:     "The same sasldb with `-c`: after the first request every answer is a cache hit.",
			cyrusArgv: cyrusSasldb(" -c"),
			sgateArgv: []string{saslgate, "serve", "-a", "sasldb", "-c", "-n", "5", "--sasldb-path", db},
			req:       protocol.Request{Login: "bench", Password: benchPass, Service: "smtp"},
			extras:    []extra{{extraNocache, []string{saslgate, "serve", "-a", "sasldb", "-n", "5", "--sasldb-path", db}}},
		},
		{
			name: "shadow-yescrypt",
			about: "A throw-away local user with a yescrypt hash (`chpasswd -c YESCRYPT`, Debian 12's default): every request costs one yescrypt computation, " +
				"so both daemons are CPU-bound on the machine's cores, which the load generator shares.",
			cyrusArgv: []string{"saslauthd", "-a", "shadow", "-n", "5"},
			sgateArgv: []string{saslgate, "serve", "-a", "shadow", "-n", "5"},
			req:       local(userYescrypt),
			slow:      true,
		},
		{
			name:      "shadow-sha512",
			about:     "A throw-away local user with a sha512-crypt hash (`chpasswd -c SHA512`, 5,000 rounds): a cheaper hash, so more of the daemon's own cost shows.",
			cyrusArgv: []string{"saslauthd", "-a", "shadow", "-n", "5"},
			sgateArgv: []string{saslgate, "serve", "-a", "shadow", "-n", "5"},
			req:       local(userSha512),
		},
		{
			name:      "shadow-cache",
			about:     "The yescrypt user with `-c`: after the first request every answer is a cache hit. A cache hit never reaches the mechanism, so this is the cache path of every mechanism.",
			cyrusArgv: []string{"saslauthd", "-a", "shadow", "-c", "-n", "5"},
			sgateArgv: []string{saslgate, "serve", "-a", "shadow", "-c", "-n", "5"},
			req:       local(userYescrypt),
			extras:    floorExtra(""),
		},
		{
			name: "pam",
			about: "The sha512-crypt user through a throw-away PAM service `" + pamService + "` (pam_unix alone, `nodelay`), named by the request's service. " +
				"Cyrus runs one PAM transaction per worker process; saslgate by default in `-n` worker processes (crash isolation).",
			cyrusArgv: []string{"saslauthd", "-a", "pam", "-n", "5"},
			sgateArgv: []string{saslgate, "serve", "-a", "pam", "-n", "5"},
			req:       protocol.Request{Login: userSha512, Password: benchPass, Service: pamService},
		},
		{
			name: "rimap",
			about: "A private Dovecot 2.3 on loopback (passwd-file, no auth penalty, login processes in high-performance mode). " +
				"Cyrus opens a connection per request; saslgate keeps a pool of warm connections. Both plaintext.",
			cyrusArgv: []string{"saslauthd", "-a", "rimap", "-O", rimapHost, "-n", "5"},
			sgateArgv: []string{saslgate, "serve", "-a", "rimap", "-O", rimapHost, "-n", "5"},
			req:       protocol.Request{Login: "bench", Password: benchPass, Service: "imap"},
			extras:    floorExtra(strings.Replace(rimapHost, "/", ":", 1)),
		},
		{
			name:      "rimap-starttls",
			about:     "The same Dovecot. Cyrus plaintext as above (it has no TLS); saslgate over STARTTLS with a verified certificate (a throw-away CA).",
			cyrusArgv: []string{"saslauthd", "-a", "rimap", "-O", rimapHost, "-n", "5"},
			sgateArgv: []string{saslgate, "serve", "-a", "rimap", "-O", rimapHost, "-n", "5", "--rimap-tls", "starttls", "--rimap-ca-file", caFile},
			req:       protocol.Request{Login: "bench", Password: benchPass, Service: "imap"},
		},
	}
	var out []*scenario
	for _, sc := range all {
		if cfg.want(sc.name) {
			out = append(out, sc)
		}
	}
	return out
}

func (sc *scenario) cyrusCmd(dir string) []string {
	argv := slices.Clone(sc.cyrusArgv)
	if argv[0] == "unshare" {
		return append(argv, dir) // $0 of the sh -c script
	}
	return append(argv, "-m", dir)
}

func (sc *scenario) run(ctx context.Context, cfg *config) error {
	cyrusDir, sgDir := filepath.Join(cfg.tmp, "cyrus-"+sc.name), filepath.Join(cfg.tmp, "saslgate-"+sc.name)
	cyrus, err := start("cyrus", cyrusDir, sc.cyrusCmd(cyrusDir)...)
	if err != nil {
		return err
	}
	defer cyrus.stop()
	sg, err := start("saslgate", sgDir, append(slices.Clone(sc.sgateArgv), "-m", sgDir)...)
	if err != nil {
		return err
	}
	defer sg.stop()
	daemons := []*daemon{cyrus, sg}
	for _, e := range sc.extras {
		dir := filepath.Join(cfg.tmp, e.name+"-"+sc.name)
		d, err := start(e.name, dir, append(slices.Clone(e.argv), "-m", dir)...)
		if err != nil {
			return err
		}
		defer d.stop()
		daemons = append(daemons, d)
	}
	reqs := []protocol.Request{sc.req}
	for _, d := range daemons { // each must answer OK before we measure
		r := load.Run(ctx, load.Spec{Socket: d.socket(), Requests: 4, Reqs: reqs, Want: []string{"OK"}})
		if r.Errors+r.Mismatches > 0 || r.Requests != 4 {
			return fmt.Errorf("benchcmp: %s %s does not answer OK: %s", sc.name, d.name, r)
		}
	}
	for _, c := range cfg.concs {
		spec := load.Spec{Concurrency: c, Duration: cfg.dur, Reqs: reqs, Want: []string{"OK"}, Timeout: 60 * time.Second}
		if sc.slow {
			spec.Duration, spec.MinRequests = cfg.slowDur, max(cfg.slowMin, cfg.slowPer*c)
		}
		p := point{conc: c, extra: map[string]resultSet{}}
		for i := 0; i < cfg.rounds; i++ {
			for _, d := range daemons {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				spec.Socket = d.socket()
				r := load.Run(ctx, spec)
				log.Printf("%s C=%d %-8s %s", sc.name, c, d.name, r)
				switch d.name {
				case "cyrus":
					p.cyrus.rounds = append(p.cyrus.rounds, r)
				case "saslgate":
					p.sgate.rounds = append(p.sgate.rounds, r)
				default:
					x := p.extra[d.name]
					x.rounds = append(x.rounds, r)
					p.extra[d.name] = x
				}
			}
		}
		p.cyrus.med, p.sgate.med = median(p.cyrus.rounds), median(p.sgate.rounds)
		for name, x := range p.extra {
			x.med = median(x.rounds)
			p.extra[name] = x
		}
		sc.points = append(sc.points, p)
	}
	return nil
}

// median picks the run with the median throughput (its latencies go with it).
func median(rs []load.Result) load.Result {
	s := slices.Clone(rs)
	slices.SortStableFunc(s, func(a, b load.Result) int {
		switch {
		case a.RPS() < b.RPS():
			return -1
		case a.RPS() > b.RPS():
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

// startupArgv are the command lines whose start-up is timed: the sasldb
// mechanism on the system's /etc/sasldb2 for both. Any answer counts, so
// Cyrus needs no mount namespace here (it would add to its time); the
// answer is a NO, so saslgate's failure delay is off.
func startupArgv(saslgate, dir string) map[string][]string {
	return map[string][]string{
		"cyrus":    {"saslauthd", "-a", "sasldb", "-n", "5", "-m", dir},
		"saslgate": {saslgate, "serve", "-a", "sasldb", "-n", "5", "--failure-delay", "0", "--auth-penalty", "0", "-m", dir},
	}
}

func measureStartups(ctx context.Context, cfg *config, saslgate string) (map[string][]startup, error) {
	out := map[string][]startup{}
	req := protocol.Request{Login: "bench", Password: benchPass, Service: "smtp"}
	for i := 0; i < cfg.startups && ctx.Err() == nil; i++ {
		for _, name := range []string{"cyrus", "saslgate"} {
			dir := filepath.Join(cfg.tmp, fmt.Sprintf("start-%s-%d", name, i))
			s, err := measureStartup(startupArgv(saslgate, dir)[name], dir, filepath.Join(cfg.tmp, "notify.sock"), req)
			if err != nil {
				return nil, err
			}
			log.Printf("startup %-8s answers after %s, READY=1 after %s", name, s.answer.Round(time.Microsecond), s.ready.Round(time.Microsecond))
			out[name] = append(out[name], s)
		}
	}
	return out, nil
}

// measureMemories starts each daemon as in the sasldb scenario and takes
// its memory idle, with cfg.conns idle connections, and after they close.
func measureMemories(cfg *config, saslgate, db string) (map[string]memReport, error) {
	sc := scenarios(&config{only: []string{"sasldb"}}, saslgate, db, "", "")[0]
	out := map[string]memReport{}
	for _, name := range []string{"cyrus", "saslgate"} {
		dir := filepath.Join(cfg.tmp, "mem-"+name)
		argv := sc.cyrusCmd(dir)
		if name == "saslgate" {
			argv = append(slices.Clone(sc.sgateArgv), "-m", dir)
		}
		d, err := start(name, dir, argv...)
		if err != nil {
			return nil, err
		}
		m, err := measureMemory(d, sc.req, cfg.conns, time.Second, memRest)
		d.stop()
		if err != nil {
			return nil, err
		}
		log.Printf("memory %-8s idle %s, %d connections held: %s (%d fds), after: %s, %s later: %s", name, mib(m.idle.rssMain), m.held,
			mib(m.conns.rssMain), m.conns.fds, mib(m.after.rssMain), memRest, mib(m.rested.rssMain))
		out[name] = m
	}
	return out, nil
}

// memRest is how long the memory measurement leaves a daemon idle after
// the connections close: past two of saslgate's 10 s idle checks.
const memRest = 25 * time.Second

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
