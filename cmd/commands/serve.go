package commands

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/saslgate/saslgate/daemon"
	"github.com/saslgate/saslgate/daemon/config"
	"github.com/saslgate/saslgate/daemon/rewrite"
	"github.com/saslgate/saslgate/daemon/throttle"
	"github.com/saslgate/saslgate/mechs"
)

// DefaultRunDir is where the socket lives unless -m says otherwise.
const DefaultRunDir = "/run/saslauthd"

// saslauthd's usage text, verbatim (spec §3.3).
const usageText = `usage: saslauthd [options]

option information:
  -a <authmech>  Selects the authentication mechanism to use.
  -c             Enable credential caching.
  -d             Debugging (don't detach from tty, implies -V)
  -r             Combine the realm with the login before passing to authentication mechanism
                 Ex. login: "foo" realm: "bar" will get passed as login: "foo@bar"
                 The realm name is passed untouched.
  -O <option>    Optional argument to pass to the authentication
                 mechanism.
  -l             Disable accept() locking. Increases performance, but
                 may not be compatible with some operating systems.
  -m <path>      Alternate path for the saslauthd working directory,
                 must be absolute.
  -n <procs>     Number of worker processes to create.
  -s <kilobytes> Size of the credential cache (in kilobytes)
  -t <seconds>   Timeout for items in the credential cache (in seconds)
  -v             Display version information and available mechs
  -V             Enable verbose logging
  -h             Display this message.

`

const saslgateUsage = `saslgate additions:
  -a <m1,m2,...> A chain: each mechanism is tried in order; ACCEPT stops,
                 REJECT tries the next, TEMPFAIL stops with NO.
  -f             Stay in the foreground without verbose logging.
      --sasldb-path <file>       sasldb file (default /etc/sasldb2)
      --read-timeout <dur>       bound on reading a request (default 30s)
      --drain-timeout <dur>      bound on the drain after the reply (default 30s)
      --request-timeout <dur>    bound on waiting for and running a mechanism (default 60s)
      --max-conns <n>            open connections before new ones wait (default 4096)
      --pam-mode <mode>          pam: workers (default; -n isolated processes) or inprocess
      --config <file>            config file (default /etc/saslgate.conf); flags win over it
      --check                    validate the configuration, print it, exit 0 or 1
      --failure-delay <dur>      wait before every NO (default 2s; 0: none)
      --auth-penalty <dur>       first penalty of a failing address or login (default 2s; 0: none)
      --log-level <0|1|2>        login debugging: 1 every step of every login, 2 with passwords
      --metrics <host:port>      Prometheus metrics at http://host:port/metrics (default off;
                                 no authentication: bind to a loopback address)
      --rimap-tls <mode>         rimap: none, starttls or implicit; also --rimap-hosts,
                                 --rimap-ca-file, --rimap-server-name, --rimap-tls-verify,
                                 --rimap-connect-timeout, --rimap-command-timeout,
                                 --rimap-pool-size, --rimap-pool-idle (see saslgate.conf keys)

`

// versionBlock is -v's output: "saslauthd 2.1.28\nauthentication
// mechanisms: ...\n\n", listing what this binary really implements, in
// saslauthd's order.
func versionBlock(prog string) string {
	return fmt.Sprintf("%s %s\nauthentication mechanisms: %s\n\n", prog, CompatVersion, strings.Join(mechs.Names(), " "))
}

// atoiValue parses like C's atoi: "abc" is 0, "12x" is 12 (saslauthd uses
// atoi for -n, -s and -t).
type atoiValue struct{ v *int }

func (a atoiValue) String() string { return strconv.Itoa(*a.v) }
func (a atoiValue) Type() string   { return "int" }
func (a atoiValue) Set(s string) error {
	s = strings.TrimLeft(s, " \t\n")
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.Atoi(s[:i])
	if err != nil {
		n = 0
	}
	*a.v = n
	return nil
}

// countedString remembers how often it was set (a second -a is a usage
// error in saslauthd).
type countedString struct {
	v     *string
	count int
}

