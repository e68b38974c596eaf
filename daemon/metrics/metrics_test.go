package metrics_test

import (
	"context"
	"errors"
	"maps"
	"net"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/daemon/metrics"
	"github.com/saslgate/saslgate/daemon/throttle"
	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/mechstest"
	"github.com/saslgate/saslgate/protocol"
)

// serve runs s with chain m on a socket in a temp dir.
func serve(t *testing.T, s *daemon.Server, m mechs.Mechanism) string {
	t.Helper()
	s.SetAuth(m)
	sock := filepath.Join(t.TempDir(), "mux")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, daemon.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

func ask(t *testing.T, sock string, req protocol.Request) string {
	t.Helper()
	c := &protocol.Client{Path: sock, Timeout: 10 * time.Second}
	r, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	return r
}

// raw sends b and reads until the server closes.
func raw(t *testing.T, sock string, b []byte) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.UnixConn).CloseWrite()
	var buf [64]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			return
		}
	}
}

// series is a scrape: "name{l1=v1,l2=v2}" (labels sorted) to value; a
// histogram gives name_count and name_sum.
type series map[string]float64

func scrape(t *testing.T, reg prometheus.Gatherer) series {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := series{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+"="+lp.GetValue())
			}
			sort.Strings(ls)
			key := func(name string) string {
				if len(ls) == 0 {
					return name
				}
				return name + "{" + strings.Join(ls, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key(mf.GetName())] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key(mf.GetName())] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key(mf.GetName()+"_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key(mf.GetName()+"_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// want checks the named series; a missing series counts as 0.
func (s series) want(t *testing.T, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if got := s[k]; got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
}

// waitFor polls the scrape until cond holds.
func waitFor(t *testing.T, reg prometheus.Gatherer, what string, cond func(series) bool) series {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := scrape(t, reg)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last scrape %v", what, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// flaky answers TEMPFAIL for the login "down" and rejects everyone else,
// so that the chain flaky,static lets static decide the others.
var flaky = mechstest.Func{MechName: "flaky", Fn: func(_ context.Context, req mechs.Request) (mechs.Result, error) {
	if req.Login == "down" {
		return mechs.TempFailed("NO back end down", "test"), nil
	}
	return mechs.Result{Verdict: mechs.Reject, Reply: "NO"}, nil
}}

var static = mechstest.Static{MechName: "static", Users: map[string]string{"alice": "secret"}}

// TestRequests: every kind of answer moves its counter, and only it.
func TestRequests(t *testing.T) {
	m := metrics.New("1.2.3")
	tc := throttle.DefaultConfig()
	tc.FailureDelay, tc.Jitter, tc.PenaltyBase = 5*time.Millisecond, 0, 0
	srv := &daemon.Server{
		ReadTimeout: 200 * time.Millisecond,
		Cache:       daemon.NewCacheWith(daemon.CacheConfig{TTL: time.Hour, NegativeTTL: time.Hour}),
		Throttle:    throttle.New(tc, nil),
	}
	m.Attach(srv)
	if srv.Observer != daemon.Observer(m.Stats()) {
		t.Fatal("Attach did not install the observer")
	}
	sock := serve(t, srv, mechs.NewChain(nil, flaky, static))

	steps := []struct {
		req   protocol.Request
		reply string
	}{
		{protocol.Request{Login: "alice", Password: "secret"}, "OK"},         // static accept (miss)
		{protocol.Request{Login: "alice", Password: "secret"}, "OK"},         // cache hit
		{protocol.Request{Login: "alice", Password: "secret"}, "OK"},         // cache hit
		{protocol.Request{Login: "alice", Password: "wrong"}, "NO"},          // static reject (miss)
		{protocol.Request{Login: "alice", Password: "wrong"}, "NO"},          // negative hit
		{protocol.Request{Login: "down", Password: "x"}, "NO back end down"}, // flaky tempfail (miss)
		{protocol.Request{Login: "", Password: "x"}, "NO NULL login received"},
		{protocol.Request{Login: "alice", Password: ""}, "NO NULL password received"},
		{protocol.Request{Login: strings.Repeat("a", 300), Password: "x"}, "NO "},
	}
	for i, s := range steps {
		if got := ask(t, sock, s.req); got != s.reply {
			t.Fatalf("step %d: reply %q, want %q", i, got, s.reply)
		}
	}
	raw(t, sock, []byte{0, 5, 'a'}) // closed mid-field: bad frame, no reply
	// connects and sends nothing: read timeout
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	got := waitFor(t, m.Registry(), "the read timeout and every connection closed", func(s series) bool {
		return s[`saslgate_connection_errors_total{kind=read_timeout}`] == 1 && s["saslgate_open_connections"] == 0
	})
	got.want(t, map[string]float64{
		`saslgate_requests_total{mech=static,verdict=accept}`:   1,
		`saslgate_requests_total{mech=static,verdict=reject}`:   1,
		`saslgate_requests_total{mech=static,verdict=tempfail}`: 0,
		`saslgate_requests_total{mech=cache,verdict=accept}`:    2,
		`saslgate_requests_total{mech=cache,verdict=reject}`:    1,
		`saslgate_requests_total{mech=flaky,verdict=tempfail}`:  1,
		`saslgate_requests_total{mech=flaky,verdict=accept}`:    0,
		`saslgate_request_duration_seconds_count{mech=static}`:  2,
		`saslgate_request_duration_seconds_count{mech=cache}`:   3,
		`saslgate_request_duration_seconds_count{mech=flaky}`:   1,
		`saslgate_replies_total{reply=ok}`:                      3,
		`saslgate_replies_total{reply=no}`:                      6,
		`saslgate_connection_errors_total{kind=null_login}`:     1,
		`saslgate_connection_errors_total{kind=null_password}`:  1,
		`saslgate_connection_errors_total{kind=field_too_long}`: 1,
		`saslgate_connection_errors_total{kind=bad_frame}`:      1,
		`saslgate_connection_errors_total{kind=read_timeout}`:   1,
		`saslgate_connection_errors_total{kind=write_error}`:    0,
		`saslgate_cache_hits_total{kind=positive}`:              2,
		`saslgate_cache_hits_total{kind=negative}`:              1,
		`saslgate_cache_hits_total{kind=shared}`:                0,
		`saslgate_cache_misses_total`:                           3,
		`saslgate_cache_stale_served_total`:                     0,
		`saslgate_cache_entries`:                                float64(srv.Cache.Len()),
		// the two NOs of a rejection; a TEMPFAIL is not delayed
		`saslgate_throttled_requests_total`:                                      2,
		`saslgate_throttle_delay_seconds_total`:                                  0.010,
		`saslgate_mechanism_calls_in_flight`:                                     0,
		`saslgate_build_info{goversion=` + runtime.Version() + `,version=1.2.3}`: 1,
	})
	if srv.Cache.Len() == 0 {
		t.Error("the cache holds nothing")
	}
	for k := range got {
		if strings.HasPrefix(k, "saslgate_pam_") {
			t.Errorf("%s without a pam mechanism", k)
		}
	}
}

// TestInFlight: the gauges read at scrape time see a request while its
// mechanism runs.
func TestInFlight(t *testing.T) {
	m := metrics.New("test")
	srv := &daemon.Server{}
	m.Attach(srv)
	entered, release := make(chan struct{}), make(chan struct{})
	block := mechstest.Func{MechName: "block", Fn: func(ctx context.Context, req mechs.Request) (mechs.Result, error) {
		entered <- struct{}{}
		<-release
		return mechs.Result{Verdict: mechs.Accept, Reply: "OK"}, nil
	}}
	sock := serve(t, srv, block)
	const n = 3
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := ask(t, sock, protocol.Request{Login: "u", Password: "p"}); r != "OK" {
				t.Errorf("reply %q", r)
			}
		}()
	}
	for range n {
		<-entered
	}
	scrape(t, m.Registry()).want(t, map[string]float64{
		"saslgate_mechanism_calls_in_flight":                 n,
		"saslgate_open_connections":                          n,
		"saslgate_requests_total{mech=block,verdict=accept}": 0,
	})
	close(release)
	wg.Wait()
	waitFor(t, m.Registry(), "the connections to close", func(s series) bool {
		return s["saslgate_open_connections"] == 0
	}).want(t, map[string]float64{
		"saslgate_mechanism_calls_in_flight":                 0,
		"saslgate_requests_total{mech=block,verdict=accept}": n,
		"saslgate_replies_total{reply=ok}":                   n,
	})
}

