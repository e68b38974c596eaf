package doctor

import (
	"cmp"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/saslgate/saslgate/daemon/config"
	"github.com/saslgate/saslgate/mechs"
)

// Where the daemon's command line comes from, in the order looked at.
const (
	DefaultsSaslgate   = "/etc/default/saslgate"    // saslgate.service: MECH, FLAGS
	DefaultsSaslauthd  = "/etc/default/saslauthd"   // Debian's init script: MECHANISMS, MECH_OPTIONS, OPTIONS
	SysconfigSaslauthd = "/etc/sysconfig/saslauthd" // Red Hat's unit: SOCKETDIR, MECH, FLAGS
)

// DefaultRunDir is the daemon's -m when nothing sets it.
const DefaultRunDir = "/run/saslauthd"

type source int

const (
	srcNone source = iota
	srcArgs
	srcSaslgate
	srcSaslauthd
	srcSysconfig
)

// daemonSetup is how the daemon runs: its command line, config file and
// sockets.
type daemonSetup struct {
	src  source
	file string            // the defaults file read, if any
	vars map[string]string // its variables
	args []string          // the daemon's arguments, as the unit or init script passes them

	cfgPath string
	cfg     *config.Config // the file with the flags laid over it
	cfgErr  error          // the file did not load; cfg holds the defaults then
	opts    mechs.Options  // what the mechanisms are built with

	runDir  string
	sockets []string // logical paths: runDir/mux, then systemd's ListenStream paths
	unit    string   // saslgate.socket, when enabled
}

// describe names the source for a finding's detail.
func (d *daemonSetup) describe() string {
	switch d.src {
	case srcArgs:
		return "the daemon command line given after --"
	case srcNone:
		return "no daemon configuration (" + DefaultsSaslgate + " and " + DefaultsSaslauthd + " are missing): defaults"
	}
	return d.file
}

// daemonFlags are the serve flags that matter here. Every saslauthd short
// flag is declared so that a group such as -cm DIR parses as the daemon
// parses it; long flags doctor does not use are skipped with their value.
type daemonFlags struct {
	fs                                *pflag.FlagSet
	mech, option, runDir, cfg, sasldb string
	realm                             bool
	rimap                             map[string]*string
}

