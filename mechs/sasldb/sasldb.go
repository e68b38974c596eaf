// Package sasldb is saslauthd's "sasldb" mechanism: it checks a password
// against the clear-text userPassword that Cyrus SASL's saslpasswd2 stores
// for login@realm in a sasldb2 file.
//
// The file is read with a pure Go reader for Berkeley DB hash databases
// (the format Debian's libsasl2-modules-db writes), so neither cgo nor
// libdb is needed. The reader is exported as ReadFile for tools that list
// users and realms.
//
// Behaviour follows saslauthd 2.1.28 (saslauthd/auth_sasldb.c): the key is
// login, realm and "userPassword" joined by NULs; an empty realm means the
// host name; the login is never split at "@"; the stored value is compared
// as strcmp does; every outcome is answered with a bare "OK" or "NO". Like
// saslauthd, which reopens the database for each request, changes made by
// saslpasswd2 take effect on the next request without a restart.
package sasldb

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/saslgate/saslgate/mechs"
)

const name = "sasldb"

func init() {
	mechs.Register(name, 10, mechs.Constructor(New))
}

const (
	// racyWindow: a write landing in the same clock tick as our read leaves
	// mtime and ctime unchanged, so a stamp younger than this cannot prove
	// the file unchanged and the file is read again on the next request.
	// File system timestamps are coarse (a jiffy on ext4, 2 s on FAT).
	racyWindow = 2 * time.Second
	// saslpasswd2 writes pages one by one without locking: a read that
	// overlaps it is retried a few times before giving up.
	readAttempts = 3
	retryDelay   = 20 * time.Millisecond
	// maxValue mirrors _sasldb_getdata, which fails values of more than
	// 1024+1 bytes for saslauthd's 1024-byte buffer.
	maxValue = 1025
)

// DB is the sasldb mechanism. It is safe for concurrent use.
type DB struct {
	path   string
	logger *slog.Logger

	// hostname is the realm used when a request has none, read once at
	// start; hostErr is why it could not be read.
	hostname string
	hostErr  error

	racy time.Duration // racyWindow, shortened by tests

	fresh *mechs.FileWatch // Generation

	cur atomic.Pointer[snapshot] // what requests read, lock-free
	mu  sync.Mutex               // one reload at a time; guards logged
	// logged is the file state last reported in the log, so that each
	// change is logged once rather than on every request.
	logged fileState
	reads  atomic.Int64 // how many times the file was read, for tests
}

type fileState uint8

const (
	stateUnknown fileState = iota
	stateOK
	stateMissing
	stateUnreadable
	stateCorrupt
)

// snapshot is one read of the file and what came of it.
type snapshot struct {
	st     stamp
	file   *File // set when state is stateOK
	err    error // set otherwise
	state  fileState
	racy   bool // see racyWindow
	readAt time.Time
}

// New builds the mechanism. Options.Values["sasldb_path"] names the file
// (DefaultPath if unset). A missing or damaged file is not an error here:
// it is logged, and requests are refused until it is fixed.
func New(opts mechs.Options, logger *slog.Logger) (*DB, error) {
	path, err := parse(opts)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &DB{path: path, logger: logger, racy: racyWindow, fresh: mechs.NewFileWatch(racyWindow, path)}
	// saslauthd calls gethostname() per request; the name does not change
	// under a running mail server, and reading it once keeps a failure
	// visible at start.
	d.hostname, d.hostErr = os.Hostname()
	if d.hostErr != nil {
		d.hostErr = fmt.Errorf("mechs/sasldb: cannot get the host name for the default realm: %w", d.hostErr)
		logger.Warn("requests with an empty realm will fail", "err", d.hostErr)
	} else {
		logger.Debug("default realm", "realm", d.hostname, "path", path)
	}
	d.current(context.Background()) // log the file's state at start
	return d, nil
}

// parse reads the mechanism's settings. Unknown keys are left alone: Values
// is shared with the other mechanisms.
func parse(opts mechs.Options) (string, error) {
	path := opts.Get("sasldb_path", DefaultPath)
	if path == "" {
		return "", errors.New("mechs/sasldb: sasldb_path is empty")
	}
	return path, nil
}

// Name implements mechs.Mechanism.
func (d *DB) Name() string { return name }

