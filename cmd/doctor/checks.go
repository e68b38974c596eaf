package doctor

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/saslgate/saslgate/daemon/rewrite"
	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/rimap"
	"github.com/saslgate/saslgate/mechs/sasldb"
)

// libsaslDefaultPath is where libsasl looks for saslauthd's socket when
// saslauthd_path is not set: Debian's PATH_SASLAUTHD_RUNDIR "/mux".
const libsaslDefaultPath = "/var/run/saslauthd/mux"

// Mechanisms that need no realm and compare the login as a system user:
// a realm joined to the login (-r) makes them look up user@realm.
var bareLoginMechs = []string{"pam", "shadow", "getpwent", "rimap"}

// sharedSecretMechs need the plaintext password on the server's side, which
// saslauthd cannot give: with pwcheck_method saslauthd they always fail.
var sharedSecretMechs = []string{"CRAM-MD5", "DIGEST-MD5", "NTLM", "OTP", "SRP", "PASSDSS-3DES-1"}

type sockState int

const (
	sockMissing sockState = iota
	sockNotSocket
	sockDead
	sockAlive
)

func (s sockState) String() string {
	switch s {
	case sockNotSocket:
		return "is not a socket"
	case sockDead:
		return "is a socket nobody answers on (a stale one: the daemon is not running)"
	case sockAlive:
		return "answers"
	}
	return "does not exist"
}

type checker struct {
	ctx  context.Context
	o    Options
	r    rootFS
	pr   Probes
	exe  string
	d    *daemonSetup
	pf   *postfixSetup
	acct Accounts

	host    string
	hostErr error

	findings []Finding
	seen     map[string]bool
	socks    map[string]sockState // the daemon's sockets, by logical path

	sasldbRead bool
	sasldbErr  error
	sasldbUser []sasldb.Entry
	skipped    map[string]bool
}

func newChecker(ctx context.Context, o Options) *checker {
	c := &checker{ctx: ctx, o: o, r: rootFS{root: o.root()}, pr: o.Probes, exe: cmp.Or(o.Exe, "saslgate"),
		seen: map[string]bool{}, socks: map[string]sockState{}, skipped: map[string]bool{}}
	if c.pr.Hostname != nil {
		c.host, c.hostErr = c.pr.Hostname()
	} else {
		c.host, c.hostErr = c.r.hostname()
	}
	c.acct = c.pr.Accounts
	if c.acct == nil {
		a, err := readAccounts(c.r)
		if err != nil {
			a = &fileAccounts{users: map[string]Account{}, names: map[int]string{}, groups: map[int]string{}, gids: map[string]int{}}
		}
		c.acct = a
	}
	return c
}

func (c *checker) add(f Finding) {
	key := f.ID + "\x00" + f.Summary
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	c.findings = append(c.findings, f)
}

func (c *checker) skip(what string) {
	if c.skipped[what] {
		return
	}
	c.skipped[what] = true
	c.add(Finding{ID: IDSkipped, Severity: Info, Summary: what})
}

func lines(l ...string) string {
	var out []string
	for _, s := range l {
		if s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, "\n")
}

func edit(file, line string) string { return file + ": " + line }

func (c *checker) has(cmd string) bool {
	if c.pr.LookPath != nil {
		return c.pr.LookPath(cmd)
	}
	return c.r.lookPath(cmd)
}

func (c *checker) run() {
	c.d = readDaemon(c.r, c.o.DaemonArgs)
	c.checkDaemon()
	c.pf = readPostfix(c.ctx, c.r, cmp.Or(c.o.PostfixConfig, DefaultPostfixConfig), c.pr, c.host)
	c.checkPostfix()
	c.checkSasldbFile()
	c.checkRimap()
}

// ---- the daemon ----

func (c *checker) checkDaemon() {
	d := c.d
	if d.cfgErr != nil {
		c.add(Finding{ID: IDConfigInvalid, Severity: Error,
			Summary: "saslgate's configuration does not load: the daemon refuses to start (or to reload)",
			Detail:  fmt.Sprintf("%v (from %s)", d.cfgErr, d.describe()),
			Fix:     lines(c.exe+" serve --check --config "+shellQuote(d.cfgPath), "# then correct the line it names"),
		})
	}
	for _, s := range d.sockets {
		st := c.socketState("/", s)
		c.socks[s] = st
		if st == sockAlive {
			continue
		}
		id := IDSocketMissing
		if st == sockDead {
			id = IDNotRunning
		}
		c.add(Finding{ID: id, Severity: Error,
			Summary: fmt.Sprintf("the daemon's socket %s %s: every login fails with \"cannot connect to saslauthd server\"", s, st),
			Detail:  fmt.Sprintf("the daemon's run directory is %s (-m), from %s", d.runDir, d.describe()),
			Fix:     c.startFix(),
		})
	}
}

