package config

import (
	"errors"
	"fmt"
	"math"
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
	{Name: "mech_option", Flag: "-O", Doc: "saslauthd's -O, the mechanism option: rimap's host[/port].",
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
	{Name: "log_level", Default: "0", Doc: "The login-debug level: 0 saslauthd's log lines only; 1 also each " +
		"request's rewrite trace and each mechanism's verdict; 2 also the back ends' detail. " +
		"Passwords are never logged.",
		v: intValue{func(c *Config) *int { return &c.LogLevel }, 0, 2}},
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
		r = strings.ToLower(r)
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