func (c *countedString) String() string { return *c.v }
func (c *countedString) Type() string   { return "string" }
func (c *countedString) Set(s string) error {
	c.count++
	*c.v = s
	return nil
}

type serveOpts struct {
	mech           countedString
	mechName       string
	option         string
	cache          bool
	cacheKiB       int
	cacheTTL       int
	debug, verbose bool
	foreground     bool
	noLock         bool
	runDir         string
	procs          int
	joinRealm      bool
	version        bool
	sasldbPath     string
	readTimeout    time.Duration
	drainTimeout   time.Duration
	requestTimeout time.Duration
	maxConns       int
	pamMode        string
	failureDelay   time.Duration
	penaltyBase    time.Duration
	logLevel       int
	configPath     string
	check          bool
	metrics        string // --metrics
	metricsAddr    string // the flag or the file's metrics key

	mechValues map[string]*string // --rimap-tls etc., by config key

	flags     *pflag.FlagSet // which were given: they win over the file
	mechNames []string       // -a, checked and lower-cased
}

// newServeCmd is saslauthd's command line. argv0 is the name the program
// was called by, printed in getopt's messages as saslauthd prints it.
func newServeCmd(use, argv0 string, stderr io.Writer) *cobra.Command {
	o := &serveOpts{cacheKiB: 963, cacheTTL: 28800, procs: 5, runDir: DefaultRunDir}
	o.mech.v = &o.mechName
	prog := "saslauthd"
	cmd := &cobra.Command{
		Use:   use + " [options]",
		Short: "run the daemon (saslauthd's command line)",
		// saslauthd's getopt ignores stray words
		Args:          cobra.ArbitraryArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	usage := func() {
		fmt.Fprint(stderr, usageText)
		if use != "saslauthd" {
			fmt.Fprint(stderr, saslgateUsage)
		}
		fmt.Fprint(stderr, versionBlock(prog))
	}
	cmd.SetHelpFunc(func(*cobra.Command, []string) { usage() })
	f := cmd.Flags()
	f.SortFlags = false
	f.VarP(&o.mech, "auth-mech", "a", "authentication mechanism(s), comma-separated")
	f.StringVarP(&o.option, "mech-option", "O", "", "option for the mechanism (rimap: host[/port]; checkpassword: the program)")
	f.BoolVarP(&o.cache, "cache", "c", false, "enable credential caching")
	f.VarP(atoiValue{&o.cacheKiB}, "cache-size", "s", "cache size in KiB")
	f.VarP(atoiValue{&o.cacheTTL}, "cache-timeout", "t", "cache entry lifetime in seconds")
	f.BoolVarP(&o.debug, "debug", "d", false, "debugging: foreground, verbose, log to stderr")
	f.BoolVarP(&o.foreground, "foreground", "f", false, "stay in the foreground")
	f.BoolVarP(&o.noLock, "no-accept-lock", "l", false, "accepted for compatibility (saslgate has no accept lock)")
	f.StringVarP(&o.runDir, "run-dir", "m", DefaultRunDir, "run directory holding the mux socket")
	f.VarP(atoiValue{&o.procs}, "procs", "n", "mechanism calls in flight (0: no cap)")
	f.BoolVarP(&o.joinRealm, "realm", "r", false, "pass login@realm to the mechanism")
	f.BoolVarP(&o.version, "version", "v", false, "print the version and mechanisms")
	f.BoolVarP(&o.verbose, "verbose", "V", false, "verbose logging")
	f.StringVar(&o.sasldbPath, "sasldb-path", "/etc/sasldb2", "sasldb file")
	f.DurationVar(&o.readTimeout, "read-timeout", daemon.DefaultReadTimeout, "bound on reading a request")
	f.DurationVar(&o.drainTimeout, "drain-timeout", daemon.DefaultDrainTimeout, "bound on the drain after the reply")
	f.DurationVar(&o.requestTimeout, "request-timeout", daemon.DefaultRequestTimeout, "bound on waiting for and running a mechanism")
	f.IntVar(&o.maxConns, "max-conns", daemon.DefaultMaxConns, "open connections before new ones wait")
	f.StringVar(&o.pamMode, "pam-mode", "workers", "pam: workers (isolated processes, -n of them) or inprocess (thread-safe stacks only)")
	f.DurationVar(&o.failureDelay, "failure-delay", 2*time.Second, "wait before every NO (0: none, as saslauthd)")
	f.DurationVar(&o.penaltyBase, "auth-penalty", 2*time.Second, "first penalty of a failing address or login, doubling (0: none)")
	f.IntVar(&o.logLevel, "log-level", 0, "login debugging: 0 saslauthd's lines, 1 every step, 2 with passwords")
	f.StringVar(&o.configPath, "config", config.DefaultPath, "config file (key: value); flags win over it")
	f.BoolVar(&o.check, "check", false, "validate the configuration, print it and exit")
	f.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics on host:port at /metrics (no authentication: use loopback)")
	// the mechanisms' own config keys, as long flags (rimap_tls: --rimap-tls)
	o.mechValues = map[string]*string{}
	for _, k := range config.Keys() {
		if strings.HasPrefix(k.Name, "rimap_") {
			o.mechValues[k.Name] = f.String(flagName(k.Name), "", k.Doc)
		}
	}
	o.flags = f
	f.BoolP("help", "h", false, "display this message")
	if use == "saslauthd" {
		// called as saslauthd: the usage shows saslauthd's text only
		f.VisitAll(func(fl *pflag.Flag) {
			if fl.Shorthand == "" {
				fl.Hidden = true
			}
		})
	}

	// saslauthd acts on the first -v, -h, second -a or bad option it meets
	// and looks no further, where pflag would parse everything first: so
	// cobra leaves the arguments alone, and they are scanned getopt-style
	// before pflag parses them.
	cmd.DisableFlagParsing = true
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		switch st := getoptScan(args, f); st.kind {
		case 'v':
			fmt.Fprint(stderr, versionBlock(prog))
			return nil
		case 'h', '2':
			usage()
			return nil
		case '?':
			if strings.HasPrefix(st.opt, "--") {
				fmt.Fprintf(stderr, "%s: unrecognized option '%s'\n", argv0, st.opt)
			} else {
				fmt.Fprintf(stderr, "%s: invalid option -- '%s'\n", argv0, st.opt)
			}
			usage()
			return nil // saslauthd exits 0 on a bad option
		case ':':
			fmt.Fprintf(stderr, "%s: option requires an argument -- '%s'\n", argv0, st.opt)
			usage()
			return nil
		}
		if err := f.Parse(args); err != nil {
			fmt.Fprintln(stderr, getoptError(argv0, err))
			usage()
			return nil
		}
		if o.version {
			fmt.Fprint(stderr, versionBlock(prog))
			return nil
		}
		if o.mech.count > 1 {
			usage()
			return exit(0)
		}
		cfg, code := o.config(stderr, usage)
		if code >= 0 {
			return exit(code)
		}
		cfg.Start = metricsStarter(o.metricsAddr, cfg.Server)
		return exit(daemon.Run(cfg))
	}
	return cmd
}