// socketState stats a logical socket path seen from base, and connects to
// it when the probe is there.
func (c *checker) socketState(base, p string) sockState {
	real, fi, err := c.r.stat(base, p)
	switch {
	case err != nil:
		return sockMissing
	case fi.Mode()&fs.ModeSocket == 0:
		return sockNotSocket
	case c.pr.Dial == nil:
		c.skip("sockets were not connected to (only their files were checked): --root")
		return sockAlive
	case c.pr.Dial(c.ctx, c.r.host(real)) != nil:
		return sockDead
	}
	return sockAlive
}

// startFix is how to start the daemon, by where its command line comes
// from.
func (c *checker) startFix() string {
	d := c.d
	switch d.src {
	case srcArgs:
		return c.exe + " serve " + shellJoin(d.args)
	case srcSaslgate:
		return "systemctl enable --now saslgate"
	case srcSaslauthd:
		start := ""
		if c.r.exists("/etc/init.d/saslauthd") && d.vars["START"] != "yes" {
			// bookworm's init script does nothing without it (spec §3.8)
			start = edit(d.file, "START=yes")
		}
		return lines(start, "service saslauthd restart")
	case srcSysconfig:
		return "systemctl enable --now saslauthd"
	}
	return lines("# set MECH (and FLAGS) in "+DefaultsSaslgate+", then:", "systemctl enable --now saslgate")
}

// restartFix is how to make the daemon take a changed config file.
func (c *checker) restartFix() string {
	switch c.d.src {
	case srcSaslgate, srcNone:
		return "systemctl reload saslgate"
	case srcSaslauthd:
		return "service saslauthd restart"
	case srcSysconfig:
		return "systemctl restart saslauthd"
	}
	return "kill -HUP $(cat " + shellQuote(path.Join(c.d.runDir, "saslauthd.pid")) + ")"
}

// ---- Postfix ----

func (c *checker) postfixCmd(args ...string) string {
	if dir := c.pf.configDir; dir != DefaultPostfixConfig {
		args = append([]string{"-c", shellQuote(dir)}, args...)
	}
	return strings.Join(args, " ")
}

func (c *checker) reloadPostfix() string { return "postfix " + c.postfixCmd("reload") }

func (c *checker) postconfSet(name, value string) string {
	return "postconf " + c.postfixCmd("-e", shellQuote(strings.TrimSpace(name+" = "+value)))
}

func (c *checker) checkPostfix() {
	pf := c.pf
	if !pf.present {
		c.add(Finding{ID: IDPostfixMissing, Severity: Info,
			Summary: "no Postfix configuration in " + pf.configDir + " (no main.cf): the Postfix checks were skipped",
			Detail:  "for another instance: saslgate doctor --postfix-config DIR"})
		return
	}
	if pf.masterErr != nil {
		c.add(Finding{ID: IDPostfixUnreadable, Severity: Warning,
			Summary: "Postfix's master.cf cannot be read: which smtpd services run chrooted is unknown",
			Detail:  pf.masterErr.Error()})
		return
	}
	var svcs []smtpdService
	for _, s := range pf.services {
		if isYes(s.param(pf, "smtpd_sasl_auth_enable")) && strings.EqualFold(s.param(pf, "smtpd_sasl_type"), "cyrus") {
			svcs = append(svcs, s)
		}
	}
	if len(svcs) == 0 {
		c.add(Finding{ID: IDSASLDisabled, Severity: Info,
			Summary: "no smtpd service in " + path.Join(pf.configDir, "master.cf") + " has Cyrus SASL on (smtpd_sasl_auth_enable = yes, smtpd_sasl_type = cyrus): the Postfix checks were skipped"})
		return
	}
	for _, s := range svcs {
		conf := readSaslConf(c.r, pf, s.param(pf, "cyrus_sasl_config_path"), cmp.Or(s.param(pf, "smtpd_sasl_path"), "smtpd"))
		if !c.checkSaslConf(s, &conf) {
			continue
		}
		c.checkSocketPath(s, conf)
		c.checkPAM(s)
		c.checkRealm(s)
	}
}

