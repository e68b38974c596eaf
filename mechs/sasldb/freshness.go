package sasldb

import "github.com/saslgate/saslgate/mechs"

// Generation implements mechs.Freshness: it changes whenever the sasldb
// file does (saslpasswd2 rewrites it in place, so mtime and ctime are what
// move), so that a cache drops this mechanism's answers at once. It is one
// stat of the file. For RacyWindow after a change, and while the file
// cannot be stat'ed (other than not existing), it is mechs.GenUnknown and
// nothing is cached.
func (d *DB) Generation() uint64 {
	return mechs.FileGeneration(d.racy, d.path)
}

var _ mechs.Freshness = (*DB)(nil)
