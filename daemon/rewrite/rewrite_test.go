package rewrite_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/saslgate/saslgate/daemon/rewrite"
	"github.com/saslgate/saslgate/mechs"
)

// lr is a login/realm pair.
type lr struct{ login, realm string }

func req(login, realm string) mechs.Request {
	return mechs.Request{Login: login, Realm: realm, Password: "pw", Service: "smtp", ClientAddr: "192.0.2.7;41234"}
}

// runRule applies rules to login/realm and checks the outcome: the login
// and realm the chain gets, and the rules that acted (trace).
func runRule(t *testing.T, rules rewrite.Rules, in, want lr, trace ...string) rewrite.Result {
	t.Helper()
	res, err := rules.Apply(req(in.login, in.realm))
	if err != nil {
		t.Fatalf("%q/%q: unexpected error %v", in.login, in.realm, err)
	}
	if got := (lr{res.Request.Login, res.Request.Realm}); got != want {
		t.Errorf("%q/%q: got %q/%q, want %q/%q", in.login, in.realm, got.login, got.realm, want.login, want.realm)
	}
	var rulesActed []string
	for _, s := range res.Trace {
		rulesActed = append(rulesActed, s.Rule)
	}
	if !slices.Equal(rulesActed, trace) {
		t.Errorf("%q/%q: trace %q, want rules %q", in.login, in.realm, res.Trace, trace)
	}
	// untouched by every rule
	if res.Request.Password.Reveal() != "pw" || res.Request.ClientAddr != "192.0.2.7;41234" {
		t.Errorf("%q/%q: password or client address changed", in.login, in.realm)
	}
	return res
}

func TestZeroRulesChangeNothing(t *testing.T) {
	for _, in := range []lr{{"alice", ""}, {"alice@example.com", ""}, {"Alice", "Example.COM"}, {"a b/c", "x"}} {
		res := runRule(t, rewrite.Rules{}, in, in)
		if res.Logged != res.Request || res.Chain != "" {
			t.Errorf("%v: logged %+v chain %q", in, res.Logged, res.Chain)
		}
	}
}

func TestRealmSplit(t *testing.T) {
	r := rewrite.Rules{RealmSplit: true}
	for _, c := range []struct {
		in, want lr
		split    bool
	}{
		{lr{"alice", ""}, lr{"alice", ""}, false},
		{lr{"alice@example.com", ""}, lr{"alice", "example.com"}, true},
		// the typed domain wins over the application's user_realm (libsasl)
		{lr{"alice@example.com", "example.net"}, lr{"alice", "example.com"}, true},
		{lr{"alice", "example.net"}, lr{"alice", "example.net"}, false},
		// the LAST @
		{lr{"a@b@c.org", ""}, lr{"a@b", "c.org"}, true},
		// never an empty login or realm
		{lr{"@example.com", ""}, lr{"@example.com", ""}, false},
		{lr{"alice@", ""}, lr{"alice@", ""}, false},
		{lr{"alice@", "r"}, lr{"alice@", "r"}, false},
		{lr{"@", ""}, lr{"@", ""}, false},
		{lr{"a@@", ""}, lr{"a@@", ""}, false},
		{lr{"a@@b", ""}, lr{"a@", "b"}, true},
	} {
		var tr []string
		if c.split {
			tr = []string{"realm_split"}
		}
		runRule(t, r, c.in, c.want, tr...)
	}
	res := runRule(t, r, lr{"alice@example.com", "example.net"}, lr{"alice", "example.com"}, "realm_split")
	if got, want := res.Trace.String(), `realm_split: "alice@example.com" / "example.net" → "alice" / "example.com"`; got != want {
		t.Errorf("trace %q, want %q", got, want)
	}
}

