package test

// The --metrics endpoint of the real binary: a burst of requests through
// the socket, then one scrape whose counters must match the burst exactly.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// metServing is the start-up line that names the endpoint.
var metServing = regexp.MustCompile(`metrics: serving (http://\S+/metrics)`)

// metURL waits for d to log its metrics address.
func metURL(t *testing.T, d *Daemon) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m := metServing.FindStringSubmatch(d.Out.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics address logged:\n%s", d.Out.String())
		}
	}
}

// metScrape fetches the endpoint and parses the text format into
// `name{labels}` -> value, the labels as the exposition writes them.
func metScrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s %q\n%s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMetricsBurst: 200 good logins, 50 bad ones, 100 of the good ones
// again (answered by the cache) and a few malformed requests, then the
// counters, the cache, the latency histogram and the open connections as
// the scrape reports them.
func TestMetricsBurst(t *testing.T) {
	fx := sdbNewFixture(t)
	polSettle(t, fx.DB) // the cache ignores a sasldb changed in the last 2 s
	dir := sdbTempDir(t)
	d := startDaemon(t, "saslgate", saslgateBin(t), "", dir, "serve", "-d", "-c", "-a", "sasldb",
		"--sasldb-path", fx.DB, "-m", dir, "--failure-delay", "0", "--auth-penalty", "0",
		"--metrics", "127.0.0.1:0")
	url := metURL(t, d)
	// startDaemon's readiness check connected and closed without a request
	before := metScrape(t, url)

	// Every good request has its own cache key (the service differs), so
	// that none waits for an identical one in flight: the counts are exact
	// whatever the interleaving. The bad ones are another user's, whose
	// rejections do not drop dave's entries.
	type job struct {
		req  protocol.Request
		want string
	}
	burst := func(jobs []job) {
		t.Helper()
		work := make(chan job)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed []string
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range work {
					if got := ask(d.Socket(), j.req); got != j.want {
						mu.Lock()
						failed = append(failed, fmt.Sprintf("%s/%s: %q, want %q", j.req.Login, j.req.Service, got, j.want))
						mu.Unlock()
					}
				}
			}()
		}
		for _, j := range jobs {
			work <- j
		}
		close(work)
		wg.Wait()
		if len(failed) > 0 {
			t.Fatalf("%d replies wrong, first: %s", len(failed), failed[0])
		}
	}
	good := func(i int) job {
		return job{protocol.Request{Login: "dave", Password: sdbDavePw, Service: fmt.Sprintf("svc%03d", i), Realm: fx.Host}, "OK"}
	}
	var first []job
	for i := range 200 {
		first = append(first, good(i))
	}
	for i := range 50 {
		bad := protocol.Request{Login: "erin", Password: fmt.Sprintf("wrong%02d", i), Service: fmt.Sprintf("bad%02d", i), Realm: sdbErinRealm}
		if i%2 == 1 {
			bad.Login = fmt.Sprintf("nobody%02d", i) // unknown user
		}
		first = append(first, job{bad, "NO"})
	}
	burst(first)
	var again []job
	for i := range 100 {
		again = append(again, good(i))
	}
	burst(again)

	// malformed: 3 frames cut short (no reply), 2 fields too long, 1 empty login
	for range 3 {
		if b, err := rawExchange(d.Socket(), []byte{0, 5, 'd', 'a'}, true, 10*time.Second); err != nil || len(b) != 0 {
			t.Fatalf("short frame: %q %v", b, err)
		}
	}
	for _, req := range []protocol.Request{
		{Login: strings.Repeat("x", 300), Password: "p"},
		{Login: "dave", Password: strings.Repeat("p", 257)},
		{Login: "", Password: "p"},
	} {
		if got, want := ask(d.Socket(), req), map[bool]string{true: "NO NULL login received", false: "NO "}[req.Login == ""]; got != want {
			t.Fatalf("malformed %d-byte login: %q, want %q", len(req.Login), got, want)
		}
	}

	// a client closes as soon as it has its reply, the daemon a moment later
	var got map[string]float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got = metScrape(t, url)
		if got["saslgate_open_connections"] == 0 || time.Now().After(deadline) {
			break
		}
	}
	want := map[string]float64{
		`saslgate_requests_total{mech="sasldb",verdict="accept"}`:   200,
		`saslgate_requests_total{mech="sasldb",verdict="reject"}`:   50,
		`saslgate_requests_total{mech="sasldb",verdict="tempfail"}`: 0,
		`saslgate_requests_total{mech="cache",verdict="accept"}`:    100,
		`saslgate_requests_total{mech="cache",verdict="reject"}`:    0,
		`saslgate_replies_total{reply="ok"}`:                        300,
		`saslgate_replies_total{reply="no"}`:                        53,
		`saslgate_cache_hits_total{kind="positive"}`:                100,
		`saslgate_cache_hits_total{kind="negative"}`:                0,
		`saslgate_cache_hits_total{kind="shared"}`:                  0,
		`saslgate_cache_misses_total`:                               250,
		`saslgate_cache_bypassed_total`:                             0,
		`saslgate_cache_stale_served_total`:                         0,
		`saslgate_cache_entries`:                                    200,
		// the histogram counts every request the policy answered
		`saslgate_request_duration_seconds_count{mech="sasldb"}`:            250,
		`saslgate_request_duration_seconds_count{mech="cache"}`:             100,
		`saslgate_request_duration_seconds_bucket{mech="sasldb",le="+Inf"}`: 250,
		`saslgate_request_duration_seconds_bucket{mech="cache",le="+Inf"}`:  100,
		`saslgate_connection_errors_total{kind="bad_frame"}`:                before[`saslgate_connection_errors_total{kind="bad_frame"}`] + 3,
		`saslgate_connection_errors_total{kind="field_too_long"}`:           2,
		`saslgate_connection_errors_total{kind="null_login"}`:               1,
		`saslgate_connection_errors_total{kind="null_password"}`:            0,
		`saslgate_connection_errors_total{kind="read_timeout"}`:             0,
		`saslgate_throttled_requests_total`:                                 0,
		`saslgate_throttle_delay_seconds_total`:                             0,
		`saslgate_open_connections`:                                         0,
		`saslgate_mechanism_calls_in_flight`:                                0,
	}
	for k, v := range want {
		if g, ok := got[k]; (!ok && v != 0) || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "saslgate_pam_") {
			t.Errorf("%s reported without pam", k)
		}
	}
	if before[`saslgate_connection_errors_total{kind="bad_frame"}`] > 2 {
		t.Errorf("%v bad frames before the burst", before[`saslgate_connection_errors_total{kind="bad_frame"}`])
	}
	// cache hits are answered faster than sasldb lookups; both well under a second
	if sum := got[`saslgate_request_duration_seconds_sum{mech="cache"}`]; sum <= 0 || sum/100 > 0.1 {
		t.Errorf("cache latency sum %v", sum)
	}
	if n := got[`saslgate_request_duration_seconds_bucket{mech="sasldb",le="1"}`]; n != 250 {
		t.Errorf("%v sasldb requests under 1 s, want 250", n)
	}
	if !strings.Contains(strings.Join(keys(got), "\n"), `saslgate_build_info{goversion="go`) {
		t.Error("no build info")
	}

	// SIGTERM closes the endpoint with the daemon
	d.Stop(t)
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics")
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still listening after SIGTERM", addr)
	}
}

