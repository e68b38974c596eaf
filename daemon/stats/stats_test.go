package stats_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/daemon/stats"
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
	m := stats.New("test")
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
	m := stats.New("test")
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

// TestSnapshotOverSocket: what a fetch returns is what was recorded, each
// duration in the bucket of the first bound not below it, and fetches can
// follow one another on one connection.
func TestSnapshotOverSocket(t *testing.T) {
	st := stats.New("1.2.3")
	srv := &daemon.Server{}
	st.Attach(srv)
	ours, theirs := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- st.Serve(ctx, ours) }()
	for _, ev := range events {
		st.Request(ev)
	}
	st.Request(daemon.RequestEvent{Mech: "sasldb", Verdict: mechs.Accept, Duration: 100 * time.Microsecond}) // on a bound
	st.Reply(true)
	st.ConnError(daemon.ConnReadTimeout)
	for range 2 {
		snap, err := stats.Fetch(theirs)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Version != "1.2.3" || snap.RepliesOK != 1 || snap.ConnErrors["read_timeout"] != 1 ||
			snap.Throttled != 1 || snap.DelaySec != 2 || snap.Runtime.Goroutines == 0 || snap.Cache != nil {
			t.Errorf("snapshot %+v", snap)
		}
		sdb := snap.Mechs["sasldb"]
		// 80 µs and 100 µs are both ≤ 100 µs: the second bucket
		if sdb.Verdicts["accept"] != 2 || sdb.Verdicts["reject"] != 1 || sdb.Buckets[1] != 3 ||
			snap.Mechs["pam"].Buckets[16] != 1 || snap.Mechs["pam"].Verdicts["tempfail"] != 1 {
			t.Errorf("sasldb %+v, pam %+v", sdb, snap.Mechs["pam"])
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
}

// TestSnapshotBadPeers: a request byte that is not one, and an answer over
// the bound, end the exchange with an error instead of a guess.
func TestSnapshotBadPeers(t *testing.T) {
	st := stats.New("x")
	ours, theirs := net.Pipe()
	served := make(chan error, 1)
	go func() { served <- st.Serve(context.Background(), ours) }()
	if _, err := theirs.Write([]byte("G")); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err == nil || !strings.Contains(err.Error(), "unexpected request byte") {
		t.Errorf("Serve: %v", err)
	}

	a, b := net.Pipe()
	go func() {
		var req [1]byte
		_, _ = a.Read(req[:])
		_, _ = a.Write([]byte{0x7f, 0xff, 0xff, 0xff})
	}()
	if _, err := stats.Fetch(b); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("Fetch of an oversize answer: %v", err)
	}
}

// FuzzFetch: whatever the other end answers, Fetch returns a snapshot or
// an error, never panics, and never reads past the length it was given.
func FuzzFetch(f *testing.F) {
	st := stats.New("seed")
	st.Request(events[0])
	body, _ := json.Marshal(st.Snapshot())
	f.Add(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body)
	f.Add([]byte{0, 0, 0, 2}, []byte("{}"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, []byte("x"))
	f.Add([]byte{0, 0}, []byte(nil))
	f.Fuzz(func(t *testing.T, hdr, body []byte) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		go func() {
			var req [1]byte
			if _, err := a.Read(req[:]); err != nil {
				return
			}
			_, _ = a.Write(append(slices.Clone(hdr), body...))
			a.Close()
		}()
		snap, err := stats.Fetch(b)
		if err != nil {
			return
		}
		if len(hdr) < 4 || int(binary.BigEndian.Uint32(hdr)) > len(body) {
			t.Fatalf("a snapshot from a short answer: %+v", snap)
		}
	})
}
