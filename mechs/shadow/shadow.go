// Package shadow is saslauthd's "shadow" mechanism: it checks a password
// against the user's hash in the shadow database (/etc/shadow, or whatever
// nsswitch.conf names for "shadow"), then enforces the account and password
// expiry dates stored next to it.
//
// Behaviour follows saslauthd 2.1.28 (saslauthd/auth_shadow.c), reply for
// reply:
//
//  1. getpwnam(login): no entry is "NO Invalid username"; a failed lookup is
//     "NO Username lookup failure: <strerror>".
//  2. getspnam(login): no entry is "NO Invalid shadow username"; a failed
//     lookup is "NO Username shadow lookup failure: <strerror>".
//  3. A hash of "*NP*" (NIS: no permission to read the hash) is
//     "NO Insufficient permission to access NIS authentication database
//     (saslauthd)".
//  4. crypt(password, hash) must give the hash back, else "NO Incorrect
//     password". Locked ("!..."), "*" and empty hashes never match.
//  5. With today = floor(now / 86400): sp_expire != -1 && today > sp_expire
//     is "NO Account expired" (so sp_expire = 0 means expired); sp_lstchg !=
//     -1 && sp_max != -1 && sp_lstchg+sp_max < today is "NO Password
//     expired". sp_min, sp_warn and sp_inact play no part.
//  6. Otherwise "OK".
//
// The expiry checks come after the password check, as in saslauthd, so an
// expiry reply tells the client the password was right. The realm and
// service are ignored and the login is matched exactly (case-sensitive).
// The mechanism must run as root (or with read access to /etc/shadow).
package shadow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/internal/unixpw"
)

const name = "shadow"

func init() {
	mechs.Register(name, 60, mechs.Constructor(New))
}

// The replies of saslauthd 2.1.28's auth_shadow.c.
const (
	replyOK              = "OK"
	replyNoUser          = "NO Invalid username"
	replyUserLookup      = "NO Username lookup failure: "
	replyNoShadow        = "NO Invalid shadow username"
	replyShadowLookup    = "NO Username shadow lookup failure: "
	replyNIS             = "NO Insufficient permission to access NIS authentication database (saslauthd)"
	replyBadPassword     = "NO Incorrect password"
	replyAccountExpired  = "NO Account expired"
	replyPasswordExpired = "NO Password expired"
)

// nisNoPermission is the hash a NIS client gets when it may not read the
// real one (getspnam(3) on SunOS).
const nisNoPermission = "*NP*"

// secondsPerDay: shadow(5) dates count days since the epoch.
const secondsPerDay = 24 * 60 * 60

// DB is the shadow mechanism: the system's shadow database, read as
// saslauthd reads it. It is safe for concurrent use.
type DB struct {
	sys   system
	now   func() time.Time // time.Now; tests pin it
	fresh *mechs.FileWatch // Generation
}

// system is what the mechanism asks of the host, a seam so that tests can
// produce every reply without root and without real users.
type system struct {
	user   func(ctx context.Context, name string) (*unixpw.Passwd, error)
	shadow func(ctx context.Context, name string) (*unixpw.Shadow, error)
	verify func(password, hash string) bool
	dummy  func(password string) bool
}

var realSystem = system{
	user:   unixpw.LookupUserContext,
	shadow: unixpw.LookupShadowContext,
	verify: unixpw.Verify,
	dummy:  unixpw.VerifyDummy,
}

// shadowFile is where the "files" source reads; New only checks that it
// can be opened.
const shadowFile = "/etc/shadow"