// flagName is a config key's long flag: rimap_tls is --rimap-tls.
func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// restartOnly lists the keys a SIGHUP does not apply.
var restartOnly = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range config.Keys() {
		m[k.Name] = k.Restart
	}
	return m
}()

// errNoMech: neither -a nor the config file names a mechanism.
var errNoMech = errors.New("no authentication mechanism specified")

// loadConfig reads the config file (when --config names one, or the default
// file exists) and lays the command line over it: saslauthd's flags win
// over the file. It runs at start and again on SIGHUP.
func (o *serveOpts) loadConfig() (*config.Config, error) {
	c := config.Default()
	if o.configPath != "" {
		fc, err := config.Load(o.configPath)
		switch {
		case err == nil:
			c = fc
		case errors.Is(err, fs.ErrNotExist) && !o.flags.Changed("config"):
			// the default file is optional
		default:
			return nil, err
		}
	}
	f := o.flags
	if f.Changed("auth-mech") {
		c.Mech = o.mechNames
	}
	set := func(flag string, apply func()) {
		if f.Changed(flag) {
			apply()
		}
	}
	set("mech-option", func() { c.MechOption = o.option })
	set("cache", func() { c.Cache = o.cache })
	set("cache-size", func() { c.CacheSizeKiB = o.cacheKiB })
	set("cache-timeout", func() { c.CacheTTL = time.Duration(o.cacheTTL) * time.Second })
	set("run-dir", func() { c.RunDir = o.runDir })
	set("procs", func() { c.Procs = o.procs })
	set("realm", func() { c.RealmJoin = o.joinRealm })
	set("sasldb-path", func() { c.SasldbPath = o.sasldbPath })
	set("pam-mode", func() { c.PAMMode = o.pamMode })
	set("read-timeout", func() { c.ReadTimeout = o.readTimeout })
	set("drain-timeout", func() { c.DrainTimeout = o.drainTimeout })
	set("request-timeout", func() { c.RequestTimeout = o.requestTimeout })
	set("max-conns", func() { c.MaxConns = o.maxConns })
	set("failure-delay", func() { c.FailureDelay = o.failureDelay })
	set("auth-penalty", func() { c.PenaltyBase = o.penaltyBase })
	set("log-level", func() { c.LogLevel = o.logLevel })
	set("metrics", func() { c.Metrics = o.metrics })
	for key, v := range o.mechValues {
		if f.Changed(flagName(key)) {
			if c.MechValues == nil {
				c.MechValues = map[string]string{}
			}
			c.MechValues[key] = *v
		}
	}
	if len(c.Mech) == 0 {
		return nil, errNoMech
	}
	if err := c.CheckMechs(mechs.Known); err != nil {
		return nil, err
	}
	return c, nil
}

