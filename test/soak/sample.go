package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sample is the daemon's state at one moment.
type sample struct {
	T                     time.Duration // since the run's start
	RSS, RssAnon, RssFile int64         // bytes
	Threads               int
	FDs                   int
	Goroutines            int // -1: unknown (no --metrics)
	OpenConns             int // saslgate_open_connections, -1: unknown
	// the Go runtime's heap and stacks in use (from --metrics; -1:
	// unknown): live memory plus garbage not yet collected, as opposed
	// to memory the runtime keeps for reuse
	HeapInuse, StackInuse int64
	// NextGC is the heap size at which the next collection starts (-1:
	// unknown): with GOGC=100 twice the heap that survived the last one,
	// and never under 4 MiB
	NextGC   int64
	Children int // PAM workers
}

// sampler reads /proc/PID and, when the daemon has --metrics, its
// go_goroutines: once a second into the series, or on demand.
type sampler struct {
	pid     int
	t0      time.Time
	metrics string // http://host:port/metrics or ""
	client  *http.Client

	mu     sync.Mutex
	series []sample
}

func newSampler(pid int, t0 time.Time, metricsAddr string) *sampler {
	s := &sampler{pid: pid, t0: t0, client: &http.Client{Timeout: 2 * time.Second}}
	if metricsAddr != "" {
		s.metrics = "http://" + metricsAddr + "/metrics"
	}
	return s
}

// take reads one sample; ok is false once the process is gone.
func (s *sampler) take() (sample, bool) {
	x := sample{T: time.Since(s.t0), Goroutines: -1, OpenConns: -1, HeapInuse: -1, StackInuse: -1, NextGC: -1}
	proc := "/proc/" + strconv.Itoa(s.pid)
	st, err := os.ReadFile(proc + "/status")
	if err != nil {
		return x, false
	}
	for _, line := range strings.Split(string(st), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			x.RSS = n << 10
		case "RssAnon":
			x.RssAnon = n << 10
		case "RssFile":
			x.RssFile = n << 10
		case "Threads":
			x.Threads = int(n)
		}
	}
	if ents, err := os.ReadDir(proc + "/fd"); err == nil {
		x.FDs = len(ents)
	}
	x.Children = countChildren(proc)
	if s.metrics != "" {
		s.scrape(&x)
	}
	return x, true
}

// countChildren reads the children of every thread.
func countChildren(proc string) int {
	tasks, err := os.ReadDir(proc + "/task")
	if err != nil {
		return 0
	}
	n := 0
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(proc, "task", t.Name(), "children"))
		if err == nil {
			n += len(strings.Fields(string(b)))
		}
	}
	return n
}

func (s *sampler) scrape(x *sample) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.metrics, nil)
	if err != nil {
		return
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return
	}
	vals := parseMetrics(buf.Bytes(), "go_goroutines", "saslgate_open_connections",
		"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_next_gc_bytes")
	if v, ok := vals["go_goroutines"]; ok {
		x.Goroutines = int(v)
	}
	if v, ok := vals["saslgate_open_connections"]; ok {
		x.OpenConns = int(v)
	}
	if v, ok := vals["go_memstats_heap_inuse_bytes"]; ok {
		x.HeapInuse = int64(v)
	}
	if v, ok := vals["go_memstats_stack_inuse_bytes"]; ok {
		x.StackInuse = int64(v)
	}
	if v, ok := vals["go_memstats_next_gc_bytes"]; ok {
		x.NextGC = int64(v)
	}
}

// parseMetrics picks the unlabelled samples named in the Prometheus text
// format.
func parseMetrics(b []byte, names ...string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		for _, n := range names {
			if name == n {
				if v, err := strconv.ParseFloat(strings.Fields(val)[0], 64); err == nil {
					out[n] = v
				}
			}
		}
	}
	return out
}

// run samples once a second until ctx ends or the process exits.
func (s *sampler) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		x, ok := s.take()
		if !ok {
			return
		}
		s.mu.Lock()
		s.series = append(s.series, x)
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *sampler) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.series...)
}

// median3 takes three samples a second apart and returns the one with the
// median RSS, each field the median of its own: a baseline that one GC or
// one scrape does not move.
func (s *sampler) median3() sample {
	var xs []sample
	for i := range 3 {
		if i > 0 {
			time.Sleep(time.Second)
		}
		if x, ok := s.take(); ok {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return sample{Goroutines: -1, OpenConns: -1, HeapInuse: -1, StackInuse: -1, NextGC: -1}
	}
	m := xs[len(xs)/2]
	med := func(get func(sample) int64) int64 {
		v := make([]int64, len(xs))
		for i, x := range xs {
			v[i] = get(x)
		}
		for i := range v { // three values: a tiny sort
			for j := i + 1; j < len(v); j++ {
				if v[j] < v[i] {
					v[i], v[j] = v[j], v[i]
				}
			}
		}
		return v[len(v)/2]
	}
	m.RSS = med(func(x sample) int64 { return x.RSS })
	m.RssAnon = med(func(x sample) int64 { return x.RssAnon })
	m.RssFile = med(func(x sample) int64 { return x.RssFile })
	m.FDs = int(med(func(x sample) int64 { return int64(x.FDs) }))
	m.Threads = int(med(func(x sample) int64 { return int64(x.Threads) }))
	m.Goroutines = int(med(func(x sample) int64 { return int64(x.Goroutines) }))
	m.OpenConns = int(med(func(x sample) int64 { return int64(x.OpenConns) }))
	m.Children = int(med(func(x sample) int64 { return int64(x.Children) }))
	m.HeapInuse = med(func(x sample) int64 { return x.HeapInuse })
	m.StackInuse = med(func(x sample) int64 { return x.StackInuse })
	m.NextGC = med(func(x sample) int64 { return x.NextGC })
	return m
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// nofile reads the process's RLIMIT_NOFILE from /proc/PID/limits.
func nofile(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			if len(f) >= 2 {
				return f[0] + " soft / " + f[1] + " hard"
			}
		}
	}
	return "unknown"
}
