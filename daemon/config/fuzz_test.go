package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/saslgate/saslgate/daemon/config"
)

// FuzzParse: Parse never panics; every error is a *config.Error naming a
// line; a file that parses round-trips through String and Format.
func FuzzParse(f *testing.F) {
	var sample strings.Builder
	_ = config.WriteSample(&sample)
	for _, s := range []string{
		"",
		sample.String(),
		"mech: sasldb,pam\nprocs: 0\ncache: yes\ncache_ttl: 28800\n",
		"MECH: pam\r\nrealm_strip: all\r\nrealm_join: on\r\n",
		"realm_split: yes\ndefault_realm: Example.COM\nrealm_lowercase: 1\nlogin_lowercase: t\nlogin_chars: abc.-_@\n",
		"realm_strip: a.com b.com\nrealm_strip: c.org\n",
		"service_map: smtp=mail, imap = dovecot; *=other\nservice_mech: imap=rimap; smtp=sasldb pam\n",
		"read_timeout: 1m30s\ndrain_timeout: 500ms\nrequest_timeout: 60\nmax_conns: 1\nlog_level: 2\n",
		"run_dir: /run/x\nsasldb_path: /etc/sasldb2\npam_mode: InProcess\nmech_option: host/993\n",
		"mech : pam\nmech pam\n: x\nmech:\nprocs: x\nfoo: bar\n",
		"\xef\xbb\xbf  # bom\n\tprocs:\t3\t\n",
		"mech_option: " + strings.Repeat("x", 4082) + "\n",
		"cache_ttl: 1h0m0.5s\nmech_option: #x\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := config.Parse(strings.NewReader(src), "f.conf")
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || ce.File != "f.conf" {
				t.Fatalf("error %q is not a *config.Error", err)
			}
			for _, l := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(l, "config: f.conf:") {
					t.Fatalf("error line %q names no line", l)
				}
			}
			return
		}
		s := c.String()
		c2, err := config.Parse(strings.NewReader(s), "f.conf")
		if err != nil {
			t.Fatalf("String() does not parse: %v\n%s", err, s)
		}
		if s2 := c2.String(); s2 != s {
			t.Fatalf("round trip:\n%s\nbecame\n%s", s, s2)
		}
		if fields(c2) != fields(c) {
			t.Fatalf("round trip changed values:\n%s\nbecame\n%s", fields(c), fields(c2))
		}
		var all strings.Builder
		if err := c.Format(&all, true); err != nil {
			t.Fatal(err)
		}
		c3, err := config.Parse(strings.NewReader(all.String()), "f.conf")
		if err != nil || c3.String() != s || fields(c3) != fields(c) {
			t.Fatalf("Format(all) round trip: %v\n%s", err, all.String())
		}
	})
}
