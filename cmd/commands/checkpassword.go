package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/saslgate/saslgate/protocol"
)

// The checkpassword interface's exit codes.
const (
	cpBad       = 1   // the password is unacceptable
	cpMisuse    = 2   // the interface was not followed
	cpTemporary = 111 // a temporary problem: the daemon is down, say
)

// cpFD is where the caller writes login\0password\0timestamp\0.
const cpFD = 3

// checkpasswordUsage is printed on misuse.
const checkpasswordUsage = "usage: saslgate checkpassword [-m rundir | -f socket] [-s service] [-r realm] [-t timeout] prog [args...]\n"

// newCheckpasswordCmd is a qmail checkpassword program that asks the daemon:
// qmail-smtpd's and qmail-popup's AUTH patches and Dovecot's checkpassword
// passdb run it with the login and password on fd 3; it exits 1 for a
// rejected password, 111 when the daemon cannot be asked, 2 on misuse, and
// otherwise sets USER and executes prog with args, which decides the exit
// status.
func newCheckpasswordCmd(stderr io.Writer) *cobra.Command {
	var runDir, socket, service, realm string
	var timeout, readTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "checkpassword [flags] prog [args...]",
		Short: "a qmail checkpassword program (fd 3) that asks the daemon",
		Long: "Reads login\\0password\\0timestamp\\0 (at most 512 bytes) from fd 3, asks the daemon, and\n" +
			"executes prog with USER set when the password is good. Exit 1: bad password; 2: misuse;\n" +
			"111: the daemon could not be asked. For qmail-smtpd, qmail-popup and Dovecot's checkpassword passdb.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	say := func(format string, a ...any) { fmt.Fprintf(stderr, "saslgate checkpassword: "+format+"\n", a...) }
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		say("%v", err)
		fmt.Fprint(stderr, checkpasswordUsage)
		return exit(cpMisuse)
	})
	f := cmd.Flags()
	f.SortFlags = false
	// prog's own options are prog's: flags end at the first operand
	f.SetInterspersed(false)
	f.StringVarP(&runDir, "run-dir", "m", DefaultRunDir, "the daemon's run directory (the socket is its mux)")
	f.StringVarP(&socket, "socket", "f", "", "the daemon's socket (instead of -m)")
	f.StringVarP(&service, "service", "s", "", "service name sent to the daemon (default: $SERVICE, as Dovecot sets it, else smtp)")
	f.StringVarP(&realm, "realm", "r", "", "realm sent to the daemon")
	f.DurationVarP(&timeout, "timeout", "t", 30*time.Second, "bound on asking the daemon")
	f.DurationVar(&readTimeout, "read-timeout", 10*time.Second, "bound on reading fd 3")

	cmd.RunE = func(_ *cobra.Command, args []string) error {
		if len(args) == 0 {
			say("no program to run")
			fmt.Fprint(stderr, checkpasswordUsage)
			return exit(cpMisuse)
		}
		if timeout <= 0 || readTimeout <= 0 {
			say("timeouts must be positive")
			return exit(cpMisuse)
		}
		in, err := readCheckpassword(readTimeout)
		switch {
		case errors.Is(err, errNoFD3), errors.Is(err, protocol.ErrCheckpasswordTooLong),
			errors.Is(err, protocol.ErrCheckpasswordMalformed):
			say("%v", err)
			return exit(cpMisuse)
		case err != nil:
			say("%v", err)
			return exit(cpTemporary)
		}
		authorized := os.Getenv("AUTHORIZED") == "1"
		if authorized && in.Password == "" {
			// Dovecot's userdb and passdb lookups: a user to look up with no
			// password, which the daemon's protocol cannot ask about.
			// Acknowledging (AUTHORIZED=2) would vouch for any name.
			say("AUTHORIZED=1 without a password (a Dovecot userdb or passdb lookup) cannot be answered " +
				"through saslauthd: use another userdb (static, prefetch) and plaintext mechanisms only")
			return exit(cpTemporary)
		}
		if in.Login == "" || in.Password == "" {
			return exit(cpBad) // the daemon would say "NO NULL ... received"
		}
		if service == "" {
			service = os.Getenv("SERVICE")
		}
		if service == "" {
			service = "smtp"
		}
		if socket == "" {
			socket = filepath.Join(runDir, "mux")
		}
		req := protocol.Request{Login: in.Login, Password: in.Password, Service: service, Realm: realm}
		req.ClientAddr, req.HasClientAddr = ucspiRemote()

		client := &protocol.Client{Path: socket, Timeout: timeout}
		reply, err := client.Do(context.Background(), req)
		switch {
		case err != nil:
			say("cannot ask the daemon at %s: %v", socket, err)
			return exit(cpTemporary)
		case strings.HasPrefix(reply, "NO"):
			return exit(cpBad)
		case !strings.HasPrefix(reply, "OK"):
			say("malformed reply from the daemon at %s", socket)
			return exit(cpTemporary)
		}

		env := setEnv(os.Environ(), "USER", in.Login)
		if authorized {
			// Dovecot's extension: the program acknowledges a lookup, and
			// checkpassword-reply then exits 2, which Dovecot expects
			env = setEnv(env, "AUTHORIZED", "2")
		}
		path, err := exec.LookPath(args[0])
		if err != nil {
			say("%v", err)
			return exit(cpTemporary)
		}
		// exec: prog keeps our pid, fds (Dovecot's fd 4) and environment
		err = syscall.Exec(path, args, env)
		say("exec %s: %v", path, err)
		return exit(cpTemporary)
	}
	return cmd
}