// where names a master.cf service for a finding's detail.
func (c *checker) where(s smtpdService) string {
	return fmt.Sprintf("the %q smtpd service (%s line %d)", s.name, path.Join(c.pf.configDir, "master.cf"), s.line)
}

// checkSaslConf checks the libsasl application file; it reports whether
// the socket checks apply (pwcheck_method is, or once fixed will be,
// saslauthd).
func (c *checker) checkSaslConf(s smtpdService, conf *saslConf) bool {
	if conf.path == "" {
		file := conf.searched[0]
		c.add(Finding{ID: IDSmtpdConfMissing, Severity: Error,
			Summary: fmt.Sprintf("libsasl finds no %s.conf: smtpd uses pwcheck_method auxprop and never asks saslgate", conf.app),
			Detail:  fmt.Sprintf("%s has smtpd_sasl_path = %s; looked for %s", c.where(s), conf.app, strings.Join(conf.searched, ", ")),
			Fix: lines(edit(file, "pwcheck_method: saslauthd"), edit(file, "mech_list: PLAIN LOGIN"),
				c.reloadPostfix()),
		})
		conf.path = file
		return true
	}
	pw := strings.Fields(conf.values["pwcheck_method"])
	if !slices.Contains(pw, "saslauthd") {
		saw := "is not set (libsasl's default is auxprop)"
		if len(pw) > 0 {
			saw = "is " + strings.Join(pw, " ")
		}
		c.add(Finding{ID: IDPwcheckMethod, Severity: Error,
			Summary: fmt.Sprintf("%s: pwcheck_method %s, so smtpd never asks saslgate", conf.path, saw),
			Detail:  fmt.Sprintf("read by %s", c.where(s)),
			Fix:     lines(edit(conf.path, "pwcheck_method: saslauthd"), c.reloadPostfix()),
		})
	}
	if ml := strings.Fields(conf.values["mech_list"]); len(ml) > 0 {
		var keep, bad []string
		for _, m := range ml {
			u := strings.ToUpper(m)
			if slices.Contains(sharedSecretMechs, u) || strings.HasPrefix(u, "SCRAM-") {
				bad = append(bad, m)
			} else {
				keep = append(keep, m)
			}
		}
		if len(bad) > 0 {
			if len(keep) == 0 {
				keep = []string{"PLAIN", "LOGIN"}
			}
			c.add(Finding{ID: IDMechListSecret, Severity: Error,
				Summary: fmt.Sprintf("%s offers %s with pwcheck_method saslauthd: those need the plaintext password on the server, which saslauthd cannot give, so clients that pick them always fail", conf.path, strings.Join(bad, " ")),
				Detail:  fmt.Sprintf("mech_list: %s", conf.values["mech_list"]),
				Fix:     lines(edit(conf.path, "mech_list: "+strings.Join(keep, " ")), c.reloadPostfix()),
			})
		}
	}
	return true
}

