package main

// causes says, per scenario (and "memory"), why saslgate misses a goal
// there, or what else a reader of the numbers must know. It is written by
// a person from profiles, not computed: edit it when you learn more. The
// report prints the text under the scenario's goals, in the place marked
// "Cause", and "not yet known" where a goal is missed and no text is here.
//
// The figures below were measured on the benchmark machine (2 shared
// cores) on 2026-11-22: CPU per request with perf stat or /proc's
// utime+stime of each process over a fixed number of requests, and where
// it goes with perf record -g on the daemon.
var causes = map[string]string{
	"sasldb": "The load generator now waits in connect(2) as libsasl's clients do, where the Go client it replaced polled " +
		"with a backoff of 0.1 to 20 ms when Cyrus's listen backlog was full. Those sleeps stretched Cyrus's tail: the " +
		"p99 ratio at C=64 was 0.17 in the previous run and is 0.57 here, while the throughput ratio stays above the " +
		"goal (1.85×). saslgate's own p99 at C=64 is 9.8 ms, 2.9× its p50; Cyrus's 17.1 ms, 2.7× its p50.",

	"sasldb-cache": "End to end a cache hit and a sasldb lookup differ by about a microsecond inside some 50 µs of connection " +
		"handling (see shadow-cache), so even measured in the same rounds the two throughputs differ by the machine's " +
		"noise, either way (0.99× at C=256 here, 0.98× at C=1 in the previous run). The Go benchmark above times the " +
		"two without the connection.",

	"shadow-cache": "A cache hit never reaches the mechanism, so the connection is nearly all of its cost, and both ends of it " +
		"share the two cores. The load generator is now C threads doing what libsasl does (test/load/engine.c); the Go " +
		"client it replaced spent more CPU per request than either daemon and held saslgate and the floor near the same " +
		"rate. Cyrus's rate at C=64 moves a lot between rounds (11,891 to 14,629 requests/s here; its clients wait in " +
		"the kernel for a place in its listen backlog), and single rounds gave saslgate 1.06× to 1.35×. The floor, a Go " +
		"server that does no work at all, reaches 1.41× Cyrus, and saslgate serves 0.83 of it: saslgate's own work per " +
		"hit (the rules, the cache's HMAC, one inotify read that makes a changed shadow file stop answering at once, a " +
		"peek at the receive queue after the reply, deadlines) costs about a sixth of the connection. /proc accounting " +
		"with a C client at C=64 gives saslgate 55–65 µs of CPU per hit and a Cyrus worker 50–60 µs; perf puts three " +
		"quarters of it in the kernel (connect, accept, read, write, close, epoll, and about 1.5 context switches per " +
		"request). Tried this session and taken out again: acceptors blocked in accept(2) answering on their own " +
		"threads instead of the netpoller. They cut a hit to 40–48 µs and reached 1.53× in one full run (single rounds " +
		"1.14× to 1.76×), but added 1.5 ms of CPU to every yescrypt request and about 0.3 ms to every sha512-crypt one, " +
		"so real password checks lost 6–20%.",

	"shadow-yescrypt": "Both daemons spend about the same CPU per request, one yescrypt computation (23–24 ms each, /proc accounting " +
		"at C=8 with the C load client: Cyrus 23.0, saslgate 23.4–23.9), so the throughput ratio reflects how the two " +
		"cores are shared and moves by several per cent between runs. The load generator now waits in connect(2) as " +
		"libsasl does; the Go client before it polled with a backoff of up to 20 ms, which stretched Cyrus's tail at " +
		"C=64 (p99 2.8 s in the previous run, 0.80 s here) and cost Cyrus CPU. A fair queue gives every request about " +
		"the same wait at C=64, C ÷ throughput ≈ 64 ÷ 79 per second ≈ 0.81 s (Little's law), which is saslgate's p50 " +
		"and p99 alike; half of Cyrus's p99 would need Cyrus's p99 above 1.6 s, and clients that block in connect(2), " +
		"as libsasl's do, no longer produce one.",

	"rimap": "Every good login costs the IMAP server a whole session, for both daemons: IMAP has no way back from the " +
		"authenticated state (Dovecot 2.3 has no UNAUTHENTICATE), so a connection whose LOGIN succeeded is logged out " +
		"and the next login needs a new one; the pool only takes the connect and the greeting out of the request's " +
		"path. The IMAP floor above, which does nothing but a bare LOGIN on connections dialled in advance, gets 0.79×, " +
		"0.74× and 1.03× Cyrus at C=1, 8 and 64 in the same rounds (0.84×, 0.76× and 0.93× in the run before): " +
		"Dovecot's session set-up bounds any rimap daemon here, whatever its design, and 1.5× is out of reach on this " +
		"machine. CPU per good login at C=8 over 3,000 requests (previous session): Dovecot about 1,200 µs (imap 640, " +
		"imap-login 290, auth 100, log, anvil and master the rest), Cyrus 190 µs, saslgate 390 µs. 1.5× needs the IMAP " +
		"server on another machine (where the pool saves round trips per login) or rejected logins, whose connections " +
		"the pool reuses.",

	"rimap-starttls": "Each good login needs a fresh connection (see rimap), so over STARTTLS each pays a full TLS handshake at both " +
		"ends: per good login at C=8, saslgate used about 1,240 µs of CPU (390 µs in plaintext) and Dovecot's " +
		"imap-login about 1,450 µs (290 µs), so a login costs about 2.7× the plaintext one on the shared cores. Even in " +
		"plaintext no rimap daemon gets much past Cyrus's rate here (the IMAP floor under rimap is 0.74–1.03× Cyrus), " +
		"so one that adds a handshake to every good login cannot reach it. In saslgate's profile the handshake is 40% " +
		"of the samples, a third of that the X25519MLKEM768 key share Go offers by default, and verifying the " +
		"certificate another 4%.",

	"memory": "Of saslgate's idle VmRSS only the part in brackets is anonymous memory (RssAnon: heap and stacks, about " +
		"1.3–1.8 MiB); the rest is the executable's own pages mapped from the page cache (text, read-only data and the tables " +
		"Go's runtime reads), shared with every other process running the same binary and dropped first under memory " +
		"pressure. The kernel maps each touched page's neighbours with it (fault-around), so nearly the whole executable " +
		"counts: its size is the lever. The Prometheus stack (client_golang, protobuf) was 4 MiB of it and now lives in the " +
		"saslgate-metrics process. With 2,000 connections the anonymous part grows by about 7 KiB a connection (a " +
		"goroutine's stack, a buffered reader, the descriptor's state); saslgate hands it back after an idle interval.",
}
