package shadow

import (
	"time"

	"github.com/saslgate/saslgate/mechs"
)

// freshnessFiles are what the "files" NSS source reads for getpwnam and
// getspnam, and nsswitch.conf, which says which sources are asked.
var freshnessFiles = [...]string{"/etc/passwd", shadowFile, "/etc/nsswitch.conf"}

// Generation implements mechs.Freshness. It changes when one of
// freshnessFiles changes (passwd, chpasswd, usermod -L, chage, vipw) and
// when the day changes, since the expiry checks count whole days: a cache
// then drops this mechanism's answers at once. It is a mechs.FileWatch (an
// inotify read, or three stat calls).
//
// Users served by another NSS source (sss, ldap, nis, systemd-homed) are
// not tracked: for them the cache's TTL applies, as with pam.
func (d *DB) Generation() uint64 {
	g := d.fresh.Generation()
	if g == mechs.GenUnknown {
		return g
	}
	now := time.Now
	if d.now != nil {
		now = d.now
	}
	// the day as Authenticate computes it; multiplying by an odd constant
	// maps distinct days to distinct values
	g ^= uint64(now().Unix()/secondsPerDay) * 0x9e3779b97f4a7c15
	if g == mechs.GenUnknown {
		g = 1
	}
	return g
}

// Close releases the file watch.
func (d *DB) Close() error {
	return d.fresh.Close()
}

var _ mechs.Freshness = (*DB)(nil)
