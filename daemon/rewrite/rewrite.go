package rewrite

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/saslgate/saslgate/mechs"
)

// MaxJoinedLogin is where realm_join cuts "login@realm": saslauthd joins
// into a 513-byte buffer (spec §4.3).
const MaxJoinedLogin = 512

// ErrInvalidLogin is wrapped by the error Apply returns when login_chars
// refuses a request. It is the only error Apply returns.
var ErrInvalidLogin = errors.New("rewrite: invalid characters in login")

// ReplyInvalidLogin is the daemon's reply to a request login_chars refused
// (30 bytes on the wire; libsasl only looks at the "NO").
const ReplyInvalidLogin = "NO invalid characters in login"

// RuleLoginChars names the rule that refuses a request, as Refused puts it
// in Result.By (the failure line's [mech=...]).
const RuleLoginChars = "login_chars"

// Rules is the daemon's rewrite configuration. The zero value changes
// nothing and maps every service to itself and the default chain "".
// See the package documentation for the order and exact behaviour.
type Rules struct {
	RealmSplit     bool     // realm_split
	DefaultRealm   string   // default_realm; "" for none
	RealmLowercase bool     // realm_lowercase
	LoginLowercase bool     // login_lowercase
	LoginChars     string   // login_chars; "" for no check
	RealmStripAll  bool     // realm_strip: all
	RealmStrip     []string // realm_strip: realm, ...
	RealmJoin      bool     // realm_join, saslauthd's -r
	Services       ServiceMap
}

// Result is a request after the rules.
type Result struct {
	// Request is what the mechanism chain is called with: login and realm
	// after every rule, Service replaced by the mapped PAM service.
	Request mechs.Request
	// Logged is the request as the daemon logs it and keys the cache on:
	// the same login as Request, but the realm before realm_strip and the
	// service the client sent.
	Logged mechs.Request
	// Chain is the mechanism chain for the service (ServiceMap.Lookup).
	Chain string
	// Trace lists what the rules changed, in order.
	Trace Trace
}

// Step is one change made by one rule.
type Step struct {
	Rule     string // the config key of the rule: "realm_split", ...
	From, To string // the values before and after, quoted for the log
}

func (s Step) String() string { return s.Rule + ": " + s.From + " → " + s.To }

// Trace is the list of changes Apply made.
type Trace []Step

// String joins the steps with "; ", or returns "" for an empty trace.
func (t Trace) String() string {
	parts := make([]string, len(t))
	for i, s := range t {
		parts[i] = s.String()
	}
	return strings.Join(parts, "; ")
}

// Apply runs the rules on req (see the package documentation). On a
// login_chars refusal it returns an error wrapping ErrInvalidLogin and a
// Result whose Logged and Trace hold the request as rewritten up to the
// refusal (for the failure log line); its Request and Chain must not be
// used. Apply never makes a non-empty login empty and never changes the
// password or the client address.
func (r Rules) Apply(req mechs.Request) (Result, error) {
	var tr Trace
	q := strconv.Quote

	// 1. realm_split
	if r.RealmSplit {
		if i := strings.LastIndexByte(req.Login, '@'); i > 0 && i < len(req.Login)-1 {
			login, realm := req.Login[:i], req.Login[i+1:]
			tr = append(tr, Step{"realm_split", q(req.Login) + " / " + q(req.Realm), q(login) + " / " + q(realm)})
			req.Login, req.Realm = login, realm
		}
	}
	// 2. default_realm
	if req.Realm == "" && r.DefaultRealm != "" {
		tr = append(tr, Step{"default_realm", q(""), q(r.DefaultRealm)})
		req.Realm = r.DefaultRealm
	}
	// 3. realm_lowercase, login_lowercase
	if r.RealmLowercase {
		if l := LowerASCII(req.Realm); l != req.Realm {
			tr = append(tr, Step{"realm_lowercase", q(req.Realm), q(l)})
			req.Realm = l
		}
	}
	if r.LoginLowercase {
		if l := LowerASCII(req.Login); l != req.Login {
			tr = append(tr, Step{"login_lowercase", q(req.Login), q(l)})
			req.Login = l
		}
	}
	// 4. login_chars
	if r.LoginChars != "" {
		for _, f := range [...]struct{ name, v string }{{"login", req.Login}, {"realm", req.Realm}} {
			if c, ok := badChar(f.v, r.LoginChars); ok {
				tr = append(tr, Step{RuleLoginChars, q(f.v), "refused (" + c + " not allowed)"})
				err := fmt.Errorf("%w: %s %s has %s, which login_chars does not allow", ErrInvalidLogin, f.name, q(f.v), c)
				return Result{Logged: req, Trace: tr}, err
			}
		}
	}
	// 5. realm_strip
	logged := req
	if req.Realm != "" && (r.RealmStripAll || r.strips(req.Realm)) {
		tr = append(tr, Step{"realm_strip", q(req.Realm), q("")})
		req.Realm = ""
	}
	// 6. realm_join
	if r.RealmJoin && req.Realm != "" {
		joined := req.Login + "@" + req.Realm
		if len(joined) > MaxJoinedLogin {
			joined = joined[:MaxJoinedLogin]
		}
		tr = append(tr, Step{"realm_join", q(req.Login), q(joined)})
		req.Login = joined
	}
	logged.Login = req.Login

	// services
	pam, chain := r.Services.Lookup(req.Service)
	if pam != req.Service {
		tr = append(tr, Step{"service_map", q(req.Service), q(pam)})
	}
	if chain != r.Services.Default {
		tr = append(tr, Step{"service_mech", q(req.Service), q(chain)})
	}
	req.Service = pam
	return Result{Request: req, Logged: logged, Chain: chain, Trace: tr}, nil
}

// Refused turns an error from Apply into the result the daemon answers
// with: Reject, ReplyInvalidLogin, By RuleLoginChars, and the error as the
// log-only reason. ok is false for any other error (including nil).
func Refused(err error) (res mechs.Result, ok bool) {
	if !errors.Is(err, ErrInvalidLogin) {
		return mechs.Result{}, false
	}
	return mechs.Result{Verdict: mechs.Reject, Reply: ReplyInvalidLogin, Reason: err.Error(), By: RuleLoginChars}, true
}

func (r Rules) strips(realm string) bool {
	for _, s := range r.RealmStrip {
		if equalFoldASCII(s, realm) {
			return true
		}
	}
	return false
}

// badChar returns the first character of s that is not in allowed, quoted;
// an invalid UTF-8 byte is never allowed.
func badChar(s, allowed string) (string, bool) {
	for i, c := range s {
		if c == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return fmt.Sprintf("byte %#02x", s[i]), true
			}
		}
		if !strings.ContainsRune(allowed, c) {
			return strconv.QuoteRune(c), true
		}
	}
	return "", false
}

// LowerASCII lower-cases A-Z only, leaving every other byte (invalid
// UTF-8 included) as it is; it returns s itself when nothing changes. Realm
// and login comparisons are ASCII-case-insensitive, as libsasl's are.
func LowerASCII(s string) string {
	i := strings.IndexFunc(s, func(c rune) bool { return 'A' <= c && c <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for j := i; j < len(b); j++ {
		if 'A' <= b[j] && b[j] <= 'Z' {
			b[j] += 'a' - 'A'
		}
	}
	return string(b)
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
