package sasldb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/mechstest"
)

// logs records what the mechanism logs.
type logs struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logs) WithGroup(string) slog.Handler            { return l }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}

// above returns the messages logged at Warn or above since the last call.
func (l *logs) above() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r.Level >= slog.LevelWarn {
			out = append(out, r.Level.String()+" "+r.Message)
		}
	}
	l.recs = nil
	return out
}

// newDB builds the mechanism on path; hostname, if not empty, replaces the
// real host name as the default realm.
func newDB(t testing.TB, path, hostname string) (*DB, *logs) {
	t.Helper()
	l := &logs{}
	d, err := New(mechs.Options{Values: map[string]string{"sasldb_path": path}}, slog.New(l))
	if err != nil {
		t.Fatal(err)
	}
	if hostname != "" {
		d.hostname, d.hostErr = hostname, nil
	}
	return d, l
}

type authCase struct {
	login, pw, realm string
	want             mechs.Verdict
}

func (c authCase) String() string {
	return fmt.Sprintf("[%q %d-byte password %q]", printable(c.login), len(c.pw), c.realm)
}

// check runs one request and insists on saslauthd's exact replies.
func check(t *testing.T, d *DB, c authCase) mechs.Result {
	t.Helper()
	res, err := d.Authenticate(context.Background(), mechs.Request{
		Login: c.login, Password: mechs.Password(c.pw), Service: "smtp", Realm: c.realm,
	})
	if err != nil {
		t.Fatalf("%v: error %v", c, err)
	}
	wantReply := "NO"
	if c.want == mechs.Accept {
		wantReply = "OK"
	}
	if res.Verdict != c.want || res.Reply != wantReply {
		t.Errorf("%v: %v %q (%s), want %v %q", c, res.Verdict, res.Reply, res.Reason, c.want, wantReply)
	}
	if c.pw != "" && strings.Contains(res.Reason, c.pw) {
		t.Errorf("%v: reason %q shows the password", c, res.Reason)
	}
	return res
}

// TestAuthenticate is spec §13 case 27 against a file made now by the real
// saslpasswd2, with the real host name as the default realm.
func TestAuthenticate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sasldb2")
	saslpasswd2(t, path, user{"dave", "", "Pw0rd"}) // realm: the host name
	saslpasswd2(t, path, user{"erin", "example.com", "Pw1"})
	saslpasswd2(t, path, user{"long256", "example.org", pattern(256)})
	d, logs := newDB(t, path, "")
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []authCase{
		{"dave", "Pw0rd", "", mechs.Accept},
		{"dave", "Pw0rd", host, mechs.Accept},
		{"dave", "Pw0rd", "example.com", mechs.Reject},
		{"dave", "Pw0r", "", mechs.Reject},
		{"dave", "Pw0rdx", "", mechs.Reject},
		{"dave", "pw0rd", "", mechs.Reject},
		{"DAVE", "Pw0rd", "", mechs.Reject},
		{"dave@" + host, "Pw0rd", "", mechs.Reject},
		{"erin", "Pw1", "", mechs.Reject},
		{"erin", "Pw1", "example.com", mechs.Accept},
		{"erin", "Pw1", "EXAMPLE.COM", mechs.Reject},
		{"erin@example.com", "Pw1", "", mechs.Reject},
		// the daemon's -r joins login and realm: sasldb then fails
		{"erin@example.com", "Pw1", "example.com", mechs.Reject},
		{"erin", "Pw2", "example.com", mechs.Reject},
		{"erin", "Pw", "example.com", mechs.Reject},
		{"erin", "P", "example.com", mechs.Reject},
		{"long256", pattern(256), "example.org", mechs.Accept},
		{"long256", pattern(255), "example.org", mechs.Reject},
		{"long256", pattern(255) + "x", "example.org", mechs.Reject},
		{"nobody", "Pw0rd", "", mechs.Reject},
	} {
		check(t, d, c)
	}
	if got := logs.above(); len(got) != 0 {
		t.Errorf("logged %q for a healthy file", got)
	}
	res := check(t, d, authCase{"nobody", "x", "", mechs.Reject})
	if !strings.Contains(res.Reason, "not found") || !strings.Contains(res.Reason, host) {
		t.Errorf("unknown user: reason %q should say so and name the realm", res.Reason)
	}
	res = check(t, d, authCase{"dave", "x", "", mechs.Reject})
	if res.Reason != "password mismatch" {
		t.Errorf("wrong password: reason %q", res.Reason)
	}
}

