package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/saslgate/saslgate/test/load"
)

// res is a measurement of n requests in 1 s with the given p99.
func res(n int, p99 time.Duration) load.Result {
	return load.Result{Requests: n, Elapsed: time.Second, P50: p99 / 2, P99: p99, Max: p99}
}

func pt(conc, cyrusRPS, sgRPS int, cyrusP99, sgP99 time.Duration) point {
	c, s := res(cyrusRPS, cyrusP99), res(sgRPS, sgP99)
	return point{conc: conc, cyrus: resultSet{med: c, rounds: []load.Result{c}}, sgate: resultSet{med: s, rounds: []load.Result{s}}}
}

func TestGoalChecks(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		check func(point, peerFunc) verdict
		p     point
		met   bool
	}{
		{"ratio exactly at the goal", ratioAtLeast(1.5), pt(64, 1000, 1500, ms, ms), true},
		{"ratio just below", ratioAtLeast(1.5), pt(64, 1000, 1499, ms, ms), false},
		{"ratio with a Cyrus that served nothing", ratioAtLeast(1.5), pt(64, 0, 10, ms, ms), true},
		{"p99 exactly half", p99AtMost(0.5), pt(64, 1, 1, 10*ms, 5*ms), true},
		{"p99 just over half", p99AtMost(0.5), pt(64, 1, 1, 10*ms, 5*ms+time.Microsecond), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.check(tc.p, nil)
			if !v.known || v.met != tc.met {
				t.Errorf("%+v, want met=%v", v, tc.met)
			}
		})
	}
}

func TestNotSlowerThan(t *testing.T) {
	peer := func(have map[int]point) peerFunc {
		return func(name string, conc int) (point, bool) {
			p, ok := have[conc]
			return p, ok && name == "sasldb"
		}
	}
	base := map[int]point{1: pt(1, 100, 3000, time.Millisecond, time.Millisecond)}
	check := notSlowerThan("sasldb")
	if v := check(pt(1, 100, 3000, 0, 0), peer(base)); !v.known || !v.met {
		t.Errorf("equal throughput: %+v, want met", v)
	}
	if v := check(pt(1, 100, 2999, 0, 0), peer(base)); !v.known || v.met {
		t.Errorf("slower: %+v, want missed", v)
	}
	if v := check(pt(8, 100, 3000, 0, 0), peer(base)); v.known {
		t.Errorf("no sasldb point at C=8: %+v, want unknown", v)
	}
}

// Every goal and every cause names a scenario that exists, and every goal
// is set at concurrency levels the default run measures.
func TestGoalsAndCausesNameScenarios(t *testing.T) {
	cfg, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sc := range scenarios(cfg, "saslgate", "db", "127.0.0.1/143", "ca.pem") {
		names = append(names, sc.name)
	}
	for name, gs := range goals {
		if !slices.Contains(names, name) {
			t.Errorf("goals[%q]: no such scenario (have %v)", name, names)
		}
		for _, g := range gs {
			for _, c := range g.at {
				if !slices.Contains(cfg.concs, c) {
					t.Errorf("goals[%q] %q: C=%d is not in the default -c %v", name, g.text, c, cfg.concs)
				}
			}
		}
	}
	for name := range causes {
		if !slices.Contains(names, name) && name != "memory" {
			t.Errorf("causes[%q]: no such scenario (have %v)", name, names)
		}
	}
}

