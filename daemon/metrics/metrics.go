// Package metrics is saslgate's Prometheus endpoint (--metrics ADDR): the
// collectors, on a registry of their own, fed by the daemon.Observer hooks
// on the request path and by reading the server, the cache and the PAM
// workers' counters at scrape time.
//
// The request path stays cheap: the label children of every known label
// set are resolved once, so recording a request is a map lookup and a few
// atomic adds, with no allocation (BenchmarkRequest). Series for a
// mechanism are made the first time that mechanism decides a request.
package metrics

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/mechs"
)

const namespace = "saslgate"

// Buckets are the request latency histogram's upper bounds, in seconds:
// from a cache hit (tens of microseconds) to a back end at its timeout.
var buckets = []float64{
	50e-6, 100e-6, 250e-6, 500e-6,
	.001, .0025, .005, .01, .025, .05, .1, .25, .5,
	1, 2.5, 5, 10,
}

// Metrics owns the collectors and their registry. It implements
// daemon.Observer; Attach hooks it to a Server.
type Metrics struct {
	reg *prometheus.Registry

	reqs *prometheus.CounterVec
	dur  *prometheus.HistogramVec
	// per mechanism label: read without a lock, copied to add one
	series atomic.Pointer[map[string]*mechSeries]
	addMu  sync.Mutex

	replies   [2]prometheus.Counter // no, ok
	connErrs  map[daemon.ConnError]prometheus.Counter
	throttled prometheus.Counter
	delay     prometheus.Counter

	attached atomic.Bool
}

// mechSeries are one mechanism's children, by verdict.
type mechSeries struct {
	reqs [4]prometheus.Counter // indexed by mechs.Verdict; 0 counts as tempfail
	dur  prometheus.Observer
}

var verdictLabels = [4]string{"tempfail", "accept", "reject", "tempfail"}

// New makes the collectors and registers them, with the Go runtime's and
// the process's, on a new registry. version is saslgate's, for
// saslgate_build_info.
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "requests_total",
		Help: "Requests answered, by deciding mechanism (\"cache\" for a cache entry, \"none\" when no mechanism decided) and verdict.",
	}, []string{"mech", "verdict"})
	m.dur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "request_duration_seconds",
		Help:    "Time from a rewritten request to its answer (cache, -n wait, mechanisms), without the failure delay, by deciding mechanism.",
		Buckets: buckets,
	}, []string{"mech"})
	replies := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "replies_total",
		Help: "Replies written to clients, including the protocol's refusals, by reply.",
	}, []string{"reply"})
	m.replies = [2]prometheus.Counter{replies.WithLabelValues("no"), replies.WithLabelValues("ok")}
	connErrs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "connection_errors_total",
		Help: "Requests refused by the protocol (field_too_long, null_login, null_password) and connections closed without a reply, by kind.",
	}, []string{"kind"})
	m.connErrs = map[daemon.ConnError]prometheus.Counter{}
	for _, e := range daemon.ConnErrors() {
		m.connErrs[e] = connErrs.WithLabelValues(e.String())
	}
	m.throttled = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "throttled_requests_total",
		Help: "Answers held back by the failure delay or a penalty.",
	})
	m.delay = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "throttle_delay_seconds_total",
		Help: "Failure delay and penalties imposed, summed.",
	})
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels say which saslgate is running.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	empty := map[string]*mechSeries{}
	m.series.Store(&empty)
	m.reg.MustRegister(m.reqs, m.dur, replies, connErrs, m.throttled, m.delay, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the collectors are registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Attach makes m s's Observer and registers what is read from s at scrape
// time: open connections, mechanism calls in flight, the cache's counters
// (when s has a cache) and the PAM worker restarts of the mechanisms in s's
// policy. Call it once, before s serves.
func (m *Metrics) Attach(s *daemon.Server) {
	if !m.attached.CompareAndSwap(false, true) {
		panic("metrics: Attach called twice")
	}
	s.Observer = m
	m.reg.MustRegister(newServerCollector(s))
}

// Request records one answered request.
func (m *Metrics) Request(ev daemon.RequestEvent) {
	ms := (*m.series.Load())[ev.Mech]
	if ms == nil {
		ms = m.addMech(ev.Mech)
	}
	v := ev.Verdict
	if v >= mechs.Verdict(len(ms.reqs)) {
		v = 0 // an invalid verdict was answered as a TEMPFAIL
	}
	ms.reqs[v].Inc()
	ms.dur.Observe(ev.Duration.Seconds())
	if ev.Delay > 0 {
		m.throttled.Inc()
		m.delay.Add(ev.Delay.Seconds())
	}
}

// addMech makes a mechanism's series, once.
func (m *Metrics) addMech(name string) *mechSeries {
	m.addMu.Lock()
	defer m.addMu.Unlock()
	old := *m.series.Load()
	if ms := old[name]; ms != nil {
		return ms
	}
	ms := &mechSeries{dur: m.dur.WithLabelValues(name)}
	for v, l := range verdictLabels {
		ms.reqs[v] = m.reqs.WithLabelValues(name, l)
	}
	next := make(map[string]*mechSeries, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = ms
	m.series.Store(&next)
	return ms
}

// Reply records one reply written.
func (m *Metrics) Reply(ok bool) {
	if ok {
		m.replies[1].Inc()
	} else {
		m.replies[0].Inc()
	}
}

// ConnError records a refusal or a connection closed without a reply.
func (m *Metrics) ConnError(e daemon.ConnError) {
	if c := m.connErrs[e]; c != nil {
		c.Inc()
	}
}

var _ daemon.Observer = (*Metrics)(nil)
