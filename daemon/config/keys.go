package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/saslgate/saslgate/daemon/rewrite"
)

// Key describes one config key: the rows of this table are the reference a
// man page and "--check" output are generated from.
type Key struct {
	Name string // as written in the file, lower case
	// Type is the value's type: bool, int, duration, string, path, enum,
	// chain, realms or services (see the package documentation).
	Type string
	// Syntax says which values are accepted, for the docs.
	Syntax string
	// Default is the value in effect when the key is not set, written as
	// the file would spell it; "" means none.
	Default string
	// Flag is saslauthd's (or saslgate's) command-line equivalent, which
	// wins over the file; "" if there is none.
	Flag string
	// Repeatable keys may appear on several lines; their entries add up.
	// Any other key set twice is an error.
	Repeatable bool
	// Restart is set for keys the running daemon takes only at start: a
	// change needs a restart, SIGHUP does not apply it.
	Restart bool
	// Doc is one paragraph for the man page.
	Doc string

	v value
}

// value is a key's type: how it parses into a Config field and formats
// back. Adding a key is one row in keys with one of these.
type value interface {
	kind() string
	syntax() string
	// parse checks s and stores it in c (appending, for repeatable keys);
	// line is where s came from. The error is the message after
	// "bad value ...: ".
	parse(c *Config, s string, line int) error
	// format returns the lines' values that give back the field: nil when
	// there is nothing to write, several for a repeatable key.
	format(c *Config) []string
}

