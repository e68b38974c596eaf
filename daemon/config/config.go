package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/saslgate/saslgate/daemon/rewrite"
)

// DefaultPath is where the daemon looks for its config file unless told
// otherwise.
const DefaultPath = "/etc/saslgate.conf"

// MaxLine is the longest line, without its line break, that the file may
// hold: saslauthd's cfile reads lines into a 4096-byte buffer.
const MaxLine = 4095

// maxErrors bounds how many errors Parse reports before it gives up.
const maxErrors = 20

// Config is a parsed config file: one typed field per key, holding the
// key's default when the file does not set it. Fields may be overwritten
// by the caller (command-line flags win over the file); IsSet tells which
// keys the file set.
type Config struct {
	Mech       []string // mech: the default chain, lower-case names
	MechOption string   // mech_option
	SasldbPath string   // sasldb_path
	PAMMode    string   // pam_mode: "workers" or "inprocess"

	RunDir         string        // run_dir
	Procs          int           // procs
	MaxConns       int           // max_conns
	ReadTimeout    time.Duration // read_timeout
	DrainTimeout   time.Duration // drain_timeout
	RequestTimeout time.Duration // request_timeout

	Cache            bool          // cache
	CacheSizeKiB     int           // cache_size_kib
	CacheTTL         time.Duration // cache_ttl
	CacheNegativeTTL time.Duration // cache_negative_ttl
	CacheStaleTTL    time.Duration // cache_stale_ttl

	FailureDelay    time.Duration  // failure_delay
	PenaltyBase     time.Duration  // auth_penalty_base
	PenaltyMax      time.Duration  // auth_penalty_max
	PenaltyDecay    time.Duration  // auth_penalty_decay
	TrustedNetworks []netip.Prefix // trusted_networks

	RealmSplit     bool     // realm_split
	DefaultRealm   string   // default_realm
	RealmLowercase bool     // realm_lowercase
	LoginLowercase bool     // login_lowercase
	LoginChars     string   // login_chars
	RealmStripAll  bool     // realm_strip: all
	RealmStrip     []string // realm_strip: realms, lower-cased
	RealmJoin      bool     // realm_join

	ServiceMap  []Mapping // service_map, in file order
	ServiceMech []Mapping // service_mech, in file order; To is a canonical chain

	LogLevel int // log_level

	Metrics string // metrics: host:port, "" for off

	// MechValues holds the mechanisms' own keys (rimap_tls, ...), passed
	// to them as mechs.Options.Values.
	MechValues map[string]string

	name string         // the file's name, for errors
	set  map[string]int // key -> the first line that set it
}

// Mapping is one service=value entry of service_map or service_mech.
type Mapping struct {
	Service string // the request's service; "*" for any other (service_map)
	To      string // the PAM service, or the chain ("sasldb,pam")
	line    int
}

// Error is a problem in a config file. Parse returns one, or several
// joined with errors.Join; errors.As finds the first.
type Error struct {
	File string
	Line int    // 0 when the problem is not on one line
	Key  string // "" when the line has no valid key
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config: %s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("config: %s: %s", e.File, e.Msg)
}

// Default returns a Config holding every key's default and no file name.
func Default() *Config {
	c := &Config{set: map[string]int{}}
	for _, k := range keys {
		if k.Default != "" {
			if err := k.v.parse(c, k.Default, 0); err != nil {
				panic("config: bad default for " + k.Name + ": " + err.Error())
			}
		}
	}
	return c
}

// Load reads the config file at path. A file that does not exist gives an
// error for which errors.Is(err, fs.ErrNotExist) holds, so a caller can
// fall back to Default when the path was not given explicitly.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads a config file; name is used in errors ("<input>" if empty).
// On error the Config is nil and the error lists every bad line (up to
// 20), each as an *Error naming the file and line.
//
// The format is saslauthd's cfile (see the package documentation), except
// that trailing whitespace is trimmed from values, and that unknown keys,
// bad values, repeated keys and control characters are errors where
// saslauthd ignores them or falls back to a default.
func Parse(r io.Reader, name string) (*Config, error) {
	if name == "" {
		name = "<input>"
	}
	c := Default()
	c.name = name
	var errs []error
	fail := func(line int, key, format string, args ...any) {
		errs = append(errs, &Error{File: name, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	br := bufio.NewReaderSize(r, MaxLine+2) // + "\r\n"
	for n := 1; len(errs) < maxErrors; n++ {
		raw, tooLong, err := readLine(br)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("config: %s: %w", name, err)
		}
		if err == io.EOF && raw == nil && !tooLong {
			break
		}
		line := bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte("\n")), []byte("\r"))
		if n == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
		}
		if tooLong || len(line) > MaxLine {
			fail(n, "", "line longer than %d bytes", MaxLine)
		} else {
			c.parseLine(n, string(line), fail)
		}
		if err == io.EOF {
			break
		}
	}
	switch len(errs) {
	case 0:
		return c, nil
	case 1:
		return nil, errs[0]
	case maxErrors:
		errs = append(errs, &Error{File: name, Msg: "too many errors"})
	}
	return nil, errors.Join(errs...)
}

// readLine returns the next line with its "\n", or tooLong (and the line
// skipped) when it does not fit the reader's buffer. At the end of the
// input it returns io.EOF, with the last line if it had no "\n".
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	line, err = br.ReadSlice('\n')
	for err == bufio.ErrBufferFull {
		tooLong = true
		_, err = br.ReadSlice('\n')
	}
	if tooLong {
		line = nil
	}
	if len(line) == 0 {
		line = nil
	}
	return line, tooLong, err
}

