package pam

// WorkerPIDs lists the worker processes a mechanism has running (nil in
// ModeInProcess).
func WorkerPIDs(m *PAM) []int {
	if m.pool == nil {
		return nil
	}
	m.pool.mu.Lock()
	defer m.pool.mu.Unlock()
	pids := make([]int, 0, len(m.pool.live))
	for w := range m.pool.live {
		pids = append(pids, w.pid)
	}
	return pids
}

// EnvWorker is the variable that marks a worker's environment.
const EnvWorker = envWorker

// Supported reports whether this build can call libpam.
const Supported = supported

// NoBench turns off the benching of logins whose transaction killed a
// worker, so that a test can reach the respawn limit with one user.
func NoBench(m *PAM) {
	m.pool.benched.mu.Lock()
	m.pool.benched.off = true
	m.pool.benched.mu.Unlock()
}
