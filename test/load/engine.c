#include "engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

typedef struct {
	sg_spec *spec;
	sg_result *res;
	atomic_llong *next;
	long long deadline;       // CLOCK_MONOTONIC ns, 0: none
} worker;

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void note(sg_result *r, const char *what, int err) {
	r->errs++;
	if (r->first_err[0] == 0)
		snprintf(r->first_err, sizeof r->first_err, "%s: %s", what, err ? strerror(err) : "connection closed");
}

// read_full reads n bytes; 0 on success, else the errno (0 for EOF).
static int read_full(int s, char *p, int n, int *eof) {
	while (n > 0) {
		ssize_t k = read(s, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return errno;
		if (k == 0) {
			*eof = 1;
			return 0;
		}
		p += k;
		n -= k;
	}
	return 0;
}

// exchange does one request as libsasl does; it returns 0 and the reply in
// buf (up to cap bytes, *len set), or -1 with the error noted in r.
static int exchange(const sg_spec *sp, int k, char *buf, int cap, int *len, sg_result *r) {
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		note(r, "socket", errno);
		return -1;
	}
	struct timeval tv = {sp->timeout_ms / 1000, (sp->timeout_ms % 1000) * 1000};
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); // bounds connect and write
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	strncpy(sa.sun_path, sp->path, sizeof sa.sun_path - 1);
	int rc;
	do
		rc = connect(s, (struct sockaddr *)&sa, sizeof sa);
	while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		note(r, "connect", errno);
		close(s);
		return -1;
	}
	const char *p = sp->reqs[k];
	int n = sp->reqlens[k];
	while (n > 0) {
		ssize_t w = write(s, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			note(r, "write", errno);
			close(s);
			return -1;
		}
		p += w;
		n -= w;
	}
	unsigned char hdr[2];
	int eof = 0;
	int err = read_full(s, (char *)hdr, 2, &eof);
	if (err || eof) {
		note(r, "size read", err);
		close(s);
		return -1;
	}
	int count = hdr[0] << 8 | hdr[1];
	if (count > cap)
		count = cap;
	err = read_full(s, buf, count, &eof);
	close(s);
	if (err || eof) {
		note(r, "read", err);
		return -1;
	}
	*len = count;
	return 0;
}

static void push(sg_result *r, long long d) {
	if (r->nlat == r->cap) {
		long long cap = r->cap ? 2 * r->cap : 4096;
		long long *lat = realloc(r->lat, cap * sizeof *lat);
		if (lat == NULL)
			return; // the sample is lost, not the run
		r->lat = lat;
		r->cap = cap;
	}
	r->lat[r->nlat++] = d;
}

static void *run_worker(void *arg) {
	worker *w = arg;
	sg_spec *sp = w->spec;
	sg_result *r = w->res;
	char buf[1024];
	for (;;) {
		long long started = atomic_load(w->next);
		if (sp->cancel)
			break;
		if (w->deadline && now_ns() >= w->deadline && started >= sp->min_requests)
			break;
		long long i = atomic_fetch_add(w->next, 1);
		if (sp->max_requests > 0 && i >= sp->max_requests)
			break;
		int k = (int)(i % sp->nreq);
		long long t0 = now_ns();
		int len = 0;
		if (exchange(sp, k, buf, sizeof buf, &len, r) != 0)
			continue;
		long long d = now_ns() - t0;
		int wl = sp->wantlens[k];
		if (wl > 0 && (len < wl || memcmp(buf, sp->want[k], wl) != 0))
			r->bad++;
		push(r, d);
	}
	return NULL;
}

int sg_run(sg_spec *sp, sg_result *res) {
	atomic_llong next = 0;
	long long deadline = sp->duration_ns > 0 ? now_ns() + sp->duration_ns : 0;
	pthread_t *th = calloc(sp->conc, sizeof *th);
	worker *ws = calloc(sp->conc, sizeof *ws);
	if (th == NULL || ws == NULL) {
		free(th);
		free(ws);
		snprintf(res[0].first_err, sizeof res[0].first_err, "out of memory");
		return -1;
	}
	int started = 0, rc = 0;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	for (int t = 0; t < sp->conc; t++) {
		ws[t] = (worker){sp, &res[t], &next, deadline};
		int e = pthread_create(&th[t], &attr, run_worker, &ws[t]);
		if (e != 0) {
			sp->cancel = 1;
			snprintf(res[0].first_err, sizeof res[0].first_err, "pthread_create: %s", strerror(e));
			rc = -1;
			break;
		}
		started++;
	}
	pthread_attr_destroy(&attr);
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	free(th);
	free(ws);
	return rc;
}
