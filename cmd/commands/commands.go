// Package commands holds saslgate's cobra commands: serve (saslauthd), test
// (testsaslauthd), bench (a load tool), and the argv[0] dispatch that makes
// the binary behave as saslauthd or testsaslauthd when called by those names.
package commands

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// Version is saslgate's own version, stamped by the Makefile.
var Version = "0.1.0-dev"

// CompatVersion is the saslauthd version saslgate answers as.
const CompatVersion = "2.1.28"

// exitError carries a process exit code through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func exit(code int) error { return exitError{code} }

// Main runs the program named by args[0] and returns its exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	prog := filepath.Base(args[0])
	var root *cobra.Command
	switch prog {
	case "saslauthd":
		root = newServeCmd("saslauthd", args[0], stderr)
	case "testsaslauthd":
		root = newTestCmd("testsaslauthd", args[0], stdout, stderr)
	default:
		root = newRootCmd(stdout, stderr)
	}
	root.SetArgs(args[1:])
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "saslgate",
		Short: "a drop-in replacement for Cyrus SASL's saslauthd",
		Long: "saslgate answers saslauthd's \"is this login and password good?\" requests on a UNIX\n" +
			"socket, with saslauthd's command line, wire format and replies.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	// -v and --version, as admins type them after installing the package;
	// the template is the version command's text, with no template actions
	root.Version = Version
	root.SetVersionTemplate(strings.ReplaceAll(versionText(), "{{", `{{"{{"}}`))
	root.InitDefaultVersionFlag()
	root.Flags().Lookup("version").Usage = "print saslgate's version and mechanisms"
	root.AddCommand(newServeCmd("serve", "saslgate serve", stderr), newTestCmd("test", "saslgate test", stdout, stderr),
		newBenchCmd(stdout, stderr), newVersionCmd(stdout), newDemoCmd(stdout, stderr))
	root.AddCommand(newDoctorCmd(stdout, stderr))
	root.AddCommand(newCheckpasswordCmd(stderr))
	return root
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print saslgate's version and mechanisms",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprint(stdout, versionText())
			return nil
		},
	}
}

// versionText is what "saslgate version" and "saslgate -v" print.
func versionText() string {
	return fmt.Sprintf("saslgate %s (saslauthd %s compatible)\n%s", Version, CompatVersion,
		strings.TrimPrefix(versionBlock("x"), "x "+CompatVersion+"\n"))
}

// getoptError turns pflag's parse errors into getopt's wording, which is
// what saslauthd and testsaslauthd print.
func getoptError(prog string, err error) string {
	msg := err.Error()
	var c string
	switch {
	case strings.HasPrefix(msg, "unknown shorthand flag: '"):
		c = msg[len("unknown shorthand flag: '"):]
		return fmt.Sprintf("%s: invalid option -- '%s'", prog, c[:strings.IndexByte(c, '\'')])
	case strings.HasPrefix(msg, "flag needs an argument: '"):
		c = msg[len("flag needs an argument: '"):]
		return fmt.Sprintf("%s: option requires an argument -- '%s'", prog, c[:strings.IndexByte(c, '\'')])
	case strings.HasPrefix(msg, "unknown flag: "):
		return fmt.Sprintf("%s: unrecognized option '%s'", prog, strings.TrimPrefix(msg, "unknown flag: "))
	}
	return prog + ": " + msg
}
