package doctor

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/rimap"
)

// TestClean: the working set-up has no finding at all, not even a note.
func TestClean(t *testing.T) {
	r := run(t, base(), nil)
	if !r.OK || len(r.Findings) != 0 {
		t.Fatalf("clean fixture: want no findings, got:\n%s", dump(r))
	}
}

// check runs doctor over f and wants exactly the problem ids want, in
// order; it returns the report for the finding's own assertions.
func check(t *testing.T, f fx, mod func(*Options), want ...string) Report {
	t.Helper()
	r := run(t, f, mod)
	if got := problems(r); !slices.Equal(got, want) {
		t.Fatalf("problems %q, want %q:\n%s", got, want, dump(r))
	}
	if r.OK != (len(want) == 0) {
		t.Fatalf("OK = %v with problems %q", r.OK, want)
	}
	return r
}

// fixHas wants the finding id's fix to hold every one of the lines.
func fixHas(t *testing.T, r Report, id string, lines ...string) {
	t.Helper()
	f, ok := find(r, id)
	if !ok {
		t.Fatalf("no %s finding:\n%s", id, dump(r))
	}
	have := strings.Split(f.Fix, "\n")
	for _, l := range lines {
		if !slices.Contains(have, l) {
			t.Errorf("%s: fix lacks the line %q; fix:\n%s", id, l, f.Fix)
		}
	}
}