// keys is the table, in the order String and the docs list them.
var keys = []Key{
	// mechanisms
	{Name: "mech", Flag: "-a", Doc: "The mechanism chain, saslauthd's -a: mechanism names, tried in order. " +
		"ACCEPT stops with OK, REJECT tries the next one, TEMPFAIL stops with NO. Required, here or with -a.",
		v: chainValue(func(c *Config) *[]string { return &c.Mech })},
	{Name: "mech_option", Flag: "-O", Doc: "saslauthd's -O, the mechanism option: rimap's host[/port], checkpassword's program.",
		v: stringValue{func(c *Config) *string { return &c.MechOption }, nil, "text, the rest of the line"}},
	{Name: "sasldb_path", Flag: "--sasldb-path", Default: "/etc/sasldb2", Doc: "The sasldb file the sasldb mechanism reads.",
		v: pathValue(func(c *Config) *string { return &c.SasldbPath })},
	{Name: "pam_mode", Flag: "--pam-mode", Default: "workers", Doc: "How the pam mechanism runs PAM: workers " +
		"(each transaction in one of procs isolated worker processes) or inprocess (thread-safe PAM stacks only).",
		v: enumValue{func(c *Config) *string { return &c.PAMMode }, []string{"workers", "inprocess"}}},

	// process and socket
	{Name: "run_dir", Flag: "-m", Default: "/run/saslauthd", Restart: true, Doc: "saslauthd's -m: the run " +
		"directory holding the mux socket and the pid file.",
		v: pathValue(func(c *Config) *string { return &c.RunDir })},
	{Name: "procs", Flag: "-n", Default: "5", Restart: true, Doc: "saslauthd's -n: mechanism calls in flight " +
		"at once (more wait, they are not refused), and the number of PAM workers; 0: no cap.",
		v: intValue{func(c *Config) *int { return &c.Procs }, 0, math.MaxInt32}},
	{Name: "max_conns", Flag: "--max-conns", Default: "4096", Restart: true, Doc: "Open connections; " +
		"beyond it new clients wait in the listen backlog.",
		v: intValue{func(c *Config) *int { return &c.MaxConns }, 1, math.MaxInt32}},
	{Name: "read_timeout", Flag: "--read-timeout", Default: "30s", Restart: true, Doc: "Bound on reading one request " +
		"(saslauthd has none).",
		v: durationValue(func(c *Config) *time.Duration { return &c.ReadTimeout })},
	{Name: "drain_timeout", Flag: "--drain-timeout", Default: "30s", Restart: true, Doc: "Bound on the drain " +
		"after the reply, waiting for the client to close.",
		v: durationValue(func(c *Config) *time.Duration { return &c.DrainTimeout })},
	{Name: "request_timeout", Flag: "--request-timeout", Default: "1m", Restart: true, Doc: "Bound on waiting " +
		"for a free mechanism slot plus running the mechanism chain.",
		v: durationValue(func(c *Config) *time.Duration { return &c.RequestTimeout })},

	// cache
	{Name: "cache", Flag: "-c", Default: "no", Restart: true, Doc: "saslauthd's -c: cache successful logins.",
		v: boolValue(func(c *Config) *bool { return &c.Cache })},
	{Name: "cache_size_kib", Flag: "-s", Default: "963", Restart: true, Doc: "saslauthd's -s: cache size in KiB, " +
		"counted in saslauthd's 96-byte entries.",
		v: intValue{func(c *Config) *int { return &c.CacheSizeKiB }, 1, math.MaxInt32}},
	{Name: "cache_ttl", Flag: "-t", Default: "8h", Restart: true, Doc: "saslauthd's -t: how long a cached " +
		"login lives, from the back end's success (a hit does not extend it).",
		v: durationValue(func(c *Config) *time.Duration { return &c.CacheTTL })},
	{Name: "cache_negative_ttl", Default: "0", Restart: true, Doc: "How long a rejected password is " +
		"remembered, so that the same wrong password repeated does not reach the back end (another " +
		"password still does). 0: off, as saslauthd.",
		v: offDurationValue(func(c *Config) *time.Duration { return &c.CacheNegativeTTL })},
	{Name: "cache_stale_ttl", Default: "0", Restart: true, Doc: "When the back end cannot answer " +
		"(TEMPFAIL), a cached login younger than this still answers OK. 0: off.",
		v: offDurationValue(func(c *Config) *time.Duration { return &c.CacheStaleTTL })},

	// brute-force throttling
	{Name: "failure_delay", Flag: "--failure-delay", Restart: true, Default: "2s", Doc: "Wait before every NO (jittered by a quarter either way), " +
		"without holding a worker. 0: answer at once, as saslauthd.",
		v: offDurationValue(func(c *Config) *time.Duration { return &c.FailureDelay })},
	{Name: "auth_penalty_base", Flag: "--auth-penalty", Restart: true, Default: "2s", Doc: "Extra wait after a client address's or a login's " +
		"first failure; it doubles with each further failure up to auth_penalty_max and halves with " +
		"every auth_penalty_decay of quiet. The same wrong password repeated does not grow it. 0: off.",
		v: offDurationValue(func(c *Config) *time.Duration { return &c.PenaltyBase })},
	{Name: "auth_penalty_max", Restart: true, Default: "15s", Doc: "The largest penalty.",
		v: offDurationValue(func(c *Config) *time.Duration { return &c.PenaltyMax })},
	{Name: "auth_penalty_decay", Restart: true, Default: "5m", Doc: "Quiet time that halves a penalty.",
		v: durationValue(func(c *Config) *time.Duration { return &c.PenaltyDecay })},
	{Name: "trusted_networks", Restart: true, Repeatable: true, Doc: "Client networks (CIDR, e.g. 127.0.0.0/8 ::1/128) " +
		"never delayed nor penalised. The client address comes from the request's fifth field.",
		v: prefixesValue{}},

	// passed to the rimap mechanism, which checks them at start and on reload
	{Name: "rimap_hosts", Flag: "--rimap-hosts", Doc: "More IMAP servers, host[/port] separated by spaces or commas, tried in order after -O's (a server that cannot be reached before LOGIN is sent is skipped).", v: mechValue("rimap_hosts")},
	{Name: "rimap_tls", Flag: "--rimap-tls", Doc: "none (saslauthd's plaintext), starttls, or implicit (port 993 unless given).", v: mechValue("rimap_tls")},
	{Name: "rimap_ca_file", Flag: "--rimap-ca-file", Doc: "PEM file of the CAs that sign the IMAP server's certificate; default: the system's roots.", v: mechValue("rimap_ca_file")},
	{Name: "rimap_server_name", Flag: "--rimap-server-name", Doc: "The name the IMAP server's certificate must carry; default: the host as configured.", v: mechValue("rimap_server_name")},
	{Name: "rimap_tls_verify", Flag: "--rimap-tls-verify", Doc: "yes (default) or no; no accepts any certificate and is logged as a warning.", v: mechValue("rimap_tls_verify")},
	{Name: "rimap_connect_timeout", Flag: "--rimap-connect-timeout", Doc: "Bound on resolving and connecting to one IMAP server (default 5s).", v: mechValue("rimap_connect_timeout")},
	{Name: "rimap_command_timeout", Flag: "--rimap-command-timeout", Doc: "Bound on the greeting, STARTTLS and each LOGIN (default 10s).", v: mechValue("rimap_command_timeout")},
	{Name: "rimap_pool_size", Flag: "--rimap-pool-size", Doc: "Connections kept connected, greeted and handshaken, so a request pays only for LOGIN (default 4; 0: one connection per request, as saslauthd).", v: mechValue("rimap_pool_size")},
	{Name: "rimap_pool_idle", Flag: "--rimap-pool-idle", Doc: "How long a ready connection may wait unused (default 30s).", v: mechValue("rimap_pool_idle")},

	// passed to the checkpassword mechanism, likewise
	{Name: "checkpassword_path", Doc: "The qmail checkpassword program the checkpassword mechanism runs (vchkpw, checkvpw, ...); default: -O.", v: mechValue("checkpassword_path")},
	{Name: "checkpassword_args", Doc: "The program it runs on success, with its arguments, separated by spaces (default /bin/true).", v: mechValue("checkpassword_args")},
	{Name: "checkpassword_timeout", Doc: "Bound on one run of the program; then its whole process group is killed and the answer is TEMPFAIL (default 10s).", v: mechValue("checkpassword_timeout")},
	{Name: "checkpassword_procs", Doc: "Programs running at once; more requests wait (default: -n, or 5 with -n 0).", v: mechValue("checkpassword_procs")},

	// request rewriting, in the order the rules run
	{Name: "realm_split", Default: "no", Doc: "Split a login typed as user@domain at the last @ into login " +
		"and realm, as libsasl does, even when the realm field is set (the typed domain wins). " +
		"A login that would leave an empty part is not split.",
		v: boolValue(func(c *Config) *bool { return &c.RealmSplit })},
	{Name: "default_realm", Doc: "The realm of a request whose realm is empty.",
		v: stringValue{func(c *Config) *string { return &c.DefaultRealm }, checkRealm, realmSyntax}},
	{Name: "realm_lowercase", Default: "no", Doc: "Lower-case the realm (ASCII letters only).",
		v: boolValue(func(c *Config) *bool { return &c.RealmLowercase })},
	{Name: "login_lowercase", Default: "no", Doc: "Lower-case the login (ASCII letters only).",
		v: boolValue(func(c *Config) *bool { return &c.LoginLowercase })},
	{Name: "login_chars", Doc: "The characters a login and a realm may hold (Dovecot's auth_username_chars), " +
		"every character of the value counting, spaces inside it too; a request with another one is " +
		"answered \"" + rewrite.ReplyInvalidLogin + "\" without calling a mechanism. Empty: no check.",
		v: stringValue{func(c *Config) *string { return &c.LoginChars }, checkChars, "characters, the rest of the line"}},
	{Name: "realm_strip", Repeatable: true, Doc: "Realms to remove from the request (the log keeps them), so PAM " +
		"and shadow see the bare user: all, or realms (compared case-insensitively). Runs before realm_join.",
		v: realmsValue{}},
	{Name: "realm_join", Flag: "-r", Default: "no", Doc: "saslauthd's -r: pass login@realm to the mechanisms " +
		"when the realm is not empty (after realm_strip), cut at 512 bytes.",
		v: boolValue(func(c *Config) *bool { return &c.RealmJoin })},

	// services
	{Name: "service_map", Repeatable: true, Doc: "The PAM service for a request's service, e.g. " +
		"smtp=mail, imap=dovecot; * stands for every other service. Without an entry PAM gets the " +
		"request's service, as in saslauthd. Logs keep the request's service.",
		v: servicesValue{pam: true}},
	{Name: "service_mech", Repeatable: true, Doc: "A service's own mechanism chain, e.g. " +
		"imap=rimap; smtp=sasldb,pam. Other services use mech.",
		v: servicesValue{}},

	// logging
	{Name: "log_level", Flag: "--log-level", Default: "0", Doc: "The login-debug level, as Courier's DEBUG_LOGIN: 0 saslauthd's " +
		"log lines only; 1 also, for each request, the realm and service rewrites, each mechanism tried " +
		"and its verdict, and cache hits; 2 also the PASSWORDS, with a warning at start-up and on every " +
		"line: for a short debugging session only.",
		v: intValue{func(c *Config) *int { return &c.LogLevel }, 0, 2}},

	// monitoring
	{Name: "metrics", Flag: "--metrics", Restart: true, Doc: "host:port on which to serve Prometheus metrics at " +
		"/metrics, e.g. 127.0.0.1:9129; unset: off. The endpoint has no authentication: bind it to a " +
		"loopback address.",
		v: stringValue{func(c *Config) *string { return &c.Metrics }, checkHostPort, "host:port"}},
}

