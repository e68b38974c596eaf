package rimap

import (
	"strings"
	"testing"
	"time"

	"github.com/saslgate/saslgate/mechs"
)

const (
	tlsUser = "alice"
	tlsPass = `tls "pa\ss" ✓`
)

func TestTLS(t *testing.T) {
	ca := newCA(t)
	other := newCA(t) // signs nothing the client trusts
	startTLS := newMemServer(t, memConfig{startTLS: ca.serverConfig(t, "127.0.0.1", "imap.test")}, tlsUser, tlsPass)
	implicit := newMemServer(t, memConfig{implicit: ca.serverConfig(t, "127.0.0.1")}, tlsUser, tlsPass)
	nameOnly := newMemServer(t, memConfig{implicit: ca.serverConfig(t, "imap.test")}, tlsUser, tlsPass)
	untrusted := newMemServer(t, memConfig{implicit: other.serverConfig(t, "127.0.0.1")}, tlsUser, tlsPass)
	untrustedST := newMemServer(t, memConfig{startTLS: other.serverConfig(t, "127.0.0.1")}, tlsUser, tlsPass)
	noStartTLS := newMemServer(t, memConfig{insecureAuth: true}, tlsUser, tlsPass)

	cases := []struct {
		name   string
		srv    *memServer
		kv     []string
		pw     string
		v      mechs.Verdict
		reply  string
		logHas string // at error level
	}{
		{"starttls good", startTLS, []string{KeyTLS, "starttls", KeyCAFile, ca.pemFile}, tlsPass, mechs.Accept, ReplyOK, ""},
		{"starttls wrong password", startTLS, []string{KeyTLS, "starttls", KeyCAFile, ca.pemFile}, "wrong", mechs.Reject, ReplyRejected, ""},
		{"implicit good", implicit, []string{KeyTLS, "implicit", KeyCAFile, ca.pemFile}, tlsPass, mechs.Accept, ReplyOK, ""},
		{"implicit wrong password", implicit, []string{KeyTLS, "implicit", KeyCAFile, ca.pemFile}, "wrong", mechs.Reject, ReplyRejected, ""},
		{"untrusted CA (implicit)", untrusted, []string{KeyTLS, "implicit", KeyCAFile, ca.pemFile}, tlsPass, mechs.TempFail, ReplyNoContact, "certificate signed by unknown authority"},
		{"untrusted CA (starttls)", untrustedST, []string{KeyTLS, "starttls", KeyCAFile, ca.pemFile}, tlsPass, mechs.TempFail, ReplyNoContact, "certificate signed by unknown authority"},
		{"system roots do not know the test CA", implicit, []string{KeyTLS, "implicit"}, tlsPass, mechs.TempFail, ReplyNoContact, "certificate"},
		{"name mismatch", nameOnly, []string{KeyTLS, "implicit", KeyCAFile, ca.pemFile}, tlsPass, mechs.TempFail, ReplyNoContact, "127.0.0.1"},
		{"rimap_server_name", nameOnly, []string{KeyTLS, "implicit", KeyCAFile, ca.pemFile, KeyServerName, "imap.test"}, tlsPass, mechs.Accept, ReplyOK, ""},
		{"verification off", untrusted, []string{KeyTLS, "implicit", KeyTLSVerify, "no"}, tlsPass, mechs.Accept, ReplyOK, ""},
		{"STARTTLS refused", noStartTLS, []string{KeyTLS, "starttls", KeyCAFile, ca.pemFile}, tlsPass, mechs.TempFail, ReplyUnexpected, "refused STARTTLS"},
		{"plaintext to a server that wants TLS", startTLS, nil, tlsPass, mechs.TempFail, ReplyUnexpected, "LOGINDISABLED"},
		{"TLS to a plaintext port", noStartTLS, []string{KeyTLS, "implicit", KeyCAFile, ca.pemFile}, tlsPass, mechs.TempFail, ReplyNoContact, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tc.srv.wire.String())
			m, lb := newMech(t, testOpts(tc.srv.addr, tc.kv...))
			res := auth(t, m, tlsUser, tc.pw)
			wantResult(t, res, tc.v, tc.reply)
			if tc.logHas != "" {
				log := lb.String()
				if !strings.Contains(log, "level=ERROR") || !strings.Contains(log, tc.logHas) {
					t.Fatalf("want an error-level line with %q; log:\n%s", tc.logHas, log)
				}
			}
			noPassword(t, lb.String(), tlsPass)
			// whatever happened, the password never crossed in the clear
			if wire := tc.srv.wire.String()[before:]; !tc.srv.implicit {
				if i := strings.Index(wire, "saslauthd LOGIN"); i >= 0 && !strings.Contains(wire[:i], "Begin TLS negotiation") {
					t.Fatalf("LOGIN sent in the clear:\n%s", wire)
				}
			}
		})
	}
}

// With TLS the pool keeps handshaken connections, so a request pays only
// for its LOGIN; TLS 1.3 session tickets waiting on an idle connection do
// not make it look dead.
func TestTLSPool(t *testing.T) {
	ca := newCA(t)
	for _, mode := range []string{"starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			mc := memConfig{startTLS: ca.serverConfig(t, "127.0.0.1")}
			if mode == "implicit" {
				mc = memConfig{implicit: ca.serverConfig(t, "127.0.0.1")}
			}
			srv := newMemServer(t, mc, tlsUser, tlsPass)
			m, _ := newMech(t, testOpts(srv.addr, KeyTLS, mode, KeyCAFile, ca.pemFile, KeyPoolSize, "2"))
			waitReady(t, m, 2)
			time.Sleep(50 * time.Millisecond) // let the tickets arrive
			for i := 0; i < 5; i++ {
				wantResult(t, auth(t, m, tlsUser, "wrong"), mechs.Reject, ReplyRejected)
			}
			wantResult(t, auth(t, m, tlsUser, tlsPass), mechs.Accept, ReplyOK)
			p := m.pool
			if p.dead.Load() != 0 || p.reuses.Load() != 6 {
				t.Fatalf("reuses %d, dead %d: ready TLS connections were not reused", p.reuses.Load(), p.dead.Load())
			}
		})
	}
}
