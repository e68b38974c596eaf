package doctor

import (
	"context"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fx describes a fixture tree: logical path -> what is there.
//
//	"dir:0710:sasl"  a directory with that mode, its group the named one
//	"link:/run"      a symbolic link
//	"socket"         a listening UNIX socket (0777), alive while the test runs
//	"socket:dead"    a socket file nobody listens on
//	"@sasldb2"       a copy of testdata/sasldb2
//	anything else    a regular file with that content (0644)
type fx map[string]string

// with returns a copy of f with the given path/value pairs set; a value of
// "-" removes the path.
func (f fx) with(kv ...string) fx {
	g := maps.Clone(f)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "-" {
			delete(g, kv[i])
		} else {
			g[kv[i]] = kv[i+1]
		}
	}
	return g
}

// fxGID is the group the fixture's "sasl" owns: any number when the tests
// run as root (they chown), else the test's own group (they cannot).
func fxGID() int {
	if os.Geteuid() == 0 {
		return 4242
	}
	return os.Getgid()
}

// fxOwner is how doctor names the fixture files' owner: root is in the
// fixture's /etc/passwd, a test's own user is not.
func fxOwner() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	return strconv.Itoa(os.Geteuid())
}

// fxGroups maps the group names a fixture uses in "dir:" entries to ids.
func fxGroups() map[string]int {
	return map[string]int{"sasl": fxGID(), "root": os.Getgid()}
}

// build makes the tree in a short temporary directory (socket paths must
// stay under 108 bytes) and returns its path.
func (f fx) build(t *testing.T) string {
	t.Helper()
	root, err := os.MkdirTemp("", "sgdoc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil { // it stands for "/"
		t.Fatal(err)
	}
	paths := slices.Sorted(maps.Keys(f))
	type dirMode struct {
		path string
		mode os.FileMode
		gid  int
	}
	var dirs []dirMode
	for _, p := range paths {
		v := f[p]
		host := filepath.Join(root, p)
		if !strings.HasPrefix(v, "dir:") {
			if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		switch {
		case strings.HasPrefix(v, "dir:"):
			parts := strings.Split(v, ":")
			mode, err := strconv.ParseUint(parts[1], 8, 32)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			gid, ok := fxGroups()[parts[2]]
			if !ok {
				t.Fatalf("%s: unknown fixture group %q", p, parts[2])
			}
			if err := os.MkdirAll(host, 0o755); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, dirMode{host, os.FileMode(mode), gid})
		case strings.HasPrefix(v, "link:"):
			if err := os.Symlink(v[len("link:"):], host); err != nil {
				t.Fatal(err)
			}
		case v == "socket" || v == "socket:dead":
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: host, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			if v == "socket:dead" {
				ln.Close()
			} else {
				t.Cleanup(func() { ln.Close() })
			}
			if err := os.Chmod(host, 0o777); err != nil {
				t.Fatal(err)
			}
		case v == "@sasldb2":
			b, err := os.ReadFile(filepath.Join("testdata", "sasldb2"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(host, b, 0o640); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(host, []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// deepest first, so that a 0710 parent does not stop the chmod of a
	// child (for a test not running as root)
	slices.SortFunc(dirs, func(a, b dirMode) int { return len(b.path) - len(a.path) })
	for _, d := range dirs {
		if os.Geteuid() == 0 {
			if err := os.Chown(d.path, 0, d.gid); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// fixtureProbes are the probes a fixture test uses: everything from the
// files, except connecting to the fixture's own sockets.
func fixtureProbes() Probes {
	return Probes{Dial: dial}
}

// base is a working Debian-like set-up: saslgate (sasldb) with its socket
// inside Postfix's chroot, the run directory root:sasl 0710 with postfix in
// sasl, smtpd chrooted, smtpd.conf with pwcheck_method saslauthd, and the
// realm Postfix appends being the one the sasldb's users are stored under.
func base() fx {
	gid := strconv.Itoa(fxGID())
	return fx{
		"/etc/hostname": "mail\n",
		"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"postfix:x:9999:9998::/var/spool/postfix:/usr/sbin/nologin\n",
		"/etc/group":            "root:x:0:\npostfix:x:9998:\nsasl:x:" + gid + ":postfix\n",
		"/usr/sbin/adduser":     "#!/bin/sh\n",
		"/etc/default/saslgate": "MECH=sasldb\nFLAGS=\"-m /var/spool/postfix/var/run/saslauthd\"\n",
		"/etc/sasldb2":          "@sasldb2",
		"/etc/postfix/main.cf": "myhostname = mail.example.org\n" +
			"mydomain = example.org\n" +
			"smtpd_sasl_auth_enable = yes\n" +
			"smtpd_sasl_local_domain = example.com\n",
		"/etc/postfix/master.cf": "# service type private unpriv chroot wakeup maxproc command\n" +
			"smtp      inet  n       -       y       -       -       smtpd\n" +
			"pickup    unix  n       -       y       60      1       pickup\n",
		"/etc/postfix/sasl/smtpd.conf":             "pwcheck_method: saslauthd\nmech_list: PLAIN LOGIN\n",
		"/var/run":                                 "link:/run",
		"/run":                                     "dir:0755:root",
		"/var/spool/postfix":                       "dir:0755:root",
		"/var/spool/postfix/var/run":               "dir:0755:root",
		"/var/spool/postfix/var/run/saslauthd":     "dir:0710:sasl",
		"/var/spool/postfix/var/run/saslauthd/mux": "socket",
		"/var/spool/postfix/var/run/saslauthd/saslauthd.pid": "1\n",
	}
}

// run builds f and runs doctor over it.
func run(t *testing.T, f fx, mod func(*Options)) Report {
	t.Helper()
	o := Options{Root: f.build(t), Probes: fixtureProbes()}
	if mod != nil {
		mod(&o)
	}
	return Run(context.Background(), o)
}

// problems returns the ids of the findings that are not Info.
func problems(r Report) []string {
	var ids []string
	for _, f := range r.Findings {
		if f.Severity != Info {
			ids = append(ids, f.ID)
		}
	}
	return ids
}

func find(r Report, id string) (Finding, bool) {
	for _, f := range r.Findings {
		if f.ID == id {
			return f, true
		}
	}
	return Finding{}, false
}

func dump(r Report) string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

// BuildBase builds the working fixture with the given changes (see fx.with)
// and returns its root: for the command's tests in package doctor_test.
func BuildBase(t *testing.T, kv ...string) string {
	t.Helper()
	return base().with(kv...).build(t)
}

// FixtureGID is the fixture's sasl group.
func FixtureGID() int { return fxGID() }
