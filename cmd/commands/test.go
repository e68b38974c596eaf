package commands

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/saslgate/saslgate/protocol"
)

// DefaultSocket is testsaslauthd's default -f on Debian.
const DefaultSocket = "/var/run/saslauthd/mux"

// testUsage is testsaslauthd's usage text for the name it was called by.
func testUsage(argv0 string) string {
	return argv0 + ": usage: " + argv0 + " -u username -p password\n" +
		"              [-r realm] [-s servicename]\n" +
		"              [-f socket path] [-R repeatnum]\n"
}

// sunPathLen is what fits in sockaddr_un's sun_path with its NUL:
// testsaslauthd copies -f into it, silently cutting a longer path.
const sunPathLen = 107

// newTestCmd is testsaslauthd: the same flags, output lines and exit codes
// (0 when the last attempt said OK, 255 when it did not, 1 on usage), plus
// -a for a client address (sent as the fifth field, as master's does).
func newTestCmd(use, argv0 string, stdout, stderr io.Writer) *cobra.Command {
	var user, pass, realm, service, path, addr string
	var repeat int
	cmd := &cobra.Command{
		Use:           use + " -u username -p password [-r realm] [-s servicename] [-f socket path] [-R repeatnum] [-a clientaddr]",
		Short:         "ask the daemon about one login (testsaslauthd)",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	usage := func() error { fmt.Fprint(stderr, testUsage(argv0)); return exit(1) }
	cmd.SetHelpFunc(func(*cobra.Command, []string) { fmt.Fprint(stderr, testUsage(argv0)) })
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		if errors.Is(err, pflag.ErrHelp) { // -h, when there is no -h
			err = errors.New("unknown shorthand flag: 'h' in -h")
		}
		fmt.Fprintln(stderr, getoptError(argv0, err))
		return usage()
	})
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVarP(&user, "user", "u", "", "user name")
	f.StringVarP(&pass, "password", "p", "", "password")
	f.StringVarP(&realm, "realm", "r", "", "realm")
	f.StringVarP(&service, "service", "s", "imap", "service name")
	f.StringVarP(&path, "socket", "f", DefaultSocket, "socket path")
	f.VarP(atoiValue{&repeat}, "repeat", "R", "number of attempts")
	f.StringVarP(&addr, "client-addr", "a", "", "client address ip;port, sent as the fifth field")
	if use == "testsaslauthd" {
		// testsaslauthd has no -h: it is an invalid option there
		f.Bool("help", false, "usage")
		f.Lookup("help").Hidden = true
	} else {
		f.BoolP("help", "h", false, "usage")
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error {
		// -u "" and -p "" are sent as given (the daemon answers NULL ...)
		if !c.Flags().Changed("user") || !c.Flags().Changed("password") {
			return usage()
		}
		if repeat == 0 { // testsaslauthd turns only 0 into 1; negative: no attempt
			repeat = 1
		}
		if len(path) > sunPathLen {
			path = path[:sunPathLen]
		}
		client := &protocol.Client{Path: path}
		req := protocol.Request{Login: user, Password: pass, Service: service, Realm: realm,
			ClientAddr: addr, HasClientAddr: c.Flags().Changed("client-addr")}
		ok := false
		for i := 0; i < repeat; i++ {
			fmt.Fprintf(stdout, "%d: ", i)
			reply, err := client.Do(context.Background(), req)
			ok = false
			var ce *protocol.ConnectError
			switch {
			case errors.As(err, &ce):
				fmt.Fprintln(stderr, ce.Error())
			case errors.Is(err, protocol.ErrWrite):
				fmt.Fprintln(stderr, "write failed")
			case errors.Is(err, protocol.ErrSizeRead):
				fmt.Fprintln(stderr, "size read failed")
			case errors.Is(err, protocol.ErrBadResponse):
				fmt.Fprintln(stderr, "bad response from saslauthd")
			case errors.Is(err, protocol.ErrRead):
				fmt.Fprintln(stderr, "read failed")
			case err != nil:
				fmt.Fprintln(stderr, err)
			case len(reply) >= 2 && reply[:2] == "OK":
				fmt.Fprintln(stdout, `OK "Success."`)
				ok = true
			default:
				fmt.Fprintln(stdout, `NO "authentication failed"`)
			}
		}
		if ok || repeat < 0 {
			return nil
		}
		return exit(255)
	}
	return cmd
}