// Authenticate implements mechs.Mechanism. The reply is always a bare "OK"
// or "NO", as saslauthd's.
func (d *DB) Authenticate(ctx context.Context, req mechs.Request) (mechs.Result, error) {
	if err := ctx.Err(); err != nil {
		return mechs.TempFailed("NO", err.Error()), nil
	}
	realm := req.Realm
	if realm == "" {
		if d.hostErr != nil {
			return mechs.TempFailed("NO", d.hostErr.Error()), nil
		}
		realm = d.hostname
	}
	s := d.current(ctx)
	switch s.state {
	case stateOK:
	case stateMissing:
		// as saslauthd: no database, no users
		return mechs.Rejected("NO", s.err.Error()), nil
	default:
		return mechs.TempFailed("NO", s.err.Error()), nil
	}

	stored, found := s.file.get(req.Login, realm, PasswordProperty)
	if len(stored) > maxValue {
		return mechs.Rejected("NO", "stored password is longer than saslauthd accepts"), nil
	}
	// strcmp stops at the first NUL; the client's password cannot hold one
	// (the protocol cuts it there), but a stored value could.
	if i := strings.IndexByte(stored, 0); i >= 0 {
		stored = stored[:i]
	}
	// An unknown user costs the same comparison as a known one.
	ok := equal(stored, req.Password.Reveal()) && found
	switch {
	case ok:
		return mechs.Accepted("OK"), nil
	case !found:
		return mechs.Rejected("NO", fmt.Sprintf("user not found in realm %q", realm)), nil
	}
	return mechs.Rejected("NO", "password mismatch"), nil
}

// equal compares in time that depends only on the longer length: both
// sides are padded to it so that ConstantTimeCompare never returns early,
// and the lengths are compared without a branch.
func equal(stored, given string) bool {
	n := max(len(stored), len(given))
	a := make([]byte, n)
	b := make([]byte, n)
	copy(a, stored)
	copy(b, given)
	sameLen := subtle.ConstantTimeEq(int32(len(stored)), int32(len(given)))
	return subtle.ConstantTimeCompare(a, b)&sameLen == 1
}

// current returns the snapshot for the file as it is now: the cached one
// if a stat shows the file unchanged, else a fresh read.
func (d *DB) current(ctx context.Context) *snapshot {
	start := time.Now()
	st, statErr := statPath(d.path)
	if cur := d.cur.Load(); cur != nil && cur.fresh(st, statErr) {
		return cur
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// Another request may have read the file while this one waited; a read
	// that began after this request did is as good as a new one.
	if cur := d.cur.Load(); cur != nil && (cur.fresh(st, statErr) || cur.readAt.After(start)) {
		return cur
	}
	next := d.load(ctx)
	d.report(d.cur.Load(), next)
	d.cur.Store(next)
	return next
}

func statPath(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stampOf(fi), nil
}

// fresh reports whether s still describes the file that stat saw. Only
// outcomes that depend on the content alone are kept; open and read errors
// (EMFILE, EIO, ...) are retried on the next request.
func (s *snapshot) fresh(st stamp, statErr error) bool {
	if statErr != nil {
		return s.state == stateMissing && errors.Is(statErr, fs.ErrNotExist)
	}
	return (s.state == stateOK || s.state == stateCorrupt) && !s.racy && s.st == st
}

// load reads the file, retrying while it looks half-written.
func (d *DB) load(ctx context.Context) *snapshot {
	for attempt := 1; ; attempt++ {
		s := d.read()
		busy := errors.Is(s.err, errChanged) || s.state == stateCorrupt && s.racy
		if !busy || attempt == readAttempts {
			return s
		}
		t := time.NewTimer(time.Duration(attempt) * retryDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return s
		case <-t.C:
		}
	}
}

func (d *DB) read() *snapshot {
	d.reads.Add(1)
	b, st, err := readStable(d.path)
	s := &snapshot{st: st, readAt: time.Now()}
	s.racy = s.readAt.UnixNano()-max(st.mtime, st.ctime) < int64(d.racy)
	switch {
	case err == nil:
		if s.file, s.err = parseFile(d.path, b); s.err != nil {
			s.state = stateCorrupt
		} else {
			s.state = stateOK
		}
	case errors.Is(err, fs.ErrNotExist):
		s.state, s.err = stateMissing, err
	case errors.Is(err, ErrFormat):
		s.state, s.err = stateCorrupt, err
	default:
		s.state, s.err = stateUnreadable, err
	}
	return s
}

// report logs a change of the file's state, once. Called with d.mu held.
func (d *DB) report(prev, next *snapshot) {
	was := d.logged
	d.logged = next.state
	if next.state == stateOK && (prev == nil || prev.st != next.st) {
		d.logger.Debug("sasldb file loaded", "path", d.path, "entries", len(next.file.m))
	}
	if next.state == was {
		return
	}
	const fails = "; every sasldb login fails until it is fixed"
	switch next.state {
	case stateOK:
		if was != stateUnknown {
			d.logger.Warn("sasldb file is readable again", "path", d.path)
		}
	case stateMissing:
		d.logger.Warn("sasldb file does not exist"+fails, "path", d.path)
	case stateUnreadable:
		d.logger.Error("cannot read the sasldb file"+fails, "path", d.path, "err", next.err)
	case stateCorrupt:
		d.logger.Error("sasldb file is damaged or not a Berkeley DB hash file"+fails, "path", d.path, "err", next.err)
	}
}

// Interface guards
var _ mechs.Mechanism = (*DB)(nil)