// Mistake: smtpd is chrooted and the socket is outside the chroot. The fix
// depends on how the daemon is run.
func TestChrootSocketUnreachable(t *testing.T) {
	// the daemon runs with -m /run/saslauthd, as out of the box
	outside := base().with(
		"/etc/default/saslgate", "MECH=sasldb\nFLAGS=\"-c\"\n",
		"/var/spool/postfix/var/run/saslauthd", "-",
		"/var/spool/postfix/var/run/saslauthd/mux", "-",
		"/var/spool/postfix/var/run/saslauthd/saslauthd.pid", "-",
		"/run/saslauthd", "dir:0710:sasl",
		"/run/saslauthd/mux", "socket",
	)
	const in = "/var/spool/postfix/var/run/saslauthd"
	cases := []struct {
		name string
		f    fx
		mod  func(*Options)
		fix  []string
	}{
		{"saslgate.service without a socket unit", outside, nil, []string{
			"install -d -o " + fxOwner() + " -g sasl -m 0710 " + in,
			`/etc/default/saslgate: FLAGS="-c -m ` + in + `"`,
			"systemctl restart saslgate",
		}},
		{"saslgate.socket", outside.with(
			"/lib/systemd/system/saslgate.socket", "[Socket]\nListenStream=/run/saslauthd/mux\n",
		), nil, []string{
			"/etc/systemd/system/saslgate.socket.d/postfix-chroot.conf: [Socket]",
			"/etc/systemd/system/saslgate.socket.d/postfix-chroot.conf: ListenStream=" + in + "/mux",
			"systemctl restart saslgate.socket saslgate.service",
		}},
		{"Debian's saslauthd defaults", outside.with(
			"/etc/default/saslgate", "-",
			"/etc/default/saslauthd", "MECHANISMS=\"sasldb\"\nOPTIONS=\"-c -m /var/run/saslauthd\"\n",
			"/usr/bin/dpkg-statoverride", "#!/bin/sh\n",
		), nil, []string{
			`/etc/default/saslauthd: OPTIONS="-c -m ` + in + `"`,
			"dpkg-statoverride --add root sasl 710 " + in,
			"service saslauthd restart",
		}},
		{"the daemon's flags given after --", outside, func(o *Options) {
			o.DaemonArgs = []string{"-a", "sasldb", "-cm", "/run/saslauthd"}
		}, []string{
			"install -d -o " + fxOwner() + " -g sasl -m 0710 " + in,
			"saslgate serve -a sasldb -cm " + in,
		}},
		{"a stale socket in the chroot", base().with(
			"/etc/default/saslgate", "MECH=sasldb\nFLAGS=\"-c\"\n",
			"/var/spool/postfix/var/run/saslauthd/mux", "socket:dead",
			"/run/saslauthd", "dir:0710:sasl",
			"/run/saslauthd/mux", "socket",
		), nil, []string{
			`/etc/default/saslgate: FLAGS="-c -m ` + in + `"`,
		}},
		{"the daemon already listens in the chroot, libsasl looks elsewhere", base().with(
			"/etc/postfix/sasl/smtpd.conf", "pwcheck_method: saslauthd\nsaslauthd_path: /run/saslauthd/mux\n",
		), nil, []string{
			"/etc/postfix/sasl/smtpd.conf: saslauthd_path: /var/run/saslauthd/mux",
			"postfix reload",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := check(t, tc.f, tc.mod, IDChrootUnreachable)
			fixHas(t, r, IDChrootUnreachable, tc.fix...)
		})
	}
	// the socket unit's second ListenStream= (in a drop-in) serves the
	// chroot; an enabled socket unit counts whatever runs the daemon
	t.Run("ListenStream in the chroot", func(t *testing.T) {
		unit := outside.with(
			"/lib/systemd/system/saslgate.socket", "[Unit]\nDescription=x\n[Socket]\nListenStream=/run/saslauthd/mux\n",
			"/etc/systemd/system/saslgate.socket.d/postfix-chroot.conf", "[Socket]\nListenStream="+in+"/mux\n",
			in, "dir:0710:sasl",
			in+"/mux", "socket",
		)
		check(t, unit, nil)
		check(t, unit.with("/etc/default/saslgate", "-",
			"/etc/systemd/system/sockets.target.wants/saslgate.socket", "link:/lib/systemd/system/saslgate.socket"),
			func(o *Options) { o.DaemonArgs = []string{"-a", "sasldb"} })
		// not enabled, and the daemon not run by saslgate.service: the
		// unit's sockets are not the daemon's, so the chroot socket is
		// served by nobody doctor knows, but it answers: no finding
		check(t, unit.with("/etc/default/saslgate", "-"), func(o *Options) { o.DaemonArgs = []string{"-a", "sasldb"} })
		// an empty ListenStream= in a drop-in resets the list
		r := check(t, unit.with("/etc/systemd/system/saslgate.socket.d/postfix-chroot.conf", "[Socket]\nListenStream=\nListenStream=/run/other/mux\n"),
			nil, IDSocketMissing)
		if f, _ := find(r, IDSocketMissing); !strings.Contains(f.Summary, "/run/other/mux") || len(r.Findings) != 1 {
			t.Errorf("want /run/other/mux alone reported:\n%s", dump(r))
		}
	})
	// not chrooted: the same socket is fine
	t.Run("smtpd not chrooted", func(t *testing.T) {
		check(t, outside.with("/etc/postfix/master.cf", "smtp inet n - n - - smtpd\n"), nil)
	})
}

// Mistake: saslauthd_path names the directory.
func TestSaslauthdPathDirectory(t *testing.T) {
	for _, p := range []string{"/var/run/saslauthd", "/var/run/saslauthd/"} {
		t.Run(p, func(t *testing.T) {
			f := base().with("/etc/postfix/sasl/smtpd.conf", "pwcheck_method: saslauthd\nsaslauthd_path: "+p+"\n")
			r := check(t, f, nil, IDPathDirectory)
			fixHas(t, r, IDPathDirectory, "/etc/postfix/sasl/smtpd.conf: saslauthd_path: /var/run/saslauthd/mux", "postfix reload")
		})
	}
	// a directory that does not exist, named like one, in the chroot: both
	// the path and the chroot are wrong, and the chroot fix assumes /mux
	t.Run("missing directory", func(t *testing.T) {
		f := base().with("/etc/postfix/sasl/smtpd.conf", "pwcheck_method: saslauthd\nsaslauthd_path: /var/run/sasl\n")
		r := check(t, f, nil, IDPathDirectory, IDChrootUnreachable)
		fixHas(t, r, IDPathDirectory, "/etc/postfix/sasl/smtpd.conf: saslauthd_path: /var/run/sasl/mux")
		fixHas(t, r, IDChrootUnreachable, "/etc/postfix/sasl/smtpd.conf: saslauthd_path: /var/run/saslauthd/mux")
	})
}

