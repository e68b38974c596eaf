// Package load is saslgate's load generator: C concurrent clients, each
// opening a fresh connection per request as libsasl does, for a duration or
// a request count, reporting requests per second and latency percentiles.
// The bench command and the benchmark scripts use it against saslgate and the
// real Cyrus saslauthd alike.
package load

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// Run drives the load and returns what it measured.
func Run(ctx context.Context, s Spec) Result {
	if s.Concurrency < 1 {
		s.Concurrency = 1
	}
	if s.Timeout <= 0 {
		s.Timeout = 30 * time.Second
	}
	if s.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Duration)
		defer cancel()
	}
	client := &protocol.Client{Path: s.Socket, Timeout: s.Timeout}
	var (
		next      atomic.Int64
		mu        sync.Mutex
		lat       []time.Duration
		errs, bad int
		firstErr  string
		wg        sync.WaitGroup
	)
	start := time.Now()
	for w := 0; w < s.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			var lerrs, lbad int
			var lfirst string
			for {
				if ctx.Err() != nil && next.Load() >= int64(s.MinRequests) {
					break
				}
				i := next.Add(1) - 1
				if s.Requests > 0 && i >= int64(s.Requests) {
					break
				}
				k := int(i % int64(len(s.Reqs)))
				t0 := time.Now()
				reply, err := client.Do(context.Background(), s.Reqs[k])
				d := time.Since(t0)
				switch {
				case err != nil:
					if ctx.Err() != nil && s.Duration > 0 && i >= int64(s.MinRequests) {
						continue // cut off by the end of the run
					}
					lerrs++
					if lfirst == "" {
						lfirst = err.Error()
					}
				case len(s.Want) > k && !strings.HasPrefix(reply, s.Want[k]):
					lbad++
					local = append(local, d)
				default:
					local = append(local, d)
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += lerrs
			bad += lbad
			if firstErr == "" {
				firstErr = lfirst
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := Result{Requests: len(lat), Errors: errs, Mismatches: bad, Elapsed: time.Since(start), FirstError: firstErr}
	if len(lat) > 0 {
		slices.Sort(lat)
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		r.P50, r.P95, r.P99, r.Max = pct(0.50), pct(0.95), pct(0.99), lat[len(lat)-1]
	}
	return r
}
