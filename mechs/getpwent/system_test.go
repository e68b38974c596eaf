package getpwent

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/internal/unixpw/unixpwtest"
	"github.com/saslgate/saslgate/mechs/mechstest"
)

// addUsers creates real users (root only): sgtest_g1 with a yescrypt hash,
// sgtest_g2 with a UTF-8 password, both in /etc/shadow as useradd puts them.
func addUsers(t *testing.T) {
	t.Helper()
	unixpwtest.NeedRoot(t)
	unixpwtest.Lock(t)
	h := hashes()
	unixpwtest.AddUser(t, unixpwtest.User{Name: "sgtest_g1", Hash: h["y"]})
	unixpwtest.AddUser(t, unixpwtest.User{Name: "sgtest_g2", Hash: h["utf8"]})
}

type sysCase struct {
	login, pw string
	want      string
}

func (c sysCase) req() mechs.Request {
	return mechs.Request{Login: c.login, Password: mechs.Password(c.pw), Service: "smtp"}
}

// TestSystem: on a shadowed system (§13 case 30) every login fails, exactly
// as Cyrus saslauthd -a getpwent answers.
func TestSystem(t *testing.T) {
	addUsers(t)
	g, err := New(mechs.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []sysCase{
		{"sgtest_g1", goodPw, "NO Incorrect password"},
		{"sgtest_g1", "wrong", "NO Incorrect password"},
		{"sgtest_g1", "x", "NO Incorrect password"},
		{"SGTEST_G1", goodPw, "NO Invalid username"},
		{"sgtest_nosuchuser", goodPw, "NO Invalid username"},
	}
	ours := make([]string, len(cases))
	for i, c := range cases {
		res, err := g.Authenticate(t.Context(), c.req())
		if err != nil {
			t.Fatal(err)
		}
		ours[i] = res.Reply
		if res.Reply != c.want {
			t.Errorf("%s: %q (%s), want %q", c.login, res.Reply, res.Reason, c.want)
		}
	}
	t.Run("cyrus", func(t *testing.T) {
		sock := unixpwtest.StartCyrus(t, &unixpwtest.Sandbox{}, "getpwent")
		for i, c := range cases {
			if got := unixpwtest.Ask(t, sock, c.req()); got != ours[i] {
				t.Errorf("%s: Cyrus says %q, saslgate %q", c.login, got, ours[i])
			}
		}
	})
}

// TestSandboxed gives getpwent what it needs to ever say OK, hashes in
// /etc/passwd (as NIS or an old system would), by bind-mounting a copy of
// passwd with the users' hashes over the real one in a private mount
// namespace. It also makes passwd unreadable for the lookup failure reply.
// The mechanism (in a helper process) and Cyrus must agree.
func TestSandboxed(t *testing.T) {
	(&unixpwtest.Sandbox{}).Usable(t)
	addUsers(t)
	h := hashes()
	passwdWithHashes := etcFile(t, "/etc/passwd", 0o644, func(f []string) []string {
		switch f[0] {
		case "sgtest_g1":
			f[1] = h["y"]
		case "sgtest_g2":
			f[1] = h["utf8"]
		}
		return f
	})
	filesOnly := unixpwtest.NsswitchFilesOnly(t)
	unreadable := etcFile(t, "/etc/passwd", 0o600, func(f []string) []string { return f })

	for _, c := range []struct {
		name  string
		sb    unixpwtest.Sandbox
		cases []sysCase
	}{
		{
			name: "hashes in passwd",
			sb:   unixpwtest.Sandbox{Files: map[string]unixpwtest.File{"/etc/passwd": passwdWithHashes}},
			cases: []sysCase{
				{"sgtest_g1", goodPw, "OK"},
				{"sgtest_g1", "wrong", "NO Incorrect password"},
				{"sgtest_g1", goodPw + " ", "NO Incorrect password"},
				{"sgtest_g2", utf8Pw, "OK"},
				{"sgtest_g2", strings.ToUpper(utf8Pw), "NO Incorrect password"},
				{"SGTEST_G1", goodPw, "NO Invalid username"},
				{"sgtest_nosuchuser", goodPw, "NO Invalid username"},
			},
		},
		{
			name: "passwd unreadable",
			sb: unixpwtest.Sandbox{Nobody: true, Files: map[string]unixpwtest.File{
				"/etc/nsswitch.conf": filesOnly, "/etc/passwd": unreadable}},
			cases: []sysCase{
				{"sgtest_g1", goodPw, "NO Username lookup failure: Permission denied"},
				{"sgtest_nosuchuser", goodPw, "NO Username lookup failure: Permission denied"},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			reqs := make([]mechs.Request, len(c.cases))
			for i, sc := range c.cases {
				reqs[i] = sc.req()
			}
			ours := unixpwtest.RunHelper(t, &c.sb, "TestSandboxHelper", reqs)
			sock := unixpwtest.StartCyrus(t, &c.sb, "getpwent")
			for i, sc := range c.cases {
				if ours[i].Reply != sc.want {
					t.Errorf("%s: %q, want %q", sc.login, ours[i].Reply, sc.want)
				}
				if got := unixpwtest.Ask(t, sock, reqs[i]); got != ours[i].Reply {
					t.Errorf("%s: Cyrus says %q, saslgate %q", sc.login, got, ours[i].Reply)
				}
			}
		})
	}

	// the conformance suite against real NSS, in the sandbox
	t.Run("conformance", func(t *testing.T) {
		sb := unixpwtest.Sandbox{Files: map[string]unixpwtest.File{"/etc/passwd": passwdWithHashes}}
		out := unixpwtest.RunInSandbox(t, &sb, "TestSandboxConformance", nil)
		if !strings.Contains(string(out), "--- PASS: TestSandboxConformance") {
			t.Fatalf("conformance suite did not run in the sandbox:\n%s", out)
		}
	})
}

// TestSandboxHelper is the mechanism's side of TestSandboxed, run in a
// helper process; on its own it skips.
func TestSandboxHelper(t *testing.T) {
	unixpwtest.Serve(t, func() (mechs.Mechanism, error) { return New(mechs.Options{}, nil) })
}

// TestSandboxConformance runs mechstest.Run inside the sandbox.
func TestSandboxConformance(t *testing.T) {
	unixpwtest.SandboxOnly(t)
	mechstest.Run(t, mechstest.Fixture{
		New: func(t *testing.T, logger *slog.Logger) mechs.Mechanism {
			g, err := New(mechs.Options{}, logger)
			if err != nil {
				t.Fatal(err)
			}
			return g
		},
		Good:         mechs.Request{Login: "sgtest_g1", Password: goodPw, Service: "smtp"},
		UnknownLogin: "sgtest_nosuchuser",
	})
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
