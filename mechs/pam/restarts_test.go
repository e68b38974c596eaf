package pam_test

import (
	"maps"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/pam"
)

// TestWorkerRestarts: every worker killed or found dead is counted once,
// under its reason, and the counts are final once the mechanism is closed.
func TestWorkerRestarts(t *testing.T) {
	f := newFixture(t)
	// enough workers that the respawn limit (2*workers at once) does not
	// refuse any of the restarts below
	const workers = 4
	m, err := pam.New(mechs.Options{Values: map[string]string{
		pam.OptMode: pam.ModeWorkers, pam.OptConfDir: f.dir, pam.OptWorkers: strconv.Itoa(workers)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := map[string]uint64{"crash": 0, "hang": 0, "protocol": 0, "idle_exit": 0}
	check := func(step string) {
		t.Helper()
		got, final := m.WorkerRestarts()
		if !maps.Equal(got, want) || final {
			t.Fatalf("after %s: %v final=%v, want %v", step, got, final, want)
		}
	}
	check("start")

	steps := []struct {
		name    string
		login   string
		timeout time.Duration
		reason  string
	}{
		{"segfault", "crash", 30 * time.Second, "crash"},
		{"exit(3)", "exit", 30 * time.Second, "crash"},
		{"hang", "hang", 500 * time.Millisecond, "hang"},
		{"good", "dave", 30 * time.Second, ""},
	}
	for _, s := range steps {
		pw := "pw-crashing"
		if s.reason == "" {
			pw = "pw-dave"
		}
		res := authn(t, m, req(s.login, pw, "crashy"), s.timeout)
		if (s.reason == "") != (res.Verdict == mechs.Accept) {
			t.Fatalf("%s: %+v", s.name, res)
		}
		if s.reason != "" {
			want[s.reason]++
			// reaped before WorkerPIDs below, which lists unreaped ones
			mm := workerPID.FindStringSubmatch(res.Reason)
			if mm == nil {
				t.Fatalf("%s: reason names no worker: %q", s.name, res.Reason)
			}
			pid, _ := strconv.Atoi(mm[1])
			waitReaped(t, pid)
		}
		check(s.name)
	}

	// killed while idle: each found dead when a request takes its slot,
	// which every request of a round of workers does
	pids := pam.WorkerPIDs(m)
	if len(pids) == 0 {
		t.Fatal("no worker running")
	}
	for _, pid := range pids {
		p, _ := os.FindProcess(pid)
		_ = p.Kill()
		waitReaped(t, pid)
	}
	for range workers {
		if res := authn(t, m, req("dave", "pw-dave", "crashy"), 30*time.Second); res.Verdict != mechs.Accept {
			t.Fatalf("after the idle deaths: %+v", res)
		}
	}
	want["idle_exit"] += uint64(len(pids))
	check("idle deaths")

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got, final := m.WorkerRestarts(); !maps.Equal(got, want) || !final {
		t.Fatalf("closed: %v final=%v, want %v final", got, final, want)
	}
}

// TestWorkerRestartsInProcess: no workers, nothing to count, final at once.
func TestWorkerRestartsInProcess(t *testing.T) {
	f := newFixture(t)
	m := newMech(t, f, pam.ModeInProcess, nil)
	if got, final := m.WorkerRestarts(); got != nil || !final {
		t.Fatalf("got %v final=%v", got, final)
	}
}