func TestDefaultRealm(t *testing.T) {
	r := rewrite.Rules{DefaultRealm: "example.com"}
	runRule(t, r, lr{"alice", ""}, lr{"alice", "example.com"}, "default_realm")
	runRule(t, r, lr{"alice", "example.net"}, lr{"alice", "example.net"})
	// not split without realm_split: the login keeps its @
	runRule(t, r, lr{"alice@example.org", ""}, lr{"alice@example.org", "example.com"}, "default_realm")
}

func TestLowercase(t *testing.T) {
	runRule(t, rewrite.Rules{RealmLowercase: true}, lr{"Alice", "Example.COM"}, lr{"Alice", "example.com"}, "realm_lowercase")
	runRule(t, rewrite.Rules{LoginLowercase: true}, lr{"Alice", "Example.COM"}, lr{"alice", "Example.COM"}, "login_lowercase")
	runRule(t, rewrite.Rules{LoginLowercase: true, RealmLowercase: true}, lr{"Alice", "Example.COM"}, lr{"alice", "example.com"}, "realm_lowercase", "login_lowercase")
	// already lower: no trace
	runRule(t, rewrite.Rules{LoginLowercase: true, RealmLowercase: true}, lr{"alice", "example.com"}, lr{"alice", "example.com"})
	// ASCII only: Ä and the Kelvin sign stay
	runRule(t, rewrite.Rules{LoginLowercase: true}, lr{"ÄLICE\u212a", ""}, lr{"Älice\u212a", ""}, "login_lowercase")
	// invalid UTF-8 survives byte for byte
	runRule(t, rewrite.Rules{LoginLowercase: true}, lr{"A\xffB", ""}, lr{"a\xffb", ""}, "login_lowercase")
}

const dovecotChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@"

func TestLoginChars(t *testing.T) {
	for _, c := range []struct {
		chars    string
		in       lr
		badField string // "" = accepted
		badChar  string
	}{
		{dovecotChars, lr{"alice", ""}, "", ""},
		{dovecotChars, lr{"alice.smith", "example.com"}, "", ""},
		{dovecotChars, lr{"alice@example.com", ""}, "", ""},
		{dovecotChars, lr{"alice smith", ""}, "login", "' '"},
		{dovecotChars, lr{"alice/../x", ""}, "login", "'/'"},
		{dovecotChars, lr{"alice", "exa mple.com"}, "realm", "' '"},
		{dovecotChars, lr{"al\nice", ""}, "login", `'\n'`},
		{dovecotChars, lr{"alice\x00", ""}, "login", `'\x00'`},
		{dovecotChars, lr{"jürgen", ""}, "login", "'ü'"},
		{dovecotChars + "ü", lr{"jürgen", ""}, "", ""},
		{dovecotChars, lr{"a\xffb", ""}, "login", "byte 0xff"},
		// U+FFFD must be listed to be allowed, and then only the real one
		{dovecotChars + "\ufffd", lr{"a\ufffdb", ""}, "", ""},
		{dovecotChars + "\ufffd", lr{"a\xffb", ""}, "login", "byte 0xff"},
		// the "@" that separates login and realm need not be listed
		{"abc.", lr{"abc", "a.b"}, "", ""},
		{"abc.", lr{"a@c", ""}, "login", "'@'"},
	} {
		r := rewrite.Rules{LoginChars: c.chars}
		res, err := r.Apply(req(c.in.login, c.in.realm))
		if c.badField == "" {
			if err != nil {
				t.Errorf("%q/%q: %v", c.in.login, c.in.realm, err)
			}
			continue
		}
		if !errors.Is(err, rewrite.ErrInvalidLogin) {
			t.Errorf("%q/%q: err %v, want ErrInvalidLogin", c.in.login, c.in.realm, err)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "rewrite: invalid characters in login: "+c.badField+" ") ||
			!strings.Contains(msg, " has "+c.badChar+",") {
			t.Errorf("%q/%q: error %q, want field %s and %s", c.in.login, c.in.realm, msg, c.badField, c.badChar)
		}
		if strings.ContainsAny(err.Error(), "\n\x00") {
			t.Errorf("error not log-safe: %q", err)
		}
		if res.Logged.Login != c.in.login || res.Trace[len(res.Trace)-1].Rule != "login_chars" {
			t.Errorf("%q/%q: refusal result %+v", c.in.login, c.in.realm, res)
		}
		ref, ok := rewrite.Refused(err)
		if !ok || ref.Verdict != mechs.Reject || ref.Reply != rewrite.ReplyInvalidLogin || ref.By != "login_chars" || ref.Reason != err.Error() {
			t.Errorf("Refused: %+v %v", ref, ok)
		}
	}
	if rewrite.ReplyInvalidLogin != "NO invalid characters in login" {
		t.Errorf("reply text changed: %q", rewrite.ReplyInvalidLogin)
	}
	if _, ok := rewrite.Refused(nil); ok {
		t.Error("Refused(nil) ok")
	}
	if _, ok := rewrite.Refused(errors.New("other")); ok {
		t.Error("Refused(other) ok")
	}
	// the check sees the lower-cased login
	r := rewrite.Rules{LoginChars: "abcdefghijklmnopqrstuvwxyz", LoginLowercase: true}
	runRule(t, r, lr{"Alice", ""}, lr{"alice", ""}, "login_lowercase")
	// and the default realm
	r = rewrite.Rules{LoginChars: "abc", DefaultRealm: "x.y"}
	if _, err := r.Apply(req("abc", "")); !errors.Is(err, rewrite.ErrInvalidLogin) {
		t.Errorf("default realm not checked: %v", err)
	}
}