func parseFlags(args []string) (*daemonFlags, error) {
	f := &daemonFlags{fs: pflag.NewFlagSet("saslgate serve", pflag.ContinueOnError), rimap: map[string]*string{}}
	fs := f.fs
	fs.ParseErrorsAllowlist.UnknownFlags = true
	fs.SetOutput(discard{})
	fs.StringVarP(&f.mech, "auth-mech", "a", "", "")
	fs.StringVarP(&f.option, "mech-option", "O", "", "")
	fs.StringVarP(&f.runDir, "run-dir", "m", "", "")
	fs.BoolVarP(&f.realm, "realm", "r", false, "")
	for _, b := range []string{"c:cache", "d:debug", "f:foreground", "l:no-accept-lock", "v:version", "V:verbose", "h:help"} {
		fs.BoolP(b[2:], b[:1], false, "")
	}
	for _, s := range []string{"n:procs", "s:cache-size", "t:cache-timeout"} {
		fs.StringP(s[2:], s[:1], "", "")
	}
	fs.StringVar(&f.cfg, "config", config.DefaultPath, "")
	fs.StringVar(&f.sasldb, "sasldb-path", "", "")
	for _, k := range config.Keys() {
		if strings.HasPrefix(k.Name, "rimap_") {
			f.rimap[k.Name] = fs.String(strings.ReplaceAll(k.Name, "_", "-"), "", "")
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("doctor: daemon flags: %w", err)
	}
	return f, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// readDaemon works out how the daemon runs. args, when not nil, is its
// command line as given to doctor; else the defaults files say.
func readDaemon(r rootFS, args []string) *daemonSetup {
	d := &daemonSetup{}
	switch {
	case args != nil:
		d.src, d.args = srcArgs, args
	case r.exists(DefaultsSaslgate):
		d.src, d.file = srcSaslgate, DefaultsSaslgate
		d.vars = readDefaults(r, d.file)
		// saslgate.service: Environment=MECH=pam, then the file;
		// ExecStart=saslgate serve -f -a $MECH $FLAGS
		m, ok := d.vars["MECH"]
		if !ok {
			m = "pam"
		}
		if m != "" {
			d.args = []string{"-a", m}
		}
		d.args = append(d.args, shellWords(d.vars["FLAGS"])...)
	case r.exists(DefaultsSaslauthd):
		// the init script's command line (spec §3.8)
		d.src, d.file = srcSaslauthd, DefaultsSaslauthd
		d.vars = readDefaults(r, d.file)
		if m := d.vars["MECHANISMS"]; m != "" {
			d.args = []string{"-a", m}
		}
		if o := d.vars["MECH_OPTIONS"]; o != "" {
			d.args = append(d.args, "-O")
			d.args = append(d.args, shellWords(o)...)
		}
		opts := d.vars["OPTIONS"]
		if strings.TrimSpace(opts) == "" {
			opts = "-c -m /var/run/saslauthd"
		}
		d.args = append(d.args, shellWords(opts)...)
	case r.exists(SysconfigSaslauthd):
		d.src, d.file = srcSysconfig, SysconfigSaslauthd
		d.vars = readDefaults(r, d.file)
		d.args = []string{"-m", cmp.Or(d.vars["SOCKETDIR"], DefaultRunDir)}
		if m := d.vars["MECH"]; m != "" {
			d.args = append(d.args, "-a", m)
		}
		d.args = append(d.args, shellWords(d.vars["FLAGS"])...)
	}

	f, err := parseFlags(d.args)
	if err != nil {
		d.cfgErr = err
		f, _ = parseFlags(nil)
	}
	d.cfgPath = f.cfg
	cfg := config.Default()
	real, rerr := r.resolve("/", d.cfgPath)
	var loaded *config.Config
	if rerr == nil {
		loaded, err = config.Load(r.host(real))
	} else {
		err = rerr
	}
	switch {
	case err == nil:
		cfg = loaded
	case isNotExist(err) && !f.fs.Changed("config"):
		// the default file is optional
	case d.cfgErr == nil:
		d.cfgErr = unroot(r, err)
	}
	set := func(flag string, apply func()) {
		if f.fs.Changed(flag) {
			apply()
		}
	}
	set("auth-mech", func() {
		cfg.Mech = nil
		for _, n := range strings.Split(f.mech, ",") {
			if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
				cfg.Mech = append(cfg.Mech, n)
			}
		}
	})
	set("mech-option", func() { cfg.MechOption = f.option })
	set("run-dir", func() { cfg.RunDir = f.runDir })
	set("realm", func() { cfg.RealmJoin = f.realm })
	set("sasldb-path", func() { cfg.SasldbPath = f.sasldb })
	for key, v := range f.rimap {
		if f.fs.Changed(strings.ReplaceAll(key, "_", "-")) {
			if cfg.MechValues == nil {
				cfg.MechValues = map[string]string{}
			}
			cfg.MechValues[key] = *v
		}
	}
	d.cfg = cfg
	d.opts = mechs.Options{Option: cfg.MechOption, Values: map[string]string{"sasldb_path": cfg.SasldbPath}}
	for k, v := range cfg.MechValues {
		d.opts.Values[k] = v
	}
	d.runDir = path.Clean(cmp.Or(cfg.RunDir, DefaultRunDir))
	d.sockets = []string{path.Join(d.runDir, "mux")}
	// saslgate.service requires saslgate.socket: its sockets count when the
	// service is how the daemon runs, or when the socket unit is enabled
	if unit, listen := socketUnit(r, d.src == srcSaslgate); unit != "" {
		d.unit = unit
		for _, l := range listen {
			if !slices.Contains(d.sockets, l) {
				d.sockets = append(d.sockets, l)
			}
		}
	}
	return d
}

// unroot removes the root directory from an error's text, so findings name
// the paths as the system sees them.
func unroot(r rootFS, err error) error {
	if r.root == "/" || err == nil {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), strings.TrimSuffix(r.root, "/"), ""))
}

