package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// maxLinks bounds the symbolic links followed while resolving one path, as
// the kernel's ELOOP does (40).
const maxLinks = 40

// maxFileSize bounds what a config file read may return: these files are a
// few KiB; a huge one is a mistake, not something to load.
const maxFileSize = 4 << 20

var errLoop = errors.New("too many levels of symbolic links")

// rootFS reads the system's files under a root directory: every absolute
// path is taken relative to it, symbolic links included, so that a fixture
// tree with /var/run -> /run behaves as the system it copies.
type rootFS struct {
	root string // host path; "/" for the live system
}

// host is p under the root, symbolic links left alone.
func (r rootFS) host(p string) string {
	return filepath.Join(r.root, filepath.Clean("/"+p))
}

// resolve follows the symbolic links of the logical path p inside base (a
// logical directory that acts as "/": the root itself, or a chroot in it)
// and returns the logical path reached. A missing component ends the walk:
// the rest is appended as is.
func (r rootFS) resolve(base, p string) (string, error) {
	base = path.Clean("/" + base)
	rest := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	cur := "/" // relative to base
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, name)
		fi, err := os.Lstat(r.host(path.Join(base, next)))
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			if err != nil {
				cur = path.Join(append([]string{cur}, rest...)...)
				rest = nil
			}
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("doctor: %s: %w", p, errLoop)
		}
		target, err := os.Readlink(r.host(path.Join(base, next)))
		if err != nil {
			return "", fmt.Errorf("doctor: %w", err)
		}
		if !path.IsAbs(target) {
			target = path.Join(cur, target)
		}
		rest = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), rest...)
		cur = "/"
	}
	return path.Join(base, cur), nil
}

// stat resolves p inside base and stats what it reaches; the logical
// path reached is returned with it.
func (r rootFS) stat(base, p string) (string, fs.FileInfo, error) {
	real, err := r.resolve(base, p)
	if err != nil {
		return p, nil, err
	}
	fi, err := os.Stat(r.host(real))
	return real, fi, err
}

// readFile reads the logical path p (links resolved under the root).
func (r rootFS) readFile(p string) ([]byte, error) {
	real, err := r.resolve("/", p)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(r.host(real))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("doctor: %s: not a regular file", p)
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("doctor: %s: larger than %d bytes", p, maxFileSize)
	}
	b := make([]byte, fi.Size())
	n, err := f.ReadAt(b, 0)
	if err != nil && n != len(b) {
		return nil, fmt.Errorf("doctor: %s: %w", p, err)
	}
	return b, nil
}

// exists reports whether the logical path p exists (links followed).
func (r rootFS) exists(p string) bool {
	_, _, err := r.stat("/", p)
	return err == nil
}

// glob matches a pattern of logical paths; the results are logical.
func (r rootFS) glob(pattern string) []string {
	m, _ := filepath.Glob(r.host(pattern))
	out := make([]string, 0, len(m))
	for _, h := range m {
		rel, err := filepath.Rel(r.root, h)
		if err == nil {
			out = append(out, "/"+filepath.ToSlash(rel))
		}
	}
	return out
}

// owner returns the uid, gid and permission bits of a stat result.
func owner(fi fs.FileInfo) (uid, gid int, perm fs.FileMode) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid), fi.Mode().Perm()
	}
	return -1, -1, fi.Mode().Perm()
}
