package commands

import (
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// demo.sasldb2 was written by Debian's real saslpasswd2:
//
//	echo -n demo-password | saslpasswd2 -p -c -f demo.sasldb2 -u saslgate.test demo
//
//go:embed demo.sasldb2
var demoSasldb []byte

// newDemoCmd is what `make run` starts: the daemon in the foreground on the
// bundled demo sasldb, on a socket in a fresh temporary directory.
func newDemoCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "run the daemon in the foreground on a bundled demo sasldb (what make run does)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir, err := os.MkdirTemp("", "saslgate-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			db := filepath.Join(dir, "sasldb2")
			if err := os.WriteFile(db, demoSasldb, 0o600); err != nil {
				return err
			}
			run := filepath.Join(dir, "run")
			self, _ := os.Executable()
			fmt.Fprintf(stdout, `saslgate demo: sasldb %s, socket %s/mux
In another terminal, try:
  %[3]s test -f %[2]s/mux -u demo -p demo-password -r saslgate.test   # 0: OK "Success."
  %[3]s test -f %[2]s/mux -u demo -p wrong -r saslgate.test           # 0: NO "authentication failed"
  testsaslauthd -f %[2]s/mux -u demo -p demo-password -r saslgate.test  # Cyrus's own client
Stop with Ctrl-C.
`, db, run, self)
			serve := newServeCmd("serve", "saslgate serve", stderr)
			serve.SetArgs([]string{"-d", "-a", "sasldb", "--sasldb-path", db, "-m", run})
			return serve.Execute()
		},
	}
}
