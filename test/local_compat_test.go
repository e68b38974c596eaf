package test

// Differential tests for the local mechanisms: the real Cyrus saslauthd
// 2.1.28 and saslgate side by side, each with -a shadow, -a getpwent and
// -a pam, against the same throw-away system accounts (spec §5.1-5.3, §2.6,
// §13 cases 1, 2, 11, 12, 18, 23-25, 28-31). Every question goes to each
// daemon three ways at once: raw request bytes (every reply byte, and how
// the connection ends), saslgate's protocol client (the reply text), and
// the real testsaslauthd (its stdout, stderr and exit code). saslgate's
// answers must be identical to Cyrus's. For pam, saslgate runs twice, with
// worker processes and in-process.
//
// The accounts are real entries in /etc/passwd and /etc/shadow, named
// sgtc_*, made with useradd, chpasswd -e and chage (two get their entries
// edited in place: a hash in the passwd field, no shadow line) and removed
// with userdel when the test ends, pass or fail. Changes to the user
// database take the host-wide lock file that
// mechs/internal/unixpw/unixpwtest uses (that package is internal to
// mechs/, so it cannot be imported from here; its AddUser also insists on
// the sgtest_ prefix), so parallel test packages never run useradd at the
// same time. The PAM services sgtc-* are written to /etc/pam.d for the
// test's duration.
//
// Cyrus's shadow, getpwent and pam mechanisms read no configuration of
// their own, so Cyrus runs as is, with its own run directory.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/saslgate/saslgate/protocol"
)

// The accounts' passwords: distinctive, so that a hit in a log is never a
// coincidence.
const (
	lcPwYes    = "Yz7-sgtc-yescrypt-Q4v"
	lcPwSha    = "Sh9-sgtc-sha512-W2k"
	lcPwSha256 = "Sf4-sgtc-sha256-N7d"
	lcPwMD5    = "Md3-sgtc-md5crypt-C6s"
	lcPwBcrypt = "Bc6-sgtc-bcrypt-F1g"
	lcPwDES    = "Ds2sgtcX" // DES reads 8 characters
	lcPwLock   = "Lk3-sgtc-locked-P8n"
	lcPwExp    = "Ex5-sgtc-expired-R1m"
	lcPwAged   = "Ag2-sgtc-aged-T6j"
	lcPwMust   = "Mc8-sgtc-mustchange-H3b"
	lcPwUTF8   = "pä ss wörd ✓ sgtc 7"
	lcPwField  = "Pf1-sgtc-passwdfield-K2e" // the hash in /etc/passwd's field
	lcPwWrong  = "Wr0-sgtc-wrong-Z9x"
	lcPwAny    = "An1-sgtc-anyword-J5c" // sent to accounts with no usable hash
)

// lcAllPasswords is every password a request in this file sends (prefixes
// and extensions of these included).
var lcAllPasswords = []string{lcPwYes, lcPwSha, lcPwSha256, lcPwMD5, lcPwBcrypt, lcPwDES, lcPwLock, lcPwExp,
	lcPwAged, lcPwMust, lcPwUTF8, lcPwField, lcPwWrong, lcPwAny}

// lcUser is one throw-away account.
type lcUser struct {
	name string
	pw   string
	// hash is a crypt scheme (yescrypt, sha512, sha256, md5, bcrypt, des),
	// "locked" (! before a yescrypt hash), or "=" and the literal field.
	hash  string
	chage []string // chage(1) arguments; "%today", "%today-1" are day numbers
	// pwField: the yescrypt hash of this password goes into the passwd
	// entry's password field (where getpwent looks) instead of "x".
	pwField string
	// noShadow: the shadow line is removed.
	noShadow bool
	// gecos is the comment field ("" for the default).
	gecos string
}

const (
	uYes      = "sgtc_yes"
	uSha      = "sgtc_sha512"
	uSha256   = "sgtc_sha256"
	uMD5      = "sgtc_md5"
	uBcrypt   = "sgtc_bcrypt"
	uDES      = "sgtc_des"
	uLock     = "sgtc_lock"
	uBang2    = "sgtc_bang2"
	uStar     = "sgtc_star"
	uNP       = "sgtc_np"
	uEmpty    = "sgtc_empty"
	uExp0     = "sgtc_exp0"
	uExpY     = "sgtc_expy"
	uExpT     = "sgtc_expt"
	uExpN     = "sgtc_expn"
	uAged     = "sgtc_aged"
	uAgedEdge = "sgtc_agedge"
	uMustMax  = "sgtc_mcmax"
	uMustDef  = "sgtc_mcdef"
	uMustNone = "sgtc_mcnone"
	uNoLast   = "sgtc_nolast"
	uUTF8     = "sgtc_utf8"
	uPwField  = "sgtc_pwfield"
	uNoShadow = "sgtc_noshadow"
	uLongEnt  = "sgtc_longent"
	uUnknown  = "sgtc_nosuch" // never created
)