// policy builds the rules and one chain per chain name the config uses; a
// mechanism named in several chains is one instance (one PAM worker pool).
func policy(c *config.Config, l *slog.Logger) (*daemon.Policy, error) {
	mopts := mechs.Options{Option: c.MechOption, Values: map[string]string{
		"sasldb_path": c.SasldbPath,
		"pam_mode":    c.PAMMode,
		// saslauthd runs -n processes, each doing one PAM transaction;
		// -n 0 (no cap, saslauthd forks per request) keeps the default pool
		"pam_workers":         strconv.Itoa(cmp.Or(c.Procs, 5)),
		"checkpassword_procs": strconv.Itoa(cmp.Or(c.Procs, 5)),
	}}
	maps.Copy(mopts.Values, c.MechValues)
	rules := c.Rules()
	p := &daemon.Policy{Rules: rules, Chains: map[string]mechs.Mechanism{}, LogLevel: c.LogLevel}
	made := map[string]mechs.Mechanism{}
	for _, chain := range rules.Services.ChainNames() {
		var steps []mechs.Mechanism
		for _, n := range rewrite.SplitChain(chain) {
			m := made[n]
			if m == nil {
				var err error
				if m, err = mechs.New(n, mopts, l); err != nil {
					for _, m := range made {
						if c, ok := m.(io.Closer); ok {
							c.Close()
						}
					}
					return nil, err // "failed to initialize mechanism NAME: ..."
				}
				made[n] = m
			}
			steps = append(steps, m)
		}
		p.Chains[chain] = mechs.NewChain(l, steps...)
	}
	return p, nil
}