func init() {
	for i := range keys {
		k := &keys[i]
		k.Type, k.Syntax = k.v.kind(), k.v.syntax()
		if !isKeyName(k.Name) || strings.ToLower(k.Name) != k.Name {
			panic("config: bad key name " + k.Name)
		}
		if slices.IndexFunc(keys[:i], func(o Key) bool { return o.Name == k.Name }) >= 0 {
			panic("config: key listed twice: " + k.Name)
		}
	}
}

// Keys returns the key table, in documentation order.
func Keys() []Key { return slices.Clone(keys) }

func lookupKey(name string) (*Key, bool) {
	for i := range keys {
		if keys[i].Name == name {
			return &keys[i], true
		}
	}
	return nil, false
}

func isKeyName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isKeyByte(s[i]) {
			return false
		}
	}
	return s != ""
}

func isKeyByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-'
}

// ---- bool

type boolValue func(*Config) *bool

func (boolValue) kind() string { return "bool" }
func (boolValue) syntax() string {
	return "yes or no (saslauthd's rules: 0 and words starting n, of, f are false; 1 and y, on, t true)"
}

func (p boolValue) parse(c *Config, s string, _ int) error {
	b, err := ParseBool(s)
	if err != nil {
		return errors.New("want " + p.syntax())
	}
	*p(c) = b
	return nil
}