func keys(m map[string]float64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestMetricsConfigAndErrors: the metrics key of the config file, and an
// address that cannot be bound stops the start with exit 1, in the
// foreground and detached.
func TestMetricsConfigAndErrors(t *testing.T) {
	fx := sdbNewFixture(t)
	bin := saslgateBin(t)

	dir := sdbTempDir(t)
	conf := filepath.Join(dir, "saslgate.conf")
	if err := os.WriteFile(conf, []byte("mech: sasldb\nsasldb_path: "+fx.DB+"\nmetrics: 127.0.0.1:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "saslgate", bin, "", dir, "serve", "-d", "--config", conf, "-m", dir,
		"--failure-delay", "0", "--auth-penalty", "0")
	url := metURL(t, d)
	if got := ask(d.Socket(), protocol.Request{Login: "dave", Password: sdbDavePw, Realm: fx.Host}); got != "OK" {
		t.Fatalf("reply %q", got)
	}
	if got := metScrape(t, url)[`saslgate_requests_total{mech="sasldb",verdict="accept"}`]; got != 1 {
		t.Errorf("requests after one login: %v", got)
	}
	// a second instance on the same run directory and metrics address is
	// refused as saslauthd refuses it (exit 2), not on the busy port
	hostPort := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics")
	second := exec.Command(bin, "serve", "-d", "-a", "sasldb", "--sasldb-path", fx.DB, "-m", dir, "--metrics", hostPort)
	out, _ := second.CombinedOutput()
	if code := second.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "Another instance") {
		t.Errorf("second instance: exit %d, output:\n%s", code, out)
	}
	d.Stop(t)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, mode := range [][]string{{"-d"}, {}} {
		rd := sdbTempDir(t)
		args := append([]string{"serve", "-a", "sasldb", "--sasldb-path", fx.DB, "-m", rd, "--metrics", busy.Addr().String()}, mode...)
		cmd := exec.Command(bin, args...)
		out, err := cmd.CombinedOutput()
		code := cmd.ProcessState.ExitCode()
		if code != 1 || !strings.Contains(string(out), "metrics: listen tcp "+busy.Addr().String()) ||
			!strings.Contains(string(out), "address already in use") {
			t.Errorf("%v: exit %d (%v), output:\n%s", mode, code, err, out)
		}
		if _, err := os.Stat(filepath.Join(rd, "mux")); err == nil {
			t.Errorf("%v: the socket was made", mode)
		}
	}
}

// TestMetricsDetached: without -d the process that binds the endpoint is
// the detached daemon, not the parent that exits once it is up; SIGTERM
// to the daemon closes it.
func TestMetricsDetached(t *testing.T) {
	fx := sdbNewFixture(t)
	dir := sdbTempDir(t)
	lcReapRunDir(t, dir)
	// a free port: the detached daemon logs its address to syslog only
	addr := metFreeAddr(t)
	cmd := exec.Command(saslgateBin(t), "serve", "-a", "sasldb", "--sasldb-path", fx.DB, "-m", dir,
		"--failure-delay", "0", "--auth-penalty", "0", "--metrics", addr)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
	pid, _, err := lcReadPidFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := ask(filepath.Join(dir, "mux"), protocol.Request{Login: "dave", Password: sdbDavePw, Realm: fx.Host}); got != "OK" {
		t.Fatalf("reply %q", got)
	}
	url := "http://" + addr + "/metrics"
	if got := metScrape(t, url)[`saslgate_requests_total{mech="sasldb",verdict="accept"}`]; got != 1 {
		t.Errorf("requests after one login: %v", got)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !lcWaitGone(pid, 10*time.Second) {
		t.Fatalf("daemon %d still running after SIGTERM", pid)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still listening after SIGTERM", addr)
	}
}

// metExporter returns the pid of daemon pid's saslgate-metrics child,
// waiting for one to run.
func metExporter(t *testing.T, pid int, not int) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, s := range strings.Fields(string(b)) {
				c, _ := strconv.Atoi(s)
				if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", c)); c != not && filepath.Base(exe) == "saslgate-metrics" {
					return c
				}
			}
		}
	}
	t.Fatalf("daemon %d has no saslgate-metrics child", pid)
	return 0
}

