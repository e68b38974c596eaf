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
	"sasldb-cache": "End to end a cache hit and a sasldb lookup differ by about a microsecond inside some 55 µs of " +
		"connection handling (see shadow-cache), so even measured in the same rounds the two throughputs differ by the " +
		"machine's noise, either way. The Go benchmark above times the two without the connection.",

	"shadow-cache": "The floor table above bounds what is reachable here: a Go server that only reads the request with " +
		"saslgate's protocol package and answers OK (no policy, cache or mechanism) is itself near 1.3–1.4× Cyrus at C=64 " +
		"on this machine, and saslgate serves about 0.9 of the floor. The two cores are shared with the load generator, a " +
		"Go client that spends about 55 µs of CPU per request (a connection each), and with Cyrus's clients, which from " +
		"C=64 on burn CPU retrying connects into its full listen backlog: that is where saslgate gains. Per cache hit, " +
		"/proc accounting at C=64 gives saslgate about 55–60 µs of CPU, a Cyrus worker about 52 µs, and a bare Go server " +
		"about 35 µs; perf finds saslgate's own code (protocol, policy, cache lookup) a small part of it and most in Go's " +
		"scheduler and netpoller (the accept, epoll add and remove, a hand-off between threads), which a prefork C worker " +
		"blocking in accept and read does not pay. Done this session: connection goroutines serve the next connection " +
		"instead of a fresh goroutine whose stack grows each time (a tenth of the CPU in perf), and no half-close when " +
		"nothing is left to drain. 1.5× at C=64 would take a daemon cheaper than the floor.",

	"shadow-yescrypt": "Both daemons spend the same CPU per request, one yescrypt computation (27–33 ms each on this machine at C=8, " +
		"/proc accounting, for both), so the throughput ratio only reflects how the two cores are shared with the load " +
		"generator and whatever else runs, and it moves around 1× from run to run. From C=64 on saslgate's p99 is far lower: " +
		"its requests wait in order for the crypt slots, while Cyrus's clients race to reconnect into a full listen backlog.",

	"rimap": "Every good login costs the IMAP server a whole session, for both daemons: IMAP has no way back from the " +
		"authenticated state (Dovecot 2.3 has no UNAUTHENTICATE), so a connection whose LOGIN succeeded is logged out and " +
		"the next login needs a new one; the pool only takes the connect and the greeting out of the request's path. CPU per " +
		"good login at C=8 over 3,000 requests: Dovecot about 1,200 µs (imap 640, imap-login 290, auth 100, log, anvil and " +
		"master the rest), Cyrus 190 µs, saslgate 390 µs. With Dovecot on the same two cores, a daemon that cost nothing " +
		"would reach about 1.15× Cyrus; 1.5× needs the IMAP server on another machine (where the pool saves a round trip per " +
		"login) or rejected logins, whose connections the pool reuses. At C=1 saslgate is slower still: the pool takes " +
		"the connect and greeting (about 100 µs a login in mechs/rimap's BenchmarkLogin) out of the request's path, but its extra 200 µs of CPU a login " +
		"(the goroutine per connection, see shadow-cache, and the pool's background dial and LOGOUT) run on the same two " +
		"cores as Dovecot's session set-up.",

	"rimap-starttls": "Each good login needs a fresh connection (see rimap), so over STARTTLS each pays a full TLS handshake at " +
		"both ends: per good login at C=8, saslgate used about 1,240 µs of CPU (390 µs in plaintext) and Dovecot's " +
		"imap-login about 1,450 µs (290 µs), so a login costs about 2.7× the plaintext one on the shared cores. In " +
		"saslgate's profile the handshake is 40% of the samples, and a third of that is generating the X25519MLKEM768 key " +
		"share Go offers by default; verifying the certificate is another 4%. Levers: key shares without ML-KEM for a server " +
		"on the local network, and session resumption that takes on every reconnect.",

	"memory": "Of saslgate's idle VmRSS only the part in brackets is anonymous memory (RssAnon: heap and stacks, about " +
		"1.3–1.8 MiB); the rest is the executable's own pages mapped from the page cache (text, read-only data and the tables " +
		"Go's runtime reads), shared with every other process running the same binary and dropped first under memory " +
		"pressure. The kernel maps each touched page's neighbours with it (fault-around), so nearly the whole executable " +
		"counts: its size is the lever. The Prometheus stack (client_golang, protobuf) was 4 MiB of it and now lives in the " +
		"saslgate-metrics process. With 2,000 connections the anonymous part grows by about 7 KiB a connection (a " +
		"goroutine's stack, a buffered reader, the descriptor's state); saslgate hands it back after an idle interval.",
}
