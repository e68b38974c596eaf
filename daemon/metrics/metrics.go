// Package metrics is saslgate's Prometheus endpoint (--metrics ADDR), on a
// registry of its own. It runs in the saslgate-metrics process: the daemon
// counts with daemon/stats, standard library only, and this package turns
// each scrape into one stats.Snapshot fetched from the daemon, so that the
// daemon that answers logins carries neither an HTTP server nor the
// Prometheus stack.
package metrics

import (
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/daemon/stats"
)

const namespace = "saslgate"

// Source returns the daemon's counters now.
type Source func() (stats.Snapshot, error)

// Metrics owns the registry and the collector that reads a Source.
type Metrics struct {
	reg *prometheus.Registry
	// in-process only (New): the counters Attach hooks to a server
	local *stats.Stats
}

// New returns Metrics over counters of its own, in this process: Attach
// hooks them to a Server. For tests and benchmarks; the daemon uses
// daemon/stats and NewRemote runs in the exporter.
func New(version string) *Metrics {
	st := stats.New(version)
	m := newMetrics(func() (stats.Snapshot, error) { return st.Snapshot(), nil },
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.local = st
	return m
}

// NewRemote returns Metrics over src, the snapshots of the daemon whose
// process is pid (its process_* metrics are read from /proc/pid).
func NewRemote(src Source, pid int) *Metrics {
	return newMetrics(src, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{
		PidFn: func() (int, error) { return pid, nil },
	}))
}

func newMetrics(src Source, process prometheus.Collector) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(newCollector(src), process)
	return m
}

// Registry is where the collectors are registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Attach makes the counters of New s's Observer. Call it once, before s
// serves.
func (m *Metrics) Attach(s *daemon.Server) {
	if m.local == nil {
		panic("metrics: Attach on Metrics made by NewRemote")
	}
	m.local.Attach(s)
}

// Stats are the counters of New, nil for NewRemote.
func (m *Metrics) Stats() *stats.Stats { return m.local }

// ConnSource is a Source that asks the daemon at the other end of c, one
// scrape at a time.
func ConnSource(c net.Conn) Source {
	var mu sync.Mutex
	return func() (stats.Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		return stats.Fetch(c)
	}
}

// collector turns one snapshot per scrape into every series.
type collector struct {
	src Source

	reqs, dur, replies, connErrs, throttled, delay, buildInfo *prometheus.Desc
	openConns, mechCalls                                      *prometheus.Desc
	cacheEntries, cacheHits, cacheMisses                      *prometheus.Desc
	cacheStale, cacheBypassed, cacheEvictions, pamRestarts    *prometheus.Desc
	goroutines, threads, goInfo, heapAlloc, heapInuse         *prometheus.Desc
	heapObjects, sysBytes, gcCycles, maxprocs                 *prometheus.Desc
	stackInuse, nextGC, heapReleased                          *prometheus.Desc
}

