package main

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"
)

const s = time.Second

func TestClassify(t *testing.T) {
	windows := []window{
		{Start: 10 * s, End: 20 * s, What: "Dovecot stopped", Excludes: []backend{beRimap}},
		{Start: 30 * s, End: 40 * s, What: "PAM faults"}, // excludes nothing
	}
	details := []string{"NO [ALERT] Couldn't contact remote authentication server", "NO PAM auth error",
		"read failed: EOF", "connect() : No such file or directory", "connect() : No such file or directory"}
	recs := []rec{
		{start: 1 * s, end: 2 * s, be: beRimap, out: outOK, detail: -1},                      // counted
		{start: 9 * s, end: 11 * s, be: beRimap, out: outWrongReply, detail: 0},              // overlaps the start: excluded
		{start: 20500 * time.Millisecond, end: 21 * s, be: beRimap, out: outOK, detail: -1},  // within the grace: excluded
		{start: 22 * s, end: 23 * s, be: beRimap, out: outOK, detail: -1},                    // after the grace: counted
		{start: 15 * s, end: 16 * s, be: beSasldb, out: outOK, detail: -1},                   // another back end: counted
		{start: 35 * s, end: 36 * s, be: bePAM, out: outWrongReply, detail: 1},               // PAM window excludes nothing: failed
		{start: 49 * s, end: 51 * s, be: beSasldb, out: outIOError, detail: 2},               // in flight at SIGTERM, no reply
		{start: 49 * s, end: 50500 * time.Millisecond, be: beSasldb, out: outOK, detail: -1}, // in flight, answered
		{start: 51 * s, end: 51 * s, be: beSasldb, out: outConnect, detail: 3},               // refused after SIGTERM
		{start: 5 * s, end: 5 * s, be: beSasldb, out: outConnect, detail: 4},                 // refused before: failed
	}
	st, sd := classify(recs, details, windows, time.Second, 50*s)
	tests := []struct {
		name string
		got  int
		want int
	}{
		{"rimap counted", st[beRimap].Counted, 2},
		{"rimap OK", st[beRimap].OK, 2},
		{"rimap excluded", st[beRimap].Excluded, 2},
		{"rimap excluded OK", st[beRimap].ExclOK, 1},
		{"rimap failed", st[beRimap].Failed, 0},
		{"sasldb counted", st[beSasldb].Counted, 4},
		{"sasldb failed", st[beSasldb].Failed, 2},
		{"pam failed", st[bePAM].Failed, 1},
		{"in flight", sd.InFlight, 2},
		{"in flight answered", sd.InFlightAnswered, 1},
		{"in flight OK", sd.InFlightOK, 1},
		{"refused after SIGTERM", sd.Refused, 1},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	if got := st[beRimap].ExclReplies["NO [ALERT] Couldn't contact remote authentication server"]; got != 1 {
		t.Errorf("excluded replies: %v", st[beRimap].ExclReplies)
	}
	if len(st[beSasldb].failSamples) != 2 || !strings.Contains(st[beSasldb].failSamples[0], "read failed: EOF") {
		t.Errorf("failure samples: %q", st[beSasldb].failSamples)
	}
}

func TestWindowLatency(t *testing.T) {
	windows := []window{
		{Start: 10 * s, End: 20 * s, What: "stalled", Excludes: []backend{beRimap}},
		{Start: 30 * s, End: 40 * s, What: "PAM faults"},
	}
	ms := time.Millisecond
	recs := []rec{
		{start: 12 * s, end: 12*s + 900*ms, be: beSasldb, out: outOK},     // in "stalled"
		{start: 15 * s, end: 15*s + 5*ms, be: beRimap, out: outOK},        // excluded
		{start: 35 * s, end: 35*s + 50*ms, be: bePAM, out: outOK},         // in "PAM faults"
		{start: 36 * s, end: 36*s + 70*ms, be: bePAM, out: outWrongReply}, // failed: no latency
		{start: 50 * s, end: 50*s + 2*ms, be: beSasldb, out: outOK},       // the rest
		{start: 99 * s, end: 99*s + 2*ms, be: beSasldb, out: outOK},       // after the main phase
	}
	rows := windowLatency(recs, windows, time.Second, 0, 60*s)
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	check := func(row int, b backend, n int, mx time.Duration) {
		t.Helper()
		if rows[row].n[b] != n || rows[row].max[b] != mx {
			t.Errorf("%s %s: n %d max %s, want %d %s", rows[row].what, b, rows[row].n[b], rows[row].max[b], n, mx)
		}
	}
	check(0, beSasldb, 1, 900*ms)
	check(0, beRimap, 0, 0)
	check(1, bePAM, 1, 50*ms)
	check(2, beSasldb, 1, 2*ms)
}

func TestKeepSlowest(t *testing.T) {
	var top []rec
	for _, d := range []int{5, 1, 9, 3, 7, 9} {
		top = keepSlowest(top, rec{end: time.Duration(d)}, 3)
	}
	var got []int
	for _, x := range top {
		got = append(got, int(x.end))
	}
	if len(got) != 3 || got[0] != 9 || got[1] != 9 || got[2] != 7 {
		t.Errorf("keepSlowest: %v, want [9 9 7]", got)
	}
}

func TestPercentiles(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	p50, p99, mx := percentiles(lat)
	if p50 != 51*time.Millisecond || p99 != 100*time.Millisecond || mx != 100*time.Millisecond {
		t.Errorf("percentiles: %s %s %s", p50, p99, mx)
	}
	if lat[0] != 100*time.Millisecond {
		t.Error("percentiles sorted its argument")
	}
	if a, b, c := percentiles(nil); a+b+c != 0 {
		t.Error("percentiles of nothing")
	}
}

func TestParseMetrics(t *testing.T) {
	text := "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 2045\n" +
		"go_goroutines_other 7\nsaslgate_open_connections 1.5e+03\nsaslgate_replies_total{reply=\"ok\"} 3\n"
	got := parseMetrics([]byte(text), "go_goroutines", "saslgate_open_connections", "missing")
	if got["go_goroutines"] != 2045 || got["saslgate_open_connections"] != 1500 || len(got) != 2 {
		t.Errorf("parseMetrics: %v", got)
	}
}

func TestSummariseLog(t *testing.T) {
	lines := []string{
		"saslauthd[12] :read: timed out waiting for the request; closing read_timeout=30s",
		"saslauthd[12] :read: timed out waiting for the request; closing read_timeout=30s",
		"saslauthd[12] :reloaded: authentication mechanisms sasldb,pam",
		"saslauthd[12] :reload failed, keeping the running configuration: x",
		"saslauthd[12] :panic serving a connection: boom",
		"fatal error: concurrent map writes",
	}
	top, panics, reloads, fails := summariseLog(lines)
	if reloads != 1 || fails != 1 || len(panics) != 2 {
		t.Errorf("reloads %d, failures %d, panics %q", reloads, fails, panics)
	}
	if top[0].n != 2 || !strings.HasPrefix(top[0].line, "read: timed out") || !strings.Contains(top[0].line, "=Ns") {
		t.Errorf("top line: %+v", top[0])
	}
}

// fakeRun is a finished run that met every goal.
func fakeRun() *run {
	p, _ := newPlan(5*time.Minute, 2000)
	r := &run{p: p, hst: &hostileStats{}, fst: newFaultStats(), metrics: true, hups: 3,
		sigterm: 290 * s, exitAfter: time.Second}
	r.fst.total = 10
	r.startup = sample{T: s, RSS: 10 << 20, FDs: 20, Goroutines: 14, Children: 1}
	r.baseline = sample{T: 5 * s, RSS: 12 << 20, FDs: 37, Goroutines: 22, Children: 5}
	r.at2000 = sample{T: 10 * s, RSS: 40 << 20, FDs: 2037, Goroutines: 2022, Children: 5}
	r.endBase = sample{T: 280 * s, RSS: 14 << 20, FDs: 34, Goroutines: 20, Children: 4}
	r.atStop = sample{T: 200 * s, RSS: 50 << 20, FDs: 2037, Goroutines: 2022, Children: 5}
	r.smp = &sampler{}
	for i := range 300 {
		x := sample{T: time.Duration(i) * s, RSS: int64(12+i%30) << 20, FDs: 37 + i, Goroutines: 22 + i, OpenConns: i, Children: 5}
		r.smp.series = append(r.smp.series, x)
	}
	return r
}

func fakeResult(r *run) *result {
	res := &result{r: r, series: r.smp.all(), reloads: 3}
	for b := range nBackends {
		res.be[b] = beStats{Counted: 10, OK: 10}
	}
	res.sd = shutdownStats{InFlight: 4, InFlightAnswered: 4, InFlightOK: 4}
	res.goals = res.judge()
	return res
}

func TestJudge(t *testing.T) {
	res := fakeResult(fakeRun())
	for _, g := range res.goals {
		if !g.ok {
			t.Errorf("clean run: %s missed: %s", g.name, g.got)
		}
	}
	breakers := []struct {
		name  string
		goal  string
		spoil func(*result)
	}{
		{"a failed good request", "failed good requests", func(res *result) { res.be[bePAM].Failed = 1 }},
		{"a back end never answered", "every back end answered", func(res *result) { res.be[beRimap].OK = 0 }},
		{"an unanswered request at SIGTERM", "in flight", func(res *result) { res.sd.InFlightAnswered = 3 }},
		{"a slow exit", "exit after SIGTERM", func(res *result) { res.r.exitAfter = 11 * s }},
		{"a bad exit status", "exit after SIGTERM", func(res *result) { res.r.exitCode = 1 }},
		{"a held connection never cut", "no hang", func(res *result) { res.r.hst.overBound[kSlowloris].Add(1) }},
		{"an OK to garbage", "hostile input", func(res *result) { res.r.hst.anomalies.Add(1) }},
		{"an OK from a crashing module", "PAM fault users", func(res *result) { res.r.fst.bad = []string{"crash: OK"} }},
		{"a lost reload", "SIGHUP", func(res *result) { res.reloads = 2 }},
		{"a panic", "panic", func(res *result) { res.panics = []string{"panic"} }},
		{"idle RSS of 15 MiB", "idle RSS", func(res *result) { res.r.baseline.RSS = 15 << 20 }},
		{"64 MiB at 2,000 connections", "2,000 connections", func(res *result) { res.r.at2000.RSS = 64 << 20 }},
		{"fewer than 2,000 connections open", "2,000 connections", func(res *result) { res.r.at2000.FDs = 1000 }},
		{"a leaked descriptor", "descriptors", func(res *result) { res.r.endBase.FDs = res.r.baseline.FDs + 3 }},
		{"leaked goroutines", "goroutines", func(res *result) { res.r.endBase.Goroutines = res.r.baseline.Goroutines + 5 }},
		{"memory kept", "memory", func(res *result) { res.r.endBase.RSS = res.r.baseline.RSS + 5<<20 }},
		{"memory kept past the peak's allowance", "memory", func(res *result) {
			res.r.peak.Goroutines = res.r.baseline.Goroutines + 2000 // 3 KiB each: 5.9 MiB
			res.r.endBase.RSS = res.r.baseline.RSS + max(res.r.baseline.RSS/4, 4<<20) + 6<<20
		}},
		{"memory growing after the load", "no growth", func(res *result) { res.r.atStop.RSS = res.r.endBase.RSS - 2<<20 }},
		{"an aborted run", "run completed", func(res *result) { res.r.aborted = "the daemon died" }},
	}
	for _, tc := range breakers {
		t.Run(tc.name, func(t *testing.T) {
			res := fakeResult(fakeRun())
			tc.spoil(res)
			res.goals = res.judge()
			if res.passed() {
				t.Fatal("passed")
			}
			for _, g := range res.goals {
				if !g.ok && !strings.Contains(g.name, tc.goal) {
					t.Errorf("also missed: %s", g.name)
				}
			}
		})
	}
}

// TestJudgePeakAllowance: memory the runtime keeps after a peak of
// goroutines is allowed, 3 KiB for each.
func TestJudgePeakAllowance(t *testing.T) {
	res := fakeResult(fakeRun())
	res.r.peak.Goroutines = res.r.baseline.Goroutines + 2000
	res.r.endBase.RSS = res.r.baseline.RSS + max(res.r.baseline.RSS/4, 4<<20) + 5<<20
	res.goals = res.judge()
	if !res.passed() {
		t.Errorf("5 MiB kept after a peak of 2,000 goroutines missed: %+v", res.goals)
	}
}

// TestJudgeShortRun: a smoke test does not judge memory, and says so.
func TestJudgeShortRun(t *testing.T) {
	r := fakeRun()
	r.p, _ = newPlan(45*time.Second, 2000)
	r.endBase.RSS = 50 << 20
	res := fakeResult(r)
	if !res.passed() {
		t.Errorf("short run missed: %+v", res.goals)
	}
	for _, g := range res.goals {
		if strings.Contains(g.name, "memory") && !strings.Contains(g.got, "not judged") {
			t.Errorf("%s: %s", g.name, g.got)
		}
	}
}

func TestPlotSVG(t *testing.T) {
	r := fakeRun()
	r.windows = []window{{Start: 50 * s, End: 60 * s, What: "Dovecot <stalled> & more"}}
	r.events = []event{{100 * s, "SIGHUP #1"}, {290 * s, "SIGTERM"}}
	out := plotSVG(fakeResult(r))
	d := xml.NewDecoder(strings.NewReader(out))
	polylines, texts := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, out)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "polyline":
				polylines++
			case "text":
				texts++
			}
		}
	}
	if polylines != 3 {
		t.Errorf("%d polylines, want 3 (RSS, goroutines, descriptors)", polylines)
	}
	for _, want := range []string{"RSS (MiB)", "goroutines", "open descriptors", "HUP", "TERM", "Dovecot &lt;stalled&gt; &amp; more"} {
		if !strings.Contains(out, want) {
			t.Errorf("plot lacks %q", want)
		}
	}
}

func TestNewPlan(t *testing.T) {
	full, err := newPlan(5*time.Minute, 2000)
	if err != nil {
		t.Fatal(err)
	}
	// a full run uses the daemon's defaults
	if full.readTimeout != 30*s || full.requestTimeout != 60*s || full.rimapCommand != 10*s {
		t.Errorf("full run bounds: %+v", full)
	}
	short, err := newPlan(45*s, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if short.readTimeout >= full.readTimeout || short.main < 5*s {
		t.Errorf("short run: %+v", short)
	}
	for _, p := range []plan{full, short} {
		if got := overhead + p.rest + p.main + p.settle + p.final; got != p.total {
			t.Errorf("%s: phases add up to %s", p.total, got)
		}
		// the old configuration of the last SIGHUP (at 55 % of the main
		// phase) is closed a request timeout later, before the end baseline
		if time.Duration(0.55*float64(p.main))+p.requestTimeout > p.main+p.settle-3*s {
			t.Errorf("%s: settle too short for the last reload", p.total)
		}
	}
	if _, err := newPlan(30*s, 2000); err == nil {
		t.Error("a 30 s run was accepted")
	}
}
