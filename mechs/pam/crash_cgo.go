//go:build linux && cgo

package pam

/*
#include <signal.h>
#include <string.h>
#include <unistd.h>

// sg_fatal ends the worker with the signal that hit it, after one line on
// stderr. It runs instead of the Go runtime's handler, whose report for a
// signal in C code is every goroutine and a dump of the CPU registers; the
// registers of a module that crashed comparing passwords can hold pieces of
// the password, and the daemon logs what workers print.
static void sg_fatal(int sig) {
	static const char msg[] = "saslgate pam-worker: fatal signal, exiting\n";
	ssize_t n = write(2, msg, sizeof msg - 1);
	(void)n;
	signal(sig, SIG_DFL);
	raise(sig);
}

// sg_install sets sg_fatal for the signals a crashing module raises.
// SA_ONSTACK because the signal may land on a small goroutine stack;
// SA_NODEFER so that the raise in the handler is delivered at once.
static int sg_install(void) {
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP};
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = sg_fatal;
	sa.sa_flags = SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		if (sigaction(sigs[i], &sa, NULL) != 0) {
			return -1;
		}
	}
	return 0;
}
*/
import "C"

// dieBySignal makes a crash in the worker end the process by its signal
// (the daemon then reports "signal: segmentation fault") with a one-line
// message, instead of Go's crash report. Only a worker calls it: a Go nil
// dereference in this process is no longer a recoverable panic, which a
// worker never recovers anyway.
func dieBySignal() bool { return C.sg_install() == 0 }