// workers is a mechanism with worker restart counts, as mechs/pam has.
type workers struct {
	mechstest.Static
	mu     sync.Mutex
	counts map[string]uint64
	final  bool
}

func (w *workers) WorkerRestarts() (map[string]uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.counts), w.final
}

func (w *workers) add(reason string, n uint64, final bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.counts[reason] += n
	w.final = final
}

func newWorkers(name string) *workers {
	return &workers{Static: mechstest.Static{MechName: name}, counts: map[string]uint64{"crash": 0, "hang": 0}}
}

// TestWorkerRestarts: the counter sums the mechanisms in the policy, once
// each however many chains hold them, and does not go back when a reload
// replaces one.
func TestWorkerRestarts(t *testing.T) {
	m := metrics.New("test")
	srv := &daemon.Server{}
	m.Attach(srv)
	policy := func(ms ...mechs.Mechanism) *daemon.Policy {
		p := &daemon.Policy{Chains: map[string]mechs.Mechanism{}}
		for i, mech := range ms {
			p.Chains[string(rune('a'+i))] = mechs.NewChain(nil, static, mech)
		}
		return p
	}
	restarts := func(crash, hang float64) map[string]float64 {
		return map[string]float64{
			"saslgate_pam_worker_restarts_total{reason=crash}": crash,
			"saslgate_pam_worker_restarts_total{reason=hang}":  hang,
		}
	}
	if s := scrape(t, m.Registry()); len(s) == 0 {
		t.Fatal("nothing gathered")
	} else if _, ok := s["saslgate_pam_worker_restarts_total{reason=crash}"]; ok {
		t.Fatal("restarts reported without a policy")
	}

	old := newWorkers("pam")
	old.add("crash", 2, false)
	srv.SetPolicy(policy(old, old)) // one instance in two chains
	scrape(t, m.Registry()).want(t, restarts(2, 0))

	// a reload: the old instance still finishes its requests
	next := newWorkers("pam")
	srv.SetPolicy(policy(next))
	old.add("hang", 1, false)
	next.add("crash", 1, false)
	scrape(t, m.Registry()).want(t, restarts(3, 1))

	// the old one closes: its last counts stay in the sum
	old.add("crash", 1, true)
	scrape(t, m.Registry()).want(t, restarts(4, 1))
	next.add("hang", 2, false)
	scrape(t, m.Registry()).want(t, restarts(4, 3))
	scrape(t, m.Registry()).want(t, restarts(4, 3))

	// a mechanism that is final while still installed is not added twice
	next.add("crash", 0, true)
	scrape(t, m.Registry()).want(t, restarts(4, 3))
	scrape(t, m.Registry()).want(t, restarts(4, 3))
}

func TestAttachTwice(t *testing.T) {
	m := metrics.New("test")
	m.Attach(&daemon.Server{})
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	m.Attach(&daemon.Server{})
}
