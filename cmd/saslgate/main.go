// Command saslgate is a drop-in replacement for Cyrus SASL's saslauthd.
// Called as saslauthd or testsaslauthd (a link), it behaves as that program.
package main

import (
	"os"

	"github.com/saslgate/saslgate/cmd/commands"
	_ "github.com/saslgate/saslgate/mechs/all" // the mechanisms
)

func main() {
	os.Exit(commands.Main(os.Args, os.Stdout, os.Stderr))
}
