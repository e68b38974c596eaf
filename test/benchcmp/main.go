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

func main() {
	bin := flag.String("bin", "bin/saslgate", "saslgate binary")
	outPath := flag.String("out", "BENCHMARKS.md", "report to write")
	dur := flag.Duration("d", 3*time.Second, "duration of one measurement")
	rounds := flag.Int("rounds", 3, "alternating rounds per point (the median is reported)")
	concs := flag.String("c", "1,8,64", "concurrency levels")
	flag.Parse()
	log.SetFlags(0)
	if os.Geteuid() != 0 {
		log.Fatal("benchcmp: needs root (Cyrus saslauthd reads /etc/sasldb2 only)")
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
	host, _ := os.Hostname()
	db := filepath.Join(tmp, "sasldb2")
	for _, u := range []string{"bench", "other1", "other2"} {
		c := exec.Command("saslpasswd2", "-p", "-c", "-f", db, "-u", host, u)
		c.Stdin = strings.NewReader("bench-password")
		if out, err := c.CombinedOutput(); err != nil {
			log.Fatalf("saslpasswd2: %v %s", err, out)
		}
	}
	cyrusDir, sgDir := filepath.Join(tmp, "cyrus"), filepath.Join(tmp, "saslgate")
	cyrusCmd := fmt.Sprintf("mount --bind %s /etc/sasldb2 && exec saslauthd -a sasldb -n 5 -m %s", db, cyrusDir)
	cyrus, err := start("cyrus", cyrusDir, "unshare", "--mount", "--propagation", "private", "sh", "-c", cyrusCmd)
	if err != nil {
		log.Fatal(err)
	}
	defer cyrus.stop()
	sg, err := start("saslgate", sgDir, saslgate, "serve", "-a", "sasldb", "-n", "5", "--sasldb-path", db, "-m", sgDir)
	if err != nil {
		log.Fatal(err)
	}
	defer sg.stop()

	req := []protocol.Request{{Login: "bench", Password: "bench-password", Service: "smtp"}}
	for _, d := range []*daemon{cyrus, sg} { // both must answer OK before we measure
		r := load.Run(context.Background(), load.Spec{Socket: d.socket(), Requests: 10, Reqs: req, Want: []string{"OK"}})
		if r.Errors+r.Mismatches > 0 || r.Requests != 10 {
			log.Fatalf("%s does not answer OK: %s", d.name, r)
		}
	}
	var pts []point
	for _, cs := range strings.Split(*concs, ",") {
		c, _ := strconv.Atoi(cs)
		var cr, sr []load.Result
		for i := 0; i < *rounds; i++ {
			for _, d := range []*daemon{cyrus, sg} {
				r := load.Run(context.Background(), load.Spec{Socket: d.socket(), Concurrency: c, Duration: *dur,
					Reqs: req, Want: []string{"OK"}, Timeout: 30 * time.Second})
				log.Printf("sasldb C=%d %-8s %s", c, d.name, r)
				if d == cyrus {
					cr = append(cr, r)
				} else {
					sr = append(sr, r)
				}
			}
		}
		pts = append(pts, point{conc: c, cyrus: median(cr), sgate: median(sr)})
	}
	if err := os.WriteFile(*outPath, []byte(report(pts, *dur, *rounds)), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s", *outPath)
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

func report(pts []point, dur time.Duration, rounds int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` (`go run ./test/benchcmp`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %s. The machine is shared and noisy: numbers move between runs, so read the\n"+
		"ratios, which compare the two daemons measured in alternation in the same run.\n\n", machine())
	b.WriteString("Each point: a fresh connection per request (as libsasl does) from C concurrent clients, " +
		fmt.Sprintf("%s per measurement, %d alternating rounds per daemon, median round reported.\n\n", dur, rounds))
	b.WriteString("## sasldb\n\n")
	b.WriteString("Cyrus: `saslauthd -a sasldb -n 5` (Debian's sasl2-bin 2.1.28; its sasldb bind-mounted on /etc/sasldb2 in a private mount namespace).  \n")
	b.WriteString("saslgate: `saslgate serve -a sasldb -n 5 --sasldb-path FILE`. Same file, written by `saslpasswd2`, same user.\n\n")
	b.WriteString("| C | Cyrus req/s | saslgate req/s | ratio | Cyrus p50 | saslgate p50 | Cyrus p99 | saslgate p99 | p99 ratio |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range pts {
		fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.2f× | %s | %s | %s | %s | %.2f |\n", p.conc,
			p.cyrus.RPS(), p.sgate.RPS(), p.sgate.RPS()/max(p.cyrus.RPS(), 1e-9),
			ms(p.cyrus.P50), ms(p.sgate.P50), ms(p.cyrus.P99), ms(p.sgate.P99),
			float64(p.sgate.P99)/max(float64(p.cyrus.P99), 1))
	}
	b.WriteString("\nratio = saslgate req/s ÷ Cyrus req/s (goal at C=64: ≥ 1.5×); p99 ratio = saslgate p99 ÷ Cyrus p99 (goal at C=64: ≤ 0.5).\n")
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
