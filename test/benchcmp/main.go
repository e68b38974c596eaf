// Command benchcmp runs saslgate and the real Cyrus saslauthd side by side
// under the same load, in the same run, and writes the comparison to
// BENCHMARKS.md. The machine is shared and noisy, so the two daemons are
// measured in alternation, several rounds per point, and the report gives
// ratios, never absolute goals.
//
// It needs root (Cyrus saslauthd reads its sasldb from /etc/sasldb2 and has
// no flag to change that, so it runs in a private mount namespace with the
// benchmark's file bind-mounted there) and Debian's sasl2-bin.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/saslgate/saslgate/protocol"
	"github.com/saslgate/saslgate/test/internal/dovecot"
	"github.com/saslgate/saslgate/test/load"
)

type daemon struct {
	name   string
	runDir string
	pid    int
}

func (d *daemon) socket() string { return filepath.Join(d.runDir, "mux") }

// start runs argv (a daemon that detaches) and waits for its pid file and
// socket.
func start(name, runDir string, argv ...string) (*daemon, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %v: %s", name, err, out.String())
	}
	d := &daemon{name: name, runDir: runDir}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(filepath.Join(runDir, "saslauthd.pid"))
		if err == nil {
			d.pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if c, err := net.Dial("unix", d.socket()); err == nil && d.pid > 0 {
			c.Close()
			return d, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("%s did not come up: %s", name, out.String())
}

func (d *daemon) stop() {
	if d == nil || d.pid <= 0 {
		return
	}
	_ = syscall.Kill(d.pid, syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if syscall.Kill(d.pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(d.pid, syscall.SIGKILL)
}

type point struct {
	conc         int
	cyrus, sgate load.Result
}

// scenario is one mechanism measured on both daemons.
type scenario struct {
	name, about string
	cyrusArgv   []string // run in tmp/cyrus-NAME (appended: -m DIR)
	sgateArgv   []string // run in tmp/saslgate-NAME (appended: -m DIR)
	req         protocol.Request
	goal        string
	points      []point
}

func main() {
	bin := flag.String("bin", "bin/saslgate", "saslgate binary")
	outPath := flag.String("out", "BENCHMARKS.md", "report to write")
	dur := flag.Duration("d", 3*time.Second, "duration of one measurement")
	rounds := flag.Int("rounds", 5, "alternating rounds per point (the median is reported)")
	concs := flag.String("c", "1,8,64", "concurrency levels")
	only := flag.String("only", "", "comma-separated scenarios to run (default: all)")
	flag.Parse()
	log.SetFlags(0)
	if os.Geteuid() != 0 {
		log.Fatal("benchcmp: needs root (Cyrus saslauthd reads /etc/sasldb2 only; shadow needs a throw-away user)")
	}
	saslgate, err := filepath.Abs(*bin)
	if err != nil {
		log.Fatal(err)
	}
	tmp, err := os.MkdirTemp("", "sgbench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	// Dovecot's auth process (user dovecot) reads its passwd file below it
	if err := os.Chmod(tmp, 0o755); err != nil {
		log.Fatal(err)
	}
	host, _ := os.Hostname()
	db := filepath.Join(tmp, "sasldb2")
	for _, u := range []string{"bench", "other1", "other2"} {
		c := exec.Command("saslpasswd2", "-p", "-c", "-f", db, "-u", host, u)
		c.Stdin = strings.NewReader("bench-password")
		if out, err := c.CombinedOutput(); err != nil {
			log.Fatalf("saslpasswd2: %v %s", err, out)
		}
	}
	// a throw-away local user with a yescrypt hash (Debian 12's default)
	// for shadow, removed at the end
	const shadowUser = "sgbench_y"
	_ = exec.Command("userdel", shadowUser).Run()
	if out, err := exec.Command("useradd", "-M", "-s", "/usr/sbin/nologin", shadowUser).CombinedOutput(); err != nil {
		log.Fatalf("useradd: %v %s", err, out)
	}
	defer exec.Command("userdel", shadowUser).Run()
	chp := exec.Command("chpasswd", "-c", "YESCRYPT")
	chp.Stdin = strings.NewReader(shadowUser + ":bench-password\n")
	if out, err := chp.CombinedOutput(); err != nil {
		log.Fatalf("chpasswd: %v %s", err, out)
	}

	scenarios := []*scenario{
		{
			name:  "sasldb",
			about: "Cyrus: `saslauthd -a sasldb -n 5` (its sasldb bind-mounted on /etc/sasldb2 in a private mount namespace).  \nsaslgate: `saslgate serve -a sasldb -n 5 --sasldb-path FILE`. Same file, written by `saslpasswd2`, same user.",
			cyrusArgv: []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
				fmt.Sprintf("mount --bind %s /etc/sasldb2 && exec saslauthd -a sasldb -n 5 -m \"$0\"", db)},
			sgateArgv: []string{saslgate, "serve", "-a", "sasldb", "-n", "5", "--sasldb-path", db},
			req:       protocol.Request{Login: "bench", Password: "bench-password", Service: "smtp"},
			goal:      "goal at C=64: ratio ≥ 1.5×, p99 ratio ≤ 0.5",
		},
		{
			name:      "shadow",
			about:     "Cyrus: `saslauthd -a shadow -n 5`; saslgate: `saslgate serve -a shadow -n 5`. A throw-away local user with a yescrypt hash (`chpasswd -c YESCRYPT`, Debian 12's default): every request costs one yescrypt computation, so both are CPU-bound on 2 cores.",
			cyrusArgv: []string{"saslauthd", "-a", "shadow", "-n", "5"},
			sgateArgv: []string{saslgate, "serve", "-a", "shadow", "-n", "5"},
			req:       protocol.Request{Login: shadowUser, Password: "bench-password", Service: "smtp"},
			goal:      "goal: ratio ≥ 0.95× at every C; at C=64 p99 ratio ≤ 0.5",
		},
	}
	scenarios = append(scenarios, &scenario{
		name:      "shadow-cache",
		about:     "Cyrus: `saslauthd -a shadow -c -n 5`; saslgate: `saslgate serve -a shadow -c -n 5`. The same yescrypt user: after the first request every answer is a cache hit.",
		cyrusArgv: []string{"saslauthd", "-a", "shadow", "-c", "-n", "5"},
		sgateArgv: []string{saslgate, "serve", "-a", "shadow", "-c", "-n", "5"},
		req:       protocol.Request{Login: shadowUser, Password: "bench-password", Service: "smtp"},
		goal:      "goal at C=64: ratio ≥ 1.5×",
	})
	wantRimap := *only == "" || strings.Contains(*only, "rimap")
	if wantRimap {
		dv, err := dovecot.Start(filepath.Join(tmp, "dovecot"), map[string]string{"bench": "bench-password"})
		if err != nil {
			log.Fatal(err)
		}
		defer dv.Stop()
		opt := dv.Option()
		scenarios = append(scenarios, &scenario{
			name:      "rimap",
			about:     "A private Dovecot 2.3 on loopback (passwd-file, no auth penalty). Cyrus: `saslauthd -a rimap -O 127.0.0.1/PORT -n 5` (plaintext, a connection per request); saslgate: the same command line (plaintext, its pool of warm connections).",
			cyrusArgv: []string{"saslauthd", "-a", "rimap", "-O", opt, "-n", "5"},
			sgateArgv: []string{saslgate, "serve", "-a", "rimap", "-O", opt, "-n", "5"},
			req:       protocol.Request{Login: "bench", Password: "bench-password", Service: "imap"},
			goal:      "goal: ratio ≥ 1.5× at every C",
		}, &scenario{
			name:      "rimap-starttls",
			about:     "The same Dovecot. Cyrus: plaintext as above (it has no TLS); saslgate: `--rimap-tls starttls --rimap-ca-file CA` (verified certificate).",
			cyrusArgv: []string{"saslauthd", "-a", "rimap", "-O", opt, "-n", "5"},
			sgateArgv: []string{saslgate, "serve", "-a", "rimap", "-O", opt, "-n", "5", "--rimap-tls", "starttls", "--rimap-ca-file", dv.CAFile},
			req:       protocol.Request{Login: "bench", Password: "bench-password", Service: "imap"},
			goal:      "goal: saslgate over STARTTLS ≥ Cyrus plaintext (ratio ≥ 1×)",
		})
	}
	for _, sc := range scenarios {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), sc.name) {
			continue
		}
		if err := sc.run(tmp, *concs, *dur, *rounds); err != nil {
			if b, rerr := os.ReadFile(filepath.Join(tmp, "dovecot", "dovecot.log")); rerr == nil && strings.HasPrefix(sc.name, "rimap") {
				log.Printf("dovecot.log:\n%s", b)
			}
			log.Fatal(err)
		}
	}
	if err := os.WriteFile(*outPath, []byte(report(scenarios, *dur, *rounds)), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s", *outPath)
}

func (sc *scenario) run(tmp, concs string, dur time.Duration, rounds int) error {
	cyrusDir, sgDir := filepath.Join(tmp, "cyrus-"+sc.name), filepath.Join(tmp, "saslgate-"+sc.name)
	cyrusArgv := slices.Clone(sc.cyrusArgv)
	if cyrusArgv[0] == "unshare" {
		cyrusArgv = append(cyrusArgv, cyrusDir) // $0 of the sh -c script
	} else {
		cyrusArgv = append(cyrusArgv, "-m", cyrusDir)
	}
	cyrus, err := start("cyrus", cyrusDir, cyrusArgv...)
	if err != nil {
		return err
	}
	defer cyrus.stop()
	sg, err := start("saslgate", sgDir, append(slices.Clone(sc.sgateArgv), "-m", sgDir)...)
	if err != nil {
		return err
	}
	defer sg.stop()
	reqs := []protocol.Request{sc.req}
	for _, d := range []*daemon{cyrus, sg} { // both must answer OK before we measure
		r := load.Run(context.Background(), load.Spec{Socket: d.socket(), Requests: 4, Reqs: reqs, Want: []string{"OK"}})
		if r.Errors+r.Mismatches > 0 || r.Requests != 4 {
			return fmt.Errorf("%s %s does not answer OK: %s", sc.name, d.name, r)
		}
	}
	for _, cs := range strings.Split(concs, ",") {
		c, _ := strconv.Atoi(cs)
		var cr, sr []load.Result
		for i := 0; i < rounds; i++ {
			for _, d := range []*daemon{cyrus, sg} {
				r := load.Run(context.Background(), load.Spec{Socket: d.socket(), Concurrency: c, Duration: dur,
					Reqs: reqs, Want: []string{"OK"}, Timeout: 60 * time.Second})
				log.Printf("%s C=%d %-8s %s", sc.name, c, d.name, r)
				if d == cyrus {
					cr = append(cr, r)
				} else {
					sr = append(sr, r)
				}
			}
		}
		sc.points = append(sc.points, point{conc: c, cyrus: median(cr), sgate: median(sr)})
	}
	return nil
}

// median picks the run with the median throughput (its latencies go with it).
func median(rs []load.Result) load.Result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b load.Result) int {
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

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	var u syscall.Utsname
	_ = syscall.Uname(&u)
	rel := make([]byte, 0, 65)
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s", runtime.NumCPU(), cpu, rel, runtime.Version())
}

func report(scs []*scenario, dur time.Duration, rounds int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` (`go run ./test/benchcmp`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %s. The machine is shared and noisy: numbers move between runs, so read the\n"+
		"ratios, which compare the two daemons measured in alternation in the same run.\n\n", machine())
	b.WriteString("Each point: a fresh connection per request (as libsasl does) from C concurrent clients, " +
		fmt.Sprintf("%s per measurement, %d alternating rounds per daemon, median round reported. ", dur, rounds) +
		"Cyrus is Debian's sasl2-bin 2.1.28. ratio = saslgate req/s ÷ Cyrus req/s; p99 ratio = saslgate p99 ÷ Cyrus p99.\n")
	for _, sc := range scs {
		if len(sc.points) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", sc.name, sc.about)
		b.WriteString("| C | Cyrus req/s | saslgate req/s | ratio | Cyrus p50 | saslgate p50 | Cyrus p99 | saslgate p99 | p99 ratio |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, p := range sc.points {
			fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.2f× | %s | %s | %s | %s | %.2f |\n", p.conc,
				p.cyrus.RPS(), p.sgate.RPS(), p.sgate.RPS()/max(p.cyrus.RPS(), 1e-9),
				ms(p.cyrus.P50), ms(p.sgate.P50), ms(p.cyrus.P99), ms(p.sgate.P99),
				float64(p.sgate.P99)/max(float64(p.cyrus.P99), 1))
		}
		fmt.Fprintf(&b, "\n%s.\n", strings.ToUpper(sc.goal[:1])+sc.goal[1:])
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
