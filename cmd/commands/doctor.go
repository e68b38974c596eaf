package commands

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/saslgate/saslgate/cmd/doctor"
)

// doctorTimeout bounds a whole doctor run: each probe has its own bound,
// this one catches a pile-up of slow rimap servers.
const doctorTimeout = 2 * time.Minute

func newDoctorCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		root, postfixConfig string
		asJSON              bool
	)
	cmd := &cobra.Command{
		Use:   "doctor [--root DIR] [--postfix-config DIR] [--json] [-- DAEMON-FLAGS...]",
		Short: "find the classic saslauthd and Postfix mistakes, and say how to fix each",
		Long: "doctor reads how the daemon runs (" + doctor.DefaultsSaslgate + ", " + doctor.DefaultsSaslauthd +
			", /etc/saslgate.conf,\nor the daemon's flags given after --), the Postfix instance's main.cf, master.cf and\n" +
			"smtpd.conf, the PAM files and the sasldb, connects to the sockets and the rimap servers,\n" +
			"and reports each mistake with the command or config line that fixes it.\n\n" +
			"Exit status: 0 nothing wrong, 1 something wrong, 2 usage error.",
		Example: "  saslgate doctor\n" +
			"  saslgate doctor --postfix-config /etc/postfix-out --json\n" +
			"  saslgate doctor -- -a sasldb -m /var/spool/postfix/var/run/saslauthd\n" +
			"  saslgate doctor --root ./fixture",
		SilenceUsage:          true,
		SilenceErrors:         true,
		DisableFlagsInUseLine: true,
	}
	usageErr := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "saslgate doctor: "+format+"\n", a...)
		fmt.Fprint(stderr, cmd.UsageString())
		return exit(2)
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr("%v", err) })
	f := cmd.Flags()
	f.StringVar(&root, "root", "", "read every file under `DIR` (a copy of a system); live probes are skipped")
	f.StringVar(&postfixConfig, "postfix-config", doctor.DefaultPostfixConfig, "the Postfix instance's config_directory, `DIR`")
	f.BoolVar(&asJSON, "json", false, `print {"ok":bool,"findings":[{"id","severity","summary","detail","fix"}]}`)
	cmd.RunE = func(c *cobra.Command, args []string) error {
		var daemonArgs []string
		switch dash := c.ArgsLenAtDash(); {
		case dash < 0 && len(args) > 0, dash > 0:
			return usageErr("unexpected argument %q (the daemon's flags go after --)", args[0])
		case dash == 0:
			daemonArgs = append([]string{}, args...)
		}
		o := doctor.Options{Root: root, PostfixConfig: postfixConfig, DaemonArgs: daemonArgs, Exe: "saslgate"}
		if root != "" {
			if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
				return usageErr("--root %s: not a directory", root)
			}
		} else {
			o.Probes = doctor.Live()
			o.Exe = selfName()
		}
		ctx, cancel := context.WithTimeout(context.Background(), doctorTimeout)
		defer cancel()
		rep := doctor.Run(ctx, o)
		write := rep.WriteText
		if asJSON {
			write = rep.WriteJSON
		}
		if err := write(stdout); err != nil {
			return err
		}
		if !rep.OK {
			return exit(1)
		}
		return nil
	}
	return cmd
}

// selfName is how a fix names this program: "saslgate" when that is what
// the PATH finds, else the binary's absolute path.
func selfName() string {
	self, err := os.Executable()
	if err != nil {
		return "saslgate"
	}
	self, _ = filepath.EvalSymlinks(self)
	if p, err := exec.LookPath("saslgate"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil && p == self {
			return "saslgate"
		}
	}
	return self
}