// Mistake: the Postfix user is not in the run directory's group.
func TestPostfixNotInSocketGroup(t *testing.T) {
	gid := strconv.Itoa(fxGID())
	notIn := base().with("/etc/group", "root:x:0:\npostfix:x:9998:\nsasl:x:"+gid+":\n")
	r := check(t, notIn, nil, IDNotInGroup)
	fixHas(t, r, IDNotInGroup, "adduser postfix sasl", "postfix reload")
	// without adduser (RHEL), usermod; another instance reloads with -c
	r = check(t, notIn.with("/usr/sbin/adduser", "-", "/srv/pf/main.cf", notIn["/etc/postfix/main.cf"],
		"/srv/pf/master.cf", notIn["/etc/postfix/master.cf"], "/srv/pf/sasl/smtpd.conf", notIn["/etc/postfix/sasl/smtpd.conf"]),
		func(o *Options) { o.PostfixConfig = "/srv/pf" }, IDNotInGroup)
	fixHas(t, r, IDNotInGroup, "usermod -a -G sasl postfix", "postfix -c /srv/pf reload")
	// world-searchable: no group needed
	check(t, notIn.with("/var/spool/postfix/var/run/saslauthd", "dir:0711:sasl"), nil)
	// when the socket is out of reach, the run directory is still checked
	// (whatever puts a socket in the chroot copies its permissions)
	r = check(t, notIn.with("/etc/default/saslgate", "MECH=sasldb\n",
		"/var/spool/postfix/var/run/saslauthd", "-", "/var/spool/postfix/var/run/saslauthd/mux", "-",
		"/var/spool/postfix/var/run/saslauthd/saslauthd.pid", "-",
		"/run/saslauthd", "dir:0710:sasl", "/run/saslauthd/mux", "socket"), nil, IDChrootUnreachable, IDNotInGroup)
	fixHas(t, r, IDNotInGroup, "adduser postfix sasl")
	// a directory only root may enter: no group to join
	r = check(t, notIn.with("/var/spool/postfix/var/run/saslauthd", "dir:0700:sasl"), nil, IDSocketPermission)
	fixHas(t, r, IDSocketPermission, "chmod g+x /var/spool/postfix/var/run/saslauthd", "adduser postfix sasl")
}

