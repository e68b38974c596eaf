package shadow

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/internal/unixpw/unixpwtest"
	"github.com/saslgate/saslgate/mechs/mechstest"
)

// systemUsers creates §13's shadow fixtures as real users (root only) and
// returns the requests to ask with the replies saslauthd 2.1.28 gives.
func systemUsers(t testing.TB) []sysCase {
	t.Helper()
	unixpwtest.NeedRoot(t)
	unixpwtest.Lock(t)
	h := hashes()
	y, s6 := h["y"], h["6"]
	for _, u := range []unixpwtest.User{
		{Name: "sgtest_s1", Hash: y},                                             // u1
		{Name: "sgtest_s2", Hash: "!" + y},                                       // u2: locked
		{Name: "sgtest_s3", Hash: y, Chage: []string{"-E", "0"}},                 // u3: account expired
		{Name: "sgtest_s4", Hash: y, Chage: []string{"-d", "10000", "-M", "30"}}, // u4: password too old
		{Name: "sgtest_s5", Hash: ""},                                            // u5: empty hash
		{Name: "sgtest_s6", Hash: s6},                                            // sha512-crypt
		{Name: "sgtest_s7", Hash: y, Chage: []string{"-d", "0", "-M", "30"}},     // must change, max age
		{Name: "sgtest_s8", Hash: y, Chage: []string{"-d", "0", "-M", "-1"}},     // must change, no max age
		{Name: "sgtest_s9", Hash: h["utf8"]},                                     // UTF-8 password with spaces
		{Name: "sgtest_s10", Hash: "*"},
	} {
		unixpwtest.AddUser(t, u)
	}
	return []sysCase{
		{"sgtest_s1", goodPw, "", "OK"},
		{"sgtest_s1", goodPw, "example.com", "OK"}, // §13 case 23: realm ignored
		{"sgtest_s1", "wrong", "", "NO Incorrect password"},
		{"sgtest_s1", goodPw[:8], "", "NO Incorrect password"},
		{"SGTEST_S1", goodPw, "", "NO Invalid username"},
		{"sgtest_nosuchuser", "x", "", "NO Invalid username"},
		{"sgtest_s2", goodPw, "", "NO Incorrect password"},
		{"sgtest_s3", goodPw, "", "NO Account expired"},
		{"sgtest_s3", "wrong", "", "NO Incorrect password"},
		{"sgtest_s4", goodPw, "", "NO Password expired"},
		{"sgtest_s4", "wrong", "", "NO Incorrect password"},
		{"sgtest_s5", goodPw, "", "NO Incorrect password"},
		{"sgtest_s6", goodPw, "", "OK"},
		{"sgtest_s6", "wrong", "", "NO Incorrect password"},
		{"sgtest_s7", goodPw, "", "NO Password expired"},
		{"sgtest_s8", goodPw, "", "OK"},
		{"sgtest_s9", utf8Pw, "", "OK"},
		{"sgtest_s9", strings.TrimSuffix(utf8Pw, " ☃"), "", "NO Incorrect password"},
		{"sgtest_s10", goodPw, "", "NO Incorrect password"},
	}
}

type sysCase struct {
	login, pw, realm string
	want             string
}

func (c sysCase) req() mechs.Request {
	return mechs.Request{Login: c.login, Password: mechs.Password(c.pw), Service: "smtp", Realm: c.realm}
}

