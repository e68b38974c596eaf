// Package stats counts what the daemon does, for the --metrics endpoint,
// with the standard library only.
//
// The Prometheus endpoint (daemon/metrics, client_golang and protobuf) runs
// in a process of its own, saslgate-metrics: the daemon that answers logins
// keeps no HTTP server, and its executable stays without the Prometheus
// stack (about 4 MiB of idle RSS, BENCHMARKS.md). The daemon counts here,
// on the request path (daemon.Observer); the exporter asks for a Snapshot
// over a socket at each scrape (Serve, Fetch).
//
// The request path stays cheap: a mechanism's counters are made the first
// time it decides a request, after which recording a request is a map
// lookup and a few atomic adds, with no allocation (BenchmarkRequest).
package stats

import (
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/mechs"
)

// Buckets are the request latency histogram's upper bounds, in seconds:
// from a cache hit (tens of microseconds) to a back end at its timeout.
var Buckets = []float64{
	50e-6, 100e-6, 250e-6, 500e-6,
	.001, .0025, .005, .01, .025, .05, .1, .25, .5,
	1, 2.5, 5, 10,
}

// Verdicts are the verdict labels, by mechs.Verdict; an invalid verdict (0)
// was answered as a TEMPFAIL.
var Verdicts = [4]string{"tempfail", "accept", "reject", "tempfail"}

// Stats is the daemon's side: it implements daemon.Observer and reads the
// server, its cache and its PAM workers at snapshot time.
type Stats struct {
	version string
	start   time.Time

	// per mechanism label: read without a lock, copied to add one
	mechs atomic.Pointer[map[string]*mechCounters]
	addMu sync.Mutex

	replies   [2]atomic.Uint64 // no, ok
	connErrs  [256]atomic.Uint64
	throttled atomic.Uint64
	delayNs   atomic.Uint64

	server   atomic.Pointer[daemon.Server]
	restarts restartBook
}

type mechCounters struct {
	verdicts [4]atomic.Uint64 // by mechs.Verdict
	buckets  []atomic.Uint64  // len(Buckets)+1: the last is +Inf
	sumNs    atomic.Uint64
}

// New returns Stats for saslgate version.
func New(version string) *Stats {
	st := &Stats{version: version, start: time.Now()}
	empty := map[string]*mechCounters{}
	st.mechs.Store(&empty)
	st.restarts.live = map[WorkerRestarter]struct{}{}
	st.restarts.retired = map[string]uint64{}
	return st
}

// Attach makes st s's Observer and the server its snapshots read. Call it
// once, before s serves.
func (st *Stats) Attach(s *daemon.Server) {
	if !st.server.CompareAndSwap(nil, s) {
		panic("stats: Attach called twice")
	}
	s.Observer = st
}

// Request records one answered request.
func (st *Stats) Request(ev daemon.RequestEvent) {
	mc := (*st.mechs.Load())[ev.Mech]
	if mc == nil {
		mc = st.addMech(ev.Mech)
	}
	v := ev.Verdict
	if v >= mechs.Verdict(len(mc.verdicts)) {
		v = 0
	}
	mc.verdicts[v].Add(1)
	sec := ev.Duration.Seconds()
	i := sort.SearchFloat64s(Buckets, sec) // the first bound ≥ sec
	mc.buckets[i].Add(1)
	mc.sumNs.Add(uint64(max(ev.Duration, 0)))
	if ev.Delay > 0 {
		st.throttled.Add(1)
		st.delayNs.Add(uint64(ev.Delay))
	}
}

