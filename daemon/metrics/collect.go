package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/mechs"
)

// WorkerRestarter is a mechanism that runs worker processes and replaces
// those that crash or hang (mechs/pam). WorkerRestarts returns its counts
// by reason, and final once they can no longer change (the mechanism is
// closed): a reload replaces the mechanism, and the counter must not go
// back.
type WorkerRestarter interface {
	WorkerRestarts() (counts map[string]uint64, final bool)
}

// serverCollector reads a Server at scrape time, so that the request path
// pays nothing for these metrics.
type serverCollector struct {
	s *daemon.Server

	openConns, mechCalls                      *prometheus.Desc
	cacheEntries, cacheHits, cacheMisses      *prometheus.Desc
	cacheStale, cacheBypassed, cacheEvictions *prometheus.Desc
	pamRestarts                               *prometheus.Desc

	mu sync.Mutex // one scrape at a time reads and updates the restarts
	// the mechanisms seen whose counts are not final yet, and the sum of
	// those that went final after a reload replaced them
	live    map[WorkerRestarter]struct{}
	retired map[string]uint64
}

func newServerCollector(s *daemon.Server) *serverCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &serverCollector{
		s:              s,
		openConns:      d("open_connections", "Client connections open."),
		mechCalls:      d("mechanism_calls_in_flight", "Mechanism chains running (cache hits are not calls)."),
		cacheEntries:   d("cache_entries", "Keys (login, realm, service) in the credential cache."),
		cacheHits:      d("cache_hits_total", "Requests answered from the cache without the back end: positive (OK), negative (the same wrong password again), shared (an identical request in flight got the answer).", "kind"),
		cacheMisses:    d("cache_misses_total", "Requests the back end answered through the cache."),
		cacheStale:     d("cache_stale_served_total", "OK answered from an entry past its TTL because the back end answered TEMPFAIL (cache_stale_ttl)."),
		cacheBypassed:  d("cache_bypassed_total", "Requests that could not use the cache (the back end's generation unknown)."),
		cacheEvictions: d("cache_evictions_total", "Entries evicted to make room (least recently used)."),
		pamRestarts:    d("pam_worker_restarts_total", "PAM worker processes killed or found dead and replaced, by reason.", "reason"),
		live:           map[WorkerRestarter]struct{}{},
		retired:        map[string]uint64{},
	}
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.openConns, c.mechCalls, c.cacheEntries, c.cacheHits,
		c.cacheMisses, c.cacheStale, c.cacheBypassed, c.cacheEvictions, c.pamRestarts} {
		ch <- d
	}
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(c.openConns, prometheus.GaugeValue, float64(st.OpenConns))
	ch <- prometheus.MustNewConstMetric(c.mechCalls, prometheus.GaugeValue, float64(st.MechCalls))
	if cache := c.s.Cache; cache != nil {
		cs := cache.Stats()
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
		}
		ch <- prometheus.MustNewConstMetric(c.cacheEntries, prometheus.GaugeValue, float64(cs.Entries))
		counter(c.cacheHits, cs.Hits, "positive")
		counter(c.cacheHits, cs.NegativeHits, "negative")
		counter(c.cacheHits, cs.Shared, "shared")
		counter(c.cacheMisses, cs.Misses)
		counter(c.cacheStale, cs.StaleHits)
		counter(c.cacheBypassed, cs.Bypassed)
		counter(c.cacheEvictions, cs.Evictions)
	}
	for reason, n := range c.restarts() {
		ch <- prometheus.MustNewConstMetric(c.pamRestarts, prometheus.CounterValue, float64(n), reason)
	}
}

// restarts sums the worker restarts of the mechanisms in the policy and of
// those a reload replaced: a replaced mechanism is read until its counts are
// final, then only their sum is kept. A mechanism installed and replaced
// between two scrapes is never seen, and its restarts are not counted.
func (c *serverCollector) restarts() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := make(map[string]uint64, len(c.retired))
	for reason, n := range c.retired {
		sum[reason] = n
	}
	add := func(counts map[string]uint64) {
		for reason, n := range counts {
			sum[reason] += n
		}
	}
	current := map[WorkerRestarter]struct{}{}
	if p := c.s.Policy(); p != nil {
		for _, chain := range p.Chains {
			for _, m := range steps(chain) {
				if wr, ok := m.(WorkerRestarter); ok {
					current[wr] = struct{}{}
				}
			}
		}
	}
	for wr := range current {
		counts, _ := wr.WorkerRestarts()
		add(counts)
		c.live[wr] = struct{}{}
	}
	for wr := range c.live {
		if _, ok := current[wr]; ok {
			continue
		}
		counts, final := wr.WorkerRestarts()
		add(counts)
		if final {
			for reason, n := range counts {
				c.retired[reason] += n
			}
			delete(c.live, wr)
		}
	}
	return sum
}

// steps lists the mechanisms of a chain (or the mechanism itself).
func steps(m mechs.Mechanism) []mechs.Mechanism {
	if ch, ok := m.(interface{ Steps() []mechs.Mechanism }); ok {
		return ch.Steps()
	}
	return []mechs.Mechanism{m}
}