func TestRealmStrip(t *testing.T) {
	r := rewrite.Rules{RealmStrip: []string{"example.com", "Example.NET"}}
	res := runRule(t, r, lr{"alice", "example.com"}, lr{"alice", ""}, "realm_strip")
	if res.Logged.Realm != "example.com" || res.Logged.Login != "alice" {
		t.Errorf("logged %+v: want the realm before the strip", res.Logged)
	}
	runRule(t, r, lr{"alice", "EXAMPLE.com"}, lr{"alice", ""}, "realm_strip")
	runRule(t, r, lr{"alice", "example.net"}, lr{"alice", ""}, "realm_strip")
	runRule(t, r, lr{"alice", "example.org"}, lr{"alice", "example.org"})
	runRule(t, r, lr{"alice", "sub.example.com"}, lr{"alice", "sub.example.com"})
	runRule(t, r, lr{"alice", ""}, lr{"alice", ""})
	// strip does not look in the login: that is realm_split's job
	runRule(t, r, lr{"alice@example.com", ""}, lr{"alice@example.com", ""})

	all := rewrite.Rules{RealmStripAll: true}
	runRule(t, all, lr{"alice", "example.org"}, lr{"alice", ""}, "realm_strip")
	runRule(t, all, lr{"alice", ""}, lr{"alice", ""})
}

func TestRealmJoin(t *testing.T) {
	r := rewrite.Rules{RealmJoin: true}
	res := runRule(t, r, lr{"alice", "example.com"}, lr{"alice@example.com", "example.com"}, "realm_join")
	if res.Logged.Login != "alice@example.com" || res.Logged.Realm != "example.com" {
		t.Errorf("logged %+v: saslauthd logs the joined login", res.Logged)
	}
	runRule(t, r, lr{"alice", ""}, lr{"alice", ""})
	runRule(t, r, lr{"alice@x", "y"}, lr{"alice@x@y", "y"}, "realm_join")
	// saslauthd's 512-byte cap
	long := strings.Repeat("a", 256)
	res = runRule(t, r, lr{long, long}, lr{(long + "@" + long)[:512], long}, "realm_join")
	if len(res.Request.Login) != rewrite.MaxJoinedLogin {
		t.Errorf("joined login is %d bytes", len(res.Request.Login))
	}
	runRule(t, r, lr{long, long[:255]}, lr{long + "@" + long[:255], long[:255]}, "realm_join")
}