func (p boolValue) format(c *Config) []string {
	if *p(c) {
		return []string{"yes"}
	}
	return []string{"no"}
}

// ParseBool reads a switch with saslauthd's rules (cfile_getswitch), ASCII
// case-insensitive: "0" and words starting n, of or f are false; "1" and
// words starting y, on or t are true. Anything else is an error (saslauthd
// would fall back to the default).
func ParseBool(s string) (bool, error) {
	l := strings.ToLower(s)
	switch {
	case l == "0", strings.HasPrefix(l, "n"), strings.HasPrefix(l, "of"), strings.HasPrefix(l, "f"):
		return false, nil
	case l == "1", strings.HasPrefix(l, "y"), strings.HasPrefix(l, "on"), strings.HasPrefix(l, "t"):
		return true, nil
	}
	return false, errors.New("want yes or no")
}

// ---- int

type intValue struct {
	p        func(*Config) *int
	min, max int
}

func (intValue) kind() string { return "int" }

func (v intValue) syntax() string {
	if v.max-v.min < 10 {
		var alts []string
		for i := v.min; i <= v.max; i++ {
			alts = append(alts, strconv.Itoa(i))
		}
		return strings.Join(alts, ", ")
	}
	return fmt.Sprintf("an integer, %d or more", v.min)
}

