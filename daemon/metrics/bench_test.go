package metrics_test

import (
	"testing"
	"time"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/daemon/metrics"
	"github.com/saslgate/saslgate/mechs"
)

var events = []daemon.RequestEvent{
	{Mech: "sasldb", Verdict: mechs.Accept, Duration: 80 * time.Microsecond},
	{Mech: daemon.MechCache, Verdict: mechs.Accept, Duration: 3 * time.Microsecond},
	{Mech: "sasldb", Verdict: mechs.Reject, Duration: 90 * time.Microsecond, Delay: 2 * time.Second},
	{Mech: "pam", Verdict: mechs.TempFail, Duration: 10 * time.Second},
}

// TestRecordingDoesNotAllocate: once a mechanism's series exist, recording
// a request, a reply or an error allocates nothing.
func TestRecordingDoesNotAllocate(t *testing.T) {
	m := metrics.New("test")
	for _, ev := range events {
		m.Request(ev) // makes the series
	}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, ev := range events {
			m.Request(ev)
		}
		m.Reply(true)
		m.Reply(false)
		m.ConnError(daemon.ConnBadFrame)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round", allocs)
	}
}

// BenchmarkRequest is what one answered request costs the request path:
// the Request and Reply calls the server makes.
func BenchmarkRequest(b *testing.B) {
	m := metrics.New("test")
	for _, ev := range events {
		m.Request(ev)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			ev := events[i%len(events)]
			m.Request(ev)
			m.Reply(ev.Verdict == mechs.Accept)
			i++
		}
	})
}
