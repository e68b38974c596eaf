// Command saslgate is a drop-in replacement for Cyrus SASL's saslauthd.
// Called as saslauthd or testsaslauthd (a link), it behaves as that program.
package main

import (
	"os"

	"github.com/saslgate/saslgate/cmd/commands"
	_ "github.com/saslgate/saslgate/mechs/all" // the mechanisms
	"github.com/saslgate/saslgate/mechs/pam"
)

func main() {
	// A PAM worker process (the pam mechanism re-executes this binary):
	// dispatched before anything else touches stdin, stdout or flags, and
	// whatever name the binary was installed under.
	if len(os.Args) > 1 && os.Args[1] == pam.WorkerCommand {
		os.Exit(pam.WorkerMain(os.Stdin, os.Stdout))
	}
	os.Exit(commands.Main(os.Args, os.Stdout, os.Stderr))
}
