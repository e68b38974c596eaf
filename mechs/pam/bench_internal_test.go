package pam

import (
	"strconv"
	"testing"
	"time"
)

// The bench of logins that killed a worker is bounded: past benchMax live
// entries a new one is not remembered (the respawn limit still applies),
// expired ones are pruned to make room, and an entry lasts benchTime.
func TestBenchBound(t *testing.T) {
	var b bench
	now := time.Now()
	for i := range benchMax {
		b.add(strconv.Itoa(i), now)
	}
	b.add("one too many", now)
	if got := len(b.until); got != benchMax {
		t.Fatalf("%d entries, want %d", got, benchMax)
	}
	if b.left("one too many", now) != 0 {
		t.Fatal("an entry past the bound was kept")
	}
	if b.left("0", now) != benchTime {
		t.Fatalf("left = %v, want %v", b.left("0", now), benchTime)
	}
	later := now.Add(benchTime)
	b.add("after expiry", later)
	if b.left("after expiry", later) != benchTime || len(b.until) != 1 {
		t.Fatalf("expired entries not pruned: %d left", len(b.until))
	}
	if b.left("1", later) != 0 {
		t.Fatal("an expired entry still benches its login")
	}
}
