package commands

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/saslgate/saslgate/daemon/config"
	"github.com/saslgate/saslgate/mechs"
	_ "github.com/saslgate/saslgate/mechs/all"
)

func TestAtoi(t *testing.T) {
	for in, want := range map[string]int{"5": 5, "abc": 0, "12x": 12, "-1": -1, " 7": 7, "": 0, "+3": 3} {
		var v int
		_ = atoiValue{&v}.Set(in)
		if v != want {
			t.Errorf("atoi(%q) = %d, want %d", in, v, want)
		}
	}
}

func TestGetoptError(t *testing.T) {
	tests := []struct{ in, want string }{
		{"unknown shorthand flag: 'T' in -T", "saslauthd: invalid option -- 'T'"},
		{"flag needs an argument: 'a' in -a", "saslauthd: option requires an argument -- 'a'"},
		{"unknown flag: --bogus", "saslauthd: unrecognized option '--bogus'"},
	}
	for i, tc := range tests {
		if got := getoptError("saslauthd", errors.New(tc.in)); got != tc.want {
			t.Errorf("test %d: %q, want %q", i, got, tc.want)
		}
	}
}

// The validation saslauthd does before starting, with its messages and
// exit codes (spec §3.3, §13 case 48).
func TestServe_Validation(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-v"}, 0, "saslauthd 2.1.28\nauthentication mechanisms: "},
		{[]string{"-h"}, 0, "usage: saslauthd [options]"},
		{[]string{"-T"}, 0, "saslauthd: invalid option -- 'T'\nusage: saslauthd [options]"},
		{[]string{"-a", "sasldb", "-a", "sasldb"}, 0, "usage: saslauthd"},
		{[]string{}, 1, "no authentication mechanism specified"},
		{[]string{"-a", "foo"}, 1, "unknown authentication mechanism: foo"},
		{[]string{"-a", "sasldb,foo"}, 1, "unknown authentication mechanism: foo"},
		{[]string{"-a", "sasldb", "-m", "rel"}, 1, "-m requires an absolute pathname"},
		{[]string{"-a", "sasldb", "-n", "-1"}, 1, "invalid number of worker processes defined"},
		{[]string{"-a", "sasldb", "-c", "-s", "0"}, 1, "cache size must be positive and non zero"},
		{[]string{"-a", "sasldb", "-c", "-t", "0"}, 1, "cache timeout must be positive"},
		{[]string{"-a", "sasldb", "-c", "-t", "abc"}, 1, "cache timeout must be positive"},
	}
	for i, tc := range tests {
		var out, errb bytes.Buffer
		code := Main(append([]string{"/usr/sbin/saslauthd"}, tc.args...), &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("test %d %v: exit %d, stderr %q; want exit %d and %q", i, tc.args, code, errb.String(), tc.code, tc.msg)
		}
	}
}

func TestTestCmd_Usage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"testsaslauthd"}, &out, &errb); code != 1 || errb.String() != testUsage("testsaslauthd") {
		t.Fatalf("exit %d stderr %q", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	code := Main([]string{"testsaslauthd", "-u", "a", "-p", "b", "-f", "/nonexistent/mux", "-R", "2"}, &out, &errb)
	if code != 255 || out.String() != "0: 1: " ||
		errb.String() != "connect() : No such file or directory\nconnect() : No such file or directory\n" {
		t.Fatalf("exit %d stdout %q stderr %q", code, out.String(), errb.String())
	}
}

// saslgate -v and --version print what "saslgate version" prints, on
// stdout with exit 0; serve's -v stays saslauthd's version block.
func TestRoot_VersionFlag(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(append([]string{"/usr/sbin/saslgate"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, want, stderr := run("version")
	if code != 0 || !strings.HasPrefix(want, "saslgate "+Version+" (saslauthd "+CompatVersion+" compatible)\nauthentication mechanisms: ") || stderr != "" {
		t.Fatalf("version: exit %d, stdout %q, stderr %q", code, want, stderr)
	}
	tests := []struct {
		args       []string
		code       int
		out, inErr string
	}{
		{[]string{"-v"}, 0, want, ""},
		{[]string{"--version"}, 0, want, ""},
		{[]string{"serve", "-v"}, 0, "", "saslauthd " + CompatVersion + "\nauthentication mechanisms: "},
		{[]string{"-x"}, 1, "", "unknown shorthand flag: 'x'"},
	}
	for _, tc := range tests {
		code, out, errs := run(tc.args...)
		if code != tc.code || out != tc.out || !strings.Contains(errs, tc.inErr) || (tc.inErr == "" && errs != "") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr with %q",
				tc.args, code, out, errs, tc.code, tc.out, tc.inErr)
		}
	}
	// a version holding template syntax is printed as it is
	defer func(v string) { Version = v }(Version)
	Version = "1.0-{{.Name}}"
	if code, out, _ := run("-v"); code != 0 || !strings.HasPrefix(out, "saslgate 1.0-{{.Name}} (") {
		t.Errorf("-v with braces in the version: exit %d, %q", code, out)
	}
}

// manEntry is one ".TP" entry of a man page: the tag line turned into its
// words (escapes and quotes removed), and the body lines after it.
type manEntry struct {
	tag  []string
	body []string
}

// manSections splits a man page into its sections, by ".SH" title
// (unquoted), each a list of entries.
func manSections(t *testing.T, path string) map[string][]manEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.NewReplacer(`\-`, "-", `\fB`, "", `\fI`, "", `\fR`, "", `\fP`, "", `"`, " ", ",", " ")
	secs := map[string][]manEntry{}
	sec, inTag := "", false
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, ".SH "):
			sec = strings.Trim(strings.TrimPrefix(l, ".SH "), `"`)
			secs[sec] = nil
		case l == ".TP":
			inTag = true
		case inTag:
			inTag = false
			secs[sec] = append(secs[sec], manEntry{tag: strings.Fields(plain.Replace(l))})
		case strings.HasPrefix(l, ".SS"):
			secs[sec] = append(secs[sec], manEntry{}) // ends the entry before
		case len(secs[sec]) > 0:
			e := &secs[sec][len(secs[sec])-1]
			e.body = append(e.body, l)
		}
	}
	return secs
}