// config validates the options as saslauthd does, reads the config file and
// builds the daemon's configuration; code >= 0 means exit now with it.
func (o *serveOpts) config(stderr io.Writer, usage func()) (daemon.Config, int) {
	fail := func(msg string) (daemon.Config, int) {
		fmt.Fprintf(stderr, "saslauthd[%d] :%s\n", os.Getpid(), msg)
		return daemon.Config{}, 1
	}
	f := o.flags
	if f.Changed("auth-mech") {
		for _, n := range strings.Split(o.mechName, ",") {
			ln := strings.ToLower(strings.TrimSpace(n))
			if ln == "" || !mechs.Known(ln) {
				return fail("unknown authentication mechanism: " + strings.TrimSpace(n))
			}
			o.mechNames = append(o.mechNames, ln)
		}
	}
	switch {
	case f.Changed("run-dir") && !filepath.IsAbs(o.runDir):
		return fail("-m requires an absolute pathname")
	case o.procs < 0:
		return fail("invalid number of worker processes defined")
	case f.Changed("cache-size") && o.cacheKiB <= 0:
		return fail("cache size must be positive and non zero")
	case f.Changed("cache-timeout") && o.cacheTTL <= 0:
		return fail("cache timeout must be positive")
	case o.readTimeout <= 0 || o.drainTimeout <= 0 || o.requestTimeout <= 0:
		return fail("timeouts must be positive")
	case o.maxConns <= 0:
		return fail("--max-conns must be positive")
	case o.failureDelay < 0 || o.penaltyBase < 0:
		return fail("--failure-delay and --auth-penalty must not be negative")
	case o.logLevel < 0 || o.logLevel > 2:
		return fail("--log-level must be 0, 1 or 2")
	}
	c, err := o.loadConfig()
	if errors.Is(err, errNoMech) {
		// saslauthd prints usage and (by a bug) exits 0; an init script
		// that forgot -a should not look successful.
		fmt.Fprintf(stderr, "saslauthd[%d] :no authentication mechanism specified\n", os.Getpid())
		usage()
		return daemon.Config{}, 1
	}
	if err != nil {
		return fail(err.Error())
	}
	if o.check {
		if p, err := policy(c, slog.New(slog.DiscardHandler)); err != nil {
			return fail(err.Error())
		} else {
			_ = p.Close()
		}
		fmt.Fprintf(stderr, "configuration OK (%s, flags laid over it):\n", cmp.Or(o.configPath, "no file"))
		_ = c.Format(stderr, true)
		return daemon.Config{}, 0
	}

	o.metricsAddr = c.Metrics
	level := slog.LevelInfo
	if o.debug || o.verbose || c.LogLevel > 0 {
		level = slog.LevelDebug
	}
	lh := daemon.NewLogHandler("saslauthd", true, stderr, level)
	logger := slog.New(lh)
	srv := &daemon.Server{
		Logger:         logger,
		ReadTimeout:    c.ReadTimeout,
		DrainTimeout:   c.DrainTimeout,
		RequestTimeout: c.RequestTimeout,
		MaxInFlight:    c.Procs,
		MaxConns:       c.MaxConns,
	}
	if c.Cache {
		// -s KiB in saslauthd's 96-byte buckets (default 1711 slots x 6)
		srv.Cache = daemon.NewCacheWith(daemon.CacheConfig{
			MaxEntries:  c.CacheSizeKiB * 1024 / daemon.CacheEntryBytes,
			TTL:         c.CacheTTL,
			NegativeTTL: c.CacheNegativeTTL,
			StaleTTL:    c.CacheStaleTTL,
		})
	}
	if c.FailureDelay > 0 || c.PenaltyBase > 0 {
		tc := throttle.DefaultConfig()
		tc.FailureDelay, tc.PenaltyBase, tc.PenaltyMax, tc.Decay = c.FailureDelay, c.PenaltyBase, c.PenaltyMax, c.PenaltyDecay
		tc.Trusted = c.TrustedNetworks
		srv.Throttle = throttle.New(tc, nil)
	}
	first := c
	build := func(l *slog.Logger) (*daemon.Policy, error) {
		cur := first
		if cur == nil { // a reload: read the file again
			var err error
			if cur, err = o.loadConfig(); err != nil {
				return nil, err
			}
			for _, k := range c.Diff(cur) {
				if restartOnly[k] {
					l.Warn("config: " + k + " changed; it takes effect at the next restart")
				}
			}
		}
		first = nil
		return policy(cur, l)
	}
	return daemon.Config{
		RunDir:     c.RunDir,
		Foreground: o.debug || o.foreground,
		Server:     srv,
		Build:      build,
		Log:        lh,
		Settings: []string{
			"num_procs  : " + strconv.Itoa(c.Procs),
			"mech_option: " + c.MechOption,
			"run_path   : " + c.RunDir,
			"auth_mech  : " + strings.Join(c.Mech, ","),
		},
	}, -1
}