func lcUsers() []lcUser {
	return []lcUser{
		{name: uYes, pw: lcPwYes, hash: "yescrypt"},
		{name: uSha, pw: lcPwSha, hash: "sha512"},
		{name: uSha256, pw: lcPwSha256, hash: "sha256"},
		{name: uMD5, pw: lcPwMD5, hash: "md5"},
		{name: uBcrypt, pw: lcPwBcrypt, hash: "bcrypt"},
		{name: uDES, pw: lcPwDES, hash: "des"},
		{name: uLock, pw: lcPwLock, hash: "locked"},
		{name: uBang2, hash: "=!!"},
		{name: uStar, hash: "=*"},
		{name: uNP, hash: "=*NP*"},
		{name: uEmpty, hash: "="},
		{name: uExp0, pw: lcPwExp, hash: "yescrypt", chage: []string{"-E", "0"}},
		{name: uExpY, pw: lcPwExp, hash: "yescrypt", chage: []string{"-E", "%today-1"}},
		{name: uExpT, pw: lcPwExp, hash: "yescrypt", chage: []string{"-E", "%today"}},
		{name: uExpN, pw: lcPwExp, hash: "yescrypt", chage: []string{"-E", "%today+1"}},
		{name: uAged, pw: lcPwAged, hash: "yescrypt", chage: []string{"-d", "%today-100", "-M", "30"}},
		{name: uAgedEdge, pw: lcPwAged, hash: "yescrypt", chage: []string{"-d", "%today-30", "-M", "30"}},
		{name: uMustMax, pw: lcPwMust, hash: "yescrypt", chage: []string{"-d", "0", "-M", "30"}},
		{name: uMustDef, pw: lcPwMust, hash: "yescrypt", chage: []string{"-d", "0"}}, // PASS_MAX_DAYS 99999
		{name: uMustNone, pw: lcPwMust, hash: "yescrypt", chage: []string{"-d", "0", "-M", "-1"}},
		{name: uNoLast, pw: lcPwAged, hash: "yescrypt", chage: []string{"-d", "-1", "-M", "30"}},
		{name: uUTF8, pw: lcPwUTF8, hash: "yescrypt"},
		{name: uPwField, pw: lcPwYes, hash: "yescrypt", pwField: lcPwField},
		{name: uNoShadow, pw: lcPwYes, hash: "yescrypt", noShadow: true},
		{name: uLongEnt, pw: lcPwYes, hash: "yescrypt", gecos: strings.Repeat("g", 4000)},
	}
}

// lcToday is saslauthd's "today": whole days since the epoch.
func lcToday() int64 { return time.Now().Unix() / 86400 }

const lcB64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// lcSalt is n random characters of alphabet, the last one from last.
func lcSalt(t *testing.T, n int, alphabet, last string) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	b[n-1] = last[int(b[n-1])%len(last)]
	return string(b)
}

// lcCrypt hashes pw with the system's crypt(3) (libxcrypt) through perl,
// as mkpasswd would; the password goes through stdin, never argv.
func lcCrypt(t *testing.T, perl, pw, scheme string) string {
	t.Helper()
	var setting string
	switch scheme {
	case "yescrypt":
		// 22 characters decode to 16 bytes: the last carries only 2 bits
		setting = "$y$j9T$" + lcSalt(t, 22, lcB64, "./01") + "$"
	case "sha512":
		setting = "$6$" + lcSalt(t, 16, lcB64, lcB64) + "$"
	case "sha256":
		setting = "$5$" + lcSalt(t, 16, lcB64, lcB64) + "$"
	case "md5":
		setting = "$1$" + lcSalt(t, 8, lcB64, lcB64) + "$"
	case "bcrypt":
		setting = "$2b$05$" + lcSalt(t, 22, "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", ".Oeu")
	case "des":
		setting = lcSalt(t, 2, lcB64, lcB64)
	default:
		t.Fatalf("hash scheme %q", scheme)
	}
	cmd := exec.Command(perl, "-e", `local $/; my $p = <STDIN>; print crypt($p, $ARGV[0])`, setting)
	cmd.Stdin = strings.NewReader(pw)
	out, err := cmd.Output()
	h := string(out)
	if err != nil || !strings.HasPrefix(h, setting) || len(h) < len(setting)+10 {
		t.Fatalf("crypt(%s) with setting %q: %q, %v", scheme, setting, h, err)
	}
	return h
}

// lcLockPath is the lock unixpwtest.Lock takes: every test that changes
// the user database holds it while it does.
var lcLockPath = filepath.Join(os.TempDir(), "saslgate-test-users.lock")