// The man page documents every command and every option of each, in the
// section of that command, so neither can be added without it.
func TestManPage_CoversCommandLine(t *testing.T) {
	secs := manSections(t, "../../packaging/man/saslgate.8")
	tagged := func(sec, word string) bool {
		for _, e := range secs[sec] {
			if slices.Contains(e.tag, word) {
				return true
			}
		}
		return false
	}
	root := newRootCmd(io.Discard, io.Discard)
	root.InitDefaultHelpCmd()
	cmds := []*cobra.Command{root}
	for _, c := range root.Commands() {
		if c.Hidden {
			continue
		}
		cmds = append(cmds, c)
		found := false
		for _, e := range secs["COMMANDS"] {
			found = found || len(e.tag) > 1 && e.tag[0] == ".B" && e.tag[1] == "saslgate" && e.tag[2] == c.Name()
		}
		if !found {
			t.Errorf("COMMANDS has no entry for saslgate %s", c.Name())
		}
	}
	for _, c := range cmds {
		c.InitDefaultHelpFlag()
		sec := "OPTIONS"
		if c != root {
			sec = strings.ToUpper(c.Name()) + " OPTIONS"
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			_, hasSec := secs[sec]
			if c.Name() == "help" || f.Hidden || f.Name == "help" && !hasSec {
				return // a command whose only option is -h needs no section
			}
			if !hasSec {
				t.Errorf("no section %q for %s's options", sec, c.Name())
				return
			}
			if !tagged(sec, "--"+f.Name) {
				t.Errorf("%s: --%s is not documented", sec, f.Name)
			}
			if f.Shorthand != "" && !tagged(sec, "-"+f.Shorthand) {
				t.Errorf("%s: -%s (--%s) is not documented", sec, f.Shorthand, f.Name)
			}
		})
	}
}

// Every config key's Flag is an option of serve, and SERVE OPTIONS names
// the key under that option and under no other.
func TestManPage_ServeOptionKeys(t *testing.T) {
	serve := newServeCmd("serve", "saslgate serve", io.Discard)
	keyOf := map[string]string{} // flag as written ("-a", "--sasldb-path") -> key
	for _, k := range config.Keys() {
		if k.Flag == "" {
			continue
		}
		keyOf[k.Flag] = k.Name
		var f *pflag.Flag
		if long, ok := strings.CutPrefix(k.Flag, "--"); ok {
			f = serve.Flags().Lookup(long)
		} else if len(k.Flag) == 2 && k.Flag[0] == '-' {
			f = serve.Flags().ShorthandLookup(k.Flag[1:])
		}
		if f == nil {
			t.Errorf("key %s: flag %q is not an option of serve", k.Name, k.Flag)
		}
	}
	documented := map[string]bool{}
	for _, e := range manSections(t, "../../packaging/man/saslgate.8")["SERVE OPTIONS"] {
		var named []string // keys the entry names: "(key" then ".BR name"
		for i, l := range e.body {
			if strings.HasSuffix(l, "(key") && i+1 < len(e.body) {
				if f := strings.Fields(e.body[i+1]); len(f) > 1 {
					named = append(named, f[1])
				}
			}
		}
		var want []string
		for _, w := range e.tag {
			if k, ok := keyOf[w]; ok {
				want = append(want, k)
				documented[k] = true
			}
		}
		if !slices.Equal(named, want) {
			t.Errorf("SERVE OPTIONS %v names keys %v, want %v", e.tag, named, want)
		}
	}
	for _, k := range keyOf {
		if !documented[k] {
			t.Errorf("key %s: its flag is not in SERVE OPTIONS", k)
		}
	}
}

// Every mechanism the binary has is described under -a.
func TestManPage_Mechanisms(t *testing.T) {
	var body []string
	for _, e := range manSections(t, "../../packaging/man/saslgate.8")["SERVE OPTIONS"] {
		if slices.Contains(e.tag, "-a") {
			body = e.body
		}
	}
	for _, m := range mechs.Names() {
		if !slices.Contains(body, ".B "+m) {
			t.Errorf("SERVE OPTIONS -a does not describe mechanism %s (a line \".B %s\")", m, m)
		}
	}
}
