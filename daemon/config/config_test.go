package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/saslgate/saslgate/daemon/config"
	"github.com/saslgate/saslgate/daemon/rewrite"
	"github.com/saslgate/saslgate/mechs"
)

const name = "/etc/saslgate.conf"

func parse(t *testing.T, src string) *config.Config {
	t.Helper()
	c, err := config.Parse(strings.NewReader(src), name)
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return c
}

func TestParseFullFile(t *testing.T) {
	src := "# saslgate\n" +
		"\n" +
		"   # indented comment\n" +
		"MECH: sasldb, PAM\n" +
		"mech_option: imap.example.com/993  \n" + // trailing spaces trimmed
		"\tsasldb_path:\t/var/lib/sasldb2\n" +
		"pam_mode: InProcess\n" +
		"run_dir: /var/spool/postfix/var/run/saslauthd\n" +
		"procs: 0\n" +
		"max_conns: 100\n" +
		"read_timeout: 5s\n" +
		"drain_timeout: 1m30s\n" +
		"request_timeout: 120\n" +
		"cache: yes\n" +
		"cache_size_kib: 2048\n" +
		"cache_ttl: 3600\n" +
		"realm_split: on\n" +
		"default_realm: Example.COM\n" +
		"realm_lowercase: true\n" +
		"login_lowercase: 1\n" +
		"login_chars: abcdefghijklmnopqrstuvwxyz0123456789.-_@ü\n" +
		"realm_strip: example.com, Example.NET\n" +
		"realm_strip: example.org\n" +
		"realm_join: y\n" +
		"service_map: smtp=mail imap = dovecot\n" +
		"service_map: *=other\n" +
		"service_mech: imap=rimap; smtp = sasldb , pam\n" +
		"service_mech: pop=RIMAP\n" +
		"log_level: 2\n"
	c := parse(t, src)
	want := &config.Config{
		Mech: []string{"sasldb", "pam"}, MechOption: "imap.example.com/993", SasldbPath: "/var/lib/sasldb2", PAMMode: "inprocess",
		RunDir: "/var/spool/postfix/var/run/saslauthd", Procs: 0, MaxConns: 100,
		ReadTimeout: 5 * time.Second, DrainTimeout: 90 * time.Second, RequestTimeout: 2 * time.Minute,
		Cache: true, CacheSizeKiB: 2048, CacheTTL: time.Hour,
		FailureDelay: 2 * time.Second, PenaltyBase: 2 * time.Second, PenaltyMax: 15 * time.Second, PenaltyDecay: 5 * time.Minute,
		RealmSplit: true, DefaultRealm: "Example.COM", RealmLowercase: true, LoginLowercase: true,
		LoginChars: "abcdefghijklmnopqrstuvwxyz0123456789.-_@ü",
		RealmStrip: []string{"example.com", "example.net", "example.org"}, RealmJoin: true,
		ServiceMap:  []config.Mapping{{Service: "smtp", To: "mail"}, {Service: "imap", To: "dovecot"}, {Service: "*", To: "other"}},
		ServiceMech: []config.Mapping{{Service: "imap", To: "rimap"}, {Service: "smtp", To: "sasldb,pam"}, {Service: "pop", To: "rimap"}},
		LogLevel:    2,
	}
	if got, w := fields(c), fields(want); got != w {
		t.Errorf("got\n%s\nwant\n%s", got, w)
	}
	if got := mappings(c.ServiceMap); got != "smtp=mail imap=dovecot *=other" {
		t.Errorf("service_map %q", got)
	}
	if got := mappings(c.ServiceMech); got != "imap=rimap smtp=sasldb,pam pop=rimap" {
		t.Errorf("service_mech %q", got)
	}
	for key, line := range map[string]int{"mech": 4, "sasldb_path": 6, "realm_strip": 22, "service_mech": 27, "log_level": 29, "realm_join": 24} {
		if c.Line(key) != line || !c.IsSet(key) {
			t.Errorf("Line(%s) = %d, want %d", key, c.Line(key), line)
		}
	}
	if c.Name() != name {
		t.Errorf("Name %q", c.Name())
	}
}