func lcWithUserLock(t *testing.T, f func()) {
	t.Helper()
	l, err := os.OpenFile(lcLockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("open lock file: %v", err)
	}
	defer l.Close()
	if err := syscall.Flock(int(l.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", lcLockPath, err)
	}
	defer func() { _ = syscall.Flock(int(l.Fd()), syscall.LOCK_UN) }()
	f()
}

// lcEditEntry rewrites name's line in a passwd-format file (nil from edit
// deletes it) and replaces the file atomically, keeping its mode and owner.
// It holds lckpwdf(3)'s lock, /etc/.pwd.lock, as the shadow tools do.
func lcEditEntry(path, name string, edit func([]string) []string) error {
	pl, err := os.OpenFile("/etc/.pwd.lock", os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer pl.Close() // releases the lock
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0}
	if err := syscall.FcntlFlock(pl.Fd(), syscall.F_SETLKW, &lk); err != nil {
		return fmt.Errorf("lock /etc/.pwd.lock: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var out strings.Builder
	found := false
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if !strings.HasPrefix(line, name+":") {
			out.WriteString(line)
			continue
		}
		found = true
		if f := edit(strings.Split(strings.TrimSuffix(line, "\n"), ":")); f != nil {
			out.WriteString(strings.Join(f, ":") + "\n")
		}
	}
	if !found {
		return fmt.Errorf("%s: no entry for %s", path, name)
	}
	tmp := path + ".sgtc-tmp"
	if err := os.WriteFile(tmp, []byte(out.String()), 0o600); err != nil {
		return err
	}
	sys := st.Sys().(*syscall.Stat_t)
	if err := os.Chown(tmp, int(sys.Uid), int(sys.Gid)); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, st.Mode().Perm()); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func lcUserExists(name string) bool {
	return exec.Command("getent", "passwd", name).Run() == nil
}

// lcFixture is the set of accounts, created for one test.
type lcFixture struct {
	today int64
	dir   string // short temporary directory for the run directories
}

// lcNewFixture creates the accounts (removing any left by a crashed run
// first) and removes them when the test ends, even if it fails.
func lcNewFixture(t *testing.T) *lcFixture {
	t.Helper()
	needRoot(t)
	tools := need(t, "useradd", "userdel", "chpasswd", "chage", "getent", "perl", "saslauthd", "testsaslauthd")
	perl := tools[5]
	fx := &lcFixture{today: lcToday(), dir: sdbTempDir(t)}
	users := lcUsers()
	// Hash first, outside the lock.
	hashes := make([]string, len(users))
	fields := make([]string, len(users))
	for i, u := range users {
		switch {
		case strings.HasPrefix(u.hash, "="):
			hashes[i] = u.hash[1:]
		case u.hash == "locked":
			hashes[i] = "!" + lcCrypt(t, perl, u.pw, "yescrypt")
		default:
			hashes[i] = lcCrypt(t, perl, u.pw, u.hash)
		}
		if u.pwField != "" {
			fields[i] = lcCrypt(t, perl, u.pwField, "yescrypt")
		}
	}
	expand := func(arg string) string {
		d, ok := strings.CutPrefix(arg, "%today")
		if !ok {
			return arg
		}
		n := fx.today
		if d != "" {
			k, err := strconv.ParseInt(d, 10, 64)
			if err != nil {
				t.Fatalf("chage argument %q", arg)
			}
			n += k
		}
		return strconv.FormatInt(n, 10)
	}
	must := func(stdin string, prog string, args ...string) {
		t.Helper()
		cmd := exec.Command(prog, args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		lcWithUserLock(t, func() {
			for _, u := range users {
				if lcUserExists(u.name) {
					if out, err := exec.Command("userdel", "-r", u.name).CombinedOutput(); err != nil && lcUserExists(u.name) {
						t.Errorf("userdel -r %s: %v\n%s", u.name, err, out)
					}
				}
			}
		})
	})
	lcWithUserLock(t, func() {
		for i, u := range users {
			if lcUserExists(u.name) {
				_ = exec.Command("userdel", "-r", u.name).Run()
			}
			gecos := u.gecos
			if gecos == "" {
				gecos = "saslgate local compat test"
			}
			must("", "useradd", "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin", "-c", gecos, u.name)
			// chpasswd -e reads the hash on stdin: it never shows in ps
			must(u.name+":"+hashes[i]+"\n", "chpasswd", "-e")
			if len(u.chage) > 0 {
				args := make([]string, 0, len(u.chage)+1)
				for _, a := range u.chage {
					args = append(args, expand(a))
				}
				must("", "chage", append(args, u.name)...)
			}
			if u.pwField != "" {
				if err := lcEditEntry("/etc/passwd", u.name, func(f []string) []string { f[1] = fields[i]; return f }); err != nil {
					t.Fatal(err)
				}
			}
			if u.noShadow {
				if err := lcEditEntry("/etc/shadow", u.name, func([]string) []string { return nil }); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	if lcUserExists(uUnknown) {
		t.Fatalf("%s exists", uUnknown)
	}
	if exec.Command("getent", "shadow", uNoShadow).Run() == nil {
		t.Fatalf("%s still has a shadow entry", uNoShadow)
	}
	return fx
}

// The PAM services the pam table uses. sgtc-ok is Debian's common-auth and
// common-account with pam_unix's nodelay (a failure would otherwise cost
// about two seconds); sgtc-inc includes them as they are; sgtc-deny denies
// every authentication; sgtc-echo sends PAM_TEXT_INFO messages, which the
// conversation ignores.
var lcPamServices = map[string]string{
	"sgtc-ok": `auth	[success=1 default=ignore]	pam_unix.so nullok nodelay
auth	requisite			pam_deny.so
auth	required			pam_permit.so
account	[success=1 new_authtok_reqd=done default=ignore]	pam_unix.so
account	requisite			pam_deny.so
account	required			pam_permit.so
`,
	"sgtc-inc": `@include common-auth
@include common-account
`,
	"sgtc-deny": `auth	requisite	pam_deny.so
account	required	pam_permit.so
`,
	"sgtc-echo": `auth	optional	pam_echo.so hello %u on %s
auth	required	pam_unix.so nodelay
account	required	pam_echo.so account check
account	required	pam_unix.so
`,
}

// lcPamCodes are pam_debug's return codes: service sgtc-dbg-a-<code>
// returns it from pam_authenticate, sgtc-dbg-c-<code> from pam_acct_mgmt.
var lcPamCodes = []string{"success", "open_err", "symbol_err", "service_err", "system_err", "buf_err",
	"perm_denied", "auth_err", "cred_insufficient", "authinfo_unavail", "user_unknown", "maxtries",
	"new_authtok_reqd", "acct_expired", "session_err", "cred_unavail", "cred_expired", "cred_err",
	"no_module_data", "conv_err", "authtok_err", "authtok_recover_err", "authtok_lock_busy",
	"authtok_disable_aging", "try_again", "ignore", "abort", "authtok_expired", "module_unknown",
	"bad_item", "conv_again", "incomplete"}

func lcInstallPamServices(t *testing.T) {
	t.Helper()
	files := map[string]string{}
	for name, content := range lcPamServices {
		files[name] = content
	}
	for _, code := range lcPamCodes {
		files["sgtc-dbg-a-"+code] = "auth required pam_debug.so auth=" + code + "\naccount required pam_debug.so acct=success\n"
		files["sgtc-dbg-c-"+code] = "auth required pam_debug.so auth=success\naccount required pam_debug.so acct=" + code + "\n"
	}
	for name, content := range files {
		path := filepath.Join("/etc/pam.d", name)
		t.Cleanup(func() {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				t.Errorf("remove %s: %v", path, err)
			}
		})
		content = "# saslgate test (test/local_compat_test.go); removed when the test ends\n" + content
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Replies (spec §2.6).
const (
	rOK      = "OK"
	rBad     = "NO Incorrect password"
	rUnknown = "NO Invalid username"
	rNoSp    = "NO Invalid shadow username"
	rNIS     = "NO Insufficient permission to access NIS authentication database (saslauthd)"
	rAcctExp = "NO Account expired"
	rPwExp   = "NO Password expired"
	rPamAuth = "NO PAM auth error"
	rPamAcct = "NO PAM acct error"
)

// lcQuestion is one request for every mechanism, with the reply the spec
// (for pam: Debian's pam_unix through sgtc-ok) predicts from Cyrus.
type lcQuestion struct {
	name                   string
	login, pw, realm, addr string // addr: a fifth field (client address)
	shadow, getpwent, pam  string
}

func lcQuestions() []lcQuestion {
	a256 := strings.Repeat("a", 256)
	return []lcQuestion{
		{name: "1 yescrypt, right password", login: uYes, pw: lcPwYes, shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "2 yescrypt, wrong password", login: uYes, pw: lcPwWrong, shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "yescrypt, password prefix", login: uYes, pw: lcPwYes[:len(lcPwYes)-1], shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "yescrypt, password + 1 character", login: uYes, pw: lcPwYes + "x", shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "11 yescrypt, password\\0junk (cut at the NUL)", login: uYes, pw: lcPwYes + "\x00junk", shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "18 yescrypt, right password, 5th field", login: uYes, pw: lcPwYes, addr: "192.0.2.7;41234", shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "sha512-crypt, right password", login: uSha, pw: lcPwSha, shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "sha512-crypt, wrong password", login: uSha, pw: lcPwWrong, shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "sha256-crypt, right password", login: uSha256, pw: lcPwSha256, shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "md5-crypt, right password", login: uMD5, pw: lcPwMD5, shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "bcrypt, right password", login: uBcrypt, pw: lcPwBcrypt, shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "bcrypt, wrong password", login: uBcrypt, pw: lcPwWrong, shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "DES, right password", login: uDES, pw: lcPwDES, shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "DES, password + more (DES reads 8)", login: uDES, pw: lcPwDES + "-more", shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "29 locked (!hash), right password", login: uLock, pw: lcPwLock, shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "29 locked (!hash), wrong password", login: uLock, pw: lcPwWrong, shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "hash !!", login: uBang2, pw: lcPwAny, shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "hash *", login: uStar, pw: lcPwAny, shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "hash *NP*", login: uNP, pw: lcPwAny, shadow: rNIS, getpwent: rBad, pam: rPamAuth},
		{name: "29 empty hash, any password (pam: nullok)", login: uEmpty, pw: lcPwAny, shadow: rBad, getpwent: rBad, pam: rOK},
		{name: "29 chage -E 0, right password", login: uExp0, pw: lcPwExp, shadow: rAcctExp, getpwent: rBad, pam: rPamAcct},
		{name: "29 chage -E 0, wrong password", login: uExp0, pw: lcPwWrong, shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "29 chage -E yesterday, right password", login: uExpY, pw: lcPwExp, shadow: rAcctExp, getpwent: rBad, pam: rPamAcct},
		{name: "29 chage -E yesterday, wrong password", login: uExpY, pw: lcPwWrong, shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "chage -E today (shadow: today > expire; pam_unix: >=)", login: uExpT, pw: lcPwExp, shadow: rOK, getpwent: rBad, pam: rPamAcct},
		{name: "chage -E tomorrow", login: uExpN, pw: lcPwExp, shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "29 aged (chage -d today-100 -M 30), right password", login: uAged, pw: lcPwAged, shadow: rPwExp, getpwent: rBad, pam: rPamAcct},
		{name: "29 aged, wrong password", login: uAged, pw: lcPwWrong, shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "aged to the day (chage -d today-30 -M 30)", login: uAgedEdge, pw: lcPwAged, shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "must change (chage -d 0 -M 30)", login: uMustMax, pw: lcPwMust, shadow: rPwExp, getpwent: rBad, pam: rPamAcct},
		{name: "must change (chage -d 0, max 99999)", login: uMustDef, pw: lcPwMust, shadow: rOK, getpwent: rBad, pam: rPamAcct},
		{name: "must change (chage -d 0 -M -1)", login: uMustNone, pw: lcPwMust, shadow: rOK, getpwent: rBad, pam: rPamAcct},
		{name: "no last change (chage -d -1 -M 30; pam_unix: today+1 > 30)", login: uNoLast, pw: lcPwAged, shadow: rOK, getpwent: rBad, pam: rPamAcct},
		{name: "UTF-8 password with spaces", login: uUTF8, pw: lcPwUTF8, shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "UTF-8 password, cut short", login: uUTF8, pw: lcPwUTF8[:len(lcPwUTF8)-2], shadow: rBad, getpwent: rBad, pam: rPamAuth},
		{name: "hash in the passwd field, its password", login: uPwField, pw: lcPwField, shadow: rBad, getpwent: rOK, pam: rOK},
		{name: "hash in the passwd field, the shadow password", login: uPwField, pw: lcPwYes, shadow: rOK, getpwent: rBad, pam: rPamAuth},
		{name: "no shadow entry", login: uNoShadow, pw: lcPwYes, shadow: rNoSp, getpwent: rBad, pam: rPamAuth},
		{name: "passwd entry over 4 KiB (long comment)", login: uLongEnt, pw: lcPwYes, shadow: rOK, getpwent: rBad, pam: rOK},
		{name: "28 unknown user", login: uUnknown, pw: lcPwYes, shadow: rUnknown, getpwent: rUnknown, pam: rPamAuth},
		{name: "28 wrong case (SGTC_YES)", login: strings.ToUpper(uYes), pw: lcPwYes, shadow: rUnknown, getpwent: rUnknown, pam: rPamAuth},
		{name: "login with a trailing space", login: uYes + " ", pw: lcPwYes, shadow: rUnknown, getpwent: rUnknown, pam: rPamAuth},
		{name: "login user@example.com, no -r", login: uYes + "@example.com", pw: lcPwYes, shadow: rUnknown, getpwent: rUnknown, pam: rPamAuth},
		{name: "login of 256 bytes", login: a256, pw: lcPwYes, shadow: rUnknown, getpwent: rUnknown, pam: rPamAuth},
		{name: "23 realm example.com, no -r (realm ignored)", login: uYes, pw: lcPwYes, realm: "example.com", shadow: rOK, getpwent: rBad, pam: rOK},
	}
}

// lcCase is one request and the reply predicted for Cyrus.
type lcCase struct {
	name string
	req  protocol.Request
	want string
	// system: the request runs one of the host's own PAM stacks; a
	// different reply from Cyrus is only noted.
	system bool
}

func lcReq(login, pw, svc, realm string) protocol.Request {
	return protocol.Request{Login: login, Password: pw, Service: svc, Realm: realm}
}

// lcCases is the question table for one mechanism; the service is svc.
func lcCases(mech, svc string) []lcCase {
	var cs []lcCase
	for _, q := range lcQuestions() {
		want := map[string]string{"shadow": q.shadow, "getpwent": q.getpwent, "pam": q.pam}[mech]
		req := lcReq(q.login, q.pw, svc, q.realm)
		if q.addr != "" {
			req.HasClientAddr, req.ClientAddr = true, q.addr
		}
		cs = append(cs, lcCase{name: q.name, req: req, want: want})
	}
	if mech != "pam" {
		cs = append(cs, lcCase{name: "12 empty service", req: lcReq(uYes, lcPwYes, "", ""),
			want: map[string]string{"shadow": rOK, "getpwent": rBad}[mech]})
	}
	return cs
}

// lcShadowJoinCases run with -r on both daemons (cases 24, 25).
func lcShadowJoinCases() []lcCase {
	return []lcCase{
		{name: "24 -r [u, right, smtp, example.com] (login u@example.com)", req: lcReq(uYes, lcPwYes, "smtp", "example.com"), want: rUnknown},
		{name: "25 -r [u, right, smtp, ''] (nothing appended)", req: lcReq(uYes, lcPwYes, "smtp", ""), want: rOK},
		{name: "-r [u, wrong, smtp, '']", req: lcReq(uYes, lcPwWrong, "smtp", ""), want: rBad},
		{name: "-r [SGTC_YES, right, smtp, example.com]", req: lcReq(strings.ToUpper(uYes), lcPwYes, "smtp", "example.com"), want: rUnknown},
		{name: "-r [u@example.com, right, smtp, example.com]", req: lcReq(uYes+"@example.com", lcPwYes, "smtp", "example.com"), want: rUnknown},
	}
}

// lcPamServiceCases: the PAM service is the request's service field,
// passed verbatim (spec §5.1; cases 12, 31).
func lcPamServiceCases() []lcCase {
	y := func(svc string) protocol.Request { return lcReq(uYes, lcPwYes, svc, "") }
	return []lcCase{
		{name: "31 service sgtc-deny, right password", req: y("sgtc-deny"), want: rPamAuth},
		{name: "service x/sgtc-deny (PAM keeps what follows the last /)", req: y("x/sgtc-deny"), want: rPamAuth},
		{name: "service SGTC-OK (PAM folds case)", req: y("SGTC-OK"), want: rOK},
		{name: "service SGTC-DENY (PAM folds case)", req: y("SGTC-DENY"), want: rPamAuth},
		{name: "service sgtc-deny\\0x (cut at the NUL)", req: y("sgtc-deny\x00x"), want: rPamAuth},
		{name: "service sgtc-inc (@include common-*), right password", req: y("sgtc-inc"), want: rOK},
		{name: "service sgtc-inc, must change (new_authtok_reqd=done)", req: lcReq(uMustDef, lcPwMust, "sgtc-inc", ""), want: rPamAcct},
		{name: "service sgtc-echo (PAM_TEXT_INFO messages)", req: y("sgtc-echo"), want: rOK},
		{name: "12 service '' (other), right password", req: y(""), want: rOK, system: true},
		{name: "12 service '' (other), wrong password (2 s delay)", req: lcReq(uYes, lcPwWrong, "", ""), want: rPamAuth, system: true},
		{name: "service other, right password", req: y("other"), want: rOK, system: true},
		{name: "service with no file (other)", req: y("sgtc-nofile"), want: rOK, system: true},
		{name: "service /", req: y("/"), want: rOK, system: true},
		{name: "service ../../etc/passwd", req: y("../../etc/passwd"), want: rOK, system: true},
		{name: "service of 256 bytes", req: y(strings.Repeat("s", 256)), want: rOK, system: true},
		{name: "service login, right password", req: y("login"), want: rOK, system: true},
		{name: "service login, wrong password (pam_faildelay 3 s)", req: lcReq(uYes, lcPwWrong, "login", ""), want: rPamAuth, system: true},
		{name: "service login, locked", req: lcReq(uLock, lcPwLock, "login", ""), want: rPamAuth, system: true},
		{name: "service login, expired", req: lcReq(uExp0, lcPwExp, "login", ""), want: rPamAcct, system: true},
	}
}

// lcPamCodeCases: every PAM return code from each of the two calls.
func lcPamCodeCases() []lcCase {
	var cs []lcCase
	for _, code := range lcPamCodes {
		wa, wc := rPamAuth, rPamAcct
		if code == "success" {
			wa, wc = rOK, rOK
		}
		cs = append(cs,
			lcCase{name: "pam_authenticate: " + code, req: lcReq(uYes, lcPwYes, "sgtc-dbg-a-"+code, ""), want: wa},
			lcCase{name: "pam_acct_mgmt: " + code, req: lcReq(uYes, lcPwYes, "sgtc-dbg-c-"+code, ""), want: wc})
	}
	return cs
}

// lcObs is what one daemon answered to one request, three ways.
type lcObs struct {
	raw string // every reply byte, then how the connection ended
	ask string // the reply text through saslgate's client
	tsa string // testsaslauthd's stdout, stderr and exit code
}

func (o lcObs) String() string {
	return fmt.Sprintf("raw %s; ask %q; testsaslauthd %s", o.raw, o.ask, o.tsa)
}

// short is the table cell: len:text and testsaslauthd's verdict.
func (o lcObs) short() string {
	return fmt.Sprintf("`%d:%s` / %s", len(o.ask), o.ask, o.tsa)
}

// lcTestsaslauthd runs the real testsaslauthd (safe off the test
// goroutine). It cannot send a NUL (argv) or a fifth field (2.1.28).
func lcTestsaslauthd(tsa, sock string, req protocol.Request) string {
	if req.HasClientAddr || strings.ContainsRune(req.Login+req.Password+req.Service+req.Realm, 0) {
		return "n/a"
	}
	args := []string{"-f", sock, "-u", req.Login, "-p", req.Password, "-s", req.Service}
	if req.Realm != "" {
		args = append(args, "-r", req.Realm)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lcTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tsa, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	if ctx.Err() != nil {
		return "timed out: " + ctx.Err().Error()
	}
	if err != nil && cmd.ProcessState == nil {
		return "failed to run: " + err.Error()
	}
	s := fmt.Sprintf("%q exit %d", so.String(), cmd.ProcessState.ExitCode())
	if se.Len() > 0 {
		s += fmt.Sprintf(" stderr %q", se.String())
	}
	return s
}

// lcTimeout bounds one exchange. The harness's ask allows 10 s, which a
// 3 s PAM failure delay on a loaded machine can exceed.
const lcTimeout = 60 * time.Second

// lcAsk is ask with lcTimeout: the reply text through saslgate's client,
// or "ERR: ..." when there was none.
func lcAsk(sock string, req protocol.Request) string {
	c := &protocol.Client{Path: sock, Timeout: lcTimeout}
	r, err := c.Do(context.Background(), req)
	if err != nil {
		return "ERR: " + err.Error()
	}
	return r
}

// lcObserve asks one daemon one question three ways, at once.
func lcObserve(tsa, sock string, req protocol.Request) lcObs {
	var o lcObs
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		b, err := protocol.AppendRequest(nil, req)
		if err != nil {
			o.raw = err.Error()
			return
		}
		o.raw = sdbOutcome(rawExchange(sock, b, false, lcTimeout))
	}()
	go func() { defer wg.Done(); o.ask = lcAsk(sock, req) }()
	go func() { defer wg.Done(); o.tsa = lcTestsaslauthd(tsa, sock, req) }()
	wg.Wait()
	return o
}

// lcTarget is one daemon in a comparison.
type lcTarget struct {
	name string
	d    *Daemon
}

// lcStartCyrus runs the real saslauthd -d -a mech -n 5 in its own run
// directory. Its -d SIGTERM handler can deadlock, so it is SIGKILLed at
// the end (as in the sasldb tests).
func lcStartCyrus(t *testing.T, fx *lcFixture, name, mech string, extra ...string) *Daemon {
	t.Helper()
	dir := filepath.Join(fx.dir, name)
	args := append([]string{"-d", "-a", mech, "-m", dir, "-n", "5"}, extra...)
	d := startDaemon(t, name, need(t, "saslauthd")[0], "", dir, args...)
	t.Cleanup(func() { sdbKillGroup(d) })
	return d
}

// lcStartSaslgate runs bin/saslgate serve -d -a mech -n 5.
func lcStartSaslgate(t *testing.T, fx *lcFixture, name, mech string, extra ...string) *Daemon {
	t.Helper()
	dir := filepath.Join(fx.dir, name)
	args := append([]string{"serve", "--failure-delay", "0", "--auth-penalty", "0", "-d", "-a", mech, "-m", dir, "-n", "5"}, extra...)
	d := startDaemon(t, name, saslgateBin(t), "", dir, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s output:\n%s", name, d.Out.String())
		}
	})
	return d
}

// lcCompare asks Cyrus and every saslgate daemon each question, one
// question at a time (all daemons and all three ways at once), fails on
// any difference, and logs the table.
func lcCompare(t *testing.T, cyrus lcTarget, sgates []lcTarget, cases []lcCase) {
	t.Helper()
	tsa := need(t, "testsaslauthd")[0]
	var rows []sdbRow
	for _, c := range cases {
		obs := make([]lcObs, 1+len(sgates))
		var wg sync.WaitGroup
		for i, tg := range append([]lcTarget{cyrus}, sgates...) {
			wg.Add(1)
			go func() { defer wg.Done(); obs[i] = lcObserve(tsa, tg.d.Socket(), c.req) }()
		}
		wg.Wait()
		cy := obs[0]
		switch want := sdbOutcome(sdbWire(c.want), nil); {
		case cy.raw == want && cy.ask == c.want:
		case c.system:
			t.Logf("NOTE %s: Cyrus answered %s; this host's PAM stack differs from the expected %q", c.name, cy, c.want)
		default:
			t.Errorf("%s: Cyrus answered %s; expected %q (fixture or spec wrong?)", c.name, cy, c.want)
		}
		for i, sg := range sgates {
			verdict := "identical"
			if obs[1+i] != cy {
				verdict = "DIFFERENT"
				t.Errorf("%s [%s]:\n  Cyrus:    %s\n  saslgate: %s", c.name, sg.name, cy, obs[1+i])
			}
			name := c.name
			if len(sgates) > 1 {
				name += " [" + sg.name + "]"
			}
			rows = append(rows, sdbRow{name, cy.short(), obs[1+i].short(), verdict})
		}
	}
	sdbLogTable(t, rows)
}

// lcTable is one table of questions.
type lcTable struct {
	name  string
	cases []lcCase
}

// lcGroup is one mechanism's daemons, Cyrus and saslgate, and its tables.
type lcGroup struct {
	name   string
	tables []lcTable
	cyrus  *Daemon
	sgates []lcTarget
}

// lcStartAll starts Cyrus and saslgate for every mechanism: shadow,
// shadow with -r, getpwent, and pam (saslgate with worker processes and
// in-process).
func lcStartAll(t *testing.T, fx *lcFixture) []lcGroup {
	t.Helper()
	return []lcGroup{
		{"shadow", []lcTable{{"accounts", lcCases("shadow", "smtp")}},
			lcStartCyrus(t, fx, "cy-shadow", "shadow"),
			[]lcTarget{{"saslgate", lcStartSaslgate(t, fx, "sg-shadow", "shadow")}}},
		{"shadow-r", []lcTable{{"join-realm", lcShadowJoinCases()}},
			lcStartCyrus(t, fx, "cy-shadow-r", "shadow", "-r"),
			[]lcTarget{{"saslgate", lcStartSaslgate(t, fx, "sg-shadow-r", "shadow", "-r")}}},
		{"getpwent", []lcTable{{"accounts", lcCases("getpwent", "smtp")}},
			lcStartCyrus(t, fx, "cy-getpwent", "getpwent"),
			[]lcTarget{{"saslgate", lcStartSaslgate(t, fx, "sg-getpwent", "getpwent")}}},
		{"pam", []lcTable{
			{"accounts", lcCases("pam", "sgtc-ok")},
			{"services", lcPamServiceCases()},
			{"return-codes", lcPamCodeCases()}},
			lcStartCyrus(t, fx, "cy-pam", "pam"),
			[]lcTarget{
				{"workers", lcStartSaslgate(t, fx, "sg-pam-w", "pam", "--pam-mode", "workers")},
				{"inprocess", lcStartSaslgate(t, fx, "sg-pam-i", "pam", "--pam-mode", "inprocess")}}},
	}
}

// TestLocalCompat: Cyrus and saslgate, the same questions, the same
// answers, for -a shadow (spec §5.2; §13 cases 1, 2, 11, 12, 18, 23, 28,
// 29), -a shadow with -r (cases 24, 25), -a getpwent (§5.3; cases 28, 30)
// and -a pam (§5.1; cases 12, 31: the accounts through sgtc-ok, the
// service field, every PAM return code through pam_debug). Then the auth
// log lines, and the tables again, under load.
func TestLocalCompat(t *testing.T) {
	fx := lcNewFixture(t)
	lcInstallPamServices(t)
	groups := lcStartAll(t, fx)
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tb := range g.tables {
				t.Run(tb.name, func(t *testing.T) { lcCompare(t, lcTarget{"cyrus", g.cyrus}, g.sgates, tb.cases) })
			}
			// The lines an admin or fail2ban reads, in request order.
			for _, sg := range g.sgates {
				sdbCompareRequestLogs(t, &sdbPair{cyrus: g.cyrus, sgate: sg.d})
			}
		})
	}
	t.Run("concurrent", func(t *testing.T) { lcConcurrent(t, groups) })
}

// lcAnswer is one reply received under load.
type lcAnswer struct {
	d     *Daemon
	c     lcCase
	reply string
}

// lcInFlight bounds the requests in flight per daemon: twice its -n 5, so
// that every worker stays busy and some requests queue.
const lcInFlight = 10

// lcFireAll sends every case (the host's own PAM stacks too, unless
// skipSystem) repeat times to every saslgate daemon (and Cyrus too if
// withCyrus), all daemons at once and lcInFlight requests at a time per
// daemon, and returns the replies.
func lcFireAll(groups []lcGroup, repeat int, skipSystem, withCyrus bool) []lcAnswer {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got []lcAnswer
	for _, g := range groups {
		daemons := []*Daemon{}
		for _, sg := range g.sgates {
			daemons = append(daemons, sg.d)
		}
		if withCyrus {
			daemons = append(daemons, g.cyrus)
		}
		for _, d := range daemons {
			sem := make(chan struct{}, lcInFlight)
			for _, tb := range g.tables {
				for _, c := range tb.cases {
					if skipSystem && c.system {
						continue
					}
					for range repeat {
						wg.Add(1)
						go func() {
							defer wg.Done()
							sem <- struct{}{}
							r := lcAsk(d.Socket(), c.req)
							<-sem
							mu.Lock()
							got = append(got, lcAnswer{d, c, r})
							mu.Unlock()
						}()
					}
				}
			}
		}
	}
	wg.Wait()
	return got
}

// lcConcurrent: the tables (but the host's own PAM stacks, which sleep on
// failures) twice over, to every saslgate daemon at once. Under load each
// reply must still be the one Cyrus gives to that question alone (the
// tables check that Cyrus's is the expected one): no transaction may see
// another's password or user, in worker processes or in-process.
func lcConcurrent(t *testing.T, groups []lcGroup) {
	wrong := map[string]int{}
	answers := lcFireAll(groups, 2, true, false)
	for _, a := range answers {
		if a.reply == a.c.want {
			continue
		}
		key := fmt.Sprintf("%s, %s: %q, want %q", a.d.Name, a.c.name, a.reply, a.c.want)
		if wrong[key]++; wrong[key] == 1 {
			t.Errorf("saslgate under load: %s", key)
		}
	}
	t.Logf("%d concurrent requests, %d distinct wrong replies", len(answers), len(wrong))
}

// lcPasswordForms are the ways a password could show up in a log: as is,
// Go-quoted, and ASCII-quoted (the UTF-8 password differs in each).
func lcPasswordForms(pw string) []string {
	forms := []string{pw}
	for _, q := range []string{strconv.Quote(pw), strconv.QuoteToASCII(pw)} {
		forms = append(forms, q[1:len(q)-1])
	}
	slices.Sort(forms)
	return slices.Compact(forms)
}

// TestLocalCompatNoPasswordInLogs: every request of TestLocalCompat's
// tables, sent to saslgate's verbose (-d) daemons, leaves no password in
// their output (pam workers' stderr included). Cyrus's output is checked
// too, for the record only.
func TestLocalCompatNoPasswordInLogs(t *testing.T) {
	fx := lcNewFixture(t)
	lcInstallPamServices(t)
	groups := lcStartAll(t, fx)
	for _, a := range lcFireAll(groups, 1, false, true) {
		if strings.HasPrefix(a.reply, "ERR: ") {
			t.Errorf("no reply: %s, %s: %s", a.d.Name, a.c.name, a.reply)
		}
	}
	type daemon struct {
		d       *Daemon
		isCyrus bool
	}
	var all []daemon
	for _, g := range groups {
		for _, sg := range g.sgates {
			all = append(all, daemon{sg.d, false})
		}
		all = append(all, daemon{g.cyrus, true})
	}
	for _, d := range all {
		// -d logs every request; the lines come through a pipe.
		if !sdbWaitOut(d.d, "auth failure") && !d.isCyrus {
			t.Errorf("%s: no auth failure lines: is -d verbose?\n%s", d.d.Name, d.d.Out.String())
		}
	}
	time.Sleep(300 * time.Millisecond)
	for _, d := range all {
		out := d.d.Out.String()
		hits := 0
		for _, pw := range lcAllPasswords {
			for _, form := range lcPasswordForms(pw) {
				n := strings.Count(out, form)
				if n == 0 {
					continue
				}
				hits += n
				i := strings.Index(out, form)
				line := out[strings.LastIndex(out[:i], "\n")+1:]
				line, _, _ = strings.Cut(line, "\n")
				if d.isCyrus {
					t.Logf("Cyrus %s logs a password %d times, e.g.: %s", d.d.Name, n, line)
				} else {
					t.Errorf("%s logs password %q %d times, e.g.: %s", d.d.Name, form, n, line)
				}
			}
		}
		t.Logf("%s: %d bytes of output, %d password hits", d.d.Name, len(out), hits)
	}
}