// The committed fixtures cover what saslpasswd2 can write on this host
// without sasl2-bin: other byte order, small pages, checksums, overflow.
func TestAuthenticate_fixtures(t *testing.T) {
	for _, file := range []string{"basic.db", "basic-be512.db"} {
		t.Run(file, func(t *testing.T) {
			d, _ := newDB(t, filepath.Join("testdata", file), fixtureHost)
			for _, c := range []authCase{
				{"dave", "Pw0rd", "", mechs.Accept},
				{"Dave", "upper-case login", "", mechs.Accept},
				{"Dave", "Pw0rd", "", mechs.Reject},
				{"erin", "Pw1", "example.com", mechs.Accept},
				{"long256", pattern(256), "example.org", mechs.Accept},
				{"long256", pattern(256)[1:], "example.org", mechs.Reject},
				{longLogin, "long-key", longRealm, mechs.Accept},
				{longLogin, "long-key", "", mechs.Reject},
				{"Dave Ü", "a b", "Ex.COM", mechs.Accept},
				// longer than the wire allows, and than saslauthd reads
				{"long2k", pattern(2000), "example.org", mechs.Reject},
				{goneUser.login, goneUser.pw, goneUser.realm, mechs.Reject},
			} {
				check(t, d, c)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	if !mechs.Known("SASLDB") {
		t.Fatal("sasldb is not registered")
	}
	m, err := mechs.New("sasldb", mechs.Options{Values: map[string]string{"sasldb_path": "testdata/many.db"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "sasldb" {
		t.Errorf("Name() = %q", m.Name())
	}
	res, err := m.Authenticate(context.Background(), mechs.Request{Login: "user123", Password: "pw-123", Realm: "example.com"})
	if err != nil || res.Verdict != mechs.Accept || res.Reply != "OK" {
		t.Errorf("user123: %+v, %v", res, err)
	}
	if _, err := New(mechs.Options{Values: map[string]string{"sasldb_path": ""}}, nil); err == nil {
		t.Error("empty sasldb_path accepted")
	}
	d, err := New(mechs.Options{}, nil)
	if err != nil || d.path != DefaultPath {
		t.Errorf("default path: %v, %v", d, err)
	}
}

func TestConformance(t *testing.T) {
	mechstest.Run(t, mechstest.Fixture{
		New: func(t *testing.T, logger *slog.Logger) mechs.Mechanism {
			d, err := New(mechs.Options{Values: map[string]string{"sasldb_path": "testdata/basic.db"}}, logger)
			if err != nil {
				t.Fatal(err)
			}
			d.hostname, d.hostErr = fixtureHost, nil
			return d
		},
		Good:         mechs.Request{Login: "dave", Password: "Pw0rd", Service: "smtp"},
		UnknownLogin: "nobody",
	})
}

// TestLiveChanges: saslpasswd2 rewrites the file in place while the
// mechanism runs; the next request must see it.
func TestLiveChanges(t *testing.T) {
	for _, racy := range []bool{true, false} {
		t.Run(fmt.Sprintf("racy=%v", racy), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sasldb2")
			saslpasswd2(t, path, user{"dave", "example.com", "Pw0rd"})
			saslpasswd2(t, path, user{"erin", "example.com", "Pw1"})
			d, logs := newDB(t, path, "")
			if !racy {
				// only the stamp tells changes: bump mtime after each
				// change so that a change within one clock tick is seen
				d.racy = 0
			}
			touch := func() {
				if !racy {
					old := time.Now().Add(-time.Hour)
					if err := os.Chtimes(path, old, old); err != nil {
						t.Fatal(err)
					}
				}
			}
			check(t, d, authCase{"dave", "Pw0rd", "example.com", mechs.Accept})

			saslpasswd2(t, path, user{"dave", "example.com", "NewPw"})
			touch()
			check(t, d, authCase{"dave", "Pw0rd", "example.com", mechs.Reject})
			check(t, d, authCase{"dave", "NewPw", "example.com", mechs.Accept})

			saslpasswd2Delete(t, path, user{"erin", "example.com", ""})
			touch()
			check(t, d, authCase{"erin", "Pw1", "example.com", mechs.Reject})

			saslpasswd2(t, path, user{"frank", "example.com", "Pw2"})
			touch()
			check(t, d, authCase{"frank", "Pw2", "example.com", mechs.Accept})

			// replaced by rename, as a tool writing a new file would
			tmp := path + ".new"
			saslpasswd2(t, tmp, user{"grace", "example.com", "Pw3"})
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
			check(t, d, authCase{"grace", "Pw3", "example.com", mechs.Accept})
			check(t, d, authCase{"dave", "NewPw", "example.com", mechs.Reject})
			if got := logs.above(); len(got) != 0 {
				t.Errorf("logged %q", got)
			}
		})
	}
}

// A file left alone is read once, not on every request, once it is older
// than the racy window.
func TestNoRereadWhenUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sasldb2")
	if err := os.WriteFile(path, readTestdata(t, "basic.db"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, _ := newDB(t, path, fixtureHost)
	d.racy = 100 * time.Millisecond
	time.Sleep(150 * time.Millisecond)
	check(t, d, authCase{"dave", "Pw0rd", "", mechs.Accept}) // read after the window
	n := d.reads.Load()
	for i := 0; i < 20; i++ {
		check(t, d, authCase{"dave", "Pw0rd", "", mechs.Accept})
	}
	if got := d.reads.Load() - n; got != 0 {
		t.Errorf("file read %d more times while unchanged", got)
	}
	// while the file is young, every request reads it again
	d.racy = time.Hour
	if err := os.WriteFile(path, readTestdata(t, "basic.db"), 0o600); err != nil {
		t.Fatal(err)
	}
	n = d.reads.Load()
	for i := 0; i < 3; i++ {
		check(t, d, authCase{"dave", "Pw0rd", "", mechs.Accept})
	}
	if got := d.reads.Load() - n; got != 3 {
		t.Errorf("young file read %d times for 3 requests, want 3", got)
	}
}

func TestMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sasldb2")
	d, logs := newDB(t, path, fixtureHost)
	for i := 0; i < 5; i++ {
		res := check(t, d, authCase{"dave", "Pw0rd", "", mechs.Reject})
		if !strings.Contains(res.Reason, path) {
			t.Errorf("reason %q does not name the file", res.Reason)
		}
	}
	if got := logs.above(); len(got) != 1 || !strings.Contains(got[0], "does not exist") {
		t.Errorf("logged %q, want one line about the missing file", got)
	}

	if err := os.WriteFile(path, readTestdata(t, "basic.db"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		check(t, d, authCase{"dave", "Pw0rd", "", mechs.Accept})
	}
	if got := logs.above(); len(got) != 1 || !strings.Contains(got[0], "readable again") {
		t.Errorf("logged %q, want one line about recovery", got)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	check(t, d, authCase{"dave", "Pw0rd", "", mechs.Reject})
	check(t, d, authCase{"dave", "Pw0rd", "", mechs.Reject})
	if got := logs.above(); len(got) != 1 {
		t.Errorf("logged %q, want one line", got)
	}
}

func TestUnreadable(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	mkfifo(t, fifo)
	paths := map[string]string{
		"directory":    dir,
		"under a file": filepath.Join(notDir, "sasldb2"), // ENOTDIR
		"FIFO":         fifo,                             // must not block
	}
	if os.Geteuid() != 0 {
		p := filepath.Join(dir, "secret")
		if err := os.WriteFile(p, readTestdata(t, "basic.db"), 0o000); err != nil {
			t.Fatal(err)
		}
		paths["no permission"] = p
	} else {
		t.Log("running as root: the permission case is not tested, root reads any file")
	}
	for name, path := range paths {
		t.Run(name, func(t *testing.T) {
			d, logs := newDB(t, path, fixtureHost)
			for i := 0; i < 3; i++ {
				res := check(t, d, authCase{"dave", "Pw0rd", "", mechs.TempFail})
				if !strings.Contains(res.Reason, path) {
					t.Errorf("reason %q does not name the file", res.Reason)
				}
			}
			if got := logs.above(); len(got) != 1 || !strings.HasPrefix(got[0], "ERROR cannot read") {
				t.Errorf("logged %q, want one error line", got)
			}
		})
	}
}

func TestCorruptFile(t *testing.T) {
	good := readTestdata(t, "basic.db")
	random := make([]byte, len(good))
	for i := range random {
		random[i] = byte(i*7 + i>>8)
	}
	zeroMeta := append(make([]byte, 4096), good[4096:]...)
	for name, b := range map[string][]byte{
		"empty":           {},
		"truncated":       good[:5000],
		"truncated pages": good[:8192],
		"random bytes":    random,
		"zeroed metadata": zeroMeta,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sasldb2")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			d, logs := newDB(t, path, fixtureHost)
			for i := 0; i < 3; i++ {
				res := check(t, d, authCase{"dave", "Pw0rd", "", mechs.TempFail})
				if !strings.Contains(res.Reason, path) || !strings.HasPrefix(res.Reason, "mechs/sasldb: ") {
					t.Errorf("reason %q does not name the file", res.Reason)
				}
			}
			if got := logs.above(); len(got) != 1 || !strings.HasPrefix(got[0], "ERROR sasldb file is damaged") {
				t.Errorf("logged %q, want one error line", got)
			}
			// repaired in place
			if err := os.WriteFile(path, good, 0o600); err != nil {
				t.Fatal(err)
			}
			check(t, d, authCase{"dave", "Pw0rd", "", mechs.Accept})
			if got := logs.above(); len(got) != 1 || !strings.Contains(got[0], "readable again") {
				t.Errorf("logged %q, want one line about recovery", got)
			}
		})
	}
}

func TestHostnameFailure(t *testing.T) {
	d, _ := newDB(t, "testdata/basic.db", "")
	d.hostname, d.hostErr = "", errors.New("mechs/sasldb: cannot get the host name: bad address")
	check(t, d, authCase{"dave", "Pw0rd", "", mechs.TempFail})
	check(t, d, authCase{"erin", "Pw1", "example.com", mechs.Accept})
}

// TestConcurrentReload hammers the mechanism while the file is replaced
// and rewritten in place; run it with -race.
func TestConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sasldb2")
	good := readTestdata(t, "basic.db")
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	d, _ := newDB(t, path, fixtureHost)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := d.Authenticate(context.Background(), mechs.Request{Login: "dave", Password: "Pw0rd"})
				if err != nil || res.Verdict != mechs.Accept {
					t.Errorf("dave: %+v, %v", res, err)
					return
				}
			}
		}()
	}
	many := readTestdata(t, "many.db")
	for i := 0; i < 50; i++ {
		// an atomic replacement by a file with the same user...
		tmp := filepath.Join(dir, "new")
		if err := os.WriteFile(tmp, good, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		// ...and an in-place rewrite with the same bytes, which changes
		// the stamp but not the content (no truncation: a reader may
		// not see a half-written file here)
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(good, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	// a file replaced by another database
	if err := os.WriteFile(path, many, 0o600); err != nil {
		t.Fatal(err)
	}
	check(t, d, authCase{"dave", "Pw0rd", "", mechs.Reject})
	check(t, d, authCase{"user001", "pw-001", "example.com", mechs.Accept})
}

// TestSaslpasswd2WhileServing changes another user's password with the real
// tool while requests run: a user whose page does not move must never be
// refused.
func TestSaslpasswd2WhileServing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sasldb2")
	saslpasswd2(t, path, user{"dave", "example.com", "Pw0rd"})
	saslpasswd2(t, path, user{"erin", "example.com", "Pw1-00"})
	d, _ := newDB(t, path, "")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := d.Authenticate(context.Background(), mechs.Request{Login: "dave", Password: "Pw0rd", Realm: "example.com"})
				if err != nil || res.Verdict != mechs.Accept {
					t.Errorf("dave: %+v, %v", res, err)
					return
				}
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		// same length: the page layout stays the same
		saslpasswd2(t, path, user{"erin", "example.com", fmt.Sprintf("Pw1-%02d", i)})
	}
	close(stop)
	wg.Wait()
	check(t, d, authCase{"erin", "Pw1-20", "example.com", mechs.Accept})
	check(t, d, authCase{"erin", "Pw1-19", "example.com", mechs.Reject})
}

func TestEqual(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"", "", true},
		{"a", "a", true},
		{"a", "", false},
		{"", "a", false},
		{"abc", "abd", false},
		{"abc", "ab", false},
		{"ab", "abc", false},
		{"ab\x00", "ab", false},
		{pattern(256), pattern(256), true},
	} {
		if got := equal(c.a, c.b); got != c.want {
			t.Errorf("equal(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// A stored value is compared as saslauthd's strcmp does.
func TestStoredValueQuirks(t *testing.T) {
	d, _ := newDB(t, "testdata/basic.db", fixtureHost)
	f := &File{m: map[string]string{
		key("nul", "r", PasswordProperty):  "abc\x00def",
		key("huge", "r", PasswordProperty): "x" + strings.Repeat("y", maxValue),
	}}
	d.cur.Store(&snapshot{state: stateOK, file: f, st: d.cur.Load().st})
	check(t, d, authCase{"nul", "abc", "r", mechs.Accept})
	check(t, d, authCase{"nul", "abc\x00def", "r", mechs.Reject})
	check(t, d, authCase{"huge", "x", "r", mechs.Reject})
}

func BenchmarkAuthenticate(b *testing.B) {
	d, _ := newDB(b, "testdata/many.db", "")
	d.racy = 0
	ctx := context.Background()
	req := mechs.Request{Login: "user151", Password: "pw-151", Service: "smtp", Realm: "example.com"}
	if res, _ := d.Authenticate(ctx, req); res.Verdict != mechs.Accept {
		b.Fatalf("%+v", res)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if res, _ := d.Authenticate(ctx, req); res.Verdict != mechs.Accept {
			b.Fatalf("%+v", res)
		}
	}
}