// TestSystem runs the mechanism against real users in /etc/shadow and, when
// sasl2-bin is installed, asks the real Cyrus saslauthd -a shadow the same
// questions: every reply must be the same bytes.
func TestSystem(t *testing.T) {
	cases := systemUsers(t)
	s, err := New(mechs.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ours := make([]string, len(cases))
	for i, c := range cases {
		res, err := s.Authenticate(t.Context(), c.req())
		if err != nil {
			t.Fatalf("%s: %v", c.login, err)
		}
		ours[i] = res.Reply
		if res.Reply != c.want {
			t.Errorf("[%s %q]: %q (%s), want %q", c.login, c.realm, res.Reply, res.Reason, c.want)
		}
	}

	t.Run("cyrus", func(t *testing.T) {
		sock := unixpwtest.StartCyrus(t, &unixpwtest.Sandbox{}, "shadow")
		for i, c := range cases {
			if got := unixpwtest.Ask(t, sock, c.req()); got != ours[i] {
				t.Errorf("[%s %q]: Cyrus says %q, saslgate %q", c.login, c.realm, got, ours[i])
			}
		}
	})

	t.Run("conformance", func(t *testing.T) {
		mechstest.Run(t, mechstest.Fixture{
			New: func(t *testing.T, logger *slog.Logger) mechs.Mechanism {
				m, err := New(mechs.Options{}, logger)
				if err != nil {
					t.Fatal(err)
				}
				return m
			},
			Good:         mechs.Request{Login: "sgtest_s1", Password: goodPw, Service: "smtp"},
			UnknownLogin: "sgtest_nosuchuser",
		})
	})
}

// BenchmarkAuthenticate times whole checks against real users: a known
// user with a right or wrong password, an unknown user and a locked one all
// cost one yescrypt computation; a sha512-crypt user costs much less.
func BenchmarkAuthenticate(b *testing.B) {
	systemUsers(b)
	d, err := New(mechs.Options{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, login, pw string }{
		{"yescrypt-right", "sgtest_s1", goodPw},
		{"yescrypt-wrong", "sgtest_s1", "wrong"},
		{"unknown-user", "sgtest_nosuchuser", goodPw},
		{"locked", "sgtest_s2", goodPw},
		{"sha512crypt-wrong", "sgtest_s6", "wrong"},
	} {
		req := mechs.Request{Login: c.login, Password: mechs.Password(c.pw), Service: "smtp"}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := d.Authenticate(b.Context(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSandboxed covers the replies no ordinary user can produce: lookups
// that fail, a user with no shadow entry, a "*NP*" hash. Each runs the
// mechanism (in a helper process) and Cyrus in a private mount namespace
// with a changed /etc, and both must give the same, expected reply.
func TestSandboxed(t *testing.T) {
	(&unixpwtest.Sandbox{}).Usable(t)
	systemUsers(t)
	filesOnly := unixpwtest.NsswitchFilesOnly(t)
	shadowFile := etcFile(t, "/etc/shadow", 0o600, func(fields []string) []string {
		switch fields[0] {
		case "sgtest_s1":
			return nil // no shadow entry
		case "sgtest_s2":
			fields[1] = nisNoPermission
		}
		return fields
	})
	unreadablePasswd := etcFile(t, "/etc/passwd", 0o600, func(f []string) []string { return f })

	reqs := []mechs.Request{
		{Login: "sgtest_s1", Password: goodPw, Service: "smtp"},
		{Login: "sgtest_s2", Password: goodPw, Service: "smtp"},
		{Login: "sgtest_nosuchuser", Password: goodPw, Service: "smtp"},
	}
	for _, c := range []struct {
		name string
		sb   unixpwtest.Sandbox
		want []string // nil: only Cyrus parity is checked
	}{
		{
			// the files source cannot open /etc/shadow and nothing follows it
			name: "unprivileged files-only",
			sb:   unixpwtest.Sandbox{Nobody: true, Files: map[string]unixpwtest.File{"/etc/nsswitch.conf": filesOnly}},
			want: []string{
				"NO Username shadow lookup failure: Permission denied",
				"NO Username shadow lookup failure: Permission denied",
				"NO Invalid username",
			},
		},
		{
			// Debian's "shadow: files systemd": nss-systemd answers after
			// files fails, with "not found"; the answers depend on the host
			name: "unprivileged default nsswitch",
			sb:   unixpwtest.Sandbox{Nobody: true},
		},
		{
			name: "passwd unreadable",
			sb: unixpwtest.Sandbox{Nobody: true, Files: map[string]unixpwtest.File{
				"/etc/nsswitch.conf": filesOnly, "/etc/passwd": unreadablePasswd}},
			want: []string{
				"NO Username lookup failure: Permission denied",
				"NO Username lookup failure: Permission denied",
				"NO Username lookup failure: Permission denied",
			},
		},
		{
			name: "no shadow entry and *NP*",
			sb:   unixpwtest.Sandbox{Files: map[string]unixpwtest.File{"/etc/shadow": shadowFile}},
			want: []string{
				"NO Invalid shadow username",
				"NO Insufficient permission to access NIS authentication database (saslauthd)",
				"NO Invalid username",
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			ours := unixpwtest.RunHelper(t, &c.sb, "TestSandboxHelper", reqs)
			for i, r := range ours {
				if c.want != nil && r.Reply != c.want[i] {
					t.Errorf("%s: %q, want %q", reqs[i].Login, r.Reply, c.want[i])
				}
				wantVerdict := "REJECT"
				if strings.Contains(r.Reply, "lookup failure") {
					wantVerdict = "TEMPFAIL"
				}
				if r.Verdict != wantVerdict {
					t.Errorf("%s: verdict %s for %q, want %s", reqs[i].Login, r.Verdict, r.Reply, wantVerdict)
				}
			}
			sock := unixpwtest.StartCyrus(t, &c.sb, "shadow")
			for i, req := range reqs {
				got := unixpwtest.Ask(t, sock, req)
				if got != ours[i].Reply {
					t.Errorf("%s: Cyrus says %q, saslgate %q", req.Login, got, ours[i].Reply)
				}
				t.Logf("%s: %q (Cyrus %q)", req.Login, ours[i].Reply, got)
			}
		})
	}
}

// TestSandboxHelper is the mechanism's side of TestSandboxed, run in a
// helper process; on its own it skips.
func TestSandboxHelper(t *testing.T) {
	unixpwtest.Serve(t, func() (mechs.Mechanism, error) { return New(mechs.Options{}, nil) })
}

// etcFile is a copy of a colon-separated file in /etc with edit applied to
// each line's fields (nil drops the line).
func etcFile(t *testing.T, path string, mode os.FileMode, edit func([]string) []string) unixpwtest.File {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if f := edit(strings.Split(line, ":")); f != nil {
			out = append(out, strings.Join(f, ":"))
		}
	}
	return unixpwtest.File{Content: strings.Join(out, "\n") + "\n", Mode: mode}
}
