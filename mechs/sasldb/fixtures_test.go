package sasldb

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The committed files in testdata/ are made by the real saslpasswd2 from the
// recipes below, so that the reader's tests and the fuzz seeds need no
// sasl2-bin. Regenerate them with
//
//	go test ./mechs/sasldb/ -run TestFixtures -update
var update = flag.Bool("update", false, "regenerate testdata/*.db with saslpasswd2 and db5.3_load")

// fixtureHost is the realm the committed fixtures use where saslpasswd2
// would take the host name; tests set DB.hostname to it.
const fixtureHost = "testhost"

type user struct{ login, realm, pw string }

const alnum = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// pattern is a deterministic password of n bytes.
func pattern(n int) string { return strings.Repeat(alnum, n/len(alnum)+1)[:n] }

var (
	longLogin = strings.Repeat("l", 250)
	longRealm = strings.Repeat("r", 240) + ".example"

	basicUsers = []user{
		{"dave", fixtureHost, "Pw0rd"},
		{"Dave", fixtureHost, "upper-case login"},
		{"erin", "example.com", "Pw1"},
		{"long256", "example.org", pattern(256)},
		// more than a quarter of a 4 KiB page: stored on overflow pages
		{"long2k", "example.org", pattern(2000)},
		{longLogin, longRealm, "long-key"},
		{"Dave Ü", "Ex.COM", "a b"},
	}
	goneUser  = user{"gone", "example.org", pattern(3000)}
	tinyUsers = []user{
		{"dave", fixtureHost, "Pw0rd"},
		// two 512-byte overflow pages
		{"erin", "example.com", pattern(600)},
	}
)

// manyUsers are 300 users of which every tenth was deleted again.
func manyUsers() (kept, deleted []user) {
	for i := 1; i <= 300; i++ {
		u := user{fmt.Sprintf("user%03d", i), "example.com", fmt.Sprintf("pw-%03d", i)}
		if i%10 == 0 {
			deleted = append(deleted, u)
		} else {
			kept = append(kept, u)
		}
	}
	return kept, deleted
}

type fixture struct {
	file  string
	users []user
	// make writes the file with the real tools
	make func(t *testing.T, path string)
}

func fixtures() []fixture {
	kept, deleted := manyUsers()
	return []fixture{
		{"basic.db", basicUsers, func(t *testing.T, path string) {
			// deleting an early user leaves freed overflow pages in the
			// middle of the file, which must not be read
			saslpasswd2(t, path, goneUser)
			for _, u := range basicUsers {
				saslpasswd2(t, path, u)
			}
			saslpasswd2Delete(t, path, goneUser)
		}},
		{"many.db", kept, func(t *testing.T, path string) {
			for _, u := range append(append([]user(nil), kept...), deleted...) {
				saslpasswd2(t, path, u)
			}
			for _, u := range deleted {
				saslpasswd2Delete(t, path, u)
			}
		}},
		// the same users, big-endian, 512-byte pages (the 256-byte password
		// and the long key go to overflow pages), with page checksums
		{"basic-be512.db", basicUsers, func(t *testing.T, path string) {
			src := filepath.Join(t.TempDir(), "src.db")
			for _, u := range basicUsers {
				saslpasswd2(t, src, u)
			}
			reload(t, src, path, "db_lorder=4321", "db_pagesize=512", "chksum=1")
		}},
		{"tiny512.db", tinyUsers, func(t *testing.T, path string) {
			src := filepath.Join(t.TempDir(), "src.db")
			for _, u := range tinyUsers {
				saslpasswd2(t, src, u)
			}
			reload(t, src, path, "db_pagesize=512")
		}},
	}
}

// needTool skips a test when a program of sasl2-bin or db5.3-util is
// missing, except in CI, where the tools must be installed.
func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (apt-get install sasl2-bin db5.3-util): %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
}

// saslpasswd2 sets u's password; an empty realm lets saslpasswd2 use the
// host name, as saslauthd does.
func saslpasswd2(t testing.TB, path string, u user) {
	t.Helper()
	needTool(t, "saslpasswd2")
	args := []string{"-p", "-c", "-f", path}
	if u.realm != "" {
		args = append(args, "-u", u.realm)
	}
	cmd := exec.Command("saslpasswd2", append(args, u.login)...)
	cmd.Stdin = strings.NewReader(u.pw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("saslpasswd2 %s: %v\n%s", u.login, err, out)
	}
}

