package config_test

import (
	"testing"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/daemon/config"
)

// TestDefaultsMatchDaemon: the documented defaults of the keys that have a
// daemon constant are those constants (config cannot import daemon, which
// will import config).
func TestDefaultsMatchDaemon(t *testing.T) {
	d := config.Default()
	if d.ReadTimeout != daemon.DefaultReadTimeout || d.DrainTimeout != daemon.DefaultDrainTimeout ||
		d.RequestTimeout != daemon.DefaultRequestTimeout || d.MaxConns != daemon.DefaultMaxConns {
		t.Errorf("defaults differ from the daemon's: %+v", d)
	}
	// -s: saslauthd's 1711 slots x 6 buckets x 96 bytes, in KiB rounded up
	if got := (1711*6*daemon.CacheEntryBytes + 1023) / 1024; d.CacheSizeKiB != got {
		t.Errorf("cache_size_kib default %d, want %d", d.CacheSizeKiB, got)
	}
}