// Mistake: the PAM service file is missing, so PAM falls back to "other".
func TestPAMServiceMissing(t *testing.T) {
	pam := base().with(
		"/etc/default/saslgate", "MECH=pam\nFLAGS=\"-m /var/spool/postfix/var/run/saslauthd\"\n",
		"/etc/pam.d/common-auth", "auth required pam_unix.so\n",
		"/etc/pam.d/other", "auth required pam_deny.so\n",
		"/etc/pam.d/smtp", "@include common-auth\n",
	)
	check(t, pam, nil)

	r := check(t, pam.with("/etc/pam.d/smtp", "-"), nil, IDPAMServiceMissing)
	fixHas(t, r, IDPAMServiceMissing, `printf '@include common-auth\n@include common-account\n' > /etc/pam.d/smtp`)
	if f, _ := find(r, IDPAMServiceMissing); f.Severity != Error {
		t.Errorf("other denies: severity %s, want error", f.Severity)
	}
	// "other" that lets logins through: it works, by accident
	r = check(t, pam.with("/etc/pam.d/smtp", "-", "/etc/pam.d/other", "@include common-auth\n"), nil, IDPAMServiceMissing)
	if f, _ := find(r, IDPAMServiceMissing); f.Severity != Warning {
		t.Errorf("other allows: severity %s, want warning", f.Severity)
	}
	// Postfix's smtpd_sasl_service and saslgate's service_map decide the name
	r = check(t, pam.with("/etc/postfix/main.cf", "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_service = submission\n"), nil, IDPAMServiceMissing)
	if f, _ := find(r, IDPAMServiceMissing); !strings.Contains(f.Summary, "/etc/pam.d/submission") {
		t.Errorf("want /etc/pam.d/submission: %s", f.Summary)
	}
	r = check(t, pam.with("/etc/saslgate.conf", "service_map: smtp=mail\n"), nil, IDPAMServiceMissing)
	if f, _ := find(r, IDPAMServiceMissing); !strings.Contains(f.Summary, "/etc/pam.d/mail") || !strings.Contains(f.Detail, `service_map makes PAM service "mail"`) {
		t.Errorf("want the mapped service: %+v", f)
	}
	check(t, pam.with("/etc/saslgate.conf", "service_map: smtp=mail\n", "/etc/pam.d/mail", "@include common-auth\n"), nil)
	// a per-service chain without pam: nothing to check
	check(t, pam.with("/etc/pam.d/smtp", "-", "/etc/saslgate.conf", "service_mech: smtp=sasldb\n"), nil)
}

// Mistake: smtpd_sasl_local_domain appends a realm the back end does not
// match.
func TestLocalDomainRealm(t *testing.T) {
	// sasldb: users under example.com, Postfix appends $myhostname
	r := check(t, base().with("/etc/postfix/main.cf",
		"myhostname = mail.example.org\nsmtpd_sasl_auth_enable = yes\nsmtpd_sasl_local_domain = $myhostname\n"), nil, IDLocalDomainRealm)
	fixHas(t, r, IDLocalDomainRealm, "postconf -e 'smtpd_sasl_local_domain = example.com'", "postfix reload")
	if f, _ := find(r, IDLocalDomainRealm); !strings.Contains(f.Detail, `"mail.example.org"`) || !strings.Contains(f.Detail, `"example.com" (270)`) {
		t.Errorf("detail: %s", f.Detail)
	}
	// users stored under the host name: the fix empties the parameter
	r = check(t, base().with("/etc/hostname", "example.com\n", "/etc/postfix/main.cf",
		"myhostname = mail.example.org\nsmtpd_sasl_auth_enable = yes\nsmtpd_sasl_local_domain = $myhostname\n"), nil, IDLocalDomainRealm)
	fixHas(t, r, IDLocalDomainRealm, "postconf -e 'smtpd_sasl_local_domain ='")
	// saslgate's realm rules are applied before the comparison
	check(t, base().with("/etc/postfix/main.cf",
		"smtpd_sasl_auth_enable = yes\nsmtpd_sasl_local_domain = EXAMPLE.COM\n", "/etc/saslgate.conf", "realm_lowercase: yes\n"), nil)

	// pam with -r: PAM sees user@realm
	pam := base().with(
		"/etc/default/saslgate", "MECH=pam\nFLAGS=\"-r -m /var/spool/postfix/var/run/saslauthd\"\n",
		"/etc/pam.d/smtp", "auth required pam_unix.so\n",
		"/etc/postfix/main.cf", "myhostname = mail.example.org\nsmtpd_sasl_auth_enable = yes\nsmtpd_sasl_local_domain = $myhostname\n",
	)
	r = check(t, pam, nil, IDLocalDomainRealm)
	fixHas(t, r, IDLocalDomainRealm, "postconf -e 'smtpd_sasl_local_domain ='",
		"# or keep the realm and strip it in saslgate: /etc/saslgate.conf: realm_strip: mail.example.org")
	// without -r pam never sees the realm (saslauthd's behaviour)
	check(t, pam.with("/etc/default/saslgate", "MECH=pam\nFLAGS=\"-m /var/spool/postfix/var/run/saslauthd\"\n"), nil)
	// realm_strip takes it off again
	check(t, pam.with("/etc/saslgate.conf", "realm_strip: mail.example.org\n"), nil)
}

