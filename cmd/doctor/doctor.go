// Package doctor finds the classic mistakes of a saslauthd/saslgate and
// Postfix set-up and says how to fix each: the checks behind
// "saslgate doctor".
//
// Every check is a function of the files under a root directory ("/" for
// the live system, a fixture tree in tests) and of a few probes that need
// the live system (postconf, connecting to a socket, NSS, the host name,
// the rimap servers), injected through Probes so that tests can replace
// them and --root can leave them out.
//
// A Finding's Fix is text meant to be followed as it stands, one step a
// line:
//
//   - "# ..." is a comment or an alternative;
//   - "/path/to/file: LINE" means: put LINE in that file, replacing the line
//     that sets the same key (or adding it);
//   - any other line is a shell command, to run as root.
package doctor

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/rimap"
)

// Severity says how bad a finding is.
type Severity string

const (
	// Error: logins fail (all, or some clients'), or will.
	Error Severity = "error"
	// Warning: it works, by accident or for now.
	Warning Severity = "warning"
	// Info: what doctor could not check, and why; not a problem.
	Info Severity = "info"
)

// The finding ids: stable, for tools.
const (
	IDConfigInvalid     = "config-invalid"
	IDSocketMissing     = "daemon-socket-missing"
	IDNotRunning        = "daemon-not-running"
	IDPostfixMissing    = "postfix-not-configured"
	IDPostfixUnreadable = "postfix-unreadable"
	IDSASLDisabled      = "postfix-sasl-disabled"
	IDSmtpdConfMissing  = "smtpd-conf-missing"
	IDPwcheckMethod     = "pwcheck-method"
	IDMechListSecret    = "mech-list-shared-secret"
	IDPathDirectory     = "saslauthd-path-directory"
	IDChrootUnreachable = "chroot-socket-unreachable"
	IDPathMismatch      = "saslauthd-path-mismatch"
	IDNotInGroup        = "postfix-not-in-socket-group"
	IDSocketPermission  = "socket-permission"
	IDPAMServiceMissing = "pam-service-missing"
	IDLocalDomainRealm  = "local-domain-realm"
	IDSasldbRealm       = "sasldb-realm"
	IDSasldbUnreadable  = "sasldb-unreadable"
	IDSasldbEmpty       = "sasldb-empty"
	IDRimapUnreachable  = "rimap-unreachable"
	IDRimapCertificate  = "rimap-certificate"
	IDSkipped           = "skipped"
)

// Finding is one problem (or, at Info, one thing left unchecked).
type Finding struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	Summary  string   `json:"summary"` // one line
	Detail   string   `json:"detail"`  // what was seen, where
	Fix      string   `json:"fix"`     // see the package documentation
}

// Report is the outcome of Run. OK is false when any finding is an error
// or a warning.
type Report struct {
	OK       bool      `json:"ok"`
	Findings []Finding `json:"findings"`
}

// Probes are the checks' access to the live system. A nil probe is
// replaced by a file read under the root where one exists (Postconf:
// main.cf; Accounts: /etc/passwd and /etc/group; Hostname: /etc/hostname;
// LookPath: the usual bin directories), or its check is skipped with an
// Info finding (Dial, Rimap).
type Probes struct {
	// Postconf returns the named parameters of the Postfix instance whose
	// config_directory is dir, $names expanded, in order.
	Postconf func(ctx context.Context, dir string, names []string) ([]string, error)
	// Dial connects to a UNIX socket at a host path and hangs up.
	Dial func(ctx context.Context, path string) error
	// Accounts looks users and groups up.
	Accounts Accounts
	// Hostname is the daemon host's gethostname(), sasldb's default realm.
	Hostname func() (string, error)
	// Rimap connects to the configured IMAP servers as the mechanism would.
	Rimap func(ctx context.Context, opts mechs.Options) ([]rimap.ProbeResult, error)
	// LookPath reports whether a command is installed (for the fixes:
	// adduser or usermod, dpkg-statoverride).
	LookPath func(name string) bool
}

// Options say what to examine.
type Options struct {
	// Root is the directory every absolute path is read under; "" is "/".
	Root string
	// PostfixConfig is the Postfix instance's config_directory; "" is
	// DefaultPostfixConfig.
	PostfixConfig string
	// DaemonArgs is the daemon's command line (saslgate serve's flags);
	// nil: read it from the defaults files.
	DaemonArgs []string
	// Exe is how fixes name the saslgate program; "" is "saslgate".
	Exe string
	Probes
}

// Run runs every check and returns the findings in a fixed order.
func Run(ctx context.Context, o Options) Report {
	c := newChecker(ctx, o)
	c.run()
	rep := Report{OK: true, Findings: c.findings}
	if rep.Findings == nil {
		rep.Findings = []Finding{}
	}
	for _, f := range rep.Findings {
		if f.Severity != Info {
			rep.OK = false
		}
	}
	return rep
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// hostname reads /etc/hostname under the root: the --root stand-in for
// gethostname().
func (r rootFS) hostname() (string, error) {
	b, err := r.readFile("/etc/hostname")
	if err != nil {
		return "", err
	}
	name := ""
	for _, f := range strings.Split(string(b), "\n") {
		if f = strings.TrimSpace(f); f != "" && f[0] != '#' {
			name = f
			break
		}
	}
	if name == "" {
		return "", errors.New("doctor: /etc/hostname is empty")
	}
	return name, nil
}

// lookPath is the --root stand-in for exec.LookPath.
func (r rootFS) lookPath(name string) bool {
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if _, fi, err := r.stat("/", dir+"/"+name); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// root returns o.Root as an absolute host path.
func (o Options) root() string {
	if o.Root == "" {
		return "/"
	}
	if abs, err := filepath.Abs(o.Root); err == nil {
		return abs
	}
	return o.Root
}
