package doctor_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/saslgate/saslgate/cmd/commands"
	"github.com/saslgate/saslgate/cmd/doctor"
)

func saslgate(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = commands.Main(append([]string{"saslgate"}, args...), &o, &e)
	return o.String(), e.String(), code
}

// TestCommandJSON: `saslgate doctor --json` prints exactly
// {"ok":bool,"findings":[{"id","severity","summary","detail","fix"}]} and
// exits 0 when nothing is wrong (notes do not count), 1 otherwise.
func TestCommandJSON(t *testing.T) {
	clean := doctor.BuildBase(t)
	broken := doctor.BuildBase(t, "/etc/group", notInSasl(), "/etc/postfix/sasl/smtpd.conf", "pwcheck_method: auxprop\n")
	cases := []struct {
		name string
		root string
		code int
		ok   bool
		ids  []string
	}{
		{"clean", clean, 0, true, []string{doctor.IDSkipped}},
		{"broken", broken, 1, false, []string{doctor.IDSkipped, doctor.IDPwcheckMethod, doctor.IDNotInGroup}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := saslgate("doctor", "--root", tc.root, "--json")
			if code != tc.code || errOut != "" {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errOut)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal([]byte(out), &raw); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if keys := slices.Sorted(maps.Keys(raw)); !slices.Equal(keys, []string{"findings", "ok"}) {
				t.Fatalf("top-level keys %q", keys)
			}
			var ok bool
			if err := json.Unmarshal(raw["ok"], &ok); err != nil || ok != tc.ok {
				t.Fatalf("ok = %s, want %v", raw["ok"], tc.ok)
			}
			var findings []map[string]string
			if err := json.Unmarshal(raw["findings"], &findings); err != nil {
				t.Fatalf("findings: %v\n%s", err, raw["findings"])
			}
			var ids []string
			for _, f := range findings {
				if keys := slices.Sorted(maps.Keys(f)); !slices.Equal(keys, []string{"detail", "fix", "id", "severity", "summary"}) {
					t.Fatalf("finding keys %q", keys)
				}
				if !slices.Contains([]string{"error", "warning", "info"}, f["severity"]) || f["summary"] == "" {
					t.Fatalf("finding %v", f)
				}
				ids = append(ids, f["id"])
			}
			if !slices.Equal(ids, tc.ids) {
				t.Fatalf("ids %q, want %q\n%s", ids, tc.ids, out)
			}
		})
	}
}

// notInSasl is an /etc/group without postfix in sasl.
func notInSasl() string { return "root:x:0:\nsasl:x:" + strconv.Itoa(doctor.FixtureGID()) + ":\n" }

func TestCommandText(t *testing.T) {
	root := doctor.BuildBase(t, "/etc/group", notInSasl())
	out, _, code := saslgate("doctor", "--root", root)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"error " + doctor.IDNotInGroup + ": ", "  fix:\n    adduser postfix sasl\n    postfix reload\n", "1 problem found\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, code = saslgate("doctor", "--root", doctor.BuildBase(t))
	if code != 0 || !strings.HasSuffix(out, "no problems found\n") {
		t.Fatalf("clean: exit %d\n%s", code, out)
	}
}

// The daemon's flags after -- replace the defaults files; anything else
// that is not a flag is a usage error (exit 2).
func TestCommandArgs(t *testing.T) {
	root := doctor.BuildBase(t)
	out, _, code := saslgate("doctor", "--root", root, "--json", "--", "-a", "sasldb", "-m", "/run/elsewhere")
	if code != 1 || !strings.Contains(out, `"`+doctor.IDSocketMissing+`"`) || !strings.Contains(out, "/run/elsewhere/mux") {
		t.Fatalf("exit %d, want 1 and the missing socket:\n%s", code, out)
	}
	for _, args := range [][]string{
		{"doctor", "--bogus"},
		{"doctor", "--root", root, "stray"},
		{"doctor", "--root", root + "/nonexistent"},
		{"doctor", "--root", root + "/etc/hostname"},
		{"doctor", "--json=maybe"},
	} {
		out, errOut, code := saslgate(args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "saslgate doctor: ") || !strings.Contains(errOut, "Usage:") {
			t.Errorf("%q: exit %d, want 2 with a usage message; stdout %q stderr %q", args, code, out, errOut)
		}
	}
}
