package stats

import (
	"sync"

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

// restartBook sums the PAM worker restarts of the mechanisms in the
// server's policy and of those a reload retired, so that the total never
// goes back.
type restartBook struct {
	mu      sync.Mutex // one snapshot at a time reads and updates the book
	live    map[WorkerRestarter]struct{}
	retired map[string]uint64
}

func (b *restartBook) read(s *daemon.Server) map[string]uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	sum := make(map[string]uint64, len(b.retired))
	for reason, n := range b.retired {
		sum[reason] = n
	}
	add := func(counts map[string]uint64) {
		for reason, n := range counts {
			sum[reason] += n
		}
	}
	current := map[WorkerRestarter]struct{}{}
	if p := s.Policy(); p != nil {
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
		b.live[wr] = struct{}{}
	}
	// a mechanism a reload replaced: counted until it is final, then its
	// counts move to retired and it is forgotten
	for wr := range b.live {
		if _, ok := current[wr]; ok {
			continue
		}
		counts, final := wr.WorkerRestarts()
		add(counts)
		if final {
			for reason, n := range counts {
				b.retired[reason] += n
			}
			delete(b.live, wr)
		}
	}
	return sum
}

// steps are a chain's mechanisms, or m itself.
func steps(m mechs.Mechanism) []mechs.Mechanism {
	if ch, ok := m.(interface{ Steps() []mechs.Mechanism }); ok {
		return ch.Steps()
	}
	return []mechs.Mechanism{m}
}