func saslpasswd2Delete(t testing.TB, path string, u user) {
	t.Helper()
	needTool(t, "saslpasswd2")
	args := []string{"-d", "-f", path}
	if u.realm != "" {
		args = append(args, "-u", u.realm)
	}
	if out, err := exec.Command("saslpasswd2", append(args, u.login)...).CombinedOutput(); err != nil {
		t.Fatalf("saslpasswd2 -d %s: %v\n%s", u.login, err, out)
	}
}

// reload copies a database through db5.3_dump and db5.3_load with other
// creation settings.
func reload(t *testing.T, src, dst string, settings ...string) {
	t.Helper()
	needTool(t, "db5.3_dump")
	needTool(t, "db5.3_load")
	dump, err := exec.Command("db5.3_dump", src).Output()
	if err != nil {
		t.Fatalf("db5.3_dump: %v", err)
	}
	args := []string{}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	cmd := exec.Command("db5.3_load", append(args, dst)...)
	cmd.Stdin = bytes.NewReader(dump)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("db5.3_load: %v\n%s", err, out)
	}
}

// dbDump returns what Berkeley DB itself reads from the file.
func dbDump(t *testing.T, path string) map[string]string {
	t.Helper()
	needTool(t, "db5.3_dump")
	out, err := exec.Command("db5.3_dump", "-p", path).Output()
	if err != nil {
		t.Fatalf("db5.3_dump -p %s: %v", path, err)
	}
	var items []string
	data := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "HEADER=END":
			data = true
		case l == "DATA=END":
			data = false
		case data && strings.HasPrefix(l, " "):
			items = append(items, unescapeDump(t, l[1:]))
		}
	}
	if len(items)%2 != 0 {
		t.Fatalf("db5.3_dump: odd number of items")
	}
	m := make(map[string]string)
	for i := 0; i < len(items); i += 2 {
		m[items[i]] = items[i+1]
	}
	return m
}

// unescapeDump undoes db_dump -p's escapes: \\ and \hh.
func unescapeDump(t *testing.T, s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			b = append(b, '\\')
			i++
			continue
		}
		if i+2 >= len(s) {
			t.Fatalf("bad escape in %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			t.Fatalf("bad escape in %q: %v", s, err)
		}
		b = append(b, byte(v))
		i += 2
	}
	return string(b)
}

func wantMap(users []user) map[string]string {
	m := make(map[string]string)
	for _, u := range users {
		m[key(u.login, u.realm, PasswordProperty)] = u.pw
	}
	return m
}

// TestFixtures checks the committed files against their recipes, and
// regenerates them with -update.
func TestFixtures(t *testing.T) {
	for _, fx := range fixtures() {
		t.Run(fx.file, func(t *testing.T) {
			path := filepath.Join("testdata", fx.file)
			if *update {
				tmp := filepath.Join(t.TempDir(), fx.file)
				fx.make(t, tmp)
				b, err := os.ReadFile(tmp)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f, err := ReadFile(path)
			if err != nil {
				t.Fatalf("ReadFile: %v", err)
			}
			checkContent(t, f, wantMap(fx.users))
		})
	}
}

// checkContent compares everything in f with want.
func checkContent(t *testing.T, f *File, want map[string]string) {
	t.Helper()
	es := f.Entries()
	if len(es) != len(want) || len(f.m) != len(want) {
		t.Errorf("%d entries (%d keys), want %d", len(es), len(f.m), len(want))
	}
	for k, v := range want {
		login, rest, _ := strings.Cut(k, "\x00")
		realm, prop, _ := strings.Cut(rest, "\x00")
		got, ok := f.Lookup(login, realm, prop)
		if !ok {
			t.Errorf("%q@%q %s: missing", printable(login), printable(realm), prop)
			continue
		}
		if string(got) != v {
			t.Errorf("%q@%q %s: value of %d bytes differs from the expected %d", printable(login), printable(realm), prop, len(got), len(v))
		}
	}
}