// TestMetricsExporterProcess: the endpoint is a child process that holds
// no lock on the daemon: the daemon's go_* and process_* are the daemon's,
// an exporter killed outright is replaced while logins go on, and one
// whose daemon is killed outright exits with it, freeing the port.
func TestMetricsExporterProcess(t *testing.T) {
	fx := sdbNewFixture(t)
	dir := sdbTempDir(t)
	addr := metFreeAddr(t)
	d := startDaemon(t, "saslgate", saslgateBin(t), "", dir, "serve", "-d", "-a", "sasldb",
		"--sasldb-path", fx.DB, "-m", dir, "--failure-delay", "0", "--auth-penalty", "0", "--metrics", addr)
	url := metURL(t, d)
	pid := d.Cmd.Process.Pid
	exp := metExporter(t, pid, 0)
	m := metScrape(t, url)
	if m["process_open_fds"] < 5 || m["go_goroutines"] < 3 {
		t.Errorf("process_open_fds %v, go_goroutines %v: not the daemon's?", m["process_open_fds"], m["go_goroutines"])
	}
	if rss := m["process_resident_memory_bytes"]; rss == 0 {
		t.Error("no process_resident_memory_bytes")
	}

	if err := syscall.Kill(exp, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	good := protocol.Request{Login: "dave", Password: sdbDavePw, Realm: fx.Host}
	if got := ask(d.Socket(), good); got != "OK" { // logins do not wait for the exporter
		t.Fatalf("reply with the exporter dead: %q", got)
	}
	next := metExporter(t, pid, exp)
	var got float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			if got = metScrape(t, url)[`saslgate_requests_total{mech="sasldb",verdict="accept"}`]; got == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no endpoint with the login counted (%v) 10s after the exporter was killed:\n%s", got, d.Out.String())
		}
	}
	if !strings.Contains(d.Out.String(), "metrics: the exporter stopped") {
		t.Errorf("the exporter's death was not logged:\n%s", d.Out.String())
	}

	if err := d.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if !lcWaitGone(next, 10*time.Second) {
		t.Fatalf("exporter %d still running 10s after its daemon was killed", next)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still listening after the daemon and its exporter died", addr)
	}
}

// TestMetricsNoExporter: --metrics without the saslgate-metrics executable
// (beside saslgate or in /usr/lib/saslgate) stops the start with a message
// that says what is missing, instead of a daemon without its endpoint.
func TestMetricsNoExporter(t *testing.T) {
	if _, err := os.Stat("/usr/lib/saslgate/saslgate-metrics"); err == nil {
		t.Fatal("/usr/lib/saslgate/saslgate-metrics is installed on this machine; this test needs it absent (dpkg --purge saslgate)")
	}
	fx := sdbNewFixture(t)
	dir := sdbTempDir(t)
	lone := filepath.Join(t.TempDir(), "saslgate")
	b, err := os.ReadFile(saslgateBin(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lone, b, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(lone, "serve", "-d", "-a", "sasldb", "--sasldb-path", fx.DB, "-m", dir,
		"--metrics", "127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "no saslgate-metrics executable") {
		t.Errorf("without the exporter: %v\n%s", err, out)
	}
}

// metFreeAddr is a loopback address with a port free a moment ago.
func metFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