// Mistake: the sasldb's users are stored under a realm that is not the
// host name, and Postfix sends none.
func TestSasldbRealm(t *testing.T) {
	noRealm := base().with("/etc/postfix/main.cf", "myhostname = mail.example.org\nsmtpd_sasl_auth_enable = yes\n")
	r := check(t, noRealm, nil, IDSasldbRealm)
	fixHas(t, r, IDSasldbRealm, "postconf -e 'smtpd_sasl_local_domain = example.com'", "postfix reload",
		"# or, in saslgate alone: /etc/saslgate.conf: default_realm: example.com and systemctl reload saslgate")
	if f, _ := find(r, IDSasldbRealm); !strings.Contains(f.Summary, `realm "mail"`) {
		t.Errorf("summary: %s", f.Summary)
	}
	// the host name is the users' realm: fine
	check(t, noRealm.with("/etc/hostname", "example.com\n"), nil)
	// default_realm fills the empty realm
	check(t, noRealm.with("/etc/saslgate.conf", "default_realm: example.com\n"), nil)
	// the live probe's host name wins over /etc/hostname
	check(t, noRealm, func(o *Options) { o.Hostname = func() (string, error) { return "example.com", nil } })
	// the sasldb itself missing
	r = check(t, base().with("/etc/sasldb2", "-"), nil, IDSasldbUnreadable)
	fixHas(t, r, IDSasldbUnreadable, "saslpasswd2 -c -f /etc/sasldb2 -u REALM USER")
}

// Mistake: the rimap server cannot be reached, or its certificate does not
// verify. The probe is the real one, against local listeners.
func TestRimap(t *testing.T) {
	ca, caPEM := newTestCA(t)
	good := imapsServer(t, ca, "127.0.0.1")
	wrongName := imapsServer(t, ca, "imap.example.test")
	other, _ := newTestCA(t)
	untrusted := imapsServer(t, other, "127.0.0.1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	rimapFx := func(conf string) fx {
		return base().with(
			"/etc/default/saslgate", "MECH=rimap\nFLAGS=\"-m /var/spool/postfix/var/run/saslauthd\"\n",
			"/etc/saslgate.conf", conf,
			"/etc/ssl/test-ca.pem", caPEM,
		)
	}
	withRimap := func(o *Options) {
		o.Rimap = func(ctx context.Context, opts mechs.Options) ([]rimap.ProbeResult, error) {
			// the CA file is a path inside the fixture
			if p := opts.Values[rimap.KeyCAFile]; p != "" {
				opts.Values[rimap.KeyCAFile] = o.Root + p
			}
			return rimap.Probe(ctx, opts)
		}
	}
	tlsConf := func(port int) string {
		return "mech_option: 127.0.0.1/" + strconv.Itoa(port) + "\nrimap_tls: implicit\nrimap_ca_file: /etc/ssl/test-ca.pem\n" +
			"rimap_connect_timeout: 2s\nrimap_command_timeout: 2s\n"
	}
	check(t, rimapFx(tlsConf(good)), withRimap)

	r := check(t, rimapFx("mech_option: 127.0.0.1/"+strconv.Itoa(closed)+"\nrimap_connect_timeout: 2s\n"), withRimap, IDRimapUnreachable)
	if f, _ := find(r, IDRimapUnreachable); !strings.Contains(f.Detail, "connect") {
		t.Errorf("detail: %s", f.Detail)
	}
	r = check(t, rimapFx(tlsConf(untrusted)), withRimap, IDRimapCertificate)
	fixHas(t, r, IDRimapCertificate, "/etc/saslgate.conf: rimap_ca_file: /path/to/the-ca.pem")
	r = check(t, rimapFx(tlsConf(wrongName)), withRimap, IDRimapCertificate)
	fixHas(t, r, IDRimapCertificate, "/etc/saslgate.conf: rimap_server_name: imap.example.test")
	// under --root nothing is contacted: a note, no problem
	r = check(t, rimapFx(tlsConf(closed)), nil)
	if f, ok := find(r, IDSkipped); !ok || !strings.Contains(f.Summary, "rimap") {
		t.Errorf("want a note that rimap was skipped:\n%s", dump(r))
	}
}