// checkSocketPath checks that libsasl in smtpd reaches a live daemon
// socket, and that the Postfix user may use it.
func (c *checker) checkSocketPath(s smtpdService, conf saslConf) {
	pf := c.pf
	p, set := conf.values["saslauthd_path"], true
	if p == "" {
		p, set = libsaslDefaultPath, false
	}
	if !path.IsAbs(p) {
		return
	}
	base, chroot := "/", ""
	if s.chroot {
		chroot = path.Clean(pf.get("queue_directory"))
		base = chroot
	}
	seenAs := func(p string) string {
		if chroot == "" {
			return p
		}
		return path.Join(chroot, p) + " on this host"
	}
	if set {
		_, fi, err := c.r.stat(base, p)
		if (err == nil && fi.IsDir()) || (isNotExist(err) && path.Base(p) != "mux") {
			fixed := path.Join(p, "mux")
			c.add(Finding{ID: IDPathDirectory, Severity: Error,
				Summary: fmt.Sprintf("%s: saslauthd_path is %s, a directory: libsasl connects to it as given and fails; it must name the socket, %s", conf.path, p, fixed),
				Detail:  fmt.Sprintf("read by %s; the path is %s", c.where(s), seenAs(p)),
				Fix:     lines(edit(conf.path, "saslauthd_path: "+fixed), c.reloadPostfix()),
			})
			p = fixed // what follows assumes the fix
		}
	}
	st := c.socketState(base, p)
	if st == sockAlive {
		c.checkAccess(s, base, p)
		return
	}
	// Which daemon socket could libsasl use instead?
	alive := ""
	for _, ds := range c.d.sockets {
		if c.socks[ds] != sockAlive {
			continue
		}
		if chroot == "" {
			alive = ds
			break
		}
		realC, err1 := c.r.resolve("/", chroot)
		realS, err2 := c.r.resolve("/", ds)
		if err1 == nil && err2 == nil && strings.HasPrefix(realS, realC+"/") {
			alive = "/" + strings.TrimPrefix(realS, realC+"/")
			break
		}
	}
	src := "libsasl's default"
	if set {
		src = "saslauthd_path in " + conf.path
	}
	at := ""
	if chroot != "" {
		at = ", inside the chroot: " + path.Join(chroot, p) + " on this host,"
	}
	saw := fmt.Sprintf("libsasl connects to %s (%s)%s which %s; the daemon listens on %s",
		p, src, at, st, strings.Join(c.d.sockets, " and "))
	if !s.chroot {
		if alive == "" && slices.Contains(c.d.sockets, p) {
			return // the daemon is down: its own finding says so
		}
		target := alive
		if target == "" {
			target = c.d.sockets[0]
		}
		c.add(Finding{ID: IDPathMismatch, Severity: Error,
			Summary: fmt.Sprintf("smtpd looks for the socket at %s, where there is none: \"cannot connect to saslauthd server\"", p),
			Detail:  saw + "; from " + c.where(s),
			Fix:     lines(edit(conf.path, "saslauthd_path: "+target), c.reloadPostfix()),
		})
		if alive != "" {
			c.checkAccess(s, "/", alive)
		}
		return
	}
	f := Finding{ID: IDChrootUnreachable, Severity: Error,
		Summary: fmt.Sprintf("smtpd runs chrooted in %s and cannot reach saslgate's socket: \"cannot connect to saslauthd server\"", chroot),
		Detail:  fmt.Sprintf("%s has chroot = y, so %s", c.where(s), saw),
	}
	if alive != "" {
		f.Fix = lines(edit(conf.path, "saslauthd_path: "+alive), c.reloadPostfix())
		c.add(f)
		c.checkAccess(s, base, alive)
		return
	}
	dir := path.Join(chroot, path.Dir(p))
	f.Fix = c.chrootFix(s, dir)
	c.add(f)
	// Whatever puts a socket there copies the run directory's permissions.
	c.checkAccessDir(s, c.d.runDir)
}

// chrootFix puts a daemon socket in dir (inside the chroot), the way the
// daemon's set-up is run.
func (c *checker) chrootFix(s smtpdService, dir string) string {
	d := c.d
	mkdir := "install -d -m 0755 " + shellQuote(dir)
	if _, fi, err := c.r.stat("/", d.runDir); err == nil && fi.IsDir() {
		uid, gid, perm := owner(fi)
		mkdir = fmt.Sprintf("install -d -o %s -g %s -m %04o %s", c.userName(uid), shellQuote(c.acct.GroupName(gid)), perm, shellQuote(dir))
	}
	alt := []string{
		"# or: mount --bind " + shellQuote(d.runDir) + " " + shellQuote(dir) + "   (undone by a reboot)",
		fmt.Sprintf("# or: run smtpd unchrooted: column 5 of the %q line of %s set to n", s.name, path.Join(c.pf.configDir, "master.cf")),
	}
	var fix []string
	switch d.src {
	case srcSaslgate:
		if d.unit != "" {
			drop := "/etc/systemd/system/saslgate.socket.d/postfix-chroot.conf"
			fix = []string{mkdir, edit(drop, "[Socket]"), edit(drop, "ListenStream="+path.Join(dir, "mux")),
				"systemctl daemon-reload", "systemctl restart saslgate.socket saslgate.service"}
		} else {
			flags := withRunDir(shellWords(d.vars["FLAGS"]), dir)
			fix = []string{mkdir, edit(d.file, "FLAGS="+strconv.Quote(shellJoin(flags))), "systemctl restart saslgate"}
		}
	case srcSaslauthd:
		opts := shellWords(cmp.Or(d.vars["OPTIONS"], "-c -m /var/run/saslauthd"))
		fix = []string{edit(d.file, "OPTIONS="+strconv.Quote(shellJoin(withRunDir(opts, dir))))}
		if c.has("dpkg-statoverride") {
			fix = append(fix, "dpkg-statoverride --add root sasl 710 "+shellQuote(dir))
		} else {
			fix = append(fix, mkdir)
		}
		fix = append(fix, "service saslauthd restart")
	case srcSysconfig:
		fix = []string{edit(d.file, "SOCKETDIR="+dir), "systemctl restart saslauthd"}
	default:
		// a second daemon with the same flags, its socket in the chroot
		fix = []string{mkdir, c.exe + " serve " + shellJoin(withRunDir(d.args, dir))}
	}
	return lines(append(fix, alt...)...)
}