// fields shows every key's value: Format with every key.
func fields(c *config.Config) string {
	var b strings.Builder
	if err := c.Format(&b, true); err != nil {
		panic(err)
	}
	// compare values, not whether the file set them
	return regexp.MustCompile(`(?m)^#`).ReplaceAllString(b.String(), "")
}

func mappings(ms []config.Mapping) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Service+"="+m.To)
	}
	return strings.Join(s, " ")
}

func TestDefaults(t *testing.T) {
	c, err := config.Parse(strings.NewReader(""), "")
	if err != nil {
		t.Fatal(err)
	}
	d := config.Default()
	if fields(c) != fields(d) {
		t.Errorf("empty file differs from Default")
	}
	// the defaults are saslauthd's and the daemon's
	if d.Procs != 5 || d.CacheSizeKiB != 963 || d.CacheTTL != 28800*time.Second || d.Cache || d.RealmJoin ||
		d.RunDir != "/run/saslauthd" || d.SasldbPath != "/etc/sasldb2" || d.PAMMode != "workers" || d.LogLevel != 0 || d.Mech != nil {
		t.Errorf("defaults %+v", d)
	}
	for _, k := range config.Keys() {
		if d.IsSet(k.Name) {
			t.Errorf("%s set in Default", k.Name)
		}
	}
	if d.String() != "" {
		t.Errorf("Default().String() = %q", d.String())
	}
	// the zero rules: saslauthd without -r
	r := d.Rules()
	if !reflectZeroRules(r) {
		t.Errorf("default rules %+v", r)
	}
}

func reflectZeroRules(r rewrite.Rules) bool {
	return !r.RealmSplit && r.DefaultRealm == "" && !r.RealmLowercase && !r.LoginLowercase && r.LoginChars == "" &&
		!r.RealmStripAll && len(r.RealmStrip) == 0 && !r.RealmJoin && r.Services.Default == "" &&
		r.Services.PAM == nil && r.Services.Chains == nil
}

