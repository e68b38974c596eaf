package doctor

import (
	"context"
	"path"
	"strings"
)

// DefaultPostfixConfig is Postfix's compiled-in config_directory.
const DefaultPostfixConfig = "/etc/postfix"

// postfixParams are the main.cf parameters doctor reads.
var postfixParams = []string{
	"queue_directory", "mail_owner", "smtpd_sasl_auth_enable", "smtpd_sasl_type", "smtpd_sasl_path",
	"smtpd_sasl_service", "smtpd_sasl_local_domain", "cyrus_sasl_config_path", "myhostname", "mydomain",
}

// maxExpand bounds nested $name expansion, as Postfix's own limit does
// ("parameter ... recursion").
const maxExpand = 100

// postfixSetup is one Postfix instance's SASL-relevant configuration.
type postfixSetup struct {
	configDir string
	present   bool   // main.cf exists
	via       string // "postconf" or "main.cf"
	values    map[string]string
	lookup    func(name string) string // a parameter's expanded value
	services  []smtpdService           // smtpd services from master.cf with SASL on
	masterErr error
}

func (p *postfixSetup) get(name string) string {
	if v, ok := p.values[name]; ok {
		return v
	}
	v := p.lookup(name)
	p.values[name] = v
	return v
}

// smtpdService is one smtpd line of master.cf.
type smtpdService struct {
	name      string // the first column: "smtp", "submission", "127.0.0.1:2525"
	line      int    // where it starts in master.cf
	chroot    bool
	overrides map[string]string // -o name=value, expanded
}

// param is a main.cf parameter as this service sees it.
func (s smtpdService) param(p *postfixSetup, name string) string {
	if v, ok := s.overrides[name]; ok {
		return v
	}
	return p.get(name)
}

// readPostfix reads the instance in configDir: through postconf when the
// probe is there (it knows the compiled-in defaults), else by parsing
// main.cf with Postfix's defaults for the parameters read.
func readPostfix(ctx context.Context, r rootFS, configDir string, pr Probes, hostname string) *postfixSetup {
	p := &postfixSetup{configDir: configDir, values: map[string]string{}}
	p.present = r.exists(path.Join(configDir, "main.cf"))
	if !p.present {
		return p
	}
	if pr.Postconf != nil {
		if vals, err := pr.Postconf(ctx, configDir, postfixParams); err == nil && len(vals) == len(postfixParams) {
			p.via = "postconf"
			for i, n := range postfixParams {
				p.values[n] = vals[i]
			}
			p.lookup = func(name string) string {
				v, err := pr.Postconf(ctx, configDir, []string{name})
				if err != nil || len(v) != 1 {
					return ""
				}
				return v[0]
			}
		}
	}
	if p.via == "" {
		p.via = "main.cf"
		raw := parseMainCf(readOrEmpty(r, path.Join(configDir, "main.cf")))
		defaults := map[string]string{
			"config_directory":        configDir,
			"queue_directory":         "/var/spool/postfix",
			"mail_owner":              "postfix",
			"smtpd_sasl_auth_enable":  "no",
			"smtpd_sasl_type":         "cyrus",
			"smtpd_sasl_path":         "smtpd",
			"smtpd_sasl_service":      "smtp",
			"smtpd_sasl_local_domain": "",
			"cyrus_sasl_config_path":  "",
			"myhostname":              hostname,
		}
		var expandName func(name string, depth int) string
		expandName = func(name string, depth int) string {
			v, ok := raw[name]
			if !ok {
				v, ok = defaults[name]
			}
			if !ok && name == "mydomain" {
				// Postfix: myhostname without its first label
				if _, dom, found := strings.Cut(expandName("myhostname", depth+1), "."); found && dom != "" {
					return dom
				}
				return "localdomain"
			}
			return expand(v, func(n string) string {
				if depth >= maxExpand {
					return ""
				}
				return expandName(n, depth+1)
			})
		}
		p.lookup = func(name string) string { return expandName(name, 0) }
		for _, n := range postfixParams {
			p.values[n] = p.lookup(n)
		}
	}
	p.services, p.masterErr = readMasterCf(r, p)
	return p
}

func readOrEmpty(r rootFS, p string) []byte {
	b, _ := r.readFile(p)
	return b
}

// parseMainCf reads main.cf's "name = value" logical lines: a line that
// starts with white space continues the previous one, # starts a comment
// line, and a later setting wins.
func parseMainCf(b []byte) map[string]string {
	out := map[string]string{}
	for _, l := range logicalLines(b) {
		name, value, ok := strings.Cut(l.text, "=")
		if !ok {
			continue
		}
		out[strings.TrimSpace(name)] = strings.TrimSpace(value)
	}
	return out
}

type logicalLine struct {
	text string
	line int // where it starts
}