// TestCombinations runs every rule together in the documented order.
func TestCombinations(t *testing.T) {
	everything := rewrite.Rules{
		RealmSplit: true, DefaultRealm: "Example.COM", RealmLowercase: true, LoginLowercase: true,
		LoginChars: dovecotChars, RealmStrip: []string{"example.com"}, RealmJoin: true,
	}
	for _, c := range []struct {
		name     string
		rules    rewrite.Rules
		in, want lr
		logged   lr
		trace    []string
	}{
		{"split then join gives back the typed login", rewrite.Rules{RealmSplit: true, RealmJoin: true},
			lr{"alice@example.com", ""}, lr{"alice@example.com", "example.com"}, lr{"alice@example.com", "example.com"},
			[]string{"realm_split", "realm_join"}},
		{"strip before join: stripped realm is not joined", rewrite.Rules{RealmStrip: []string{"example.com"}, RealmJoin: true},
			lr{"alice", "example.com"}, lr{"alice", ""}, lr{"alice", "example.com"},
			[]string{"realm_strip"}},
		{"strip before join: other realms are joined", rewrite.Rules{RealmStrip: []string{"example.com"}, RealmJoin: true},
			lr{"bob", "other.org"}, lr{"bob@other.org", "other.org"}, lr{"bob@other.org", "other.org"},
			[]string{"realm_join"}},
		{"default realm then join", rewrite.Rules{DefaultRealm: "example.com", RealmJoin: true},
			lr{"alice", ""}, lr{"alice@example.com", "example.com"}, lr{"alice@example.com", "example.com"},
			[]string{"default_realm", "realm_join"}},
		{"default realm is stripped too", rewrite.Rules{DefaultRealm: "example.com", RealmStrip: []string{"example.com"}},
			lr{"alice", ""}, lr{"alice", ""}, lr{"alice", "example.com"},
			[]string{"default_realm", "realm_strip"}},
		{"default realm is lower-cased", rewrite.Rules{DefaultRealm: "Example.COM", RealmLowercase: true},
			lr{"alice", ""}, lr{"alice", "example.com"}, lr{"alice", "example.com"},
			[]string{"default_realm", "realm_lowercase"}},
		{"split realm is lower-cased, then stripped", rewrite.Rules{RealmSplit: true, RealmLowercase: true, RealmStrip: []string{"example.com"}},
			lr{"alice@EXAMPLE.com", ""}, lr{"alice", ""}, lr{"alice", "example.com"},
			[]string{"realm_split", "realm_lowercase", "realm_strip"}},
		{"everything: a stripped domain", everything,
			lr{"Alice@Example.COM", "example.net"}, lr{"alice", ""}, lr{"alice", "example.com"},
			[]string{"realm_split", "realm_lowercase", "login_lowercase", "realm_strip"}},
		{"everything: default realm stripped", everything,
			lr{"Alice", ""}, lr{"alice", ""}, lr{"alice", "example.com"},
			[]string{"default_realm", "realm_lowercase", "login_lowercase", "realm_strip"}},
		{"everything: another domain is joined", everything,
			lr{"Bob@Other.ORG", ""}, lr{"bob@other.org", "other.org"}, lr{"bob@other.org", "other.org"},
			[]string{"realm_split", "realm_lowercase", "login_lowercase", "realm_join"}},
		{"everything: the application's realm", everything,
			lr{"bob", "other.org"}, lr{"bob@other.org", "other.org"}, lr{"bob@other.org", "other.org"},
			[]string{"realm_join"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := runRule(t, c.rules, c.in, c.want, c.trace...)
			if got := (lr{res.Logged.Login, res.Logged.Realm}); got != c.logged {
				t.Errorf("logged %q/%q, want %q/%q", got.login, got.realm, c.logged.login, c.logged.realm)
			}
		})
	}
	_, err := everything.Apply(req("Alice@Exa_mple!.com", ""))
	if !errors.Is(err, rewrite.ErrInvalidLogin) || !strings.Contains(err.Error(), `realm "exa_mple!.com" has '!'`) {
		t.Errorf("refusal after split and lower-casing: %v", err)
	}
}