func TestLineFormat(t *testing.T) {
	for _, c := range []struct {
		name, src string
		key, val  string // "" = no key line
	}{
		{"LF", "procs: 7\n", "procs", "7"},
		{"CRLF", "procs: 7\r\n", "procs", "7"},
		{"no final newline", "procs: 7", "procs", "7"},
		{"tabs", "\t procs:\t\t7\t \r\n", "procs", "7"},
		{"no space after colon", "procs:7\n", "procs", "7"},
		{"upper-case key", "PROCS: 7\n", "procs", "7"},
		{"mixed-case key", "Mech_Option: x\n", "mech_option", "x"},
		{"BOM", "\xef\xbb\xbfprocs: 7\n", "procs", "7"},
		{"inner spaces kept", "mech_option: a  b\n", "mech_option", "a  b"},
		{"colon in value", "mech_option: host:993\n", "mech_option", "host:993"},
		{"hash in value", "mech_option: a # b\n", "mech_option", "a # b"},
		{"quotes not special", `mech_option: "x"` + "\n", "mech_option", `"x"`},
		{"comment", "# procs: 7\n", "", ""},
		{"indented comment", "  \t# procs: 7\n", "", ""},
		{"blank CRLF lines", "\r\n \r\n\t\r\n", "", ""},
		{"4095-byte line", "mech_option: " + strings.Repeat("x", config.MaxLine-len("mech_option: ")) + "\n", "mech_option", strings.Repeat("x", config.MaxLine-len("mech_option: "))},
		{"4095-byte line, CRLF", "mech_option: " + strings.Repeat("x", config.MaxLine-len("mech_option: ")) + "\r\n", "mech_option", strings.Repeat("x", config.MaxLine-len("mech_option: "))},
		{"4095-byte line at EOF", "mech_option: " + strings.Repeat("x", config.MaxLine-len("mech_option: ")), "mech_option", strings.Repeat("x", config.MaxLine-len("mech_option: "))},
		{"4095-byte comment", "#" + strings.Repeat("x", config.MaxLine-1) + "\n", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := parse(t, c.src)
			if c.key == "" {
				if cfg.String() != "" {
					t.Errorf("set keys: %q", cfg.String())
				}
				return
			}
			if want := c.key + ": " + c.val + "\n"; cfg.String() != want {
				t.Errorf("got %q, want %q", cfg.String(), want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := func(n int) string { return "mech_option: " + strings.Repeat("x", n-len("mech_option: ")) }
	for _, c := range []struct {
		name, src string
		line      int
		msg       string // the message after "config: /etc/saslgate.conf:LINE: "
	}{
		// syntax
		{"unknown key", "procs: 1\n\nrealm_strp: all\n", 3, `unknown key "realm_strp" (did you mean "realm_strip"?)`},
		{"unknown key, no suggestion", "frobnicate: 1\n", 1, `unknown key "frobnicate"`},
		{"space before colon", "mech : pam\n", 1, `key "mech" must be followed immediately by ":", without a space`},
		{"tab before colon", "mech\t: pam\n", 1, `key "mech" must be followed immediately by ":", without a space`},
		{"no colon", "mech pam\n", 1, `no colon after key "mech"`},
		{"equals sign", "mech=pam\n", 1, `no colon after key "mech"`},
		{"key only", "mech\n", 1, `no colon after key "mech"`},
		{"no key", ": pam\n", 1, `want key: value, got ": pam"`},
		{"non-ASCII key", "mêch: pam\n", 1, `no colon after key "m"`},
		{"empty value", "mech:\n", 1, `key "mech" has no value`},
		{"blank value", "mech:   \t\n", 1, `key "mech" has no value`},
		{"blank value, CRLF", "\r\nmech: \r\n", 2, `key "mech" has no value`},
		{"duplicate", "procs: 1\n# x\nprocs: 1\n", 3, `key "procs" set again (first on line 1)`},
		{"duplicate, other case", "mech: pam\nMECH: pam\n", 2, `key "mech" set again (first on line 1)`},
		{"4096-byte line", long(4096) + "\n", 1, "line longer than 4095 bytes"},
		{"4096-byte line, CRLF", long(4096) + "\r\n", 1, "line longer than 4095 bytes"},
		{"4096-byte line at EOF", long(4096), 1, "line longer than 4095 bytes"},
		{"4096-byte comment", "#" + strings.Repeat("x", 4095) + "\n", 1, "line longer than 4095 bytes"},
		{"huge line, then a good one", long(100000) + "\nprocs: 1\n", 1, "line longer than 4095 bytes"},
		{"good line, then a huge one", "procs: 1\r\n" + long(100000) + "\r\n", 2, "line longer than 4095 bytes"},
		{"NUL", "mech: pam\x00\n", 1, `control character '\x00' in column 10`},
		{"lone CR", "mech: pam\rprocs: 1\n", 1, `control character '\r' in column 10`},
		{"vertical tab", "\vmech: pam\n", 1, `control character '\v' in column 1`},
		{"DEL", "mech: p\x7fam\n", 1, `control character '\x7f' in column 8`},

		// bool
		{"bool", "cache: maybe\n", 1, `cache: bad value "maybe": want yes or no (saslauthd's rules: 0 and words starting n, of, f are false; 1 and y, on, t true)`},
		{"bool 2", "cache: 2\n", 1, `cache: bad value "2"`},
		{"bool 10", "cache: 10\n", 1, `cache: bad value "10"`},
		{"bool o", "realm_join: o\n", 1, `realm_join: bad value "o"`},
		// int
		{"int", "procs: five\n", 1, `procs: bad value "five": want an integer, 0 or more`},
		{"int negative", "procs: -1\n", 1, `procs: bad value "-1": want an integer, 0 or more`},
		{"int trailing junk", "procs: 5x\n", 1, `procs: bad value "5x"`},
		{"int inner space", "procs: 5 0\n", 1, `procs: bad value "5 0"`},
		{"int too big", "max_conns: 99999999999999999999\n", 1, `max_conns: bad value "99999999999999999999"`},
		{"int zero", "cache_size_kib: 0\n", 1, `cache_size_kib: bad value "0": want an integer, 1 or more`},
		{"int range", "log_level: 3\n", 1, `log_level: bad value "3": want 0, 1, 2`},
		// duration
		{"duration zero", "cache_ttl: 0\n", 1, `cache_ttl: bad value "0": want a positive duration (30s, 1m30s, 8h) or whole seconds (28800)`},
		{"duration 0s", "read_timeout: 0s\n", 1, `read_timeout: bad value "0s"`},
		{"duration negative", "read_timeout: -5s\n", 1, `read_timeout: bad value "-5s"`},
		{"duration unit", "read_timeout: 1d\n", 1, `read_timeout: bad value "1d"`},
		{"duration space", "read_timeout: 30 s\n", 1, `read_timeout: bad value "30 s"`},
		{"duration overflow", "cache_ttl: 99999999999999999999\n", 1, `cache_ttl: bad value "99999999999999999999"`},
		{"duration seconds overflow", "cache_ttl: 9223372037\n", 1, `cache_ttl: bad value "9223372037"`},
		// path, enum
		{"relative path", "run_dir: run/saslauthd\n", 1, `run_dir: bad value "run/saslauthd": want an absolute path`},
		{"enum", "pam_mode: threads\n", 1, `pam_mode: bad value "threads": want workers or inprocess`},
		// host:port
		{"metrics no port", "metrics: 127.0.0.1\n", 1, `metrics: bad value "127.0.0.1": want host:port`},
		{"metrics empty port", "metrics: 127.0.0.1:\n", 1, `metrics: bad value "127.0.0.1:": want host:port`},
		{"metrics bare v6", "metrics: ::1:9129\n", 1, `metrics: bad value "::1:9129": want host:port`},
		// chain
		{"chain empty item", "mech: sasldb,,pam\n", 1, `mech: bad value "sasldb,,pam": empty item in list`},
		{"chain trailing comma", "mech: pam,\n", 1, `mech: bad value "pam,": empty item in list`},
		{"chain dup", "mech: pam, PAM\n", 1, `mech: bad value "pam, PAM": mechanism "pam" twice in one chain`},
		{"chain bad name", "mech: pam/x\n", 1, `mech: bad value "pam/x": "pam/x" is not a mechanism name`},
		// realms
		{"default_realm @", "default_realm: a@b\n", 1, `default_realm: bad value "a@b": want a realm: no spaces, @, commas, semicolons or =`},
		{"default_realm space", "default_realm: a b\n", 1, `default_realm: bad value "a b"`},
		{"default_realm long", "default_realm: " + strings.Repeat("r", 257) + "\n", 1, `longer than 256 bytes`},
		{"strip all and realms", "realm_strip: all, a.com\n", 1, `realm_strip: bad value "all, a.com": "all" cannot be combined with realms`},
		{"strip realms then all", "realm_strip: a.com\nrealm_strip: all\n", 2, `"all" cannot be combined with realms`},
		{"strip all then realms", "realm_strip: ALL\nrealm_strip: a.com\n", 2, `realms cannot be combined with "all"`},
		{"strip all twice", "realm_strip: all\nrealm_strip: all\n", 2, `"all" given twice`},
		{"strip dup", "realm_strip: a.com\nrealm_strip: A.com\n", 2, `realm "a.com" listed twice`},
		{"strip bad realm", "realm_strip: a@b\n", 1, `realm_strip: bad value "a@b": "a@b": want a realm`},
		// login_chars
		{"login_chars not UTF-8", "login_chars: ab\xff\n", 1, `login_chars: bad value "ab\xff": not valid UTF-8`},
		// services
		{"service_map no =", "service_map: smtp\n", 1, `service_map: bad value "smtp": "smtp": want service=pam-service`},
		{"service_map empty side", "service_map: smtp=\n", 1, `"smtp=": want service=pam-service`},
		{"service_map bad PAM service", "service_map: smtp=../mail\n", 1, `PAM service "../mail": want letters, digits, '.', '_' or '-'`},
		{"service_map dot", "service_map: smtp=..\n", 1, `PAM service "..": not a service name`},
		{"service_map * as target", "service_map: smtp=*\n", 1, `PAM service "*"`},
		{"service_map dup", "service_map: smtp=mail\n\nservice_map: imap=x, smtp=y\n", 3, `service "smtp" already mapped on line 1`},
		{"service_mech no =", "service_mech: rimap\n", 1, `"rimap": want service=chain`},
		{"service_mech empty entry", "service_mech: imap=rimap;; smtp=pam\n", 1, `empty entry between semicolons`},
		{"service_mech trailing semicolon", "service_mech: imap=rimap;\n", 1, `empty entry between semicolons`},
		{"service_mech bad chain", "service_mech: smtp=sasldb,,pam\n", 1, `smtp: empty item in list`},
		{"service_mech *", "service_mech: *=pam\n", 1, `service "*": want letters`},
		{"service_mech dup", "service_mech: imap=rimap\nservice_mech: imap=pam\n", 2, `service "imap" already mapped on line 1`},
		{"service_mech comma-separated entries", "service_mech: imap=rimap, smtp=pam\n", 1, `imap: "smtp=pam" is not a mechanism name`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse(strings.NewReader(c.src), name)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want *config.Error", err)
			}
			if ce.Line != c.line || ce.File != name {
				t.Errorf("error %q at %s:%d, want line %d", err, ce.File, ce.Line, c.line)
			}
			prefix := "config: /etc/saslgate.conf:" + strconv.Itoa(c.line) + ": "
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error\n %q\nwant %q + …%q…", err, prefix, c.msg)
			}
			if strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("more than one error: %q", err)
			}
		})
	}
}