// The other classic ones.
func TestOtherMistakes(t *testing.T) {
	cases := []struct {
		name string
		f    fx
		mod  func(*Options)
		want []string
		fix  []string
	}{
		{"no socket: daemon not started", base().with("/var/spool/postfix/var/run/saslauthd/mux", "-"), nil,
			[]string{IDSocketMissing, IDChrootUnreachable}, []string{"systemctl enable --now saslgate"}},
		{"stale socket: daemon died", base().with("/var/spool/postfix/var/run/saslauthd/mux", "socket:dead"), nil,
			[]string{IDNotRunning, IDChrootUnreachable}, []string{"systemctl enable --now saslgate"}},
		{"bookworm's init script needs START=yes", base().with(
			"/etc/default/saslgate", "-",
			"/etc/default/saslauthd", "MECHANISMS=\"sasldb\"\nOPTIONS=\"-c -m /var/spool/postfix/var/run/saslauthd\"\n",
			"/etc/init.d/saslauthd", "#!/bin/sh\n",
			"/var/spool/postfix/var/run/saslauthd/mux", "-"), nil,
			[]string{IDSocketMissing, IDChrootUnreachable}, []string{"/etc/default/saslauthd: START=yes", "service saslauthd restart"}},
		{"pwcheck_method auxprop", base().with("/etc/postfix/sasl/smtpd.conf", "pwcheck_method: auxprop\n"), nil,
			[]string{IDPwcheckMethod}, []string{"/etc/postfix/sasl/smtpd.conf: pwcheck_method: saslauthd"}},
		{"no pwcheck_method", base().with("/etc/postfix/sasl/smtpd.conf", "mech_list: PLAIN LOGIN\n"), nil,
			[]string{IDPwcheckMethod}, nil},
		{"mech_list with CRAM-MD5", base().with("/etc/postfix/sasl/smtpd.conf", "pwcheck_method: saslauthd\nmech_list: PLAIN LOGIN CRAM-MD5 DIGEST-MD5\n"), nil,
			[]string{IDMechListSecret}, []string{"/etc/postfix/sasl/smtpd.conf: mech_list: PLAIN LOGIN"}},
		{"no smtpd.conf anywhere", base().with("/etc/postfix/sasl/smtpd.conf", "-"), nil,
			[]string{IDSmtpdConfMissing}, []string{"/etc/postfix/sasl/smtpd.conf: pwcheck_method: saslauthd"}},
		{"smtpd.conf in /etc/sasl2 (RHEL)", base().with("/etc/postfix/sasl/smtpd.conf", "-", "/etc/sasl2/smtpd.conf", "pwcheck_method: saslauthd\n"), nil,
			nil, nil},
		{"smtpd_sasl_path names another file", base().with("/etc/postfix/main.cf",
			"smtpd_sasl_auth_enable = yes\nsmtpd_sasl_local_domain = example.com\nsmtpd_sasl_path = smtpd-auth\n"), nil,
			[]string{IDSmtpdConfMissing}, []string{"/etc/postfix/sasl/smtpd-auth.conf: pwcheck_method: saslauthd"}},
		{"not chrooted, wrong saslauthd_path", base().with(
			"/etc/postfix/master.cf", "smtp inet n - n - - smtpd\n",
			"/etc/postfix/sasl/smtpd.conf", "pwcheck_method: saslauthd\nsaslauthd_path: /run/saslauthd/mux\n"), nil,
			[]string{IDPathMismatch}, []string{"/etc/postfix/sasl/smtpd.conf: saslauthd_path: /var/spool/postfix/var/run/saslauthd/mux"}},
		{"a bad saslgate.conf", base().with("/etc/saslgate.conf", "realm_strp: all\n"), nil,
			[]string{IDConfigInvalid}, []string{"saslgate serve --check --config /etc/saslgate.conf"}},
		{"SASL only on submission, via -o", base().with("/etc/postfix/main.cf", "smtpd_sasl_local_domain = example.com\n",
			"/etc/postfix/master.cf", "smtp inet n - y - - smtpd\nsubmission inet n - y - - smtpd\n  -o smtpd_sasl_auth_enable=yes\n  -o smtpd_sasl_local_domain=$mydomain\n"), nil,
			[]string{IDLocalDomainRealm}, []string{"postconf -e 'smtpd_sasl_local_domain = example.com'"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := check(t, tc.f, tc.mod, tc.want...)
			if len(tc.want) > 0 {
				fixHas(t, r, tc.want[0], tc.fix...)
			}
		})
	}
	// no Postfix at all, and Postfix without SASL: notes only
	r := check(t, base().with("/etc/postfix/main.cf", "-"), nil)
	if _, ok := find(r, IDPostfixMissing); !ok {
		t.Errorf("want %s:\n%s", IDPostfixMissing, dump(r))
	}
	r = check(t, base().with("/etc/postfix/main.cf", "myhostname = x.example\n"), nil)
	if _, ok := find(r, IDSASLDisabled); !ok {
		t.Errorf("want %s:\n%s", IDSASLDisabled, dump(r))
	}
}