// Where systemd looks for units, most important first.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

// socketUnit returns saslgate.socket's path and its ListenStream= paths,
// drop-ins included, when the unit is used: enabled (sockets.target wants
// it) or required by the service that runs the daemon.
func socketUnit(r rootFS, required bool) (string, []string) {
	const name = "saslgate.socket"
	if !required && !r.exists("/etc/systemd/system/sockets.target.wants/"+name) {
		return "", nil
	}
	unit := ""
	for _, dir := range unitDirs {
		if p := dir + "/" + name; r.exists(p) {
			unit = p
			break
		}
	}
	if unit == "" {
		return "", nil
	}
	files := []string{unit}
	var drops []string
	seen := map[string]bool{}
	for _, dir := range unitDirs {
		for _, p := range r.glob(dir + "/" + name + ".d/*.conf") {
			if b := path.Base(p); !seen[b] {
				seen[b] = true
				drops = append(drops, p)
			}
		}
	}
	sort.Slice(drops, func(i, j int) bool { return path.Base(drops[i]) < path.Base(drops[j]) })
	files = append(files, drops...)
	var listen []string
	for _, p := range files {
		b, err := r.readFile(p)
		if err != nil {
			continue
		}
		section := ""
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			switch {
			case line == "" || line[0] == '#' || line[0] == ';':
			case line[0] == '[':
				section = line
			case section == "[Socket]":
				k, v, ok := strings.Cut(line, "=")
				if !ok || strings.TrimSpace(k) != "ListenStream" {
					continue
				}
				v = strings.TrimSpace(v)
				switch {
				case v == "":
					listen = nil // an empty assignment resets the list
				case path.IsAbs(v):
					listen = append(listen, path.Clean(v))
				}
			}
		}
	}
	return unit, listen
}

// readDefaults reads a shell defaults file's NAME=value lines (the subset
// such files use: optional "export", one level of quotes, no expansion).
func readDefaults(r rootFS, p string) map[string]string {
	vars := map[string]string{}
	b, err := r.readFile(p)
	if err != nil {
		return vars
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || !isShellName(k) {
			continue
		}
		w := shellWords(v)
		vars[k] = strings.Join(w, " ")
	}
	return vars
}

func isShellName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// shellWords splits s as the shell splits an unquoted expansion or a
// simple word list: blanks separate, '...' and "..." quote, backslash
// escapes, an unquoted # starts a comment.
func shellWords(s string) []string {
	var (
		out   []string
		cur   strings.Builder
		in    bool // inside a word
		quote byte
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0:
				i++
				cur.WriteByte(s[i])
			default:
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			in = true
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		case c == '#' && !in:
			i = len(s)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// shellQuote quotes a word for a shell command line when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_@%+=:,./-", c))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shellQuote(w)
	}
	return strings.Join(q, " ")
}

// withRunDir returns args with -m's value replaced by dir (appended when
// there is no -m), for a second daemon's command line.
func withRunDir(args []string, dir string) []string {
	out := slices.Clone(args)
	valued := "aOmnst" // saslauthd's short flags that take a value
	for i := 0; i < len(out); i++ {
		a := out[i]
		switch {
		case a == "--":
			i = len(out)
		case a == "--run-dir" && i+1 < len(out):
			out[i+1] = dir
			return out
		case strings.HasPrefix(a, "--run-dir="):
			out[i] = "--run-dir=" + dir
			return out
		case strings.HasPrefix(a, "--"):
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				if strings.IndexByte(valued, a[j]) < 0 {
					continue
				}
				switch {
				case a[j] == 'm' && j == len(a)-1 && i+1 < len(out):
					out[i+1] = dir
					return out
				case a[j] == 'm' && j < len(a)-1:
					out[i] = a[:j+1] + dir
					return out
				case j == len(a)-1:
					i++ // the next word is this flag's value
				}
				break
			}
		}
	}
	return append(out, "-m", dir)
}