// errNoFD3: the caller gave no fd 3.
var errNoFD3 = errors.New("fd 3 is not open: run by a checkpassword caller, with login\\0password\\0 on fd 3")

// readCheckpassword reads fd 3 within timeout and closes it.
func readCheckpassword(timeout time.Duration) (protocol.Checkpassword, error) {
	// When the caller left fd 3 closed, the Go runtime takes it for its
	// own files (the cgroup CPU quota it rereads): those are close-on-exec,
	// and an fd inherited through exec never is.
	fdFlags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, cpFD, syscall.F_GETFD, 0)
	if errno != 0 || fdFlags&syscall.FD_CLOEXEC != 0 {
		return protocol.Checkpassword{}, errNoFD3
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(cpFD, &st); err != nil {
		return protocol.Checkpassword{}, errNoFD3
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFREG, syscall.S_IFCHR:
	default:
		return protocol.Checkpassword{}, errNoFD3
	}
	// non-blocking, so that os.NewFile puts it in the poller and the read
	// deadline works; a regular file never blocks anyway
	_ = syscall.SetNonblock(cpFD, true)
	f := os.NewFile(cpFD, "fd 3")
	defer f.Close() // as djb's checkpassword: prog does not get fd 3
	if err := f.SetReadDeadline(time.Now().Add(timeout)); err != nil && !errors.Is(err, os.ErrNoDeadline) {
		return protocol.Checkpassword{}, fmt.Errorf("fd 3: %w", err)
	}
	in, err := protocol.ReadCheckpassword(f)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return in, fmt.Errorf("nothing complete on fd 3 within %v: %w", timeout, err)
	}
	return in, err
}

// ucspiRemote is the client address ucspi-tcp (tcpserver) and Dovecot put
// in the environment, as the fifth field's "ip;port".
func ucspiRemote() (string, bool) {
	ip, err := netip.ParseAddr(os.Getenv("TCPREMOTEIP"))
	if err != nil {
		return "", false
	}
	addr := ip.Unmap().String()
	if p, err := strconv.ParseUint(os.Getenv("TCPREMOTEPORT"), 10, 16); err == nil {
		addr += ";" + strconv.FormatUint(p, 10)
	}
	return addr, true
}

// setEnv returns env with key set to value, replacing every earlier entry.
func setEnv(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}
