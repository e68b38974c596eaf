// The load engine: C threads that each do what libsasl's saslauthd client
// does for every request (socket, a blocking connect, one write, blocking
// reads, close), so that the load generator costs about what real clients
// cost and never stands between the daemon and its measurement.
#ifndef SG_LOAD_ENGINE_H
#define SG_LOAD_ENGINE_H

typedef struct {
	const char *path;
	int nreq;                 // distinct requests, used in turn
	const char *const *reqs;  // their wire form
	const int *reqlens;
	const char *const *want;  // expected reply prefix per request ("" for any)
	const int *wantlens;
	int conc;                 // client threads
	long long max_requests;   // stop after this many (0: no limit)
	long long min_requests;   // go on past the duration until this many started
	long long duration_ns;    // stop starting requests after this long (0: none)
	int timeout_ms;           // bounds each connect, write and read
	volatile int cancel;      // set from Go: stop starting requests
} sg_spec;

typedef struct {
	long long *lat;           // latencies in ns of answered requests (malloc'd)
	long long nlat, cap;
	long long errs, bad;
	char first_err[160];
} sg_result;

// sg_run drives the load; res has conc entries. It returns 0, or -1 when a
// thread could not be started (res[0].first_err says why).
int sg_run(sg_spec *spec, sg_result *res);

#endif