// New builds the mechanism. It takes no options. It fails only where the
// build cannot look users up (no cgo, not Linux). If the process cannot
// read /etc/shadow it logs a warning: the users in that file then all fail
// ("NO Invalid shadow username", or a lookup failure when "files" is the
// only shadow source), as with saslauthd not run as root.
func New(_ mechs.Options, logger *slog.Logger) (*DB, error) {
	if !unixpw.Supported {
		return nil, errors.New("mechs/shadow: this build cannot read the shadow database (it needs cgo on Linux)")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if f, err := os.Open(shadowFile); err == nil {
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		// nsswitch.conf may name other sources, so this is only a warning
		logger.Warn("cannot read the shadow file; its users cannot log in (run as root)",
			"path", shadowFile, "err", err)
	}
	return &DB{sys: realSystem, now: time.Now, fresh: mechs.NewFileWatch(mechs.RacyWindow, freshnessFiles[:]...)}, nil
}

// Name implements mechs.Mechanism.
func (d *DB) Name() string { return name }

// Authenticate implements mechs.Mechanism. Every outcome is a result, never
// an error: a lookup the name service could not answer is TempFail with
// saslauthd's "lookup failure" reply, a request whose ctx ended is TempFail
// with "NO internal mechanism failure", and every other NO is Reject.
//
// Every answer costs one crypt computation (against the dummy hash where
// there is no usable hash), so the time taken does not tell an unknown user
// from a wrong password.
func (d *DB) Authenticate(ctx context.Context, req mechs.Request) (mechs.Result, error) {
	if err := ctx.Err(); err != nil {
		return mechs.Cancelled(name, err), nil
	}
	login, password := req.Login, req.Password.Reveal()

	// saslauthd does not clear errno before getpwnam here (getpwent does),
	// so in builds that use plain getpwnam a stale errno from an earlier
	// call can turn "no such user" into a "lookup failure" reply.
	// getpwnam_r returns its error instead of leaving it in errno, so that
	// cannot happen here: a bug not worth keeping.
	pw, err := d.sys.user(ctx, login)
	switch {
	case mechs.IsContextErr(err):
		return mechs.Cancelled(name, err), nil
	case err != nil:
		d.sys.dummy(password)
		return mechs.TempFailed(replyUserLookup+unixpw.ErrnoText(err), "mechs/shadow: user lookup failed: "+err.Error()), nil
	case pw == nil:
		d.sys.dummy(password)
		return mechs.Rejected(replyNoUser, "no such user (getpwnam)"), nil
	}

	sp, err := d.sys.shadow(ctx, login)
	switch {
	case mechs.IsContextErr(err):
		return mechs.Cancelled(name, err), nil
	case err != nil:
		d.sys.dummy(password)
		return mechs.TempFailed(replyShadowLookup+unixpw.ErrnoText(err), "mechs/shadow: shadow lookup failed: "+err.Error()), nil
	case sp == nil:
		d.sys.dummy(password)
		return mechs.Rejected(replyNoShadow, "user has no shadow entry (getspnam); unprivileged processes get this too"), nil
	case sp.Password == nisNoPermission:
		d.sys.dummy(password)
		return mechs.Rejected(replyNIS, "shadow hash is *NP*: no permission to read it from NIS"), nil
	}

	if err := ctx.Err(); err != nil {
		return mechs.Cancelled(name, err), nil
	}
	if !d.sys.verify(password, sp.Password) {
		return mechs.Rejected(replyBadPassword, unixpw.MismatchReason("shadow hash", sp.Password)), nil
	}

	today := d.now().Unix() / secondsPerDay
	if sp.Expire != -1 && today > sp.Expire {
		return mechs.Rejected(replyAccountExpired,
			fmt.Sprintf("password right, but the account expired on day %d (today is day %d)", sp.Expire, today)), nil
	}
	if sp.LastChange != -1 && sp.Max != -1 && sumLess(sp.LastChange, sp.Max, today) {
		return mechs.Rejected(replyPasswordExpired,
			fmt.Sprintf("password right, but it is too old: changed on day %d, valid for %d days (today is day %d)",
				sp.LastChange, sp.Max, today)), nil
	}
	return mechs.Accepted(replyOK), nil
}

// sumLess reports a+b < c without overflowing: saslauthd computes
// sp_lstchg + sp_max in a C long, and a huge sp_max there is undefined
// behaviour; here it means "never expires", as it plainly should.
func sumLess(a, b, c int64) bool {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return false // a+b is above every int64
	case b < 0 && a < math.MinInt64-b:
		return true // a+b is below every int64
	}
	return a+b < c
}

// Interface guards
var _ mechs.Mechanism = (*DB)(nil)