func newCollector(src Source) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	g := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{
		src:            src,
		reqs:           d("requests_total", "Requests answered, by deciding mechanism (\"cache\" for a cache entry, \"none\" when no mechanism decided) and verdict.", "mech", "verdict"),
		dur:            d("request_duration_seconds", "Time from a rewritten request to its answer (cache, -n wait, mechanisms), without the failure delay, by deciding mechanism.", "mech"),
		replies:        d("replies_total", "Replies written to clients, including the protocol's refusals, by reply.", "reply"),
		connErrs:       d("connection_errors_total", "Requests refused by the protocol (field_too_long, null_login, null_password) and connections closed without a reply, by kind.", "kind"),
		throttled:      d("throttled_requests_total", "Answers held back by the failure delay or a penalty."),
		delay:          d("throttle_delay_seconds_total", "Failure delay and penalties imposed, summed."),
		buildInfo:      d("build_info", "Always 1; the labels say which saslgate is running.", "version", "goversion"),
		openConns:      d("open_connections", "Client connections open."),
		mechCalls:      d("mechanism_calls_in_flight", "Mechanism chains running (cache hits are not calls)."),
		cacheEntries:   d("cache_entries", "Keys (login, realm, service) in the credential cache."),
		cacheHits:      d("cache_hits_total", "Requests answered from the cache without the back end: positive (OK), negative (the same wrong password again), shared (an identical request in flight got the answer).", "kind"),
		cacheMisses:    d("cache_misses_total", "Requests the back end answered through the cache."),
		cacheStale:     d("cache_stale_served_total", "OK answered from an entry past its TTL because the back end answered TEMPFAIL (cache_stale_ttl)."),
		cacheBypassed:  d("cache_bypassed_total", "Requests that could not use the cache (the back end's generation unknown)."),
		cacheEvictions: d("cache_evictions_total", "Entries evicted to make room (least recently used)."),
		pamRestarts:    d("pam_worker_restarts_total", "PAM worker processes killed or found dead and replaced, by reason.", "reason"),
		// the Go runtime of the daemon, under client_golang's names
		goroutines:   g("go_goroutines", "Number of goroutines that currently exist."),
		threads:      g("go_threads", "Number of OS threads created."),
		goInfo:       g("go_info", "Information about the Go environment.", "version"),
		heapAlloc:    g("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use."),
		heapInuse:    g("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use."),
		heapObjects:  g("go_memstats_heap_objects", "Number of currently allocated objects."),
		sysBytes:     g("go_memstats_sys_bytes", "Number of bytes obtained from system."),
		gcCycles:     g("go_gc_cycles_total", "Number of completed GC cycles."),
		maxprocs:     g("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting."),
		stackInuse:   g("go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator."),
		nextGC:       g("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place."),
		heapReleased: g("go_memstats_heap_released_bytes", "Number of heap bytes released to OS."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.reqs, c.dur, c.replies, c.connErrs, c.throttled, c.delay, c.buildInfo,
		c.openConns, c.mechCalls, c.cacheEntries, c.cacheHits, c.cacheMisses, c.cacheStale, c.cacheBypassed,
		c.cacheEvictions, c.pamRestarts, c.goroutines, c.threads, c.goInfo, c.heapAlloc, c.heapInuse,
		c.heapObjects, c.sysBytes, c.gcCycles, c.maxprocs, c.stackInuse, c.nextGC, c.heapReleased} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	snap, err := c.src()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.buildInfo, err)
		return
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.buildInfo, 1, snap.Version, snap.GoVersion)
	for mech, ms := range snap.Mechs {
		var count uint64
		cum := make(map[float64]uint64, len(stats.Buckets))
		for i, n := range ms.Buckets {
			count += n
			if i < len(stats.Buckets) {
				cum[stats.Buckets[i]] = count
			}
		}
		for _, l := range []string{"accept", "reject", "tempfail"} {
			counter(c.reqs, float64(ms.Verdicts[l]), mech, l)
		}
		ch <- prometheus.MustNewConstHistogram(c.dur, count, ms.SumSec, cum, mech)
	}
	counter(c.replies, float64(snap.RepliesNO), "no")
	counter(c.replies, float64(snap.RepliesOK), "ok")
	for kind, n := range snap.ConnErrors {
		counter(c.connErrs, float64(n), kind)
	}
	counter(c.throttled, float64(snap.Throttled))
	counter(c.delay, snap.DelaySec)
	gauge(c.openConns, float64(snap.OpenConns))
	gauge(c.mechCalls, float64(snap.MechCalls))
	if cs := snap.Cache; cs != nil {
		gauge(c.cacheEntries, float64(cs.Entries))
		counter(c.cacheHits, float64(cs.Hits), "positive")
		counter(c.cacheHits, float64(cs.NegativeHits), "negative")
		counter(c.cacheHits, float64(cs.Shared), "shared")
		counter(c.cacheMisses, float64(cs.Misses))
		counter(c.cacheStale, float64(cs.StaleHits))
		counter(c.cacheBypassed, float64(cs.Bypassed))
		counter(c.cacheEvictions, float64(cs.Evictions))
	}
	for reason, n := range snap.Restarts {
		counter(c.pamRestarts, float64(n), reason)
	}
	rt := snap.Runtime
	gauge(c.goroutines, float64(rt.Goroutines))
	gauge(c.threads, float64(rt.Threads))
	gauge(c.goInfo, 1, snap.GoVersion)
	gauge(c.heapAlloc, float64(rt.HeapAllocBytes))
	gauge(c.heapInuse, float64(rt.HeapInuseBytes))
	gauge(c.heapObjects, float64(rt.HeapObjects))
	gauge(c.sysBytes, float64(rt.SysBytes))
	counter(c.gcCycles, float64(rt.GCCycles))
	gauge(c.maxprocs, float64(rt.GOMAXPROCS))
	gauge(c.stackInuse, float64(rt.StackInuse))
	gauge(c.nextGC, float64(rt.NextGC))
	gauge(c.heapReleased, float64(rt.HeapReleased))
}