// addMech makes a mechanism's counters, once.
func (st *Stats) addMech(name string) *mechCounters {
	st.addMu.Lock()
	defer st.addMu.Unlock()
	old := *st.mechs.Load()
	if mc := old[name]; mc != nil {
		return mc
	}
	mc := &mechCounters{buckets: make([]atomic.Uint64, len(Buckets)+1)}
	next := make(map[string]*mechCounters, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = mc
	st.mechs.Store(&next)
	return mc
}

// Reply records one reply written.
func (st *Stats) Reply(ok bool) {
	if ok {
		st.replies[1].Add(1)
	} else {
		st.replies[0].Add(1)
	}
}

// ConnError records a refusal or a connection closed without a reply.
func (st *Stats) ConnError(e daemon.ConnError) { st.connErrs[e].Add(1) }

var _ daemon.Observer = (*Stats)(nil)

// Snapshot is everything the endpoint shows, at one moment.
type Snapshot struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	PID       int    `json:"pid"`

	Mechs      map[string]MechSnapshot `json:"mechs"`
	RepliesOK  uint64                  `json:"replies_ok"`
	RepliesNO  uint64                  `json:"replies_no"`
	ConnErrors map[string]uint64       `json:"conn_errors"` // every kind, by name
	Throttled  uint64                  `json:"throttled"`
	DelaySec   float64                 `json:"delay_seconds"`

	OpenConns int                `json:"open_connections"`
	MechCalls int                `json:"mechanism_calls"`
	Cache     *daemon.CacheStats `json:"cache,omitempty"` // nil: no -c
	Restarts  map[string]uint64  `json:"pam_worker_restarts"`
	Runtime   RuntimeSnapshot    `json:"runtime"`
}

// MechSnapshot is one mechanism's requests by verdict label and its latency
// histogram: Buckets[i] counts the requests up to stats.Buckets[i] (not
// cumulative), the last one those above every bound.
type MechSnapshot struct {
	Verdicts map[string]uint64 `json:"verdicts"`
	Buckets  []uint64          `json:"buckets"`
	SumSec   float64           `json:"sum_seconds"`
}

// RuntimeSnapshot is the Go runtime's view of the daemon.
type RuntimeSnapshot struct {
	Goroutines     int    `json:"goroutines"`
	Threads        int    `json:"threads"`
	GOMAXPROCS     int    `json:"gomaxprocs"`
	HeapAllocBytes uint64 `json:"heap_alloc_bytes"`
	HeapInuseBytes uint64 `json:"heap_inuse_bytes"`
	HeapObjects    uint64 `json:"heap_objects"`
	SysBytes       uint64 `json:"sys_bytes"`
	StackInuse     uint64 `json:"stack_inuse_bytes"`
	NextGC         uint64 `json:"next_gc_bytes"`
	HeapReleased   uint64 `json:"heap_released_bytes"`
	GCCycles       uint32 `json:"gc_cycles"`
}

// Snapshot reads every counter.
func (st *Stats) Snapshot() Snapshot {
	snap := Snapshot{
		Version: st.version, GoVersion: runtime.Version(), PID: os.Getpid(),
		Mechs:     map[string]MechSnapshot{},
		RepliesOK: st.replies[1].Load(), RepliesNO: st.replies[0].Load(),
		ConnErrors: map[string]uint64{},
		Throttled:  st.throttled.Load(),
		DelaySec:   time.Duration(st.delayNs.Load()).Seconds(),
		Restarts:   map[string]uint64{},
	}
	for name, mc := range *st.mechs.Load() {
		ms := MechSnapshot{Verdicts: map[string]uint64{}, Buckets: make([]uint64, len(mc.buckets)),
			SumSec: time.Duration(mc.sumNs.Load()).Seconds()}
		for v, l := range Verdicts {
			ms.Verdicts[l] += mc.verdicts[v].Load()
		}
		for i := range mc.buckets {
			ms.Buckets[i] = mc.buckets[i].Load()
		}
		snap.Mechs[name] = ms
	}
	for _, e := range daemon.ConnErrors() {
		snap.ConnErrors[e.String()] = st.connErrs[e].Load()
	}
	if s := st.server.Load(); s != nil {
		ss := s.Stats()
		snap.OpenConns, snap.MechCalls = ss.OpenConns, ss.MechCalls
		if s.Cache != nil {
			cs := s.Cache.Stats()
			snap.Cache = &cs
		}
		snap.Restarts = st.restarts.read(s)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	threads, _ := runtime.ThreadCreateProfile(nil)
	snap.Runtime = RuntimeSnapshot{
		Goroutines: runtime.NumGoroutine(), Threads: threads, GOMAXPROCS: runtime.GOMAXPROCS(0),
		HeapAllocBytes: ms.HeapAlloc, HeapInuseBytes: ms.HeapInuse, HeapObjects: ms.HeapObjects,
		SysBytes: ms.Sys, StackInuse: ms.StackInuse, NextGC: ms.NextGC, HeapReleased: ms.HeapReleased, GCCycles: ms.NumGC,
	}
	return snap
}
