package rimap

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/mechstest"
)

func TestRegistered(t *testing.T) {
	if !mechs.Known("rimap") || !mechs.Known("RIMAP") {
		t.Fatal("rimap is not registered")
	}
	names := mechs.Names()
	for i, n := range names {
		if n == "rimap" {
			for _, before := range names[:i] {
				if before == "shadow" {
					t.Fatalf("rimap (order 50) listed after shadow: %v", names)
				}
			}
			return
		}
	}
	t.Fatalf("rimap missing from %v", names)
}

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name   string
		option string
		values map[string]string
		want   []Server // nil: an error is expected
		errHas string
		check  func(t *testing.T, c Config)
	}{
		{name: "host alone: service imap", option: "imap.example.org",
			want: []Server{{"imap.example.org", 143, "imap.example.org/imap"}}},
		{name: "numeric port", option: "127.0.0.1/1143",
			want: []Server{{"127.0.0.1", 1143, "127.0.0.1/1143"}}},
		{name: "service name", option: "mail/imaps",
			want: []Server{{"mail", 993, "mail/imaps"}}},
		{name: "split at the first slash", option: "::1/143",
			want: []Server{{"::1", 143, "::1/143"}}},
		{name: "bracketed IPv6", option: "[2001:db8::1]/144",
			want: []Server{{"2001:db8::1", 144, "2001:db8::1/144"}}},
		{name: "implicit TLS defaults to imaps", option: "mail", values: map[string]string{KeyTLS: "implicit"},
			want: []Server{{"mail", 993, "mail/imaps"}}},
		{name: "-O then rimap_hosts, duplicates dropped", option: "a/143",
			values: map[string]string{KeyHosts: "b, c/1143 a/imap\tb"},
			want:   []Server{{"a", 143, "a/143"}, {"b", 143, "b/imap"}, {"c", 1143, "c/1143"}}},
		{name: "rimap_hosts alone", values: map[string]string{KeyHosts: "b"},
			want: []Server{{"b", 143, "b/imap"}}},
		{name: "missing -O", errHas: "no hostname specified"},
		{name: "empty host", option: "/143", errHas: "no hostname"},
		{name: "unknown service", option: "a/nosuchservice", errHas: "unknown service"},
		{name: "port out of range", option: "a/70000", errHas: "unknown service"},
		{name: "bad TLS mode", option: "a", values: map[string]string{KeyTLS: "maybe"}, errHas: KeyTLS},
		{name: "bad timeout", option: "a", values: map[string]string{KeyConnectTimeout: "soon"}, errHas: KeyConnectTimeout},
		{name: "zero timeout", option: "a", values: map[string]string{KeyCommandTimeout: "0"}, errHas: KeyCommandTimeout},
		{name: "negative pool", option: "a", values: map[string]string{KeyPoolSize: "-1"}, errHas: KeyPoolSize},
		{name: "bad verify", option: "a", values: map[string]string{KeyTLSVerify: "perhaps"}, errHas: KeyTLSVerify},
		{name: "defaults", option: "a", want: []Server{{"a", 143, "a/imap"}}, check: func(t *testing.T, c Config) {
			if c.TLS != TLSNone || !c.TLSVerify || c.ConnectTimeout != DefaultConnectTimeout ||
				c.CommandTimeout != DefaultCommandTimeout || c.PoolSize != DefaultPoolSize || c.PoolIdle != DefaultPoolIdle {
				t.Fatalf("defaults: %+v", c)
			}
		}},
		{name: "empty values are defaults", option: "a", values: map[string]string{KeyTLS: "", KeyPoolSize: "", KeyPoolIdle: ""},
			want: []Server{{"a", 143, "a/imap"}}, check: func(t *testing.T, c Config) {
				if c.PoolSize != DefaultPoolSize || c.PoolIdle != DefaultPoolIdle {
					t.Fatalf("%+v", c)
				}
			}},
		{name: "settings", option: "a", values: map[string]string{KeyTLS: "STARTTLS", KeyCAFile: "/ca.pem",
			KeyServerName: "imap.test", KeyTLSVerify: "no", KeyConnectTimeout: "3", KeyCommandTimeout: "1500ms",
			KeyPoolSize: "0", KeyPoolIdle: "1m"},
			want: []Server{{"a", 143, "a/imap"}}, check: func(t *testing.T, c Config) {
				want := Config{Servers: c.Servers, TLS: TLSStartTLS, CAFile: "/ca.pem", ServerName: "imap.test",
					TLSVerify: false, ConnectTimeout: 3 * time.Second, CommandTimeout: 1500 * time.Millisecond,
					PoolSize: 0, PoolIdle: time.Minute}
				if c.TLS != want.TLS || c.CAFile != want.CAFile || c.ServerName != want.ServerName || c.TLSVerify ||
					c.ConnectTimeout != want.ConnectTimeout || c.CommandTimeout != want.CommandTimeout ||
					c.PoolSize != 0 || c.PoolIdle != time.Minute {
					t.Fatalf("got %+v", c)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(mechs.Options{Option: tc.option, Values: tc.values})
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Servers) != len(tc.want) {
				t.Fatalf("servers %+v, want %+v", c.Servers, tc.want)
			}
			for i := range tc.want {
				if c.Servers[i] != tc.want[i] {
					t.Fatalf("server %d: %+v, want %+v", i, c.Servers[i], tc.want[i])
				}
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// saslauthd: a missing -O is "failed to initialize mechanism rimap".
func TestNewWithoutHostFails(t *testing.T) {
	_, err := mechs.New("rimap", mechs.Options{}, nil)
	if err == nil || !strings.Contains(err.Error(), "failed to initialize mechanism rimap") {
		t.Fatalf("err = %v", err)
	}
	if _, err := mechs.New("rimap", mechs.Options{Option: "a", Values: map[string]string{KeyTLS: "starttls", KeyCAFile: "/nonexistent/ca.pem"}}, nil); err == nil {
		t.Fatal("an unreadable CA file was accepted")
	}
}

// Spec §13 case 40, changed on purpose (cyrus-sasl#493): a host that does
// not resolve is not a start-up error; each request tries again.
func TestUnresolvableHost(t *testing.T) {
	for _, pool := range []string{"0", "2"} {
		t.Run("pool="+pool, func(t *testing.T) {
			m, lb := newMech(t, testOpts("nosuchhost.invalid", KeyPoolSize, pool, KeyConnectTimeout, "1s"))
			res := auth(t, m, "u", "Secret-1")
			wantResult(t, res, mechs.TempFail, ReplyNoContact)
			if !strings.Contains(res.Reason, "resolve nosuchhost.invalid") {
				t.Fatalf("reason %q", res.Reason)
			}
			noPassword(t, lb.String(), "Secret-1")
		})
	}
}

// Spec §13 case 39: a closed port is "Couldn't contact", at once.
func TestClosedPort(t *testing.T) {
	m, _ := newMech(t, testOpts(closedPort(t)))
	start := time.Now()
	res := auth(t, m, "u", "p")
	wantResult(t, res, mechs.TempFail, ReplyNoContact)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
	if !strings.Contains(res.Reason, "connection refused") || !strings.Contains(res.Reason, "couldn't connect to 127.0.0.1/") {
		t.Fatalf("reason %q", res.Reason)
	}
}

// Spec §13 cases 34, 35 and the greeting's other shapes.
func TestGreeting(t *testing.T) {
	big := "* OK " + strings.Repeat("x", maxResponse) + "\r\n"
	cases := []struct {
		name     string
		handler  func(*fakeConn)
		verdict  mechs.Verdict
		reply    string
		sent     string // what the client must have sent ("-": don't check)
		maxDelay time.Duration
	}{
		{"* OK", script("* OK IMAP4rev1 ready\r\n", chunk{text: "saslauthd OK done\r\n"}),
			mechs.Accept, ReplyOK, "saslauthd LOGIN \"u\" \"p\"\r\nsaslauthd LOGOUT\r\n", 0},
		{"* OKAY (a prefix, as saslauthd)", script("* OKAY\r\n", chunk{text: "saslauthd OK done\r\n"}),
			mechs.Accept, ReplyOK, "-", 0},
		{"* NO", script("* NO [UNAVAILABLE] maintenance\r\n"), mechs.TempFail, ReplyUnavailable, "", 0},
		{"* BYE", script("* BYE too many connections\r\n"), mechs.TempFail, ReplyUnavailable, "", 0},
		{"HELLO (no star), server keeps the line open", script("HELLO\r\n"), mechs.TempFail, ReplyUnexpected, "", time.Second},
		{"* PREAUTH", script("* PREAUTH logged in\r\n"), mechs.TempFail, ReplyUnexpected, "", 0},
		{"empty line", script("\r\n* OK\r\n"), mechs.TempFail, ReplyUnexpected, "", 0},
		{"closed without greeting", func(*fakeConn) {}, mechs.TempFail, ReplyUnexpected, "", 0},
		{"greeting without end of line, then silence", script("* OK half"), mechs.TempFail, ReplyUnexpected, "", 0},
		{"greeting too long", script(big), mechs.TempFail, ReplySync, "", 0},
		{"reset", func(fc *fakeConn) { time.Sleep(50 * time.Millisecond); fc.Conn.(*net.TCPConn).SetLinger(0) }, mechs.TempFail, ReplySync, "", 0},
		{"LOGINDISABLED: no LOGIN is sent", script("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n"),
			mechs.TempFail, ReplyUnexpected, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFake(t, tc.handler)
			m, lb := newMech(t, testOpts(srv.option(), KeyCommandTimeout, "500ms"))
			start := time.Now()
			res := auth(t, m, "u", "p")
			wantResult(t, res, tc.verdict, tc.reply)
			if tc.maxDelay > 0 && time.Since(start) > tc.maxDelay {
				t.Fatalf("took %v", time.Since(start))
			}
			if tc.sent != "-" {
				if got := srv.conn(0).finished(t); got != tc.sent {
					t.Fatalf("client sent %q, want %q", got, tc.sent)
				}
			}
			if strings.Contains(tc.name, "LOGINDISABLED") {
				if !strings.Contains(lb.String(), "level=ERROR") || !strings.Contains(lb.String(), "LOGINDISABLED") {
					t.Fatalf("configuration error not logged:\n%s", lb.String())
				}
			}
		})
	}
}

// Spec §13 cases 32, 33, 36, 37 and the LOGIN reply's other shapes. Every
// reply that was read is followed by LOGOUT, as saslauthd does.
func TestLoginReply(t *testing.T) {
	const login = "saslauthd LOGIN \"u\" \"p\"\r\n"
	const logout = "saslauthd LOGOUT\r\n"
	ms := 30 * time.Millisecond
	cases := []struct {
		name    string
		reply   []chunk
		verdict mechs.Verdict
		text    string
		sent    string
	}{
		{"32 tagged OK", []chunk{{text: "saslauthd OK [CAPABILITY IMAP4rev1] Logged in\r\n"}}, mechs.Accept, ReplyOK, login + logout},
		{"33 tagged NO", []chunk{{text: "saslauthd NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"}}, mechs.Reject, ReplyRejected, login + logout},
		{"36 * CAPABILITY then OK", []chunk{{text: "* CAPABILITY IMAP4rev1 IDLE\r\nsaslauthd OK done\r\n"}}, mechs.Accept, ReplyOK, login + logout},
		{"36 * CAPABILITY, blank lines, then NO", []chunk{{text: "* CAPABILITY IMAP4rev1\r\n\r\n\r\nsaslauthd NO no\r\n"}}, mechs.Reject, ReplyRejected, login + logout},
		{"36 * OK [ALERT] before the tag", []chunk{{text: "* OK [ALERT] hi\r\nsaslauthd OK done\r\n"}}, mechs.TempFail, ReplyUnexpected, login + logout},
		{"36 * OK [ALERT] in its own segment", []chunk{{text: "* OK [ALERT] hi\r\n"}, {text: "saslauthd OK done\r\n", pause: ms}}, mechs.TempFail, ReplyUnexpected, login + logout},
		{"36 saslauthd BAD", []chunk{{text: "saslauthd BAD parse error\r\n"}}, mechs.TempFail, ReplyUnexpected, login + logout},
		{"37 split across segments", []chunk{{text: "saslauthd O"}, {text: "K done\r\n", pause: ms}}, mechs.Accept, ReplyOK, login + logout},
		{"37 split in a CAPABILITY line", []chunk{{text: "* CAPAB"}, {text: "ILITY X\r\nsaslauthd N", pause: ms}, {text: "O x\r\n", pause: ms}}, mechs.Reject, ReplyRejected, login + logout},
		{"CR alone ends a line", []chunk{{text: "* CAPABILITY X\rsaslauthd OK\n"}}, mechs.Accept, ReplyOK, login + logout},
		{"empty first line", []chunk{{text: "\r\nsaslauthd OK done\r\n"}}, mechs.TempFail, ReplyUnexpected, login + logout},
		{"lower case (strncmp, as saslauthd)", []chunk{{text: "saslauthd ok done\r\n"}}, mechs.TempFail, ReplyUnexpected, login + logout},
		{"Dovecot without TLS", []chunk{{text: "* BAD [ALERT] Plaintext authentication not allowed without SSL/TLS, but your client did it anyway.\r\nsaslauthd NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n"}}, mechs.TempFail, ReplyUnexpected, login + logout},
		{"NO [PRIVACYREQUIRED] is a configuration error", []chunk{{text: "saslauthd NO [PRIVACYREQUIRED] TLS is required\r\n"}}, mechs.TempFail, ReplyUnexpected, login + logout},
		{"NO [UNAVAILABLE] is not a verdict on the password", []chunk{{text: "saslauthd NO [UNAVAILABLE] user database down\r\n"}}, mechs.TempFail, ReplyUnavailable, login + logout},
		{"no reply, server closes", []chunk{{text: ""}}, mechs.TempFail, ReplyUnexpected, login},
		{"reply too long", []chunk{{text: strings.Repeat("* CAPABILITY "+strings.Repeat("X", 1000)+"\r\n", 20)}}, mechs.TempFail, ReplyInternal, login},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := script("* OK ready\r\n", tc.reply...)
			if strings.HasPrefix(tc.name, "no reply") {
				h = func(fc *fakeConn) {
					fc.send("* OK ready\r\n")
					fc.readCommand()
				}
			}
			srv := newFake(t, h)
			m, lb := newMech(t, testOpts(srv.option()))
			res := auth(t, m, "u", "p")
			wantResult(t, res, tc.verdict, tc.text)
			if got := srv.conn(0).finished(t); got != tc.sent {
				t.Fatalf("client sent %q, want %q", got, tc.sent)
			}
			if strings.Contains(tc.name, "PRIVACYREQUIRED") && !strings.Contains(lb.String(), "level=ERROR") {
				t.Fatalf("configuration error not logged at error level:\n%s", lb.String())
			}
		})
	}
}

func TestLoginReplyTimeoutAndReset(t *testing.T) {
	t.Run("silence: unexpected after the command timeout", func(t *testing.T) {
		srv := newFake(t, func(fc *fakeConn) {
			fc.send("* OK ready\r\n")
			fc.readCommand()
			fc.drain()
		})
		m, _ := newMech(t, testOpts(srv.option(), KeyCommandTimeout, "300ms"))
		start := time.Now()
		wantResult(t, auth(t, m, "u", "p"), mechs.TempFail, ReplyUnexpected)
		if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("reset after LOGIN: internal error", func(t *testing.T) {
		srv := newFake(t, func(fc *fakeConn) {
			fc.send("* OK ready\r\n")
			fc.readCommand()
			fc.Conn.(*net.TCPConn).SetLinger(0)
		})
		m, _ := newMech(t, testOpts(srv.option()))
		wantResult(t, auth(t, m, "u", "p"), mechs.TempFail, ReplyInternal)
	})
}

// The request's context bounds everything, cancellation included.
func TestContext(t *testing.T) {
	srv := newFake(t, func(fc *fakeConn) {
		fc.send("* OK ready\r\n")
		fc.drain()
	})
	m, _ := newMech(t, testOpts(srv.option(), KeyCommandTimeout, "30s"))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	res, err := m.Authenticate(ctx, mechs.Request{Login: "u", Password: "p"})
	if err != nil || res.Verdict != mechs.TempFail {
		t.Fatalf("%+v %v", res, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancellation ignored: took %v", d)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel2()
	start = time.Now()
	res, _ = m.Authenticate(ctx, mechs.Request{Login: "u", Password: "Secret-1"})
	if d := time.Since(start); res.Verdict != mechs.TempFail || d > 2*time.Second || d < 100*time.Millisecond {
		t.Fatalf("deadline ignored: %+v after %v", res, d)
	}
}

// Spec §13 cases 32 and 38: the exact bytes, and the literals used where a
// quoted string cannot carry the value.
func TestCommandBytes(t *testing.T) {
	const ok = "saslauthd OK done\r\n"
	cases := []struct {
		name, greeting, login, pw, want string
	}{
		{"32 plain", "* OK ready\r\n", "u", "Secret-1", `saslauthd LOGIN "u" "Secret-1"` + "\r\n"},
		{"38 quotes and backslashes", "* OK ready\r\n", `al"i\ce`, `p\"w`, `saslauthd LOGIN "al\"i\\ce" "p\\\"w"` + "\r\n"},
		{"spaces, tab, braces, parens", "* OK ready\r\n", "a b", "x\ty {3} (z) %*", "saslauthd LOGIN \"a b\" \"x\ty {3} (z) %*\"\r\n"},
		{"UTF-8 with LITERAL+", "* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n", "u", "pä✓", "saslauthd LOGIN \"u\" {6+}\r\npä✓\r\n"},
		{"UTF-8 with LITERAL-", "* OK [CAPABILITY IMAP4rev1 LITERAL-] ready\r\n", "u", "pä✓", "saslauthd LOGIN \"u\" {6+}\r\npä✓\r\n"},
		{"UTF-8, no capabilities: synchronizing", "* OK ready\r\n", "u", "pä✓", "saslauthd LOGIN \"u\" {6}\r\npä✓\r\n"},
		{"UTF-8 login and password", "* OK ready\r\n", "ü", "pä", "saslauthd LOGIN {2}\r\nü {3}\r\npä\r\n"},
		{"CRLF never splits the command", "* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n", "u", "a\r\nsaslauthd LOGOUT", "saslauthd LOGIN \"u\" {19+}\r\na\r\nsaslauthd LOGOUT\r\n"},
		{"bare LF, synchronizing", "* OK ready\r\n", "u", "a\nb", "saslauthd LOGIN \"u\" {3}\r\na\nb\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cmd string
			srv := newFake(t, func(fc *fakeConn) {
				fc.send(tc.greeting)
				cmd, _ = fc.readCommand()
				fc.send(ok)
				fc.drain()
			})
			m, lb := newMech(t, testOpts(srv.option()))
			wantResult(t, auth(t, m, tc.login, tc.pw), mechs.Accept, ReplyOK)
			got := srv.conn(0).finished(t)
			if cmd != tc.want || got != tc.want+"saslauthd LOGOUT\r\n" {
				t.Fatalf("server read the command %q and the connection %q, want %q then LOGOUT", cmd, got, tc.want)
			}
			noPassword(t, lb.String(), tc.pw)
		})
	}
	t.Run("a refused literal is the reply", func(t *testing.T) {
		srv := newFake(t, func(fc *fakeConn) {
			fc.send("* OK ready\r\n")
			fc.br.ReadString('\n')
			fc.send("saslauthd BAD literal refused\r\n")
			fc.drain()
		})
		m, _ := newMech(t, testOpts(srv.option()))
		wantResult(t, auth(t, m, "u", "pä"), mechs.TempFail, ReplyUnexpected)
	})
}

// Several servers, in order: the next one is tried for anything that
// happened before the LOGIN.
func TestServers(t *testing.T) {
	good := newFake(t, imapLike("* OK ready\r\n", "u", "p"))
	bye := newFake(t, script("* BYE busy\r\n"))
	cases := []struct {
		name   string
		option string
		hosts  string
		v      mechs.Verdict
		reply  string
	}{
		{"down, then up", closedPort(t), good.option(), mechs.Accept, ReplyOK},
		{"busy, then up", bye.option(), good.option(), mechs.Accept, ReplyOK},
		{"unresolvable, then up", "nosuchhost.invalid", good.option(), mechs.Accept, ReplyOK},
		{"only rimap_hosts", "", closedPort(t) + "," + good.option(), mechs.Accept, ReplyOK},
		{"up, then down: the first answers", good.option(), closedPort(t), mechs.Accept, ReplyOK},
		{"down, then busy: the last failure", closedPort(t), bye.option(), mechs.TempFail, ReplyUnavailable},
		{"busy, then down: the last failure", bye.option(), closedPort(t), mechs.TempFail, ReplyNoContact},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newMech(t, testOpts(tc.option, KeyHosts, tc.hosts, KeyConnectTimeout, "1s"))
			res := auth(t, m, "u", "p")
			wantResult(t, res, tc.v, tc.reply)
			if tc.v == mechs.TempFail && strings.Count(res.Reason, ";") < 1 {
				t.Fatalf("reason should name both failures: %q", res.Reason)
			}
		})
	}
	t.Run("a rejection is final", func(t *testing.T) {
		other := newFake(t, imapLike("* OK ready\r\n", "u", "p"))
		m, _ := newMech(t, testOpts(good.option(), KeyHosts, other.option()))
		wantResult(t, auth(t, m, "u", "wrong"), mechs.Reject, ReplyRejected)
		if other.count() != 0 {
			t.Fatal("the second server was asked after a rejection")
		}
	})
}

// The password never reaches the log or the result, whatever the server
// says back.
func TestNoPasswordLogged(t *testing.T) {
	const pw = `s3cr"t\pw`
	echo := func(fc *fakeConn) {
		fc.send("* OK ready\r\n")
		cmd, _ := fc.readCommand()
		fc.send("* BAD you sent " + strings.TrimSpace(cmd) + " and " + pw + "\r\nsaslauthd BAD no\r\n")
		fc.drain()
	}
	srv := newFake(t, echo)
	m, lb := newMech(t, testOpts(srv.option(), KeyHosts, closedPort(t)))
	res := auth(t, m, "u", pw)
	wantResult(t, res, mechs.TempFail, ReplyUnexpected)
	quoted := string(quote(nil, pw))
	for _, s := range []string{res.Reason, res.Reply, lb.String()} {
		if strings.Contains(s, pw) || strings.Contains(s, quoted) {
			t.Fatalf("password leaked: %q", s)
		}
	}
	if !strings.Contains(res.Reason, mechs.Redacted) {
		t.Fatalf("reason %q", res.Reason)
	}
}

// mechstest's conformance suite against go-imap's in-memory server, with
// and without the pool.
func TestConformance(t *testing.T) {
	srv := newMemServer(t, memConfig{insecureAuth: true}, "alice", `pa"ss\wörd ✓`)
	for _, pool := range []string{"0", "4"} {
		t.Run("pool="+pool, func(t *testing.T) {
			mechstest.Run(t, mechstest.Fixture{
				New: func(t *testing.T, logger *slog.Logger) mechs.Mechanism {
					m, err := New(testOpts(srv.addr, KeyPoolSize, pool), logger)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { m.Close() })
					return m
				},
				Good:         mechs.Request{Login: "alice", Password: `pa"ss\wörd ✓`, Service: "imap"},
				UnknownLogin: "bob",
			})
		})
	}
}