func (v intValue) parse(c *Config, s string, _ int) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < v.min || n > v.max {
		return errors.New("want " + v.syntax())
	}
	*v.p(c) = n
	return nil
}

func (v intValue) format(c *Config) []string { return []string{strconv.Itoa(*v.p(c))} }

// ---- duration

type durationValue func(*Config) *time.Duration

func (durationValue) kind() string { return "duration" }
func (durationValue) syntax() string {
	return "a positive duration (30s, 1m30s, 8h) or whole seconds (28800)"
}

func (p durationValue) parse(c *Config, s string, _ int) error {
	d, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*p(c) = d
	return nil
}

func (p durationValue) format(c *Config) []string { return []string{FormatDuration(*p(c))} }

// ParseDuration reads a positive duration: Go's syntax (30s, 1m30s, 8h,
// 500ms) or a bare number of seconds, as saslauthd's -t takes it.
func ParseDuration(s string) (time.Duration, error) {
	errWant := errors.New("want " + durationValue(nil).syntax())
	if s != "" && strings.Trim(s, "0123456789") == "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n > math.MaxInt64/int64(time.Second) {
			return 0, errWant
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errWant
	}
	return d, nil
}

// FormatDuration writes d as ParseDuration reads it, without the zero
// units time.Duration.String leaves: 8h, 1m30s, 30s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ---- string, path, enum

type stringValue struct {
	p     func(*Config) *string
	check func(string) error // nil: anything
	desc  string             // the syntax
}

func (stringValue) kind() string     { return "string" }
func (v stringValue) syntax() string { return v.desc }

func (v stringValue) parse(c *Config, s string, _ int) error {
	if v.check != nil {
		if err := v.check(s); err != nil {
			return err
		}
	}
	*v.p(c) = s
	return nil
}

func (v stringValue) format(c *Config) []string { return nonEmpty(*v.p(c)) }

// checkHostPort accepts host:port with a port (the host may be empty: all
// addresses).
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return errors.New("want host:port")
	}
	return nil
}

type pathValue func(*Config) *string

func (pathValue) kind() string   { return "path" }
func (pathValue) syntax() string { return "an absolute path" }

func (p pathValue) parse(c *Config, s string, _ int) error {
	if !filepath.IsAbs(s) {
		return errors.New("want an absolute path")
	}
	*p(c) = s
	return nil
}

func (p pathValue) format(c *Config) []string { return nonEmpty(*p(c)) }

type enumValue struct {
	p    func(*Config) *string
	alts []string
}

func (enumValue) kind() string     { return "enum" }
func (v enumValue) syntax() string { return strings.Join(v.alts, " or ") }

func (v enumValue) parse(c *Config, s string, _ int) error {
	l := strings.ToLower(s)
	if !slices.Contains(v.alts, l) {
		return errors.New("want " + v.syntax())
	}
	*v.p(c) = l
	return nil
}

func (v enumValue) format(c *Config) []string { return nonEmpty(*v.p(c)) }

// nonEmpty is the format of a single string value: nothing when empty.
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// ---- lists

// splitList splits a list separated by commas, spaces or tabs; an empty
// item between two commas (or at either end) is an error.
func splitList(s string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		f := strings.Fields(item)
		if len(f) == 0 {
			return nil, errors.New("empty item in list")
		}
		out = append(out, f...)
	}
	return out, nil
}

// parseChain reads a mechanism chain: names separated by commas or spaces,
// lower-cased, each once.
func parseChain(s string) ([]string, error) {
	names, err := splitList(s)
	if err != nil {
		return nil, err
	}
	for i, n := range names {
		n = strings.ToLower(n)
		if !isKeyName(n) {
			return nil, fmt.Errorf("%q is not a mechanism name", n)
		}
		if slices.Contains(names[:i], n) {
			return nil, fmt.Errorf("mechanism %q twice in one chain", n)
		}
		names[i] = n
	}
	return names, nil
}