func TestTraceString(t *testing.T) {
	r := rewrite.Rules{RealmSplit: true, LoginLowercase: true, RealmJoin: true,
		Services: rewrite.ServiceMap{Default: "pam", PAM: map[string]string{"smtp": "mail"}, Chains: map[string]string{"smtp": "sasldb,pam"}}}
	res, err := r.Apply(req("Alice@example.com", ""))
	if err != nil {
		t.Fatal(err)
	}
	want := `realm_split: "Alice@example.com" / "" → "Alice" / "example.com"; ` +
		`login_lowercase: "Alice" → "alice"; ` +
		`realm_join: "alice" → "alice@example.com"; ` +
		`service_map: "smtp" → "mail"; ` +
		`service_mech: "smtp" → "sasldb,pam"`
	if got := res.Trace.String(); got != want {
		t.Errorf("trace\n got %s\nwant %s", got, want)
	}
	if (rewrite.Trace{}).String() != "" {
		t.Error("empty trace is not empty")
	}
	// control characters are quoted
	res, _ = rewrite.Rules{LoginLowercase: true}.Apply(req("A\nB", ""))
	if s := res.Trace.String(); strings.Contains(s, "\n") {
		t.Errorf("trace not log-safe: %q", s)
	}
}

func TestServiceMapping(t *testing.T) {
	sm := rewrite.ServiceMap{
		Default: "sasldb,pam",
		PAM:     map[string]string{"smtp": "mail", "imap": "dovecot"},
		Chains:  map[string]string{"imap": "rimap", "pop": "rimap", "sieve": "sasldb,pam"},
	}
	r := rewrite.Rules{Services: sm}
	for _, c := range []struct {
		service, pam, chain string
		trace               []string
	}{
		{"smtp", "mail", "sasldb,pam", []string{"service_map"}},
		{"imap", "dovecot", "rimap", []string{"service_map", "service_mech"}},
		{"pop", "pop", "rimap", []string{"service_mech"}},
		{"sieve", "sieve", "sasldb,pam", nil}, // an entry equal to the default is not a change
		{"SMTP", "SMTP", "sasldb,pam", nil},   // case-sensitive
		{"", "", "sasldb,pam", nil},
	} {
		in := req("alice", "")
		in.Service = c.service
		res, err := r.Apply(in)
		if err != nil {
			t.Fatal(err)
		}
		if res.Request.Service != c.pam || res.Chain != c.chain || res.Logged.Service != c.service {
			t.Errorf("%q: chain gets service %q via %q, logged %q; want %q via %q, logged %q",
				c.service, res.Request.Service, res.Chain, res.Logged.Service, c.pam, c.chain, c.service)
		}
		if p, ch := sm.Lookup(c.service); p != c.pam || ch != c.chain {
			t.Errorf("Lookup(%q) = %q, %q", c.service, p, ch)
		}
		var got []string
		for _, s := range res.Trace {
			got = append(got, s.Rule)
		}
		if !slices.Equal(got, c.trace) {
			t.Errorf("%q: trace %v, want %v", c.service, res.Trace, c.trace)
		}
	}
	if got, want := sm.ChainNames(), []string{"sasldb,pam", "rimap"}; !slices.Equal(got, want) {
		t.Errorf("ChainNames %q, want %q", got, want)
	}
}