func (c *Config) parseLine(n int, line string, fail func(int, string, string, ...any)) {
	if i := strings.IndexFunc(line, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }); i >= 0 {
		fail(n, "", "control character %q in column %d", line[i], i+1)
		return
	}
	t := strings.TrimLeft(line, " \t")
	if t == "" || t[0] == '#' {
		return
	}
	k := 0
	for k < len(t) && isKeyByte(t[k]) {
		k++
	}
	if k == 0 {
		fail(n, "", "want key: value, got %s", quote(t))
		return
	}
	name := strings.ToLower(t[:k])
	if k == len(t) || t[k] != ':' {
		if rest := strings.TrimLeft(t[k:], " \t"); strings.HasPrefix(rest, ":") {
			fail(n, name, "key %q must be followed immediately by \":\", without a space", name)
		} else {
			fail(n, name, "no colon after key %q", name)
		}
		return
	}
	key, ok := lookupKey(name)
	if !ok {
		msg := fmt.Sprintf("unknown key %q", name)
		if s := suggest(name); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		fail(n, name, "%s", msg)
		return
	}
	val := strings.TrimRight(strings.TrimLeft(t[k+1:], " \t"), " \t")
	if val == "" {
		fail(n, name, "key %q has no value", name)
		return
	}
	if first, dup := c.set[name]; dup && !key.Repeatable {
		fail(n, name, "key %q set again (first on line %d)", name, first)
		return
	}
	if err := key.v.parse(c, val, n); err != nil {
		fail(n, name, "%s: bad value %s: %v", name, quote(val), err)
		return
	}
	if _, dup := c.set[name]; !dup {
		c.set[name] = n
	}
}

// quote quotes a value for an error message, cut to 64 bytes.
func quote(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "…"
	}
	return strconv.Quote(s)
}

// suggest returns the known key closest to an unknown one, if it is close.
func suggest(name string) string {
	best, bestD := "", 3
	for _, k := range keys {
		if d := editDistance(name, k.Name, bestD); d < bestD {
			best, bestD = k.Name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, or limit when it is
// at least limit.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}

// Name returns the file name the Config was parsed from ("" for Default).
func (c *Config) Name() string { return c.name }

// IsSet reports whether the file set key. It panics on a key that is not
// in the table (a programmer's typo).
func (c *Config) IsSet(key string) bool { return c.Line(key) > 0 }

// Line returns the line on which the file first set key, or 0. It panics on
// a key that is not in the table.
func (c *Config) Line(key string) int {
	if _, ok := lookupKey(key); !ok {
		panic("config: no key " + strconv.Quote(key))
	}
	return c.set[key]
}

// Errorf reports a problem with key's value found after parsing (by the
// daemon, say): it names the file and line when the file set the key.
func (c *Config) Errorf(key, format string, args ...any) error {
	msg := key + ": " + fmt.Sprintf(format, args...)
	if n := c.Line(key); n > 0 {
		return &Error{File: c.name, Line: n, Key: key, Msg: msg}
	}
	return fmt.Errorf("config: %s", msg)
}

// CheckMechs checks every mechanism name in mech and service_mech with
// known (mechs.Known, say): config knows the syntax of a chain, the
// registry knows which mechanisms this binary has.
func (c *Config) CheckMechs(known func(name string) bool) error {
	var errs []error
	for _, n := range c.Mech {
		if !known(n) {
			errs = append(errs, c.Errorf("mech", "unknown authentication mechanism %q", n))
		}
	}
	for _, m := range c.ServiceMech {
		for _, n := range rewrite.SplitChain(m.To) {
			if !known(n) {
				msg := fmt.Sprintf("service_mech: %s: unknown authentication mechanism %q", m.Service, n)
				if m.line > 0 {
					errs = append(errs, &Error{File: c.name, Line: m.line, Key: "service_mech", Msg: msg})
				} else {
					errs = append(errs, errors.New("config: "+msg))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Rules returns the rewrite rules and the service map the Config holds.
// Call it after the command line's flags were merged in (-a, -r).
func (c *Config) Rules() rewrite.Rules {
	r := rewrite.Rules{
		RealmSplit:     c.RealmSplit,
		DefaultRealm:   c.DefaultRealm,
		RealmLowercase: c.RealmLowercase,
		LoginLowercase: c.LoginLowercase,
		LoginChars:     c.LoginChars,
		RealmStripAll:  c.RealmStripAll,
		RealmStrip:     append([]string(nil), c.RealmStrip...),
		RealmJoin:      c.RealmJoin,
		Services:       rewrite.ServiceMap{Default: strings.Join(c.Mech, ",")},
	}
	if len(c.ServiceMap) > 0 {
		r.Services.PAM = map[string]string{}
		for _, m := range c.ServiceMap {
			r.Services.PAM[m.Service] = m.To
		}
	}
	if len(c.ServiceMech) > 0 {
		r.Services.Chains = map[string]string{}
		for _, m := range c.ServiceMech {
			r.Services.Chains[m.Service] = m.To
		}
	}
	return r
}

// Diff returns the keys whose values differ between c and o, in table
// order: on SIGHUP the daemon can warn about the ones marked Restart.
func (c *Config) Diff(o *Config) []string {
	var out []string
	for _, k := range keys {
		if strings.Join(k.v.format(c), "\n") != strings.Join(k.v.format(o), "\n") {
			out = append(out, k.Name)
		}
	}
	return out
}
