package sasldb

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// DefaultPath is where Debian's saslauthd and saslpasswd2 keep the database.
const DefaultPath = "/etc/sasldb2"

// PasswordProperty is the property saslauthd checks; saslpasswd2 2.1.28
// writes only this one.
const PasswordProperty = "userPassword"

// ErrFormat is wrapped by every error about a file's content: not a Berkeley
// DB hash file, damaged, truncated, or using a feature sasldb never uses
// (encryption, duplicates, sub-databases).
var ErrFormat = errors.New("mechs/sasldb: invalid Berkeley DB hash file")

// File is the content of a sasldb file, read once and kept in memory.
// It is safe for concurrent use.
type File struct {
	m map[string]string // login \0 realm \0 property -> value
}

// Entry is one property of one user, as sasldblistusers2 lists it.
type Entry struct {
	Login, Realm, Property string
}

// ReadFile reads and parses a whole sasldb file. Errors wrap the os error
// (errors.Is(err, fs.ErrNotExist) for a missing file) or ErrFormat. A file
// that is not a regular file, or that changes while it is read, is refused.
func ReadFile(path string) (*File, error) {
	b, _, err := readStable(path)
	if err != nil {
		return nil, err
	}
	return parseFile(path, b)
}

func parseFile(name string, b []byte) (*File, error) {
	m, err := parseDB(name, b)
	if err != nil {
		return nil, err
	}
	return &File{m: m}, nil
}

// Lookup returns a copy of the value stored for login in realm under
// property (PasswordProperty for the password). Names are matched exactly,
// as the key bytes they are.
func (f *File) Lookup(login, realm, prop string) ([]byte, bool) {
	v, ok := f.get(login, realm, prop)
	if !ok {
		return nil, false
	}
	return []byte(v), true
}

func (f *File) get(login, realm, prop string) (string, bool) {
	v, ok := f.m[key(login, realm, prop)]
	return v, ok
}

// key is sasldb's _sasldb_alloc_key: three strings joined by NULs, no
// trailing NUL.
func key(login, realm, prop string) string {
	return login + "\x00" + realm + "\x00" + prop
}

// Entries lists every user property in the file, sorted. Keys that are not
// in sasldb's three-part form are left out.
func (f *File) Entries() []Entry {
	es := make([]Entry, 0, len(f.m))
	for k := range f.m {
		login, rest, ok1 := strings.Cut(k, "\x00")
		realm, prop, ok2 := strings.Cut(rest, "\x00")
		if ok1 && ok2 {
			es = append(es, Entry{Login: login, Realm: realm, Property: prop})
		}
	}
	slices.SortFunc(es, func(a, b Entry) int {
		if c := strings.Compare(a.Login, b.Login); c != 0 {
			return c
		}
		if c := strings.Compare(a.Realm, b.Realm); c != 0 {
			return c
		}
		return strings.Compare(a.Property, b.Property)
	})
	return es
}

// readStable reads the whole file and the stamp it had while being read. It
// fails with errChanged if the file was modified during the read, when the
// bytes may mix two versions.
func readStable(path string) (b []byte, st stamp, err error) {
	f, err := openFile(path)
	if err != nil {
		return nil, stamp{}, fmt.Errorf("mechs/sasldb: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, stamp{}, fmt.Errorf("mechs/sasldb: %w", err)
	}
	if !fi.Mode().IsRegular() {
		// a FIFO or device here would block the read or never end
		return nil, stamp{}, fmt.Errorf("mechs/sasldb: %s: %w", path, errNotRegular)
	}
	st = stampOf(fi)
	if st.size > maxFileSize {
		return nil, st, fmt.Errorf("%w: %s: %d bytes is more than the %d this reader accepts", ErrFormat, path, st.size, maxFileSize)
	}
	b = make([]byte, st.size)
	if _, err := io.ReadFull(f, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, st, fmt.Errorf("mechs/sasldb: %s: %w", path, errChanged)
		}
		return nil, st, fmt.Errorf("mechs/sasldb: %w", err)
	}
	if fi, err = f.Stat(); err != nil {
		return nil, st, fmt.Errorf("mechs/sasldb: %w", err)
	}
	if stampOf(fi) != st {
		return nil, st, fmt.Errorf("mechs/sasldb: %s: %w", path, errChanged)
	}
	return b, st, nil
}

// maxFileSize keeps a wrong path (a disk image, say) from exhausting memory;
// a sasldb of a million users is still well under it.
const maxFileSize = 1 << 30

var (
	errNotRegular = errors.New("not a regular file")
	errChanged    = errors.New("file changed while being read")
)

// openFile opens without following the caller into a blocking open: see
// openFlags.
func openFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|openFlags, 0)
}