// Postconf, when there, replaces reading main.cf.
func TestPostconfProbe(t *testing.T) {
	var asked []string
	pc := func(_ context.Context, dir string, names []string) ([]string, error) {
		asked = append(asked, dir)
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = map[string]string{"queue_directory": "/var/spool/postfix", "mail_owner": "postfix",
				"smtpd_sasl_auth_enable": "yes", "smtpd_sasl_type": "cyrus", "smtpd_sasl_path": "smtpd",
				"smtpd_sasl_service": "smtp", "smtpd_sasl_local_domain": "wrong.example", "myhostname": "mail.example.org"}[n]
		}
		return out, nil
	}
	r := check(t, base(), func(o *Options) { o.Postconf = pc }, IDLocalDomainRealm)
	if len(asked) == 0 || asked[0] != "/etc/postfix" {
		t.Errorf("postconf asked about %q", asked)
	}
	if f, _ := find(r, IDLocalDomainRealm); !strings.Contains(f.Detail, "wrong.example") {
		t.Errorf("detail: %s", f.Detail)
	}
	// a failing postconf falls back to main.cf
	check(t, base(), func(o *Options) {
		o.Postconf = func(context.Context, string, []string) ([]string, error) { return nil, errors.New("no postconf") }
	})
}

// Paths under --root follow the fixture's own symbolic links, absolute
// ones included, and never leave the root.
func TestResolve(t *testing.T) {
	root := fx{
		"/run/saslauthd":             "dir:0755:root",
		"/var/run":                   "link:/run",
		"/var/spool/postfix/var/run": "link:../../../../run", // climbs out of the chroot
		"/loop":                      "link:/loop",
		"/up":                        "link:../../../..",
	}.build(t)
	r := rootFS{root: root}
	cases := []struct{ base, p, want string }{
		{"/", "/var/run/saslauthd/mux", "/run/saslauthd/mux"},
		{"/", "/var/spool/postfix/var/run/saslauthd", "/run/saslauthd"},
		{"/var/spool/postfix", "/var/run/saslauthd/mux", "/var/spool/postfix/run/saslauthd/mux"},
		{"/", "/up/run", "/run"},
		{"/", "/missing/x/../y", "/missing/y"},
	}
	for _, tc := range cases {
		got, err := r.resolve(tc.base, tc.p)
		if err != nil || got != tc.want {
			t.Errorf("resolve(%q, %q) = %q, %v; want %q", tc.base, tc.p, got, err, tc.want)
		}
	}
	if _, err := r.resolve("/", "/loop/x"); !errors.Is(err, errLoop) {
		t.Errorf("a link loop: err = %v, want errLoop", err)
	}
}