// checkAccess checks that mail_owner can search every directory from base
// down to the socket p (seen from base) and write to the socket.
func (c *checker) checkAccess(s smtpdService, base, p string) {
	acct, ok := c.mailOwner()
	if !ok {
		return
	}
	real, err := c.r.resolve(base, p)
	if err != nil {
		return
	}
	dirs := []string{base}
	rel := strings.TrimPrefix(strings.TrimPrefix(real, path.Clean(base)), "/")
	if parts := strings.Split(path.Dir(rel), "/"); path.Dir(rel) != "." {
		cur := base
		for _, part := range parts {
			cur = path.Join(cur, part)
			dirs = append(dirs, cur)
		}
	}
	for _, dir := range dirs {
		if !c.accessOK(s, acct, dir, 1, "search (x)") {
			return
		}
	}
	c.accessOK(s, acct, real, 2, "write to (w)")
}

// checkAccessDir checks the daemon's run directory and its socket alone.
func (c *checker) checkAccessDir(s smtpdService, dir string) {
	acct, ok := c.mailOwner()
	if !ok {
		return
	}
	if c.accessOK(s, acct, dir, 1, "search (x)") {
		if _, _, err := c.r.stat("/", path.Join(dir, "mux")); err == nil {
			c.accessOK(s, acct, path.Join(dir, "mux"), 2, "write to (w)")
		}
	}
}

func (c *checker) mailOwner() (Account, bool) {
	name := cmp.Or(c.pf.get("mail_owner"), "postfix")
	acct, err := c.acct.User(name)
	if err != nil {
		c.skip(fmt.Sprintf("mail_owner %s is not a known user: the socket permissions were not checked", name))
		return Account{}, false
	}
	return acct, true
}

// accessOK checks one file; on a refusal it adds the finding and returns
// false.
func (c *checker) accessOK(s smtpdService, acct Account, p string, want fs.FileMode, verb string) bool {
	_, fi, err := c.r.stat("/", p)
	if err != nil {
		return true // missing: another finding covers it
	}
	uid, gid, perm := owner(fi)
	if uid < 0 || access(acct, uid, gid, perm, want) {
		return true
	}
	gname := c.acct.GroupName(gid)
	addUser := func(group string) string {
		if c.has("adduser") {
			return "adduser " + shellQuote(acct.Name) + " " + shellQuote(group)
		}
		return "usermod -a -G " + shellQuote(group) + " " + shellQuote(acct.Name)
	}
	saw := fmt.Sprintf("%s is %s %s:%s %04o; %s (uid %d, groups %s) may not %s it", p, kind(fi), c.userName(uid), gname, perm,
		acct.Name, acct.UID, c.groupNames(acct.Groups), verb)
	if gid != 0 && perm>>3&want == want {
		c.add(Finding{ID: IDNotInGroup, Severity: Error,
			Summary: fmt.Sprintf("the Postfix user %s is not in group %s, which alone may %s %s: \"cannot connect to saslauthd server: Permission denied\"", acct.Name, gname, verb, p),
			Detail:  saw + "; smtpd runs as mail_owner, " + c.where(s),
			Fix:     lines(addUser(gname), c.reloadPostfix()),
		})
		return false
	}
	group := "sasl"
	mk := ""
	if _, ok := c.acct.GroupID(group); !ok {
		mk = "groupadd --system " + group
	}
	bit := map[fs.FileMode]string{1: "g+x", 2: "g+w"}[want]
	c.add(Finding{ID: IDSocketPermission, Severity: Error,
		Summary: fmt.Sprintf("the Postfix user %s may not %s %s: \"cannot connect to saslauthd server: Permission denied\"", acct.Name, verb, p),
		Detail:  saw + "; smtpd runs as mail_owner, " + c.where(s),
		Fix:     lines(mk, "chgrp "+group+" "+shellQuote(p), "chmod "+bit+" "+shellQuote(p), addUser(group), c.reloadPostfix()),
	})
	return false
}