type chainValue func(*Config) *[]string

func (chainValue) kind() string { return "chain" }
func (chainValue) syntax() string {
	return "mechanism names separated by commas or spaces (sasldb,pam)"
}

func (p chainValue) parse(c *Config, s string, _ int) error {
	names, err := parseChain(s)
	if err != nil {
		return err
	}
	*p(c) = names
	return nil
}

func (p chainValue) format(c *Config) []string {
	if names := *p(c); len(names) > 0 {
		return []string{strings.Join(names, ",")}
	}
	return nil
}

// realmsValue is realm_strip: "all" or realms, over several lines.
type realmsValue struct{}

func (realmsValue) kind() string { return "realms" }
func (realmsValue) syntax() string {
	return "all, or realms separated by commas or spaces; repeatable"
}

func (realmsValue) parse(c *Config, s string, _ int) error {
	items, err := splitList(s)
	if err != nil {
		return err
	}
	for _, r := range items {
		if strings.EqualFold(r, "all") {
			if len(items) > 1 || len(c.RealmStrip) > 0 {
				return errors.New(`"all" cannot be combined with realms`)
			}
			if c.RealmStripAll {
				return errors.New(`"all" given twice`)
			}
			c.RealmStripAll = true
			continue
		}
		if c.RealmStripAll {
			return errors.New(`realms cannot be combined with "all"`)
		}
		if err := checkRealm(r); err != nil {
			return fmt.Errorf("%q: %w", r, err)
		}
		// ASCII only, as rewrite compares: strings.ToLower would turn each
		// invalid UTF-8 byte into a 3-byte U+FFFD (found by FuzzParse)
		r = rewrite.LowerASCII(r)
		if slices.Contains(c.RealmStrip, r) {
			return fmt.Errorf("realm %q listed twice", r)
		}
		c.RealmStrip = append(c.RealmStrip, r)
	}
	return nil
}

func (realmsValue) format(c *Config) []string {
	if c.RealmStripAll {
		return []string{"all"}
	}
	return slices.Clone(c.RealmStrip)
}

// eqSpace is the space around "=" in service_map, where spaces also
// separate entries.
var eqSpace = regexp.MustCompile(`[ \t]*=[ \t]*`)

// servicesValue is service_map (pam) or service_mech: service=value
// entries over several lines. service_map entries are separated by commas,
// semicolons or spaces; service_mech entries by semicolons, since a chain
// holds commas.
type servicesValue struct{ pam bool }

func (v servicesValue) kind() string { return "services" }

func (v servicesValue) syntax() string {
	if v.pam {
		return "service=pam-service entries separated by commas, semicolons or spaces; repeatable"
	}
	return "service=chain entries separated by semicolons (imap=rimap; smtp=sasldb,pam); repeatable"
}

func (v servicesValue) list(c *Config) *[]Mapping {
	if v.pam {
		return &c.ServiceMap
	}
	return &c.ServiceMech
}

func (v servicesValue) parse(c *Config, s string, line int) error {
	var entries []string
	if v.pam {
		var err error
		s = strings.ReplaceAll(eqSpace.ReplaceAllString(s, "="), ";", ",")
		if entries, err = splitList(s); err != nil {
			return err
		}
	} else {
		for e := range strings.SplitSeq(s, ";") {
			if e = strings.TrimSpace(e); e == "" {
				return errors.New("empty entry between semicolons")
			}
			entries = append(entries, e)
		}
	}
	list := v.list(c)
	for _, e := range entries {
		svc, to, ok := strings.Cut(e, "=")
		svc, to = strings.TrimSpace(svc), strings.TrimSpace(to)
		if !ok || svc == "" || to == "" {
			return fmt.Errorf("%q: want service=%s", e, map[bool]string{true: "pam-service", false: "chain"}[v.pam])
		}
		if svc != rewrite.AnyService || !v.pam {
			if err := checkService(svc); err != nil {
				return fmt.Errorf("service %q: %w", svc, err)
			}
		}
		if v.pam {
			if err := checkService(to); err != nil {
				return fmt.Errorf("PAM service %q: %w", to, err)
			}
		} else {
			names, err := parseChain(to)
			if err != nil {
				return fmt.Errorf("%s: %w", svc, err)
			}
			to = strings.Join(names, ",")
		}
		if i := slices.IndexFunc(*list, func(m Mapping) bool { return m.Service == svc }); i >= 0 {
			return fmt.Errorf("service %q already mapped on line %d", svc, (*list)[i].line)
		}
		*list = append(*list, Mapping{Service: svc, To: to, line: line})
	}
	return nil
}

