package rimap

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	good := newMemServer(t, memConfig{implicit: ca.serverConfig(t, "127.0.0.1")}, tlsUser, tlsPass)
	named := newMemServer(t, memConfig{startTLS: ca.serverConfig(t, "imap.test")}, tlsUser, tlsPass)
	untrusted := newMemServer(t, memConfig{implicit: other.serverConfig(t, "127.0.0.1")}, tlsUser, tlsPass)
	plain := newMemServer(t, memConfig{startTLS: ca.serverConfig(t, "127.0.0.1")}, tlsUser, tlsPass)
	closed := closedPort(t)

	cases := []struct {
		name              string
		option            string
		kv                []string
		wantErr           string // "" for a good server
		certificate, conf bool
		names             []string
	}{
		{"implicit TLS verifies", good.addr, []string{KeyTLS, "implicit", KeyCAFile, ca.pemFile}, "", false, false, nil},
		{"untrusted certificate", untrusted.addr, []string{KeyTLS, "implicit", KeyCAFile, ca.pemFile}, "unknown authority", true, true, []string{"127.0.0.1"}},
		{"another name (STARTTLS)", named.addr, []string{KeyTLS, "starttls", KeyCAFile, ca.pemFile}, "certificate", true, true, []string{"imap.test"}},
		{"unreachable", closed, nil, "connect", false, false, nil},
		{"LOGINDISABLED in the clear", plain.addr, nil, "LOGINDISABLED", false, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := testOpts(tc.option, tc.kv...)
			o.Values[KeyPoolSize] = "4" // Probe must not start a pool anyway
			before := len(good.wire.String())
			rs, err := Probe(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 {
				t.Fatalf("got %d results, want 1", len(rs))
			}
			r := rs[0]
			switch {
			case tc.wantErr == "" && r.Err != nil:
				t.Fatalf("Err = %v, want nil", r.Err)
			case tc.wantErr != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), tc.wantErr)):
				t.Fatalf("Err = %v, want one containing %q", r.Err, tc.wantErr)
			}
			if r.Certificate != tc.certificate || r.Config != tc.conf {
				t.Fatalf("Certificate, Config = %v, %v; want %v, %v (%v)", r.Certificate, r.Config, tc.certificate, tc.conf, r.Err)
			}
			if !slices.Equal(r.CertNames, tc.names) {
				t.Fatalf("CertNames = %q, want %q", r.CertNames, tc.names)
			}
			if tc.option == good.addr {
				// no credential is ever sent, and the server saw a LOGOUT
				// (the server logs what it reads after the probe returned)
				deadline := time.Now().Add(5 * time.Second)
				w := good.wire.String()[before:]
				for !strings.Contains(w, "LOGOUT") && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
					w = good.wire.String()[before:]
				}
				if strings.Contains(w, "LOGIN") || !strings.Contains(w, "LOGOUT") {
					t.Fatalf("probe: want LOGOUT and no LOGIN on the wire:\n%s", w)
				}
			}
		})
	}
	if _, err := Probe(context.Background(), testOpts("")); err == nil {
		t.Fatal("no host: want an error")
	}
}
