package commands

import (
	"cmp"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/saslgate/saslgate/daemon"
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
	sizeSet        bool // -s given
	ttlSet         bool // -t given
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
	f.StringVarP(&o.option, "mech-option", "O", "", "option for the mechanism (rimap: host[/port])")
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
		o.sizeSet, o.ttlSet = f.Changed("cache-size"), f.Changed("cache-timeout")
		cfg, code := o.config(stderr, usage)
		if code >= 0 {
			return exit(code)
		}
		return exit(daemon.Run(cfg))
	}
	return cmd
}

// config validates the options as saslauthd does and builds the daemon's
// configuration; code >= 0 means exit now with it.
func (o *serveOpts) config(stderr io.Writer, usage func()) (daemon.Config, int) {
	fail := func(msg string) (daemon.Config, int) {
		fmt.Fprintf(stderr, "saslauthd[%d] :%s\n", os.Getpid(), msg)
		return daemon.Config{}, 1
	}
	if o.mechName == "" {
		// saslauthd prints usage and (by a bug) exits 0; an init script
		// that forgot -a should not look successful.
		fmt.Fprintf(stderr, "saslauthd[%d] :no authentication mechanism specified\n", os.Getpid())
		usage()
		return daemon.Config{}, 1
	}
	names := strings.Split(o.mechName, ",")
	for i, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" || !mechs.Known(n) {
			return fail("unknown authentication mechanism: " + strings.TrimSpace(names[i]))
		}
		names[i] = n
	}
	if !filepath.IsAbs(o.runDir) {
		return fail("-m requires an absolute pathname")
	}
	if o.procs < 0 {
		return fail("invalid number of worker processes defined")
	}
	if o.sizeSet && o.cacheKiB <= 0 {
		return fail("cache size must be positive and non zero")
	}
	if o.ttlSet && o.cacheTTL <= 0 {
		return fail("cache timeout must be positive")
	}
	if o.readTimeout <= 0 || o.drainTimeout <= 0 || o.requestTimeout <= 0 {
		return fail("timeouts must be positive")
	}
	if o.maxConns <= 0 {
		return fail("--max-conns must be positive")
	}
	level := slog.LevelInfo
	if o.debug || o.verbose {
		level = slog.LevelDebug
	}
	lh := daemon.NewLogHandler("saslauthd", true, stderr, level)
	logger := slog.New(lh)
	srv := &daemon.Server{
		Logger:         logger,
		ReadTimeout:    o.readTimeout,
		DrainTimeout:   o.drainTimeout,
		RequestTimeout: o.requestTimeout,
		MaxInFlight:    o.procs,
		MaxConns:       o.maxConns,
		JoinRealm:      o.joinRealm,
	}
	if o.cache {
		// -s defaults to saslauthd's table: 1711 slots x 6 buckets x 96 bytes
		srv.Cache = daemon.NewCache(o.cacheKiB*1024/daemon.CacheEntryBytes, time.Duration(o.cacheTTL)*time.Second)
	}
	mopts := mechs.Options{Option: o.option, Values: map[string]string{
		"sasldb_path": o.sasldbPath,
		"pam_mode":    o.pamMode,
		// saslauthd runs -n processes, each doing one PAM transaction;
		// -n 0 (no cap, saslauthd forks per request) keeps the default pool
		"pam_workers": strconv.Itoa(cmp.Or(o.procs, 5)),
	}}
	build := func(l *slog.Logger) (mechs.Mechanism, error) {
		steps := make([]mechs.Mechanism, 0, len(names))
		for _, n := range names {
			m, err := mechs.New(n, mopts, l)
			if err != nil {
				for _, s := range steps {
					if c, ok := s.(io.Closer); ok {
						c.Close()
					}
				}
				return nil, err // mechs.New says "failed to initialize mechanism NAME: ..."
			}
			steps = append(steps, m)
		}
		return mechs.NewChain(l, steps...), nil
	}
	return daemon.Config{
		RunDir:     o.runDir,
		Foreground: o.debug || o.foreground,
		Server:     srv,
		Build:      build,
		Log:        lh,
		Settings: []string{
			"num_procs  : " + strconv.Itoa(o.procs),
			"mech_option: " + o.option,
			"run_path   : " + o.runDir,
			"auth_mech  : " + strings.Join(names, ","),
		},
	}, -1
}
