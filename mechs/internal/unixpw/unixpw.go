// Package unixpw is the system side of the shadow and getpwent mechanisms:
// user and shadow lookups through the C library, so that every source
// nsswitch.conf names (files, systemd, sss, ldap, ...) answers as it does
// for login(1), and password checks through libxcrypt's crypt_rn, so that
// every hash format passwd(1), chpasswd(8) or usermod(8) can write is
// understood exactly as the system understands it.
//
// Lookups use the reentrant getpwnam_r and getspnam_r. Unlike saslauthd's
// fixed 1 KiB buffer they grow theirs on ERANGE, and they report a lookup
// failure through the function's return value rather than through errno, so
// a stale errno can never turn "no such user" into a failure.
//
// Verify never keeps a copy of a password: it is handed to C in memory that
// is zeroed and freed as soon as crypt returns. Checks that have no hash to
// run against (unknown user, unusable hash) run crypt against a dummy
// yescrypt hash instead, so they cost about what a real check costs.
//
// The package needs cgo and Linux; elsewhere Supported is false and every
// function fails.
package unixpw

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// Passwd is a passwd(5) entry, as getpwnam returns it.
type Passwd struct {
	Name   string
	Passwd string // the password field: a hash, or "x" when the hash is in shadow(5)
	UID    uint32
	GID    uint32
	Gecos  string
	Dir    string
	Shell  string
}

// Shadow is a shadow(5) entry, as getspnam returns it. Dates are days since
// 1970-01-01 and periods are days; a field that is empty in the file is -1,
// as the C library reports it.
type Shadow struct {
	Name       string
	Password   string // sp_pwdp: the hash; "!..." when locked, "*" or "" when unusable
	LastChange int64  // sp_lstchg: 0 means the password must be changed
	Min        int64  // sp_min
	Max        int64  // sp_max
	Warn       int64  // sp_warn
	Inactive   int64  // sp_inact
	Expire     int64  // sp_expire: the account expires after this day
}

// LookupError is a lookup the name service could not answer (a file it
// cannot read, a directory server that is down, a buffer that cannot grow),
// as opposed to an answer of "no such entry".
type LookupError struct {
	Op    string // "getpwnam" or "getspnam"
	Name  string
	Errno syscall.Errno
}

func (e *LookupError) Error() string {
	return fmt.Sprintf("unixpw: %s(%q): %s", e.Op, e.Name, Strerror(e.Errno))
}

// Unwrap returns the errno, so that errors.Is(err, syscall.EACCES) works.
func (e *LookupError) Unwrap() error { return e.Errno }

// ErrnoText is the errno text saslauthd puts in a lookup-failure reply. An
// error without an errno (none is expected) does not put its own text on
// the wire: the reason in the log has it.
func ErrnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return Strerror(errno)
	}
	return "Unknown error"
}

// MismatchReason says, for the log, why a password field did not match: a
// locked account and a wrong password get the same reply, but not the same
// fix. what names the field ("shadow hash", "password field").
func MismatchReason(what, hash string) string {
	switch {
	case hash == "":
		return "password mismatch: the " + what + " is empty"
	case strings.HasPrefix(hash, "!"):
		return "password mismatch: the account is locked (" + what + " starts with '!')"
	case strings.HasPrefix(hash, "*"):
		return "password mismatch: the account has no password (" + what + " starts with '*')"
	}
	return "password mismatch"
}
