package sasldb

import "github.com/saslgate/saslgate/mechs"

// Generation implements mechs.Freshness: it changes whenever the sasldb
// file does (saslpasswd2 rewrites it in place), so that a cache drops this
// mechanism's answers at once. It is a mechs.FileWatch: one non-blocking
// read of an inotify descriptor, or where that cannot be trusted a stat of
// the file, mechs.GenUnknown for the racy window after a change.
func (d *DB) Generation() uint64 {
	return d.fresh.Generation()
}

// Close releases the file watch.
func (d *DB) Close() error {
	return d.fresh.Close()
}

var _ mechs.Freshness = (*DB)(nil)
