package getpwent

import "github.com/saslgate/saslgate/mechs"

// freshnessFiles are what the "files" NSS source reads for getpwnam, and
// nsswitch.conf, which says which sources are asked.
var freshnessFiles = [...]string{"/etc/passwd", "/etc/nsswitch.conf"}

// Generation implements mechs.Freshness: it changes when one of
// freshnessFiles changes, so that a cache drops this mechanism's answers at
// once. It is a mechs.FileWatch (an inotify read, or two stat calls). Users
// served by another NSS source (nis, ldap, sss) are not tracked: for them
// the cache's TTL applies.
func (d *DB) Generation() uint64 {
	return d.fresh.Generation()
}

// Close releases the file watch.
func (d *DB) Close() error {
	return d.fresh.Close()
}

var _ mechs.Freshness = (*DB)(nil)