func (v servicesValue) format(c *Config) []string {
	var out []string
	for _, m := range *v.list(c) {
		out = append(out, m.Service+"="+m.To)
	}
	return out
}

// ---- checks

// maxField is the wire protocol's limit on one field: a realm or a service
// longer than this can never match a request.
const maxField = 256

const realmSyntax = "a realm: no spaces, @, commas, semicolons or ="

func checkRealm(s string) error {
	if len(s) > maxField {
		return fmt.Errorf("longer than %d bytes", maxField)
	}
	if strings.ContainsAny(s, " \t@,;=") {
		return errors.New("want " + realmSyntax)
	}
	return nil
}

// checkService allows what PAM allows in a service (file) name, and a bit
// less: letters, digits, ., _ and -.
func checkService(s string) error {
	if len(s) > maxField {
		return fmt.Errorf("longer than %d bytes", maxField)
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; !isKeyByte(b) && b != '.' {
			return errors.New("want letters, digits, '.', '_' or '-'")
		}
	}
	if s == "." || s == ".." {
		return errors.New("not a service name")
	}
	return nil
}

func checkChars(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	return nil
}

// ---- a duration where 0 means off

type offDurationValue func(*Config) *time.Duration

func (offDurationValue) kind() string { return "duration" }
func (offDurationValue) syntax() string {
	return "a duration (2s, 1m, 24h), whole seconds, or 0 for off"
}

func (p offDurationValue) parse(c *Config, s string, _ int) error {
	if d, err := time.ParseDuration(s); (err == nil && d == 0) || (s != "" && strings.Trim(s, "0") == "") {
		*p(c) = 0
		return nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return errors.New("want " + offDurationValue(nil).syntax())
	}
	*p(c) = d
	return nil
}

func (p offDurationValue) format(c *Config) []string {
	if *p(c) == 0 {
		return []string{"0"}
	}
	return []string{FormatDuration(*p(c))}
}

// ---- network prefixes

type prefixesValue struct{}

func (prefixesValue) kind() string   { return "networks" }
func (prefixesValue) syntax() string { return "CIDR prefixes separated by commas or spaces" }

func (prefixesValue) parse(c *Config, s string, _ int) error {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return fmt.Errorf("want %s: %q is not one", prefixesValue{}.syntax(), f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.TrustedNetworks = append(c.TrustedNetworks, p.Masked())
	}
	return nil
}

func (prefixesValue) format(c *Config) []string {
	var out []string
	for _, p := range c.TrustedNetworks {
		out = append(out, p.String())
	}
	if len(out) == 0 {
		return nil
	}
	return []string{strings.Join(out, " ")}
}

// ---- a mechanism's own setting, passed through as text: the mechanism
// checks it when it is built, at start and on SIGHUP

type mechValue string

func (mechValue) kind() string   { return "string" }
func (mechValue) syntax() string { return "see the mechanism's documentation" }

func (k mechValue) parse(c *Config, s string, _ int) error {
	if c.MechValues == nil {
		c.MechValues = map[string]string{}
	}
	c.MechValues[string(k)] = s
	return nil
}

func (k mechValue) format(c *Config) []string { return nonEmpty(c.MechValues[string(k)]) }
