package commands

import (
	"bytes"
	"errors"
	"strings"
	"testing"

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