// logicalLines joins Postfix's continuation lines (those that start with
// white space) and drops comments and blank lines.
func logicalLines(b []byte) []logicalLine {
	var out []logicalLine
	for i, raw := range strings.Split(string(b), "\n") {
		raw = strings.TrimRight(raw, "\r")
		t := strings.TrimSpace(raw)
		switch {
		case t == "" || t[0] == '#':
			continue
		case raw[0] == ' ' || raw[0] == '\t':
			if len(out) > 0 {
				out[len(out)-1].text += " " + t
			}
			continue
		}
		out = append(out, logicalLine{text: t, line: i + 1})
	}
	return out
}

// expand replaces $name, ${name}, $(name), ${name?text} (text when name is
// not empty) and ${name:text} (text when it is) as Postfix does; $$ is $.
func expand(v string, get func(string) string) string {
	if !strings.Contains(v, "$") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '$' || i+1 == len(v) {
			b.WriteByte(v[i])
			continue
		}
		i++
		switch c := v[i]; {
		case c == '$':
			b.WriteByte('$')
		case c == '{' || c == '(':
			end := strings.IndexByte(v[i:], map[byte]byte{'{': '}', '(': ')'}[c])
			if end < 0 {
				b.WriteString(v[i-1:])
				return b.String()
			}
			inner := v[i+1 : i+end]
			i += end
			if k := strings.IndexAny(inner, "?:"); k >= 0 {
				val := get(inner[:k])
				if (inner[k] == '?') == (val != "") {
					b.WriteString(expand(inner[k+1:], get))
				}
				continue
			}
			b.WriteString(get(inner))
		default:
			j := i
			for j < len(v) && (v[j] == '_' || v[j] >= 'a' && v[j] <= 'z' || v[j] >= 'A' && v[j] <= 'Z' || v[j] >= '0' && v[j] <= '9') {
				j++
			}
			if j == i {
				b.WriteByte('$')
				b.WriteByte(c)
				continue
			}
			b.WriteString(get(v[i:j]))
			i = j - 1
		}
	}
	return b.String()
}

// readMasterCf returns master.cf's smtpd services.
func readMasterCf(r rootFS, p *postfixSetup) ([]smtpdService, error) {
	b, err := r.readFile(path.Join(p.configDir, "master.cf"))
	if err != nil {
		return nil, unroot(r, err)
	}
	var out []smtpdService
	for _, l := range logicalLines(b) {
		f := strings.Fields(l.text)
		if len(f) < 8 || f[7] != "smtpd" {
			continue
		}
		s := smtpdService{name: f[0], line: l.line, chroot: f[4] == "y", overrides: map[string]string{}}
		args := f[8:]
		for i := 0; i < len(args); i++ {
			var kv string
			switch a := args[i]; {
			case a == "-o" && i+1 < len(args) && args[i+1] == "{":
				// -o { name = value }
				j := i + 2
				for j < len(args) && args[j] != "}" {
					j++
				}
				kv = strings.Join(args[i+2:min(j, len(args))], " ")
				i = j
			case a == "-o" && i+1 < len(args):
				i++
				kv = args[i]
			case strings.HasPrefix(a, "-o") && len(a) > 2:
				kv = a[2:]
			default:
				continue
			}
			if k, v, ok := strings.Cut(kv, "="); ok {
				s.overrides[strings.TrimSpace(k)] = expand(strings.TrimSpace(v), p.get)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// isYes reads a Postfix boolean.
func isYes(v string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	return v == "yes" || v == "true"
}

// saslConf is the libsasl application file (smtpd.conf) a service reads.
type saslConf struct {
	app      string
	path     string   // logical; "" when none was found
	searched []string // where it was looked for, in order
	values   map[string]string
}

// SASL config directories, after the instance's own ($config_directory/sasl,
// where Debian's Postfix looks first) and cyrus_sasl_config_path.
var saslConfDirs = []string{"/etc/postfix/sasl", "/etc/sasl2", "/usr/lib/sasl2"}

// readSaslConf finds and reads <app>.conf.
func readSaslConf(r rootFS, p *postfixSetup, pathParam, app string) saslConf {
	c := saslConf{app: app, values: map[string]string{}}
	dirs := []string{path.Join(p.configDir, "sasl")}
	for _, d := range strings.Split(pathParam, ":") {
		if d = strings.TrimSpace(d); d != "" {
			dirs = append(dirs, d)
		}
	}
	dirs = append(dirs, saslConfDirs...)
	dirs = append(dirs, r.glob("/usr/lib/*-linux-gnu/sasl2")...)
	seen := map[string]bool{}
	for _, d := range dirs {
		f := path.Join(d, app+".conf")
		if seen[f] {
			continue
		}
		seen[f] = true
		c.searched = append(c.searched, f)
		b, err := r.readFile(f)
		if err != nil {
			continue
		}
		c.path = f
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok {
				c.values[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		break
	}
	return c
}