func TestParseFlagsQuick(t *testing.T) {
	t.Setenv("BENCH_QUICK", "1")
	cfg, err := parseFlags([]string{"-rounds", "3"})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.quick || cfg.dur >= time.Second || cfg.rounds != 3 {
		t.Errorf("quick=%v d=%s rounds=%d: want quick, a short duration, and the -rounds given kept", cfg.quick, cfg.dur, cfg.rounds)
	}
	if !strings.HasPrefix(cfg.out, os.TempDir()) || !strings.HasPrefix(cfg.svgDir, os.TempDir()) {
		t.Errorf("quick mode writes %s and %s: want below %s", cfg.out, cfg.svgDir, os.TempDir())
	}
	t.Setenv("BENCH_QUICK", "")
	cfg, err = parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.quick || cfg.out != "BENCHMARKS.md" || cfg.svgDir != "docs/bench" || !slices.Equal(cfg.concs, []int{1, 8, 64, 256}) {
		t.Errorf("defaults: %+v", cfg)
	}
	for _, bad := range [][]string{{"-c", "1,x"}, {"-c", "0"}, {"-rounds", "0"}, {"-d", "0s"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%v): no error", bad)
		}
	}
}

func TestCmdline(t *testing.T) {
	r := &report{cfg: &config{bin: "bin/saslgate", tmp: "/tmp/sgbench123"}}
	abs, _ := filepath.Abs("bin/saslgate")
	got := r.cmdline([]string{abs, "serve", "-m", "/tmp/sgbench123/x", "sh", "-c", `exec a "$0"`})
	want := "`bin/saslgate serve -m $TMP/x sh -c 'exec a \"$0\"'`"
	if got != want {
		t.Errorf("cmdline = %s, want %s", got, want)
	}
}

func TestReportWrite(t *testing.T) {
	dir := t.TempDir()
	ms := time.Millisecond
	sasldb := &scenario{name: "sasldb", about: "about sasldb", cyrusArgv: []string{"saslauthd"}, sgateArgv: []string{"saslgate"},
		points: []point{pt(1, 4000, 4000, ms, ms), pt(64, 8000, 16000, 90*ms, 15*ms)}}
	rimap := &scenario{name: "rimap", about: "about rimap", cyrusArgv: []string{"saslauthd"}, sgateArgv: []string{"saslgate"},
		points: []point{pt(1, 900, 700, ms, 2*ms), pt(64, 1300, 1000, 500*ms, 80*ms)}}
	pam := &scenario{name: "pam", about: "about pam", cyrusArgv: []string{"saslauthd"}, sgateArgv: []string{"saslgate"}}
	pam.err = os.ErrNotExist
	floored := pt(64, 10000, 12000, ms, ms)
	floored.extra = map[string]resultSet{extraFloor: {med: res(16000, ms)}}
	withCache := pt(8, 9000, 11000, ms, ms)
	withCache.extra = map[string]resultSet{extraNocache: {med: res(10000, ms), rounds: []load.Result{res(10000, ms)}}}
	sdbCache := &scenario{name: "sasldb-cache", about: "about the sasldb cache", cyrusArgv: []string{"saslauthd"}, sgateArgv: []string{"saslgate", "-c"},
		extras: []extra{{extraNocache, []string{"saslgate"}}}, points: []point{withCache}}
	cache := &scenario{name: "shadow-cache", about: "about the cache", cyrusArgv: []string{"saslauthd"}, sgateArgv: []string{"saslgate"},
		extras: []extra{{extraFloor, []string{"floor"}}}, points: []point{pt(1, 4000, 3000, ms, ms), floored}}
	cfg := &config{out: filepath.Join(dir, "BENCHMARKS.md"), svgDir: filepath.Join(dir, "docs", "bench"), concs: []int{1, 64},
		rounds: 1, dur: time.Second, slowDur: time.Second, slowMin: 10, slowPer: 2, conns: 2000, bin: "bin/saslgate", quick: true}
	r := &report{cfg: cfg, scenarios: []*scenario{sasldb, rimap, pam, cache, sdbCache},
		mem:      map[string]memReport{"saslgate": {idle: memSample{rssMain: 14 << 20, procs: 1}, conns: memSample{rssMain: 70 << 20}, held: 2000}},
		startups: map[string][]startup{"saslgate": {{answer: 20 * ms, ready: 15 * ms}}, "cyrus": {{answer: 12 * ms}}}}
	old := causes["rimap"]
	causes["rimap"] = "each OK costs a connection"
	if note, ok := causes["sasldb"]; ok { // the fixture's sasldb meets its goals and has no text
		delete(causes, "sasldb")
		defer func() { causes["sasldb"] = note }()
	}
	defer func() {
		if old == "" {
			delete(causes, "rimap")
		} else {
			causes["rimap"] = old
		}
	}()
	if err := r.write(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"Quick mode",
		"| 64 | 8000 | 16000 | 2.00× |",                             // the ratio
		"C=64 ✅ 2.00× (goal ≥ 1.50×)",                               // a goal met
		"C=1 ❌ 0.78× (goal ≥ 1.50×)",                                // a goal missed, the gap named
		"(docs/bench/sasldb-rps.svg)", "(docs/bench/rimap-p99.svg)", // the plots, relative to the report
		"each OK costs a connection", // the cause from the map
		"**Cause** (edit `causes[\"rimap\"]`",
		"idle under 15 MiB: ✅ 14.0 MiB", "under 64 MiB: ❌ 70.0 MiB",
		"READY=1", "| Cyrus saslauthd | 12.00 ms | 12.00 ms | 12.00 ms | not sent",
		"**Not (fully) measured:**",
		"no mechanism issue sets a speed goal",
		"| 64 | 16000 | 1.60× | 0.75 |", // the floor: ÷ Cyrus, and saslgate ÷ floor
		"| 8 | 10000 | 11000 | 1.10× |", // saslgate without -c in the same rounds
		"C=8 ✅ 11000 vs 10000 req/s",    // the cache's goal against it, not against the sasldb scenario
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "| 1 | 0 |") {
		t.Error("a floor row for a point without a floor measurement")
	}
	if strings.Contains(md, "causes[\"sasldb\"]") {
		t.Error("a cause place for sasldb, whose goals are met and which has no text")
	}
	for _, f := range []string{"sasldb-rps.svg", "sasldb-p99.svg", "rimap-rps.svg", "rimap-p99.svg"} {
		svg, err := os.ReadFile(filepath.Join(cfg.svgDir, f))
		if err != nil {
			t.Fatal(err)
		}
		elements(t, svg)
	}
	if _, err := os.Stat(filepath.Join(cfg.svgDir, "pam-rps.svg")); err == nil {
		t.Error("a plot for pam, which has no points")
	}
}