func kind(fi fs.FileInfo) string {
	switch {
	case fi.IsDir():
		return "a directory"
	case fi.Mode()&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a file"
}

func (c *checker) userName(uid int) string { return c.acct.UserName(uid) }

func (c *checker) groupNames(gids []int) string {
	names := make([]string, len(gids))
	for i, g := range gids {
		names[i] = c.acct.GroupName(g)
	}
	return strings.Join(names, ",")
}

// request is what the daemon makes of a bare login from service s: the
// rewrite rules applied, the chain chosen.
func (c *checker) request(s smtpdService) (realmSent string, res rewrite.Result) {
	realmSent = s.param(c.pf, "smtpd_sasl_local_domain")
	res, _ = c.d.cfg.Rules().Apply(mechs.Request{Login: "user", Realm: realmSent, Service: cmp.Or(s.param(c.pf, "smtpd_sasl_service"), "smtp")})
	return realmSent, res
}

// checkPAM: the PAM service the daemon opens for Postfix's service must
// have its own file, or PAM quietly uses "other".
func (c *checker) checkPAM(s smtpdService) {
	_, res := c.request(s)
	if !slices.Contains(rewrite.SplitChain(res.Chain), "pam") {
		return
	}
	sent := cmp.Or(s.param(c.pf, "smtpd_sasl_service"), "smtp")
	svc := res.Request.Service
	if svc != "" && !strings.Contains(svc, "/") &&
		(c.r.exists("/etc/pam.d/"+svc) || c.r.exists("/usr/lib/pam.d/"+svc) || !c.r.exists("/etc/pam.d") && c.pamConfHas(svc)) {
		return
	}
	mapped := ""
	if svc != sent {
		mapped = fmt.Sprintf(", which saslgate's service_map makes PAM service %q", svc)
	}
	sev, other := Warning, "PAM silently uses /etc/pam.d/other instead, which allows what it allows by accident"
	ob, err := c.r.readFile("/etc/pam.d/other")
	if err != nil || denies(string(ob)) {
		sev, other = Error, "PAM silently uses /etc/pam.d/other instead, which denies every login"
	}
	file := "/etc/pam.d/" + cmp.Or(svc, sent)
	var stack string
	switch {
	case c.r.exists("/etc/pam.d/common-auth"):
		stack = `printf '@include common-auth\n@include common-account\n' > ` + shellQuote(file)
	case c.r.exists("/etc/pam.d/password-auth"):
		stack = `printf 'auth include password-auth\naccount include password-auth\n' > ` + shellQuote(file)
	case c.r.exists("/etc/pam.d/system-auth"):
		stack = `printf 'auth include system-auth\naccount include system-auth\n' > ` + shellQuote(file)
	default:
		stack = "# write " + file + " with the auth and account lines this system's logins use"
	}
	c.add(Finding{ID: IDPAMServiceMissing, Severity: sev,
		Summary: fmt.Sprintf("%s does not exist: %s", file, other),
		Detail:  fmt.Sprintf("Postfix sends service %q (smtpd_sasl_service, %s)%s, and the chain for it (%s) runs pam", sent, c.where(s), mapped, res.Chain),
		Fix:     lines(stack, "# or use an existing PAM service: "+edit(c.d.cfgPath, "service_map: "+sent+"=NAME")),
	})
}

// denies reports whether a PAM file's auth stack is a plain pam_deny.
func denies(pamFile string) bool {
	for _, l := range strings.Split(pamFile, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "auth" && strings.Contains(l, "pam_deny.so") {
			return true
		}
	}
	return false
}

func (c *checker) pamConfHas(svc string) bool {
	b, err := c.r.readFile("/etc/pam.conf")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == svc {
			return true
		}
	}
	return false
}

