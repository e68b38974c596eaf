package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/saslgate/saslgate/protocol"
	"github.com/saslgate/saslgate/test/load"
)

func newBenchCmd(stdout, _ io.Writer) *cobra.Command {
	var (
		socket, user, pass, service, realm, want string
		conc, requests                           int
		dur, timeout                             time.Duration
		asJSON                                   bool
	)
	cmd := &cobra.Command{
		Use:   "bench -f SOCKET -u USER -p PASSWORD [-c N] [-d DURATION]",
		Short: "load a saslauthd-compatible socket: C clients, a fresh connection per request",
		Long: "bench opens a fresh connection per request, as libsasl does, from C concurrent\n" +
			"clients, and prints requests/s and the p50/p95/p99 latency. It works against\n" +
			"saslgate and Cyrus saslauthd alike.",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			spec := load.Spec{Socket: socket, Concurrency: conc, Duration: dur, Requests: requests, Timeout: timeout,
				Reqs: []protocol.Request{{Login: user, Password: pass, Service: service, Realm: realm}},
				Want: []string{want}}
			if requests > 0 {
				spec.Duration = 0
			}
			r := load.Run(context.Background(), spec)
			if asJSON {
				return json.NewEncoder(stdout).Encode(map[string]any{
					"concurrency": conc, "requests": r.Requests, "errors": r.Errors, "mismatches": r.Mismatches,
					"elapsed_s": r.Elapsed.Seconds(), "rps": r.RPS(),
					"p50_us": r.P50.Microseconds(), "p95_us": r.P95.Microseconds(),
					"p99_us": r.P99.Microseconds(), "max_us": r.Max.Microseconds(),
				})
			}
			fmt.Fprintf(stdout, "concurrency=%d %s\n", conc, r)
			if r.Errors > 0 || r.Mismatches > 0 {
				return exit(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&socket, "socket", "f", DefaultSocket, "socket path")
	f.StringVarP(&user, "user", "u", "", "user name")
	f.StringVarP(&pass, "password", "p", "", "password")
	f.StringVarP(&service, "service", "s", "imap", "service name")
	f.StringVarP(&realm, "realm", "r", "", "realm")
	f.StringVar(&want, "want", "OK", "reply prefix every request must get")
	f.IntVarP(&conc, "concurrency", "c", 8, "concurrent clients")
	f.DurationVarP(&dur, "duration", "d", 5*time.Second, "how long to run")
	f.IntVarP(&requests, "requests", "n", 0, "stop after this many requests instead")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "per-request timeout")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("user")
	_ = cmd.MarkFlagRequired("password")
	return cmd
}
