// Package getpwent is saslauthd's "getpwent" mechanism: it checks a
// password against the password field of the user's passwd entry, as
// getpwnam(3) returns it.
//
// Behaviour follows saslauthd 2.1.28 (saslauthd/auth_getpwent.c):
//
//  1. getpwnam(login), errno cleared first: no entry is "NO Invalid
//     username"; a failed lookup is "NO Username lookup failure:
//     <strerror>".
//  2. crypt(password, pw_passwd) must give pw_passwd back: "OK", else
//     "NO Incorrect password".
//
// There is no shadow lookup and no expiry check. On a system with shadow
// passwords, which is every current Linux, pw_passwd is "x" and every login
// fails with "NO Incorrect password"; the mechanism is only useful where
// the hash is in passwd itself (an NSS source such as NIS or LDAP that
// serves it there). The realm and service are ignored and the login is
// matched exactly (case-sensitive).
package getpwent

import (
	"context"
	"errors"
	"log/slog"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/internal/unixpw"
)

const name = "getpwent"

func init() {
	mechs.Register(name, 20, mechs.Constructor(New))
}

// The replies of saslauthd 2.1.28's auth_getpwent.c.
const (
	replyOK          = "OK"
	replyNoUser      = "NO Invalid username"
	replyUserLookup  = "NO Username lookup failure: "
	replyBadPassword = "NO Incorrect password"
)

// shadowed is the password field of a user whose hash is in shadow(5).
const shadowed = "x"

// DB is the getpwent mechanism: the system's passwd database, read as
// saslauthd reads it. It is safe for concurrent use.
type DB struct {
	sys   system
	fresh *mechs.FileWatch // Generation
}

// system is what the mechanism asks of the host, a seam so that tests can
// produce every reply without real users.
type system struct {
	user   func(ctx context.Context, name string) (*unixpw.Passwd, error)
	verify func(password, hash string) bool
	dummy  func(password string) bool
}

var realSystem = system{
	user:   unixpw.LookupUserContext,
	verify: unixpw.Verify,
	dummy:  unixpw.VerifyDummy,
}

// New builds the mechanism. It takes no options. It fails only where the
// build cannot look users up (no cgo, not Linux). When root's passwd entry
// shows the hashes are in shadow, it warns that every login will fail.
func New(_ mechs.Options, logger *slog.Logger) (*DB, error) {
	if !unixpw.Supported {
		return nil, errors.New("mechs/getpwent: this build cannot read the passwd database (it needs cgo on Linux)")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &DB{sys: realSystem, fresh: mechs.NewFileWatch(mechs.RacyWindow, freshnessFiles[:]...)}
	d.warnIfShadowed(logger)
	return d, nil
}

// warnIfShadowed logs once, at start, what saslauthd never says: with
// shadow passwords this mechanism cannot accept anyone.
func (d *DB) warnIfShadowed(logger *slog.Logger) {
	if pw, err := d.sys.user(context.Background(), "root"); err == nil && pw != nil && pw.Passwd == shadowed {
		logger.Warn("passwd entries hold no hashes here (they are in the shadow file); " +
			"every getpwent login will fail with \"NO Incorrect password\": use the shadow or pam mechanism")
	}
}

// Name implements mechs.Mechanism.
func (d *DB) Name() string { return name }

// Authenticate implements mechs.Mechanism. Every outcome is a result, never
// an error: a lookup the name service could not answer is TempFail with
// saslauthd's "lookup failure" reply, a request whose ctx ended is TempFail
// with "NO internal mechanism failure", and every other NO is Reject. Every
// answer costs one crypt computation, so the time taken does not tell an
// unknown user from a wrong password.
func (d *DB) Authenticate(ctx context.Context, req mechs.Request) (mechs.Result, error) {
	if err := ctx.Err(); err != nil {
		return mechs.Cancelled(name, err), nil
	}
	password := req.Password.Reveal()
	pw, err := d.sys.user(ctx, req.Login)
	switch {
	case mechs.IsContextErr(err):
		return mechs.Cancelled(name, err), nil
	case err != nil:
		d.sys.dummy(password)
		return mechs.TempFailed(replyUserLookup+unixpw.ErrnoText(err), "mechs/getpwent: user lookup failed: "+err.Error()), nil
	case pw == nil:
		d.sys.dummy(password)
		return mechs.Rejected(replyNoUser, "no such user (getpwnam)"), nil
	}
	if err := ctx.Err(); err != nil {
		return mechs.Cancelled(name, err), nil
	}
	if !d.sys.verify(password, pw.Passwd) {
		return mechs.Rejected(replyBadPassword, mismatch(pw.Passwd)), nil
	}
	return mechs.Accepted(replyOK), nil
}

// mismatch says, for the log, why the password field did not match.
func mismatch(hash string) string {
	if hash == shadowed {
		return "password mismatch: the passwd entry holds no hash ('x': it is in the shadow file)"
	}
	return unixpw.MismatchReason("password field", hash)
}

// Interface guards
var _ mechs.Mechanism = (*DB)(nil)