func TestShellWords(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{`-c -m /var/run/saslauthd`, []string{"-c", "-m", "/var/run/saslauthd"}},
		{`"-c -m /run/x" 'a b' c\ d`, []string{"-c -m /run/x", "a b", "c d"}},
		{`-a pam # comment`, []string{"-a", "pam"}},
		{`x"y"z "" '\'`, []string{"xyz", "", `\`}},
	}
	for _, tc := range cases {
		if got := shellWords(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("shellWords(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := shellWords(shellJoin(tc.want)); !slices.Equal(got, tc.want) {
			t.Errorf("shellJoin(%q) does not split back: %q", tc.want, got)
		}
	}
}

func TestWithRunDir(t *testing.T) {
	cases := []struct{ in, want []string }{
		{[]string{"-a", "pam", "-m", "/a"}, []string{"-a", "pam", "-m", "/b"}},
		{[]string{"-cm", "/a"}, []string{"-cm", "/b"}},
		{[]string{"-m/a", "-c"}, []string{"-m/b", "-c"}},
		{[]string{"--run-dir=/a"}, []string{"--run-dir=/b"}},
		{[]string{"-a", "m", "-O", "m"}, []string{"-a", "m", "-O", "m", "-m", "/b"}},
		{[]string{"-am"}, []string{"-am", "-m", "/b"}}, // -a's value is "m"
		{nil, []string{"-m", "/b"}},
	}
	for _, tc := range cases {
		if got := withRunDir(tc.in, "/b"); !slices.Equal(got, tc.want) {
			t.Errorf("withRunDir(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"myhostname": "mail.example.org", "empty": ""}
	get := func(n string) string { return vars[n] }
	cases := map[string]string{
		"$myhostname":                 "mail.example.org",
		"${myhostname}.x $(empty)y":   "mail.example.org.x y",
		"${myhostname?set}${empty?x}": "set",
		"${empty:unset}":              "unset",
		"a$$b $":                      "a$b $",
	}
	for in, want := range cases {
		if got := expand(in, get); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// ---- a TLS IMAP greeter for the rimap probe ----

func newTestCA(t *testing.T) (*testCA, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "doctor test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}, pemBlock(der)
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// imapsServer greets implicit-TLS IMAP clients with a certificate for name
// and answers a LOGOUT; it returns the port.
func imapsServer(t *testing.T, ca *testCA, name string) int {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(c, "* OK IMAP ready\r\n"); err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func pemBlock(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// Bounds: a config file over maxFileSize is not loaded, and a parameter
// that refers to itself does not expand forever.
func TestBounds(t *testing.T) {
	root := fx{"/etc/big": strings.Repeat("x", maxFileSize+1), "/etc/ok": strings.Repeat("x", maxFileSize)}.build(t)
	r := rootFS{root: root}
	if _, err := r.readFile("/etc/big"); err == nil {
		t.Error("a file over maxFileSize was read")
	}
	if b, err := r.readFile("/etc/ok"); err != nil || len(b) != maxFileSize {
		t.Errorf("a file of maxFileSize: %d bytes, %v", len(b), err)
	}

	done := make(chan Report, 1)
	f := base().with("/etc/postfix/main.cf", "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_local_domain = x$smtpd_sasl_local_domain\nmyhostname = $mydomain\nmydomain = $myhostname\n")
	o := Options{Root: f.build(t), Probes: fixtureProbes()}
	go func() { done <- Run(context.Background(), o) }()
	select {
	case r := <-done:
		if _, ok := find(r, IDLocalDomainRealm); !ok {
			t.Errorf("want the (odd) realm reported:\n%s", dump(r))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a self-referencing parameter: expansion did not end")
	}
}