func TestParseLookupBench(t *testing.T) {
	out := `goos: linux
BenchmarkCacheVsSasldb/sasldb-lookup-2         	  189607	      9077 ns/op	     288 B/op	       3 allocs/op
BenchmarkCacheVsSasldb/cache-hit-2             	  308143	      4738 ns/op	      64 B/op	       1 allocs/op
BenchmarkCacheVsSasldb/sasldb-lookup-2         	  189607	      3000.5 ns/op
BenchmarkCacheVsSasldb/cache-hit               	  308143	      5000 ns/op
BenchmarkOther/cache-hit-2  1  1 ns/op
PASS`
	s, c := parseLookupBench(out)
	if !slices.Equal(s, []float64{9077, 3000.5}) || !slices.Equal(c, []float64{4738, 5000}) {
		t.Fatalf("sasldb %v, cache %v", s, c)
	}
	for _, tc := range []struct {
		lb   lookupBench
		want verdict
	}{
		{lookupBench{sasldb: 3000, cache: 3000, runs: 1}, verdict{met: true, known: true}},
		{lookupBench{sasldb: 3000, cache: 3001, runs: 1}, verdict{met: false, known: true}},
		{lookupBench{err: os.ErrNotExist}, verdict{}},
	} {
		if v := tc.lb.verdict(); v.met != tc.want.met || v.known != tc.want.known {
			t.Errorf("%+v: %+v, want met=%v known=%v", tc.lb, v, tc.want.met, tc.want.known)
		}
	}
}
