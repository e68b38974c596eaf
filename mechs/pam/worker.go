package pam

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// envWorker is set in every worker's environment. New refuses to start
// workers when it sees it: a worker command that does not reach WorkerMain
// runs the whole program again, and must not start workers of its own.
const envWorker = "SASLGATE_PAM_WORKER"

// WorkerMain is the body of the hidden "pam-worker" subcommand: it serves
// PAM transactions for the daemon that started it, one at a time, reading
// requests from stdin and writing results to stdout, until stdin is closed.
// It returns the process exit status: 0 when the daemon closed the pipe, 1
// when it cannot serve at all, 2 on a broken pipe or a malformed request.
//
// Call it with os.Stdin and os.Stdout before anything else runs (no flag
// parsing, no logging set-up) and exit with its result:
//
//	if len(os.Args) > 1 && os.Args[1] == pam.WorkerCommand {
//		os.Exit(pam.WorkerMain(os.Stdin, os.Stdout))
//	}
//
// Given os.Stdin and os.Stdout, it first moves the pipes to new
// close-on-exec descriptors and points descriptors 0 and 1 at /dev/null and
// stderr, so that a module that reads stdin, prints to stdout or runs a
// helper program cannot touch the protocol.
func WorkerMain(stdin io.Reader, stdout io.Writer) int {
	in, out := isolateStdio(stdin, stdout)
	closeOnExecInherited()
	// A core dump of a worker would hold the password it was checking.
	harden()
	// A module's crash ends the worker by its signal, with one line of
	// output and no register dump.
	dieBySignal()
	if !supported {
		fmt.Fprintln(os.Stderr, "saslgate pam-worker: this build cannot call PAM (it needs cgo on Linux)")
		return 1
	}
	if err := writeFrame(out, []byte(helloMagic)); err != nil {
		fmt.Fprintln(os.Stderr, "saslgate pam-worker:", err)
		return 1
	}
	for {
		p, err := readFrame(in)
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "saslgate pam-worker: reading a request:", err)
			return 2
		}
		req, err := decodeRequest(p)
		clear(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "saslgate pam-worker: bad request:", err)
			return 2
		}
		res := runTxn(&req)
		if err := writeFrame(out, encodeResult(res)); err != nil {
			fmt.Fprintln(os.Stderr, "saslgate pam-worker: writing a result:", err)
			return 2
		}
	}
}