func TestEveryErrorNamesItsLine(t *testing.T) {
	src := "mech: pam\r\n" + // 1 ok
		"mech: shadow\r\n" + // 2 duplicate
		"procs: x\r\n" + // 3 bad int
		"# comment\r\n" + // 4
		strings.Repeat("y", 5000) + "\r\n" + // 5 too long
		"realm_strp: all\r\n" + // 6 unknown
		"cache : yes\r\n" + // 7 space before colon
		"cache:\r\n" + // 8 no value
		"cache: yes\r\n" // 9 ok
	_, err := config.Parse(strings.NewReader(src), name)
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []int{2, 3, 5, 6, 7, 8}
	if len(lines) != len(want) {
		t.Fatalf("got %d errors:\n%s", len(lines), err)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, "config: /etc/saslgate.conf:"+strconv.Itoa(want[i])+": ") {
			t.Errorf("error %d: %q, want line %d", i, l, want[i])
		}
	}
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Line != 2 || ce.Key != "mech" {
		t.Errorf("errors.As: %+v", ce)
	}
}

func TestTooManyErrors(t *testing.T) {
	src := strings.Repeat("bad\n", 1000)
	_, err := config.Parse(strings.NewReader(src), name)
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 21 || lines[20] != "config: /etc/saslgate.conf: too many errors" {
		t.Errorf("got %d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestValues(t *testing.T) {
	for _, c := range []struct {
		src  string
		want string // the key's line in String()
	}{
		// bools: saslauthd's switch rules
		{"cache: yes", "cache: yes"}, {"cache: Y", "cache: yes"}, {"cache: on", "cache: yes"}, {"cache: ON", "cache: yes"},
		{"cache: true", "cache: yes"}, {"cache: T", "cache: yes"}, {"cache: 1", "cache: yes"}, {"cache: yessir", "cache: yes"},
		{"cache: no", "cache: no"}, {"cache: N", "cache: no"}, {"cache: off", "cache: no"}, {"cache: Of", "cache: no"},
		{"cache: false", "cache: no"}, {"cache: f", "cache: no"}, {"cache: 0", "cache: no"}, {"cache: none", "cache: no"},
		// ints
		{"procs: 0", "procs: 0"}, {"procs: +12", "procs: 12"}, {"procs: 007", "procs: 7"}, {"log_level: 1", "log_level: 1"},
		// durations
		{"cache_ttl: 28800", "cache_ttl: 8h"}, {"cache_ttl: 1", "cache_ttl: 1s"}, {"cache_ttl: 90", "cache_ttl: 1m30s"},
		{"cache_ttl: 8h", "cache_ttl: 8h"}, {"cache_ttl: 1h0m1s", "cache_ttl: 1h0m1s"}, {"cache_ttl: 3601s", "cache_ttl: 1h0m1s"},
		{"cache_ttl: 1h30m", "cache_ttl: 1h30m"}, {"read_timeout: 500ms", "read_timeout: 500ms"}, {"read_timeout: 1.5s", "read_timeout: 1.5s"},
		{"read_timeout: 60s", "read_timeout: 1m"}, {"read_timeout: 1ns", "read_timeout: 1ns"},
		// paths, enums
		{"run_dir: /run/x", "run_dir: /run/x"}, {"pam_mode: WORKERS", "pam_mode: workers"},
		// chains
		{"mech: pam", "mech: pam"}, {"mech: sasldb pam", "mech: sasldb,pam"}, {"mech: sasldb ,\tpam", "mech: sasldb,pam"},
		{"mech: Shadow, getpwent pam", "mech: shadow,getpwent,pam"},
		// strings
		{"default_realm: Example.COM", "default_realm: Example.COM"}, {"login_chars: a b", "login_chars: a b"},
		{"mech_option: host/imaps", "mech_option: host/imaps"},
		// realms
		{"realm_strip: all", "realm_strip: all"}, {"realm_strip: All", "realm_strip: all"},
		{"realm_strip: a.com b.com", "realm_strip: a.com\nrealm_strip: b.com"},
		{"realm_strip: A.com", "realm_strip: a.com"},
		// services
		{"service_map: smtp=mail", "service_map: smtp=mail"},
		{"service_map: smtp=mail;imap=dovecot", "service_map: smtp=mail\nservice_map: imap=dovecot"},
		{"service_map: * = other", "service_map: *=other"},
		{"service_map: smtp.v2=mail_x-y", "service_map: smtp.v2=mail_x-y"},
		{"service_mech: imap=rimap;smtp=sasldb pam", "service_mech: imap=rimap\nservice_mech: smtp=sasldb,pam"},
	} {
		c2, err := config.Parse(strings.NewReader(c.src+"\n"), name)
		if err != nil {
			t.Errorf("%q: %v", c.src, err)
			continue
		}
		if got := strings.TrimSuffix(c2.String(), "\n"); got != c.want {
			t.Errorf("%q: got %q, want %q", c.src, got, c.want)
		}
	}
}

func TestParseBoolAndDuration(t *testing.T) {
	for s, want := range map[string]bool{"yes": true, "No": false, "oN": true, "OFF": false, "t": true, "F": false} {
		if got, err := config.ParseBool(s); err != nil || got != want {
			t.Errorf("ParseBool(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "2", "o", "x", "01", " yes"} {
		if _, err := config.ParseBool(s); err == nil {
			t.Errorf("ParseBool(%q) ok", s)
		}
	}
	for _, d := range []time.Duration{time.Nanosecond, time.Second, 90 * time.Second, 8 * time.Hour, time.Hour + time.Second, 1500 * time.Millisecond, 25 * time.Hour} {
		s := config.FormatDuration(d)
		if got, err := config.ParseDuration(s); err != nil || got != d {
			t.Errorf("%v → %q → %v, %v", d, s, got, err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "saslgate.conf")
	if err := os.WriteFile(p, []byte("mech: pam\nprocs: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil || c.Procs != 3 || c.Name() != p {
		t.Fatalf("Load: %v %+v", err, c)
	}
	if err := os.WriteFile(p, []byte("mech: pam\nprocs: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(p); err == nil || !strings.HasPrefix(err.Error(), "config: "+p+":2: procs: ") {
		t.Errorf("Load bad file: %v", err)
	}
	_, err = config.Load(filepath.Join(dir, "missing.conf"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: open ") {
		t.Errorf("Load missing: %v", err)
	}
	_, err = config.Load(dir)
	if err == nil || !strings.HasPrefix(err.Error(), "config: "+dir+": ") {
		t.Errorf("Load directory: %v", err)
	}
}

func TestKeysTable(t *testing.T) {
	ks := config.Keys()
	var names []string
	for _, k := range ks {
		names = append(names, k.Name)
		if k.Doc == "" || k.Type == "" || k.Syntax == "" {
			t.Errorf("%s: incomplete row %+v", k.Name, k)
		}
		if k.Default != "" {
			// the default as documented is what Default() holds
			c := parse(t, k.Name+": "+k.Default+"\n")
			if fields(c) != fields(config.Default()) {
				t.Errorf("%s: documented default %q differs from Default()", k.Name, k.Default)
			}
		}
	}
	want := []string{"mech", "mech_option", "sasldb_path", "pam_mode", "run_dir", "procs", "max_conns",
		"read_timeout", "drain_timeout", "request_timeout", "cache", "cache_size_kib", "cache_ttl",
		"cache_negative_ttl", "cache_stale_ttl", "failure_delay", "auth_penalty_base", "auth_penalty_max",
		"auth_penalty_decay", "trusted_networks", "rimap_hosts", "rimap_tls", "rimap_ca_file", "rimap_server_name",
		"rimap_tls_verify", "rimap_connect_timeout", "rimap_command_timeout", "rimap_pool_size", "rimap_pool_idle",
		"checkpassword_path", "checkpassword_args", "checkpassword_timeout", "checkpassword_procs",
		"realm_split", "default_realm", "realm_lowercase", "login_lowercase", "login_chars", "realm_strip",
		"realm_join", "service_map", "service_mech", "log_level", "metrics"}
	if !slices.Equal(names, want) {
		t.Errorf("keys %q", names)
	}
	ks[0].Name = "changed"
	if config.Keys()[0].Name != "mech" {
		t.Error("Keys returns the table itself")
	}
}

func TestIsSetUnknownKeyPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	config.Default().IsSet("realm_strp")
}

func TestErrorf(t *testing.T) {
	c := parse(t, "\nmech_option: nohost\n")
	if err := c.Errorf("mech_option", "cannot resolve %q", "nohost"); err.Error() != `config: /etc/saslgate.conf:2: mech_option: cannot resolve "nohost"` {
		t.Errorf("got %q", err)
	}
	if err := c.Errorf("procs", "too many"); err.Error() != "config: procs: too many" {
		t.Errorf("got %q", err)
	}
}

func TestCheckMechs(t *testing.T) {
	known := func(n string) bool { return n == "pam" || n == "sasldb" || n == "rimap" }
	c := parse(t, "mech: sasldb,pam\nservice_mech: imap=rimap; smtp=sasldb,pam\n")
	if err := c.CheckMechs(known); err != nil {
		t.Errorf("CheckMechs: %v", err)
	}
	c = parse(t, "mech: sasldb,ldap\n#\nservice_mech: imap=rimap\nservice_mech: smtp=pam,kerberos5\n")
	err := c.CheckMechs(known)
	want := "config: /etc/saslgate.conf:1: mech: unknown authentication mechanism \"ldap\"\n" +
		"config: /etc/saslgate.conf:4: service_mech: smtp: unknown authentication mechanism \"kerberos5\""
	if err == nil || err.Error() != want {
		t.Errorf("CheckMechs:\n%v\nwant\n%s", err, want)
	}
	// mech from the command line: no line to name
	c = config.Default()
	c.Mech = []string{"foo"}
	if err := c.CheckMechs(known); err == nil || err.Error() != `config: mech: unknown authentication mechanism "foo"` {
		t.Errorf("got %v", err)
	}
	// the real registry's names are valid chain names
	for _, n := range mechs.Names() {
		if _, err := config.Parse(strings.NewReader("mech: "+n+"\n"), name); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

func TestRules(t *testing.T) {
	c := parse(t, "mech: sasldb, pam\n"+
		"realm_split: yes\ndefault_realm: example.com\nrealm_lowercase: yes\nlogin_lowercase: yes\n"+
		"login_chars: abcdefghijklmnopqrstuvwxyz0123456789.-_\n"+
		"realm_strip: example.com\nrealm_join: yes\n"+
		"service_map: smtp=mail, *=other\nservice_mech: imap=rimap\n")
	r := c.Rules()
	if got, want := r.Services.ChainNames(), []string{"sasldb,pam", "rimap"}; !slices.Equal(got, want) {
		t.Errorf("chains %q", got)
	}
	for _, tc := range []struct {
		login, realm, service      string
		wantLogin, wantRealm, pam  string
		chain, loggedRealm, errSub string
	}{
		{"Alice@Example.COM", "", "smtp", "alice", "", "mail", "sasldb,pam", "example.com", ""},
		{"bob", "Other.ORG", "imap", "bob@other.org", "other.org", "other", "rimap", "other.org", ""},
		{"carol", "", "sieve", "carol", "", "other", "sasldb,pam", "example.com", ""},
		{"dave smith", "", "smtp", "", "", "", "", "", `login "dave smith" has ' '`},
	} {
		res, err := r.Apply(mechs.Request{Login: tc.login, Realm: tc.realm, Service: tc.service, Password: "pw"})
		if tc.errSub != "" {
			if !errors.Is(err, rewrite.ErrInvalidLogin) || !strings.Contains(err.Error(), tc.errSub) {
				t.Errorf("%s: err %v", tc.login, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if res.Request.Login != tc.wantLogin || res.Request.Realm != tc.wantRealm || res.Request.Service != tc.pam ||
			res.Chain != tc.chain || res.Logged.Realm != tc.loggedRealm || res.Logged.Service != tc.service {
			t.Errorf("%s: %+v", tc.login, res)
		}
	}
	// flags win: the caller overwrites fields, then calls Rules
	c.Mech, c.RealmJoin = []string{"shadow"}, false
	r = c.Rules()
	if r.Services.Default != "shadow" || r.RealmJoin {
		t.Errorf("rules after the merge: %+v", r)
	}
	// Rules does not share the Config's slices
	r.RealmStrip[0] = "x"
	if c.RealmStrip[0] != "example.com" {
		t.Error("Rules aliases RealmStrip")
	}
}

func TestDiff(t *testing.T) {
	a := parse(t, "mech: pam\nprocs: 5\nservice_map: smtp=mail\n")
	b := parse(t, "procs: 5\nmech: pam\nrun_dir: /run/x\nservice_map: smtp=mail, imap=x\n")
	if got, want := a.Diff(b), []string{"run_dir", "service_map"}; !slices.Equal(got, want) {
		t.Errorf("Diff %q, want %q", got, want)
	}
	if d := a.Diff(a); d != nil {
		t.Errorf("Diff(self) %q", d)
	}
}

func TestFormatRoundTrip(t *testing.T) {
	src := "procs: 3\nservice_mech: imap = rimap; smtp=sasldb pam\nrealm_strip: a.com, b.com\ncache_ttl: 90\nmech: PAM\n"
	c := parse(t, src)
	want := "mech: pam\nprocs: 3\ncache_ttl: 1m30s\nrealm_strip: a.com\nrealm_strip: b.com\n" +
		"service_mech: imap=rimap\nservice_mech: smtp=sasldb,pam\n"
	if c.String() != want {
		t.Errorf("String\n%s\nwant\n%s", c.String(), want)
	}
	c2 := parse(t, c.String())
	if c2.String() != c.String() || fields(c2) != fields(c) {
		t.Errorf("round trip changed the config")
	}
	// Format(all) parses back too, to the same keys set
	var b strings.Builder
	if err := c.Format(&b, true); err != nil {
		t.Fatal(err)
	}
	c3 := parse(t, b.String())
	if c3.String() != c.String() || fields(c3) != fields(c) {
		t.Errorf("Format(all) round trip:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "\n#run_dir: /run/saslauthd\n") || !strings.Contains(b.String(), "\n#default_realm:\n") {
		t.Errorf("Format(all):\n%s", b.String())
	}
}

// TestZeroConfigFormats: a Config built by hand, not by Default or Parse,
// still formats into a file that parses.
func TestZeroConfigFormats(t *testing.T) {
	var b strings.Builder
	if err := (&config.Config{}).Format(&b, true); err != nil {
		t.Fatal(err)
	}
	parse(t, b.String())
	if (&config.Config{}).IsSet("mech") {
		t.Error("zero Config has keys set")
	}
}

func TestWriteSample(t *testing.T) {
	var b strings.Builder
	if err := config.WriteSample(&b); err != nil {
		t.Fatal(err)
	}
	c := parse(t, b.String())
	if c.String() != "" || fields(c) != fields(config.Default()) {
		t.Errorf("the sample sets keys: %q", c.String())
	}
	for _, k := range config.Keys() {
		if !strings.Contains(b.String(), "\n#"+k.Name+":") {
			t.Errorf("sample lacks %s", k.Name)
		}
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if len(l) > 80 {
			t.Errorf("long sample line %q", l)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestReadError(t *testing.T) {
	_, err := config.Parse(errReader{}, "x.conf")
	if err == nil || err.Error() != "config: x.conf: disk on fire" {
		t.Errorf("got %v", err)
	}
}