func TestServiceMapAny(t *testing.T) {
	sm := rewrite.ServiceMap{PAM: map[string]string{"smtp": "smtp", "*": "mail"}}
	for svc, want := range map[string]string{"smtp": "smtp", "imap": "mail", "": "mail"} {
		if p, ch := sm.Lookup(svc); p != want || ch != "" {
			t.Errorf("Lookup(%q) = %q, %q; want %q", svc, p, ch, want)
		}
	}
	// the zero map: every service to itself, the default chain
	if p, ch := (rewrite.ServiceMap{}).Lookup("imap"); p != "imap" || ch != "" {
		t.Errorf("zero map: %q %q", p, ch)
	}
	if n := (rewrite.ServiceMap{}).ChainNames(); n != nil {
		t.Errorf("zero map chains %q", n)
	}
	if n := (rewrite.ServiceMap{Chains: map[string]string{"a": "x", "b": "x", "c": "pam"}}).ChainNames(); !slices.Equal(n, []string{"pam", "x"}) {
		t.Errorf("chains %q", n)
	}
}

func TestSplitChain(t *testing.T) {
	for in, want := range map[string][]string{"": nil, "pam": {"pam"}, "sasldb,pam": {"sasldb", "pam"}} {
		if got := rewrite.SplitChain(in); !slices.Equal(got, want) {
			t.Errorf("SplitChain(%q) = %q", in, got)
		}
	}
}

// TestApplyIsPure: the rules keep no state and do not alias the caller's
// slices and maps in a way that lets one request affect another.
func TestApplyIsPure(t *testing.T) {
	r := rewrite.Rules{RealmSplit: true, RealmStrip: []string{"a.b"}, RealmJoin: true,
		Services: rewrite.ServiceMap{PAM: map[string]string{"smtp": "mail"}}}
	first, _ := r.Apply(req("x@a.b", ""))
	for range 3 {
		again, _ := r.Apply(req("x@a.b", ""))
		if fmt.Sprint(again) != fmt.Sprint(first) {
			t.Fatalf("%v != %v", again, first)
		}
	}
}

func FuzzApply(f *testing.F) {
	f.Add("alice@example.com", "", "smtp")
	f.Add("Alice", "Example.COM", "imap")
	f.Add("@", "@", "")
	f.Add("a@b@c", "x", "*")
	f.Add("\xff@\xfe", "", "pop")
	r := rewrite.Rules{
		RealmSplit: true, DefaultRealm: "example.com", RealmLowercase: true, LoginLowercase: true,
		LoginChars: dovecotChars, RealmStrip: []string{"example.com"}, RealmJoin: true,
		Services: rewrite.ServiceMap{Default: "pam", PAM: map[string]string{"smtp": "mail"}, Chains: map[string]string{"imap": "rimap"}},
	}
	open := r
	open.LoginChars = ""
	f.Fuzz(func(t *testing.T, login, realm, service string) {
		in := mechs.Request{Login: login, Realm: realm, Service: service, Password: "pw"}
		for _, rules := range []rewrite.Rules{r, open} {
			res, err := rules.Apply(in)
			if err != nil {
				if !errors.Is(err, rewrite.ErrInvalidLogin) {
					t.Fatalf("unexpected error %v", err)
				}
				continue
			}
			if login != "" && res.Request.Login == "" {
				t.Fatalf("login %q became empty", login)
			}
			if len(res.Request.Login) > max(len(login), rewrite.MaxJoinedLogin) {
				t.Fatalf("login grew to %d bytes", len(res.Request.Login))
			}
			if res.Request.Password != in.Password || res.Logged.Service != service || res.Logged.Login != res.Request.Login {
				t.Fatalf("bad result %+v", res)
			}
			if res.Request.Realm != "" && !strings.HasSuffix(res.Request.Login, "@"+res.Request.Realm) && len(res.Request.Login) < rewrite.MaxJoinedLogin {
				t.Fatalf("realm %q not joined into %q", res.Request.Realm, res.Request.Login)
			}
			if strings.ContainsAny(res.Trace.String(), "\n\r\x00") {
				t.Fatalf("trace not log-safe: %q", res.Trace)
			}
		}
	})
}
