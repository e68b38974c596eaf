// Package load is saslgate's load generator: C concurrent clients, each
// opening a fresh connection per request as libsasl does, for a duration or
// a request count, reporting requests per second and latency percentiles.
// The bench command and the benchmark scripts use it against saslgate and the
// real Cyrus saslauthd alike. The clients are C threads (engine.c), so that
// the generator costs about what real clients cost.
package load

// #include <stdlib.h>
// #include "engine.h"
// static void sg_cancel(sg_spec *s) { __atomic_store_n(&s->cancel, 1, __ATOMIC_SEQ_CST); }
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"
	"unsafe"

	"github.com/saslgate/saslgate/protocol"
)

// Spec describes one run.
type Spec struct {
	Socket      string
	Concurrency int
	Duration    time.Duration // stop after this long (0: use Requests)
	Requests    int           // stop after this many (0: use Duration)
	// MinRequests extends a Duration run until at least this many requests
	// have started, so that a slow back end (a crypt-bound one) still gives
	// enough samples for a p99.
	MinRequests int
	Timeout     time.Duration // per request
	// Requests cycle through Reqs; Want is the reply prefix each must get
	// ("OK" or "NO"), counted as a mismatch otherwise.
	Reqs []protocol.Request
	Want []string
}

// Result is what a run measured.
type Result struct {
	Requests   int
	Errors     int // connect, I/O or timeout
	Mismatches int // a reply with the wrong OK/NO prefix
	Elapsed    time.Duration
	P50, P95   time.Duration
	P99, Max   time.Duration
	FirstError string
}

// RPS is requests answered per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	s := fmt.Sprintf("requests=%d errors=%d mismatches=%d elapsed=%.2fs rps=%.0f p50=%s p95=%s p99=%s max=%s",
		r.Requests, r.Errors, r.Mismatches, r.Elapsed.Seconds(), r.RPS(),
		r.P50.Round(time.Microsecond), r.P95.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	if r.FirstError != "" {
		s += " first_error=" + fmt.Sprintf("%q", r.FirstError)
	}
	return s
}

// Run drives the load and returns what it measured. The clients are C
// threads (engine.c), each doing per request what libsasl does: a new
// socket, a blocking connect, which waits in the kernel while the daemon's
// listen backlog is full, the request in one write, blocking reads of the
// reply, close. A Go client on the netpoller spent more CPU per request
// than the daemons it measured, on the same cores.
func Run(ctx context.Context, s Spec) Result {
	if s.Concurrency < 1 {
		s.Concurrency = 1
	}
	if s.Timeout <= 0 {
		s.Timeout = 30 * time.Second
	}
	if len(s.Reqs) == 0 {
		return Result{FirstError: "load: no requests"}
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	var frees []unsafe.Pointer
	defer func() {
		for _, p := range frees {
			C.free(p)
		}
	}()
	n := len(s.Reqs)
	reqs := make([]*C.char, n)
	reqlens := make([]C.int, n)
	want := make([]*C.char, n)
	wantlens := make([]C.int, n)
	for k, req := range s.Reqs {
		b, err := protocol.AppendRequest(nil, req)
		if err != nil {
			return Result{FirstError: err.Error()}
		}
		// lengths go with them: no NUL terminators needed
		reqs[k], reqlens[k] = (*C.char)(C.CBytes(b)), C.int(len(b))
		w := ""
		if k < len(s.Want) {
			w = s.Want[k]
		}
		want[k], wantlens[k] = (*C.char)(C.CBytes([]byte(w))), C.int(len(w))
		frees = append(frees, unsafe.Pointer(reqs[k]), unsafe.Pointer(want[k]))
	}
	path := C.CString(s.Socket)
	frees = append(frees, unsafe.Pointer(path))
	spec := (*C.sg_spec)(C.calloc(1, C.sizeof_sg_spec))
	frees = append(frees, unsafe.Pointer(spec))
	pin.Pin(&reqs[0])
	pin.Pin(&reqlens[0])
	pin.Pin(&want[0])
	pin.Pin(&wantlens[0])
	spec.path = path
	spec.nreq = C.int(n)
	spec.reqs = &reqs[0]
	spec.reqlens = &reqlens[0]
	spec.want = &want[0]
	spec.wantlens = &wantlens[0]
	spec.conc = C.int(s.Concurrency)
	spec.max_requests = C.longlong(s.Requests)
	spec.min_requests = C.longlong(s.MinRequests)
	spec.duration_ns = C.longlong(s.Duration)
	spec.timeout_ms = C.int(max(s.Timeout.Milliseconds(), 1))
	res := unsafe.Slice((*C.sg_result)(C.calloc(C.size_t(s.Concurrency), C.sizeof_sg_result)), s.Concurrency)
	frees = append(frees, unsafe.Pointer(&res[0]))

	stop := context.AfterFunc(ctx, func() { C.sg_cancel(spec) })
	defer stop()
	start := time.Now()
	rc := C.sg_run(spec, &res[0])
	r := Result{Elapsed: time.Since(start)}
	if rc != 0 { // fewer clients than asked for ran: the run does not count
		r.Errors++
	}

	var lat []time.Duration
	for t := range res {
		tr := &res[t]
		if tr.nlat > 0 {
			ns := unsafe.Slice((*int64)(unsafe.Pointer(tr.lat)), int(tr.nlat))
			for _, d := range ns {
				lat = append(lat, time.Duration(d))
			}
		}
		C.free(unsafe.Pointer(tr.lat))
		r.Errors += int(tr.errs)
		r.Mismatches += int(tr.bad)
		if msg := C.GoString(&tr.first_err[0]); msg != "" && r.FirstError == "" {
			r.FirstError = msg
		}
	}
	r.Requests = len(lat)
	if len(lat) > 0 {
		slices.Sort(lat)
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		r.P50, r.P95, r.P99, r.Max = pct(0.50), pct(0.95), pct(0.99), lat[len(lat)-1]
	}
	return r
}
