package main

import (
	"fmt"
	"slices"
)

// goal is a speed goal a mechanism issue set, checked at the concurrency
// levels it names.
type goal struct {
	issue int
	text  string // as the issue puts it
	at    []int  // the concurrency levels it is set for
	check func(p point, peer peerFunc) verdict
}

// peerFunc finds another scenario's point at the same concurrency, for a
// goal that compares two scenarios of saslgate's own.
type peerFunc func(scenario string, conc int) (point, bool)

// verdict is one goal at one point.
type verdict struct {
	met    bool
	known  bool   // false: the point was not measured
	detail string // the measured value against the goal
}

func rps(r resultSet) float64 { return r.med.RPS() }

func ratio(p point) float64 { return rps(p.sgate) / max(rps(p.cyrus), 1e-9) }

func p99Ratio(p point) float64 {
	return float64(p.sgate.med.P99) / max(float64(p.cyrus.med.P99), 1)
}

// ratioAtLeast: saslgate's requests/s at least min times Cyrus's.
func ratioAtLeast(min float64) func(point, peerFunc) verdict {
	return func(p point, _ peerFunc) verdict {
		r := ratio(p)
		return verdict{met: r >= min, known: true, detail: fmt.Sprintf("%.2f× (goal ≥ %.2f×)", r, min)}
	}
}

// p99AtMost: saslgate's p99 at most max times Cyrus's.
func p99AtMost(max float64) func(point, peerFunc) verdict {
	return func(p point, _ peerFunc) verdict {
		r := p99Ratio(p)
		return verdict{met: r <= max, known: true, detail: fmt.Sprintf("p99 ratio %.2f (goal ≤ %.2f)", r, max)}
	}
}

// notSlowerThan: saslgate in this scenario serves at least the requests/s
// it serves in the other one, at the same concurrency.
func notSlowerThan(other string) func(point, peerFunc) verdict {
	return func(p point, peer peerFunc) verdict {
		without, ok := p.extra[extraNocache] // measured in the same rounds: the fair comparison
		if !ok {
			q, ok := peer(other, p.conc)
			if !ok {
				return verdict{detail: other + " not measured"}
			}
			without = q.sgate
		}
		r := rps(p.sgate) / max(rps(without), 1e-9)
		return verdict{met: r >= 1, known: true,
			detail: fmt.Sprintf("%.0f vs %.0f req/s, %.2f× (goal ≥ 1×)", rps(p.sgate), rps(without), r)}
	}
}

// goals are the speed goals of the mechanism issues, by scenario.
var goals = map[string][]goal{
	"sasldb": {
		{issue: 2, text: "at C=64, at least 1.5× Cyrus's requests/s", at: []int{64}, check: ratioAtLeast(1.5)},
		{issue: 2, text: "at C=64, at most half Cyrus's p99", at: []int{64}, check: p99AtMost(0.5)},
	},
	"shadow-yescrypt": {
		{issue: 3, text: "at C=1, 8, 64, at least 0.95× Cyrus's requests/s", at: []int{1, 8, 64}, check: ratioAtLeast(0.95)},
		{issue: 3, text: "at C=64, at most half Cyrus's p99", at: []int{64}, check: p99AtMost(0.5)},
	},
	"shadow-cache": {
		{issue: 5, text: "at C=64, at least 1.5× the requests/s of `saslauthd -a shadow -c -n 5`", at: []int{64}, check: ratioAtLeast(1.5)},
	},
	"sasldb-cache": {
		{issue: 5, text: "a cache hit costs no more than a sasldb lookup: saslgate's requests/s with -c at least its requests/s without",
			at: []int{1, 8, 64, 256}, check: notSlowerThan("sasldb")},
	},
	"rimap": {
		{issue: 4, text: "at C=1, 8, 64, plaintext at least 1.5× Cyrus's requests/s", at: []int{1, 8, 64}, check: ratioAtLeast(1.5)},
	},
	"rimap-starttls": {
		{issue: 4, text: "at C=1, 8, 64, saslgate over STARTTLS at least Cyrus's plaintext requests/s", at: []int{1, 8, 64}, check: ratioAtLeast(1)},
	},
}

// set reports whether g is set at conc.
func (g goal) set(conc int) bool { return slices.Contains(g.at, conc) }
