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
	"sasldb": "The load generator waits in connect(2) as libsasl's clients do (test/load/engine.c); the Go client before it " +
		"polled with a backoff of 0.1 to 20 ms when Cyrus's listen backlog was full, and those sleeps stretched Cyrus's " +
		"tail (the p99 ratio at C=64 was 0.17 with it). With blocking clients the p99 ratio is 0.56–0.64 in the last " +
		"three runs while the throughput ratio stays far above its goal (1.86× here): saslgate's p99 at C=64 is 11.5 ms, " +
		"3.1× its p50 of 3.8 ms; Cyrus's is 18.1 ms, 2.5× its p50 of 7.1 ms. The tail is the queue in front of the two cores, " +
		"which both daemons share with 64 clients.",

	"sasldb-cache": "A cache hit is answered by the acceptor that took the connection (daemon/accept.go), while a sasldb lookup " +
		"is a mechanism call and goes on to a connection goroutine, so with -c saslgate serves 1.33× to 1.98× its rate " +
		"without. The Go benchmark above times the hit and the lookup without the connection.",

	"shadow-cache": "A cache hit never reaches the mechanism, so the connection is nearly all of its cost, and both ends of it " +
		"share the two cores. An acceptor now answers a hit itself (daemon/accept.go): accept4, one read, the rules and " +
		"the cache, one write and the close, with raw system calls, no epoll registration and no hand-off between " +
		"goroutines or threads. An acceptor also reuses its buffered reader. In paired rounds at C=64 (same machine, C load client, /proc " +
		"accounting) that is 34–40 µs of CPU per hit against 50–73 µs for the goroutine per connection on the netpoller " +
		"before it, which reached 1.0–1.4× Cyrus; saslgate now serves more than the floor (1.22 of it), a Go netpoller " +
		"server that does no work at all. Both daemons' rates at C=64 move between rounds (Cyrus 11,358 to 17,370 " +
		"requests/s, saslgate 18,789 to 23,861 here), and with them the ratio: the five rounds gave 1.59×, 1.52×, 1.36×, " +
		"1.29× and 1.74× (the medians give 1.55×; 1.57× in the run before). A first version of the " +
		"acceptors blocked in accept(2): a thread blocked in a system call keeps Go's sysmon retaking Ps and handing them " +
		"between threads, about 9 µs of CPU per hit, which is why they wait on the netpoller and use RawSyscall.",

	"shadow-yescrypt": "Both daemons spend about the same CPU per request, one yescrypt computation, and the same kernel work around " +
		"it: libxcrypt maps a fresh 16 MiB region for each computation and faults it in page by page (perf stat: 4,096 " +
		"page faults per request in both). /proc accounting at C=8 with the C load client, on the day of this run: " +
		"Cyrus 25.2–28.1 ms per request with -n 5, saslgate 27.9–31.6 ms; with -n 1 both 26.3–28.7 ms. So five " +
		"computations at once in one process cost saslgate a few per cent more than Cyrus's five processes do; I have " +
		"not pinned down where (the previous measurement gave 23.0 against 23.4–23.9 ms), and the answering path is not " +
		"it: the acceptors changed nothing here (28.3–29.2 ms against 28.1–29.8 ms before them, paired rounds). The " +
		"throughput ratio reflects how the two cores are shared and moves by several per cent between runs (0.97×, " +
		"0.90× and 0.91× at C=8 in the last three). At C=64 a fair queue gives every request about the same wait, C ÷ " +
		"throughput ≈ 64 ÷ 68 per second ≈ 0.94 s (Little's law), which is saslgate's p50 (0.92 s) and close to its p99 " +
		"(1.05 s); half of Cyrus's p99 would need Cyrus's p99 above 2 s (1.18 s here), and clients that block in " +
		"connect(2), as libsasl's do, do not produce one.",

	"rimap": "Every good login costs the IMAP server a whole session, for both daemons: IMAP has no way back from the " +
		"authenticated state (Dovecot 2.3 has no UNAUTHENTICATE), so a connection whose LOGIN succeeded is logged out " +
		"and the next login needs a new one; the pool only takes the connect and the greeting out of the request's " +
		"path. The IMAP floor above, which does nothing but a bare LOGIN on connections dialled in advance, gets 0.86×, " +
		"0.86× and 0.92× Cyrus at C=1, 8 and 64 in the same rounds (0.88×, 0.83× and 1.02× in the run before): " +
		"Dovecot's session set-up bounds any rimap daemon here, whatever its design, and 1.5× is out of reach on this " +
		"machine. CPU per good login at C=8 over 3,000 requests (previous session): Dovecot about 1,200 µs (imap 640, " +
		"imap-login 290, auth 100, log, anvil and master the rest), Cyrus 190 µs, saslgate 390 µs. 1.5× needs the IMAP " +
		"server on another machine (where the pool saves round trips per login) or rejected logins, whose connections " +
		"the pool reuses.",

	"rimap-starttls": "Each good login needs a fresh connection (see rimap), so over STARTTLS each pays a full TLS handshake at both " +
		"ends: per good login at C=8, saslgate used about 1,240 µs of CPU (390 µs in plaintext) and Dovecot's " +
		"imap-login about 1,450 µs (290 µs), so a login costs about 2.7× the plaintext one on the shared cores. Even in " +
		"plaintext no rimap daemon gets much past Cyrus's rate here (the IMAP floor under rimap is 0.83–1.02× Cyrus in the last two runs), " +
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
