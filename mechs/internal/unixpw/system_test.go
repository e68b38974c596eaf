//go:build linux && cgo

package unixpw_test

import (
	"strings"
	"testing"

	"github.com/saslgate/saslgate/mechs/internal/unixpw"
	"github.com/saslgate/saslgate/mechs/internal/unixpw/unixpwtest"
)

// TestSystemUsers reads entries that useradd, chpasswd and chage wrote, as
// root. The long comment field does not fit the first 1 KiB buffer, so the
// lookup has to grow it.
func TestSystemUsers(t *testing.T) {
	unixpwtest.NeedRoot(t)
	unixpwtest.Lock(t)
	hash, err := unixpw.Hash("Secret123", "$y$")
	if err != nil {
		t.Fatal(err)
	}
	gecos := strings.Repeat("g", 5000)
	unixpwtest.AddUser(t, unixpwtest.User{Name: "sgtest_p1", Hash: hash, Gecos: gecos,
		Chage: []string{"-d", "20000", "-m", "1", "-M", "90", "-W", "5", "-I", "3", "-E", "30000"}})
	unixpwtest.AddUser(t, unixpwtest.User{Name: "sgtest_p2", Hash: "!" + hash,
		Chage: []string{"-d", "0", "-m", "-1", "-M", "-1", "-W", "-1", "-I", "-1", "-E", "-1"}})

	pw, err := unixpw.LookupUser("sgtest_p1")
	if err != nil || pw == nil {
		t.Fatalf("LookupUser = %+v, %v", pw, err)
	}
	if pw.Gecos != gecos || pw.Passwd != "x" || pw.Shell != "/usr/sbin/nologin" {
		t.Errorf("passwd entry = %q %q %q", pw.Passwd, pw.Shell, pw.Gecos[:20])
	}
	sp, err := unixpw.LookupShadow("sgtest_p1")
	if err != nil || sp == nil {
		t.Fatalf("LookupShadow = %+v, %v", sp, err)
	}
	want := unixpw.Shadow{Name: "sgtest_p1", Password: hash, LastChange: 20000, Min: 1, Max: 90, Warn: 5, Inactive: 3, Expire: 30000}
	if *sp != want {
		t.Errorf("shadow entry = %+v\nwant %+v", *sp, want)
	}
	if !unixpw.Verify("Secret123", sp.Password) || unixpw.Verify("secret123", sp.Password) {
		t.Error("Verify against the stored hash")
	}

	sp, err = unixpw.LookupShadow("sgtest_p2")
	if err != nil || sp == nil {
		t.Fatalf("LookupShadow = %+v, %v", sp, err)
	}
	want = unixpw.Shadow{Name: "sgtest_p2", Password: "!" + hash, LastChange: 0, Min: -1, Max: -1, Warn: -1, Inactive: -1, Expire: -1}
	if *sp != want {
		t.Errorf("shadow entry = %+v\nwant %+v", *sp, want)
	}
	if unixpw.Verify("Secret123", sp.Password) {
		t.Error("locked hash matched")
	}
}