// checkRealm: the realm Postfix appends must be one the back end knows.
func (c *checker) checkRealm(s smtpdService) {
	sent, res := c.request(s)
	chain := rewrite.SplitChain(res.Chain)
	joined := res.Request.Login != "user"
	ldRef := "smtpd_sasl_local_domain = " + sent
	if sent == "" {
		ldRef = "smtpd_sasl_local_domain is empty, so libsasl sends no realm"
	}
	if sent != "" && joined {
		for _, m := range chain {
			if !slices.Contains(bareLoginMechs, m) {
				continue
			}
			c.add(Finding{ID: IDLocalDomainRealm, Severity: Error,
				Summary: fmt.Sprintf("Postfix appends the realm %s to every login and saslgate joins it (-r, realm_join): %s looks up user@%s, a user it does not have", sent, m, sent),
				Detail:  fmt.Sprintf("%s has %s; the chain is %s", c.where(s), ldRef, res.Chain),
				Fix: lines(c.postconfSet("smtpd_sasl_local_domain", ""), c.reloadPostfix(),
					"# or keep the realm and strip it in saslgate: "+edit(c.d.cfgPath, "realm_strip: "+sent)),
			})
			break
		}
	}
	if !slices.Contains(chain, "sasldb") {
		return
	}
	users := c.sasldbUsers()
	if len(users) == 0 {
		return // unreadable or empty: checkSasldbFile says so
	}
	realm := res.Request.Realm
	how := ""
	if realm == "" {
		if c.hostErr != nil {
			c.skip("the host name is unknown (" + c.hostErr.Error() + "): the sasldb realm was not checked")
			return
		}
		realm, how = c.host, " (the host name: sasldb's realm when the request has none)"
	}
	suffix := strings.TrimPrefix(res.Request.Login, "user")
	count := map[string]int{}
	for _, e := range users {
		if e.Realm == realm && (!joined || strings.HasSuffix(e.Login, suffix)) {
			return
		}
		count[e.Realm]++
	}
	realms := make([]string, 0, len(count))
	for r := range count {
		realms = append(realms, r)
	}
	sort.Slice(realms, func(i, j int) bool {
		if count[realms[i]] != count[realms[j]] {
			return count[realms[i]] > count[realms[j]]
		}
		return realms[i] < realms[j]
	})
	stored := make([]string, len(realms))
	for i, r := range realms {
		stored[i] = fmt.Sprintf("%q (%d)", r, count[r])
	}
	target := realms[0]
	id := IDSasldbRealm
	if sent != "" {
		id = IDLocalDomainRealm
	}
	rw := ""
	if res.Trace.String() != "" {
		rw = "; saslgate's rules: " + res.Trace.String()
	}
	detail := fmt.Sprintf("%s has %s%s; saslgate looks users up in realm %q%s, but %s stores its users under %s",
		c.where(s), ldRef, rw, realm, how, c.d.cfg.SasldbPath, strings.Join(stored, ", "))
	var fix []string
	switch {
	case joined:
		fix = []string{"# saslgate runs with -r (realm_join), so sasldb looks up user@realm: drop -r from " + c.d.describe()}
	case target == c.host && c.hostErr == nil:
		fix = []string{c.postconfSet("smtpd_sasl_local_domain", ""), c.reloadPostfix()}
	default:
		fix = []string{c.postconfSet("smtpd_sasl_local_domain", target), c.reloadPostfix()}
		if sent == "" {
			fix = append(fix, "# or, in saslgate alone: "+edit(c.d.cfgPath, "default_realm: "+target)+" and "+c.restartFix())
		}
	}
	fix = append(fix, fmt.Sprintf("# or store the users under realm %s: saslpasswd2 -c -f %s -u %s USER", realm, shellQuote(c.d.cfg.SasldbPath), shellQuote(realm)))
	c.add(Finding{ID: id, Severity: Error,
		Summary: fmt.Sprintf("logins without @domain are looked up in realm %q, where the sasldb has no user: they all fail", realm),
		Detail:  detail,
		Fix:     lines(fix...),
	})
}

// sasldbUsers reads the sasldb once: the users with a password.
func (c *checker) sasldbUsers() []sasldb.Entry {
	if c.sasldbRead {
		return c.sasldbUser
	}
	c.sasldbRead = true
	real, err := c.r.resolve("/", c.d.cfg.SasldbPath)
	if err != nil {
		c.sasldbErr = err
		return nil
	}
	f, err := sasldb.ReadFile(c.r.host(real))
	if err != nil {
		c.sasldbErr = unroot(c.r, err)
		return nil
	}
	for _, e := range f.Entries() {
		if e.Property == sasldb.PasswordProperty {
			c.sasldbUser = append(c.sasldbUser, e)
		}
	}
	return c.sasldbUser
}

// chains lists every mechanism any of the daemon's chains runs.
func (c *checker) mechanisms() []string {
	var out []string
	for _, ch := range c.d.cfg.Rules().Services.ChainNames() {
		for _, m := range rewrite.SplitChain(ch) {
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}

func (c *checker) checkSasldbFile() {
	if !slices.Contains(c.mechanisms(), "sasldb") {
		return
	}
	users := c.sasldbUsers()
	p := c.d.cfg.SasldbPath
	switch {
	case c.sasldbErr != nil:
		c.add(Finding{ID: IDSasldbUnreadable, Severity: Error,
			Summary: fmt.Sprintf("the sasldb %s cannot be read: every sasldb login fails", p),
			Detail:  c.sasldbErr.Error(),
			Fix: lines(fmt.Sprintf("saslpasswd2 -c -f %s -u REALM USER", shellQuote(p)),
				"# or point saslgate at the right file: --sasldb-path FILE, or "+edit(c.d.cfgPath, "sasldb_path: FILE")),
		})
	case len(users) == 0:
		c.add(Finding{ID: IDSasldbEmpty, Severity: Warning,
			Summary: fmt.Sprintf("the sasldb %s has no users: every sasldb login fails", p),
			Fix:     fmt.Sprintf("saslpasswd2 -c -f %s -u REALM USER", shellQuote(p)),
		})
	}
}

func (c *checker) checkRimap() {
	if !slices.Contains(c.mechanisms(), "rimap") {
		return
	}
	if c.pr.Rimap == nil {
		c.skip("the rimap servers were not contacted: --root")
		return
	}
	results, err := c.pr.Rimap(c.ctx, c.d.opts)
	if err != nil {
		c.add(Finding{ID: IDConfigInvalid, Severity: Error,
			Summary: "the rimap options do not parse: the daemon refuses to start",
			Detail:  fmt.Sprintf("%v (from %s and %s)", err, c.d.describe(), c.d.cfgPath),
			Fix:     lines(c.exe+" serve --check --config "+shellQuote(c.d.cfgPath), "# then correct the option it names"),
		})
		return
	}
	for _, r := range results {
		srv := fmt.Sprintf("%s port %d", r.Server.Host, r.Server.Port)
		switch {
		case r.Err == nil:
		case r.Certificate:
			c.add(Finding{ID: IDRimapCertificate, Severity: Error,
				Summary: fmt.Sprintf("the IMAP server %s presents a certificate rimap does not accept: every rimap login fails", srv),
				Detail:  certDetail(r),
				Fix:     c.certFix(r.Err.Error(), r.CertNames),
			})
		default:
			fix := lines(fmt.Sprintf("# is the IMAP server up and reachable from here? nc -vz %s %d", shellQuote(r.Server.Host), r.Server.Port),
				"# else name the right one: -O host[/port] in "+c.d.describe()+", or "+edit(c.d.cfgPath, "rimap_hosts: HOST[/PORT]"))
			if r.Config && strings.Contains(r.Err.Error(), "LOGINDISABLED") {
				fix = lines(edit(c.d.cfgPath, "rimap_tls: starttls"), c.restartFix())
			}
			c.add(Finding{ID: IDRimapUnreachable, Severity: Error,
				Summary: fmt.Sprintf("the IMAP server %s cannot be used: every rimap login fails", srv),
				Detail:  r.Err.Error(),
				Fix:     fix,
			})
		}
	}
}

// certFix reads crypto/x509's words for the usual cases; names are the
// ones the server's certificate carries.
func (c *checker) certFix(msg string, names []string) string {
	conf := c.d.cfgPath
	switch {
	case strings.Contains(msg, "unknown authority"):
		return lines("# the PEM file of the CA that signed the server's certificate:",
			edit(conf, "rimap_ca_file: /path/to/the-ca.pem"), c.restartFix())
	case strings.Contains(msg, "expired") || strings.Contains(msg, "not yet valid"):
		return "# renew the certificate on the IMAP server"
	case len(names) > 0:
		// the certificate is good but names another host
		return lines(edit(conf, "rimap_server_name: "+names[0]), c.restartFix(),
			"# or connect by that name: -O "+names[0]+"[/port] in "+c.d.describe())
	}
	return lines(edit(conf, "rimap_ca_file: /path/to/the-ca.pem"), edit(conf, "rimap_server_name: NAME"), c.restartFix())
}

func certDetail(r rimap.ProbeResult) string {
	if len(r.CertNames) == 0 {
		return r.Err.Error()
	}
	return r.Err.Error() + "; the certificate names " + strings.Join(r.CertNames, ", ")
}
